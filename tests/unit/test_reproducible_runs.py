"""`make test` runs the property tests from one printed seed: the same seed draws the same
examples (so a failure seen in CI can be repeated), and a failure prints its replay blob."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROPERTY = """
import os
from hypothesis import given, strategies as st

@given(st.lists(st.integers()))
def test_draws(xs):
    with open(os.environ["DRAWN"], "a") as out:
        out.write(repr(xs) + "\\n")

@given(st.integers())
def test_fails_somewhere(x):
    assert x < 1000
"""


def _run(tmp: Path, seed: int, name: str) -> tuple[str, str]:
    drawn = tmp / f"{name}.txt"
    (tmp / "test_property.py").write_text(PROPERTY)
    conftest = Path(__file__).parents[1] / "conftest.py"
    # the ci profile as tests/conftest.py registers it, without that file's fixtures
    (tmp / "conftest.py").write_text(
        "from hypothesis import settings\n"
        + next(line for line in conftest.read_text().splitlines() if "register_profile" in line)
        + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--hypothesis-profile=ci",
         f"--hypothesis-seed={seed}", str(tmp)],
        capture_output=True, text=True, cwd=tmp, env={"DRAWN": str(drawn), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )  # fmt: skip
    return drawn.read_text(), done.stdout


def test_one_seed_draws_the_same_examples_and_a_failure_prints_its_blob(tmp_path: Path) -> None:
    first, out = _run(tmp_path, 12345, "first")
    again, _ = _run(tmp_path, 12345, "again")
    other, _ = _run(tmp_path, 54321, "other")
    assert first == again
    assert first != other
    assert "1 failed" in out and "@reproduce_failure" in out, out
