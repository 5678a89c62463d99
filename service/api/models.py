"""Response bodies of the API's state routes, one model per document OpenAPI describes."""

from __future__ import annotations

from pydantic import BaseModel, Field

from service.api.problems import Problem


class StateCounts(BaseModel):
    new: int
    retained: int
    silent: int
    churned: int
    dead: int


class Lifecycle(BaseModel):
    as_of: int
    channel: str | None
    total: int
    counts: StateCounts


class WhatIf(Lifecycle):
    thresholds: dict[str, str]


class CurvePointOut(BaseModel):
    idle: str
    idle_ms: int
    returns_after: int
    still_idle: int
    return_probability: float | None


class ReturnCurve(BaseModel):
    as_of: int
    channel: str | None
    points: list[CurvePointOut]


class FunnelStageOut(BaseModel):
    name: str
    event: str
    nth: int
    users: int
    conversion_from_previous: float | None
    conversion_from_first: float | None


class Funnel(BaseModel):
    channel: str | None
    stages: list[FunnelStageOut]


class FunnelStep(BaseModel):
    name: str
    event: str
    nth: int
    users: int


class FunnelSummary(BaseModel):
    name: str
    order: str  # any or strict
    window: str | None  # e.g. 7d; None: no conversion window
    window_ms: int | None
    steps: list[FunnelStep]
    entered: int
    completed: int
    conversion: float | None


class FunnelList(BaseModel):
    channel: str | None
    funnels: list[FunnelSummary]


class FunnelCohort(BaseModel):
    week: str  # the Monday of the week the users entered the funnel, YYYY-MM-DD
    steps: list[FunnelStageOut]


class NamedFunnelOut(BaseModel):
    name: str
    channel: str | None
    order: str
    window: str | None
    window_ms: int | None
    steps: list[FunnelStageOut]
    cohorts: list[FunnelCohort] | None = None  # with cohort=week


class UserFunnel(BaseModel):
    step: str  # the furthest step counted for the user
    step_index: int
    entered_at: int  # when the user entered the funnel (epoch ms)


class User(BaseModel):
    user_id: str
    merged_from: str | None = None  # the id asked for, when it was merged into `user_id`
    state: str
    rfm_segment: str
    as_of: int
    first_seen: int
    last_active: int
    channel: str | None
    funnel_stage: str | None
    funnel_stage_index: int
    orders: int
    revenue: float
    event_counts: dict[str, int]
    traits: dict[str, str | int | float | bool] = {}  # the profile's named traits, from identify calls
    funnels: dict[str, UserFunnel] = {}  # the named funnels the user entered


class RejectedEvent(BaseModel):
    index: int
    reason: str


class CollectResponse(BaseModel):
    accepted: int
    rejected: list[RejectedEvent]


class CollectRefused(Problem):
    """A 400 from the collector: not JSON (`detail` only), or every event rejected (by index)."""

    accepted: int = 0
    rejected: list[RejectedEvent] = Field(default_factory=list)


class Health(BaseModel):
    status: str
    checks: dict[str, str] = {}


class IntervalCounts(BaseModel):
    """Users of each kind in one interval; `dormant` is a count of users (positive), which charts
    draw below the axis."""

    start: str = Field(description="the interval's first local day, YYYY-MM-DD")
    new: int
    returning: int
    resurrecting: int
    dormant: int


class IntervalLifecycle(BaseModel):
    interval: str
    from_: str = Field(alias="from")
    to: str
    channel: str | None
    time_zone: str
    as_of: int
    intervals: list[IntervalCounts]
