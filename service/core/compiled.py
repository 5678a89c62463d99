"""Which core modules are compiled with mypyc, and when the compiled build must not be used.

The modules a worker runs for every event are compiled to C at install time where a C
compiler is present (`setup.py`); the same `.py` files are the fallback everywhere else,
and the two must give the same results (`tests/unit/test_compiled_core.py`).

A compiled module shadows its source: Python imports `batch.cpython-311-*.so` before
`batch.py`. After an edit (or a checkout) the build would silently run old code, and since
compiled modules call each other directly, even one stale module cannot be mixed with
fresh sources. So the build records each source's digest, and when any compiled source
differs from it, or `LIFECYCLE_PURE_PYTHON=1`, every compiled module is imported from
its source instead. `install()` runs once, from `service.core`'s `__init__`.
"""

from __future__ import annotations

import hashlib
import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# The per-event path: decoding, the batch and its steps, records, counters, triggers.
MODULES = (
    "acquisition",
    "batch",
    "batch_state",
    "calendar",
    "cloudevents",
    "counters",
    "daysets",
    "dedup",
    "envelopes",
    "events",
    "funnel",
    "gaps",
    "indexes",
    "instants",
    "intake",
    "interval_lifecycle",
    "intervals",
    "lifecycle",
    "named_funnels",
    "records",
    "retention",
    "traits",
    "triggers",
    "value",
)
PACKAGE = "service.core"
DIGESTS = "compiled.json"  # written by the build next to the modules: {module: sha256 of its source}
HERE = Path(__file__).resolve().parent


def source_digests(folder: Path = HERE) -> dict[str, str]:
    """The sha256 of each compiled module's source, as the build records it."""
    return {m: hashlib.sha256((folder / f"{m}.py").read_bytes()).hexdigest() for m in MODULES}


def status(folder: Path = HERE) -> str:
    """`compiled`, `pure` (no build, or asked for) or `stale` (a source changed since the build)."""
    if os.environ.get("LIFECYCLE_PURE_PYTHON") == "1" or not (folder / DIGESTS).exists():
        return "pure"
    built = json.loads((folder / DIGESTS).read_text())
    if not all((folder / f"{m}.py").exists() for m in MODULES):
        return "compiled"  # installed without sources: nothing can be stale
    return "compiled" if built == source_digests(folder) else "stale"


class _SourceFirst(importlib.abc.MetaPathFinder):
    """Imports the compiled modules from their `.py` files, ignoring the build."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        package, _, name = fullname.rpartition(".")
        if package != PACKAGE or name not in MODULES:
            return None
        return importlib.util.spec_from_file_location(fullname, HERE / f"{name}.py")


def install() -> str:
    """Decide once per process; returns the status (`GET /healthz`-style diagnostics use it)."""
    found = status()
    if found != "compiled" and not any(isinstance(f, _SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, _SourceFirst())
        if found == "stale":
            warnings.warn(
                "the compiled core is older than its source; running it as Python "
                "(reinstall, e.g. `make setup`, to compile it again)",
                RuntimeWarning,
                stacklevel=2,
            )
    return found


def running_compiled() -> bool:
    """Whether the modules in use are the compiled ones (a module's file is the extension)."""
    module = sys.modules.get(f"{PACKAGE}.batch")
    origin = getattr(module, "__file__", "") or ""
    return origin.endswith(tuple(importlib.machinery.EXTENSION_SUFFIXES))
