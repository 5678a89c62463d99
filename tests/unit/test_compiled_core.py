"""The compiled core and its Python sources give the same results, byte for byte.

The per-event modules are compiled with mypyc where the install had a C compiler
(`service/core/compiled.py`). One process here runs the compiled build, a second one the
sources (`LIFECYCLE_PURE_PYTHON=1`); both run `tests.core_twin` on the same hypothesis
histories (decoding hostile bytes, batches with late events, outcomes, renewals, merges,
erasures, sweeps between them) and must answer the same JSON.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service import core
from service.core import compiled
from service.core.controls import ERASE, RESTORE
from tests import core_twin
from tests.unit.test_decoder_fuzz import _lenient, items

ROOT = Path(__file__).resolve().parents[2]
DAY = 86_400_000
T0 = 1_767_225_600_000  # 2026-01-01; histories run through the year (Paris' DST changes included)
PROFILES = ["fintech", "insurance", "daily_app", "named_funnels"]
TYPES = ["visit", "register", "verify", "order", "renew", "message_click", "payment_click"]
TYPES += ["identify", "alias"]


def _required() -> bool:
    return os.environ.get("LIFECYCLE_REQUIRE_COMPILED") == "1"


@pytest.fixture(scope="module")
def pure() -> Iterator[subprocess.Popen[bytes]]:
    if core.BUILD != "compiled":
        if _required():
            pytest.fail(f"the core was to be compiled, but it runs {core.BUILD!r} here (see setup.py)")
        pytest.skip(f"no compiled core to compare (the build is {core.BUILD!r})")
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.core_twin"],
        cwd=ROOT,
        env={**os.environ, "LIFECYCLE_PURE_PYTHON": "1"},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert orjson.loads(proc.stdout.readline()) == {"build": "pure"}
    yield proc
    proc.kill()
    proc.wait()


def _ask(proc: subprocess.Popen[bytes], request: dict[str, Any]) -> Any:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(orjson.dumps(request) + b"\n")
    proc.stdin.flush()
    return orjson.loads(proc.stdout.readline())


@st.composite
def events(draw: st.DrawFn, i: int, ts: int) -> list[Any]:
    uid = draw(st.sampled_from(["a", "b", "c", "anon-1"]))
    kind = draw(st.sampled_from([*TYPES, "order", "visit", ERASE, RESTORE]))
    if kind in (ERASE, RESTORE):
        return [f"{kind}:r{i}", uid, kind, ts, None, None, None]
    props: dict[str, Any] | None = None
    if kind in ("order", "renew") and draw(st.booleans()):
        end = ts + draw(st.integers(0, 400)) * DAY
        props = {"policy_id": draw(st.sampled_from(["p1", "p2"])), "policy_end": end}
    elif kind in ("message_click", "payment_click"):
        props = {"trigger_id": draw(st.sampled_from(["x", "y"]))}
    elif kind in ("identify", "alias"):
        props = {"previous_id": "anon-1", "traits": {"plan": draw(st.sampled_from(["gold", "free"]))}}
    amount = draw(st.sampled_from([None, 10.0, 250.5])) if kind in ("order", "renew") else None
    channel = draw(st.sampled_from([None, "ads", "organic"]))
    eid = draw(st.sampled_from([f"e{i}", f"e{max(i - 1, 0)}"]))  # some repeated ids
    return [eid, uid, kind, ts, channel, amount, props]


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    """Batches of events (now and then one late by up to 20 days), with sweeps between some."""
    steps: list[Any] = []
    ts = swept = T0 + draw(st.integers(0, 364)) * DAY
    for _ in range(draw(st.integers(1, 6))):
        batch = []
        for i in range(draw(st.integers(1, 12))):
            ts += draw(st.sampled_from([0, 3_600_000, 5 * 3_600_000, DAY, 4 * DAY, 20 * DAY, 70 * DAY]))
            late = draw(st.sampled_from([0, 0, 0, 3_600_000, 20 * DAY]))
            batch.append(draw(events(len(steps) * 100 + i, ts - late)))
        steps.append(["apply", batch, swept])
        if draw(st.booleans()):
            now = ts + draw(st.sampled_from([0, 3_600_000, 10 * DAY, 200 * DAY]))
            steps.append(["sweep", swept, now])
            swept = now
    return {"profile": draw(st.sampled_from(PROFILES)), "steps": steps}


@settings(max_examples=150, deadline=None)
@given(requests())
def test_batches_and_sweeps_give_the_same_state_compiled_and_in_python(
    pure: subprocess.Popen[bytes], request: dict[str, Any]
) -> None:
    assert compiled.running_compiled()
    assert _ask(pure, request) == orjson.loads(orjson.dumps(core_twin.run(request)))


@settings(max_examples=150, deadline=None)
@given(st.lists(items, min_size=1, max_size=5) | items)
def test_decoding_gives_the_same_events_and_reasons_compiled_and_in_python(
    pure: subprocess.Popen[bytes], doc: Any
) -> None:
    value = base64.b64encode(_lenient(doc)).decode()
    request = {"profile": "fintech", "steps": [["decode", value]]}
    assert _ask(pure, request) == orjson.loads(orjson.dumps(core_twin.run(request)))


def test_an_edited_source_is_run_as_python_not_shadowed_by_the_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stale build is noticed: the digests the build recorded no longer match the sources."""
    monkeypatch.delenv("LIFECYCLE_PURE_PYTHON", raising=False)
    for name in compiled.MODULES:
        (tmp_path / f"{name}.py").write_text(f"# {name}\n")
    assert compiled.status(tmp_path) == "pure"  # no build there
    (tmp_path / compiled.DIGESTS).write_bytes(orjson.dumps(compiled.source_digests(tmp_path)))
    assert compiled.status(tmp_path) == "compiled"
    (tmp_path / "triggers.py").write_text("# triggers, edited\n")
    assert compiled.status(tmp_path) == "stale"
    monkeypatch.setenv("LIFECYCLE_PURE_PYTHON", "1")
    assert compiled.status(tmp_path) == "pure"  # asked for
