// The API's answers, as far as the console reads them (see the OpenAPI document at /docs).

export const STATES = ["new", "retained", "silent", "churned", "dead"] as const;
export type State = (typeof STATES)[number];
export type Counts = Record<State, number>;

export interface Lifecycle {
  as_of: number;
  channel: string | null;
  total: number;
  counts: Counts;
}

export interface History {
  as_of: number;
  days: { day: string; as_of: number; total: number; counts: Counts }[];
}

export interface FunnelStage {
  name: string;
  event: string;
  nth: number;
  users: number;
  conversion_from_previous: number | null;
  conversion_from_first: number | null;
}

export interface Funnel {
  channel: string | null;
  stages: FunnelStage[];
}

export interface NamedFunnel {
  name: string;
  channel: string | null;
  order: string;
  window: string | null;
  steps: FunnelStage[];
}

export interface FunnelList {
  channel: string | null;
  funnels: { name: string; order: string; window: string | null; entered: number; completed: number; conversion: number | null }[];
}

export interface Indicators {
  as_of: number;
  users: number;
  active: { dau: number; wau: number; mau: number };
  payment_rate: number | null;
  gmv: number;
  aov: number | null;
  by_channel?: { channel: string; users: number }[];
}

export interface Ops {
  as_of: number;
  dlq_events: number;
  events_applied: number;
  duplicates: number;
  misrouted: number;
  outbox_pending: number;
  lag: { total: number; partitions: Record<string, number> } | null;
  last_commit_ms: number | null;
  kafka_error: string | null;
}

export interface TriggerType {
  type: string;
  sent: number;
  held_out: number;
  outcomes: Record<string, number>;
  delivery_rate: number | null;
  click_through_rate: number | null;
  payment_click_rate: number | null;
  payment_rate: number | null;
  recall_success_rate: number | null;
  holdout_recall_success_rate: number | null;
  by_origin?: RecallOrigin[];
}

/** Recalls by the state the user was recalled from, and the plan that state gets. */
export interface RecallOrigin extends TriggerType {
  origin: string;
  plan: string;
}

export interface TriggerSummary {
  as_of: number;
  triggers: TriggerType[];
}

export interface Audience {
  name: string;
  description: string;
  filters: Record<string, unknown>;
  size: number;
}

export interface Audiences {
  as_of: string;
  audiences: Audience[];
}

export const KINDS = ["new", "returning", "resurrecting", "dormant"] as const;
export type Kind = (typeof KINDS)[number];
export type Granularity = "day" | "week" | "month";

/** `GET /lifecycle/intervals`: users of each kind per interval; `dormant` is a positive count. */
export interface Intervals {
  interval: Granularity;
  from: string;
  to: string;
  channel: string | null;
  time_zone: string;
  as_of: number;
  intervals: ({ start: string } & Record<Kind, number>)[];
}
