"""The read side: what the API answers, computed from Redis at the current clock.

Stage counts come from range counts on the per-partition `last_active` / `first_seen`
indexes (never a walk over users), so they are exact at any clock. Two pipelined
round trips per question, whatever the number of users.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from service.core import counters as ctr
from service.core import indicators as ind
from service.core.calendar import Calendar
from service.core.controls import MAX_HOPS
from service.core.funnel import conversion
from service.core.gaps import BOUNDS_MS, return_curve
from service.core.identity import merged_into
from service.core.lifecycle import STATES, State, Thresholds, last_active_range, new_since, state_at
from service.core.named_funnels import positions
from service.core.partitioning import partition_for
from service.core.profile import Profile
from service.core.records import NO_CHANNEL, UserRecord
from service.core.segments import RFM_SEGMENTS
from service.core.trigger_summary import trigger_summary
from service.core.triggers import describe
from service.core.value import rfm_class
from service.storage.client import AnyRedis, as_text
from service.storage.keys import PartitionKeys, all_partitions


class Queries:
    def __init__(
        self,
        redis: AnyRedis,
        prefix: str,
        partitions: int,
        profile: Profile,
        clock: str,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.prefix = prefix
        self.partitions = partitions
        self.profile = profile
        self.clock_mode = clock
        self.wall_clock = wall_clock
        self.parts: list[PartitionKeys] = all_partitions(prefix, partitions)

    async def now_ms(self) -> int:
        """Wall time, or in event mode the latest event time applied in any partition."""
        if self.clock_mode == "wall":
            return int(self.wall_clock() * 1000)
        pipe = self.redis.pipeline(transaction=False)
        for k in self.parts:
            pipe.hget(k.meta, "wm")
        marks = [int(as_text(v)) for v in await pipe.execute() if v]
        return max(marks) if marks else 0

    async def _record(self, user_id: str) -> tuple[str, UserRecord] | None:
        """The user's record, following the ids it was merged into (a bounded number of hops)."""
        uid = user_id
        for _ in range(MAX_HOPS + 1):
            k = PartitionKeys(self.prefix, partition_for(uid, self.partitions))
            raw = await self.redis.hget(k.users, uid)
            if raw is None:
                return None
            target = merged_into(raw if isinstance(raw, bytes) else raw.encode())
            if target is None:
                return uid, UserRecord.unpack(raw)
            uid = target
        return None

    async def user(self, user_id: str) -> dict[str, Any] | None:
        """The user's document; an id merged into another answers with that one's, saying so."""
        found = await self._record(user_id)
        if found is None:
            return None
        uid, rec = found
        now = await self.now_ms()
        stage = self.profile.funnel[rec.stage].name if rec.stage >= 0 else None
        return {
            "user_id": uid,
            **({"merged_from": user_id} if uid != user_id else {}),
            "state": state_at(rec.first_seen, rec.last_active, now, self.profile.thresholds).value,
            "rfm_segment": rfm_segment(rec, now, self.profile),
            "as_of": now,
            "funnel_stage": stage,
            **rec.to_json(),
            "funnels": positions(rec.firsts, self.profile.funnels),
        }

    async def user_triggers(self, user_id: str) -> dict[str, Any] | None:
        """A user's scheduled (pending) and recently fired triggers, with their outcomes."""
        found = await self._record(user_id)
        if found is None:
            return None
        uid, rec = found
        return {"user_id": uid, "as_of": await self.now_ms(), **describe(rec)}

    async def trigger_summary(self, channel: str | None = None) -> dict[str, Any]:
        totals = await self.counters()
        return {"as_of": await self.now_ms(), **trigger_summary(totals, _stored_channel(channel))}

    async def trigger_backlog(self) -> tuple[int, int]:
        """Fired triggers not yet relayed to Kafka, and users with triggers scheduled."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.parts:
            pipe.xlen(k.outbox)
            pipe.zcard(k.due)
        replies = [int(v) for v in await pipe.execute()]
        return sum(replies[0::2]), sum(replies[1::2])

    async def channels_by_partition(self, channel: str | None) -> list[list[str]]:
        if channel is not None:
            return [[channel] for _ in self.parts]
        pipe = self.redis.pipeline(transaction=False)
        for k in self.parts:
            pipe.smembers(k.channels)
        return [sorted(as_text(c) for c in reply) for reply in await pipe.execute()]

    async def lifecycle(
        self, channel: str | None = None, now: int | None = None, thresholds: Thresholds | None = None
    ) -> dict[str, Any]:
        """Exact users per state at the clock: four range counts per partition and channel.

        `thresholds` other than the profile's answer "what if": the indexes hold times,
        not stages, so any thresholds can be counted (the new window up to how long the
        `first_seen` index keeps users).
        """
        now = await self.now_ms() if now is None else now
        th = thresholds or self.profile.thresholds
        channels = await self.channels_by_partition(_stored_channel(channel))
        pipe = self.redis.pipeline(transaction=False)
        idle = [last_active_range(s, now, th) for s in (State.DEAD, State.CHURNED, State.SILENT)]
        fresh = new_since(now, th)
        for k, chans in zip(self.parts, channels, strict=True):
            for ch in chans:
                la = k.active(ch)
                pipe.zcard(la)
                for lo, hi in idle:
                    pipe.zcount(la, "-inf" if lo is None else lo, "+inf" if hi is None else hi)
                pipe.zcount(k.first(ch), fresh, "+inf")
        replies = await pipe.execute()
        total = dead = churned = silent = new = 0
        for i in range(0, len(replies), 5):
            total += replies[i]
            dead += replies[i + 1]
            churned += replies[i + 2]
            silent += replies[i + 3]
            new += replies[i + 4]
        retained = total - dead - churned - silent - new
        counts = dict(zip([s.value for s in STATES], [new, retained, silent, churned, dead], strict=True))
        return {"as_of": now, "channel": channel, "total": total, "counts": counts}

    async def active_users(self, now: int) -> dict[str, dict[str, int]]:
        """Users active on the clock's local day, and in the 7 and 30 local days ending with it,
        per channel: exact range counts from each window's first instant."""
        calendar = self.profile.calendar
        since = {name: ind.active_since(now, days, calendar) for name, days in ind.ACTIVE_DAYS.items()}
        channels = await self.channels_by_partition(None)
        pipe = self.redis.pipeline(transaction=False)
        keys: list[tuple[str, str]] = []
        for k, chans in zip(self.parts, channels, strict=True):
            for ch in chans:
                for name, start in since.items():
                    pipe.zcount(k.active(ch), start, "+inf")
                    keys.append((ch, name))
        out: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ind.ACTIVE_DAYS, 0))
        for (ch, name), n in zip(keys, await pipe.execute(), strict=True):
            out[ch][name] += n
        return dict(out)

    async def indicators(self, channel: str | None = None) -> dict[str, Any]:
        """The process indicators in one document: activity, payment, revenue, stages, funnel."""
        now = await self.now_ms()
        wanted = _stored_channel(channel)
        totals = await self.counters()
        active = await self.active_users(now)
        channels = sorted({ctr.split(n)[1] for n in totals if n.startswith("users|")} | set(active))
        blocks = {ch: _indicator_block(totals, active.get(ch), [ch]) for ch in channels}
        chosen = [wanted] if wanted is not None else channels
        merged = dict.fromkeys(ind.ACTIVE_DAYS, 0)
        for ch in chosen:
            for name, n in active.get(ch, {}).items():
                merged[name] += n
        body = _indicator_block(totals, merged, chosen)
        body.update(
            {
                "as_of": now,
                "channel": channel,
                "lifecycle": (await self.lifecycle(channel, now))["counts"],
                "funnel": (await self.funnel(channel))["stages"],
            }
        )
        if channel is None:
            body["by_channel"] = [{"channel": ch, **blocks[ch]} for ch in channels]
            quality = ind.channel_quality(
                totals, await self.cohort_totals(), ind.clock_day(now, self.profile.calendar), self.profile
            )
            body["channel_quality"] = [{"channel": ch, **q} for ch, q in quality.items()]
            body["rfm_segments"] = await self.rfm_segments(now)
            body["time_to_convert"] = ind.time_to_convert(totals, self.profile)
            body["high_value_by_month"] = ind.high_value_by_month(totals)
        return body

    async def rfm_segments(self, now: int) -> dict[str, int]:
        """Users per RFM segment at the clock, from range counts (recency) on the class indexes."""
        rfm = self.profile.rfm
        channels = await self.channels_by_partition(None)
        pipe = self.redis.pipeline(transaction=False)
        for k, chans in zip(self.parts, channels, strict=True):
            for ch in chans:
                pipe.zcard(k.active(ch))
                pipe.zcount(k.active(ch), f"({now - rfm.recency}", "+inf")
            for fm_class in (1, 2, 3):
                pipe.zcard(k.rfm(fm_class))
                pipe.zcount(k.rfm(fm_class), f"({now - rfm.recency}", "+inf")
        replies = iter(await pipe.execute())
        total = recent = 0
        per_class = {c: [0, 0] for c in (1, 2, 3)}
        for chans in channels:
            for _ in chans:
                total += next(replies)
                recent += next(replies)
            for fm_class in (1, 2, 3):
                per_class[fm_class][0] += next(replies)
                per_class[fm_class][1] += next(replies)
        counts = dict.fromkeys(RFM_SEGMENTS.values(), 0)
        for fm_class, (size, fresh) in per_class.items():
            counts[RFM_SEGMENTS[(1, fm_class)]] += fresh
            counts[RFM_SEGMENTS[(0, fm_class)]] += size - fresh
        counts[RFM_SEGMENTS[(1, 0)]] += recent - sum(f for _, f in per_class.values())
        counts[RFM_SEGMENTS[(0, 0)]] += total - recent - sum(s - f for s, f in per_class.values())
        return counts

    async def cohort_totals(self) -> dict[str, int]:
        """Every cohort counter summed over partitions (one field per channel and day)."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.parts:
            pipe.hgetall(k.cohorts)
        total: dict[str, int] = defaultdict(int)
        for reply in await pipe.execute():
            for name, value in reply.items():
                total[as_text(name)] += int(value)
        return total

    async def retention(self, first_day: int, last_day: int, channel: str | None = None) -> dict[str, Any]:
        """Cohorts first seen on each day of `[first_day, last_day]` and how many came back on
        day d+N for each configured N; exact (counted once per user by the batch commit)."""
        days = list(range(first_day, last_day + 1))
        channels = await self.channels_by_partition(_stored_channel(channel))
        after = self.profile.retention_days
        pipe = self.redis.pipeline(transaction=False)
        shapes: list[list[tuple[int, int | None]]] = []
        for k, chans in zip(self.parts, channels, strict=True):
            fields: list[str] = []
            shape: list[tuple[int, int | None]] = []
            for ch in chans:
                for day in days:
                    fields.append(ctr.cohort(ch, day))
                    shape.append((day, None))
                    for n in after:
                        fields.append(ctr.retained(ch, day, n))
                        shape.append((day, n))
            if fields:
                pipe.hmget(k.cohorts, fields)
                shapes.append(shape)
        sizes: dict[int, int] = dict.fromkeys(days, 0)
        back: dict[tuple[int, int], int] = {(d, n): 0 for d in days for n in after}
        for shape, values in zip(shapes, await pipe.execute(), strict=True):
            for (day, after_n), value in zip(shape, values, strict=True):
                if value is None:
                    continue
                if after_n is None:
                    sizes[day] += int(value)
                else:
                    back[(day, after_n)] += int(value)
        cohorts = []
        for day in days:
            retained = {
                str(n): {"users": back[(day, n)], "rate": ind.ratio(back[(day, n)], sizes[day])}
                for n in after
            }
            cohorts.append({"cohort": Calendar.iso(day), "users": sizes[day], "retained": retained})
        return {"channel": channel, "after_days": list(after), "cohorts": cohorts}

    async def return_curve(self, channel: str | None = None) -> dict[str, Any]:
        """Returns per gap bucket (counters) and users idle at least each boundary (range counts)."""
        now = await self.now_ms()
        wanted = _stored_channel(channel)
        totals = await self.counters()
        buckets = [0] * len(BOUNDS_MS)
        for name, value in totals.items():
            if name.startswith("gap|"):
                _, ch, i = ctr.split(name)
                if wanted is None or ch == wanted:
                    buckets[int(i)] += int(value)
        channels = await self.channels_by_partition(wanted)
        pipe = self.redis.pipeline(transaction=False)
        for k, chans in zip(self.parts, channels, strict=True):
            for ch in chans:
                for bound in BOUNDS_MS:
                    pipe.zcount(k.active(ch), "-inf", now - bound)
        replies = await pipe.execute()
        idle = [0] * len(BOUNDS_MS)
        for j, n in enumerate(replies):
            idle[j % len(BOUNDS_MS)] += n
        curve = return_curve(buckets, idle)
        return {"as_of": now, "channel": channel, "points": [p.to_json() for p in curve]}

    async def counters(self) -> dict[str, float]:
        """Every counter summed over partitions (integers; revenue as floats)."""
        pipe = self.redis.pipeline(transaction=False)
        for k in self.parts:
            pipe.hgetall(k.counters)
        total: dict[str, float] = defaultdict(float)
        for reply in await pipe.execute():
            for name, value in reply.items():
                text = as_text(value)
                total[as_text(name)] += float(text) if "." in text or "e" in text else int(text)
        return total

    async def funnel(self, channel: str | None = None) -> dict[str, Any]:
        totals = await self.counters()
        wanted = _stored_channel(channel)
        users = []
        for i, _stage in enumerate(self.profile.funnel):
            users.append(
                sum(
                    int(v)
                    for name, v in totals.items()
                    if name.startswith("stage|")
                    and ctr.split(name)[2] == str(i)
                    and (wanted is None or ctr.split(name)[1] == wanted)
                )
            )
        conv = conversion(users)
        first = users[0] if users else 0
        stages = [
            {
                "name": stage.name,
                "event": stage.event,
                "nth": stage.nth,
                "users": n,
                "conversion_from_previous": c,
                "conversion_from_first": (n / first) if first else None,
            }
            for stage, n, c in zip(self.profile.funnel, users, conv, strict=True)
        ]
        return {"channel": channel, "stages": stages}


def _indicator_block(
    totals: dict[str, float], active: dict[str, int] | None, channels: list[str]
) -> dict[str, Any]:
    """Indicators of a set of channels from the summed counters and active-user counts."""

    def total(kind: str) -> float:
        return sum(totals.get(f"{kind}|{ch}", 0) for ch in channels)

    users, registered, payers = int(total("users")), int(total("registered")), int(total("payers"))
    orders, gmv = int(total("orders")), round(total("revenue"), 2)
    active = active or dict.fromkeys(ind.ACTIVE_DAYS, 0)
    return {
        "users": users,
        "active": active,
        "activity_rate": {name: ind.ratio(n, users) for name, n in active.items()},
        "registrations": registered,
        "payers": payers,
        "payment_rate": ind.ratio(payers, registered),
        "orders": orders,
        "gmv": gmv,
        "aov": ind.ratio(gmv, orders),
        "revenue_per_user": ind.ratio(gmv, users),
    }


def rfm_segment(rec: UserRecord, now: int, profile: Profile) -> str:
    recent = 1 if now - rec.last_active < profile.rfm.recency else 0
    return RFM_SEGMENTS[(recent, rfm_class(rec, profile.rfm))]


def _stored_channel(channel: str | None) -> str | None:
    """The API's channel filter as stored: users without a channel are under `-`."""
    if channel is None:
        return None
    return NO_CHANNEL if channel in ("", NO_CHANNEL, "none") else channel
