"""Observing a batch's values at once exposes exactly what observing each one does."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from service.worker.metrics import observe_all

BUCKETS = (0.1, 1.0, 5.0, 60.0, 3600.0)


@given(st.lists(st.floats(0, 1e6, allow_nan=False), max_size=200))
def test_observing_all_at_once_equals_observing_each(values: list[float]) -> None:
    one, each = CollectorRegistry(), CollectorRegistry()
    batched = Histogram("lag_seconds", "lag", ["kind"], buckets=BUCKETS, registry=one)
    single = Histogram("lag_seconds", "lag", ["kind"], buckets=BUCKETS, registry=each)
    observe_all(batched.labels("x"), values)
    child = single.labels("x")
    for value in values:
        child.observe(value)
    assert _samples(one) == _samples(each)


def _samples(registry: CollectorRegistry) -> dict[str, float]:
    """Every sample, the sum rounded (summed in another order, floats may differ in the last bits)."""
    out = {}
    for family in registry.collect():
        for s in family.samples:
            if s.name.endswith("_created"):  # when the series was made: not what was observed
                continue
            key = f"{s.name}{sorted(s.labels.items())}"
            out[key] = round(s.value, 3) if s.name.endswith("_sum") else s.value
    return out


def test_the_exposition_is_the_same_text() -> None:
    values = [0.05, 0.1, 0.2, 7.0, 7.0, 5000.0]
    one, each = CollectorRegistry(), CollectorRegistry()
    observe_all(Histogram("h", "h", buckets=BUCKETS, registry=one), values)
    h = Histogram("h", "h", buckets=BUCKETS, registry=each)
    for value in values:
        h.observe(value)
    assert _lines(one) == _lines(each)


def _lines(registry: CollectorRegistry) -> list[str]:
    return [line for line in generate_latest(registry).decode().splitlines() if "_created" not in line]
