"""Compiles the core's per-event modules with mypyc where it can; elsewhere they stay Python.

Everything else about the package is in pyproject.toml. The build needs mypy (a build
requirement) and a C compiler; without a compiler, or with `LIFECYCLE_COMPILE=0`, the
package installs as plain Python and runs the same code, slower. The digests of the
compiled sources go next to them, so a later edit is noticed (`service/core/compiled.py`).
"""

from __future__ import annotations

import json
import os
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

from setuptools import setup

CORE = Path("service/core")


BUILDS = {"build", "build_ext", "bdist_wheel", "editable_wheel", "develop", "install"}


def ext_modules() -> list:
    if os.environ.get("LIFECYCLE_COMPILE", "1") == "0" or not BUILDS & set(sys.argv[1:]):
        return []  # asked not to, or only metadata wanted (mypyc takes seconds even to plan)
    if shutil.which(os.environ.get("CC", "cc")) is None:
        print("no C compiler: the core installs as plain Python", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    spec = runpy.run_path(str(CORE / "compiled.py"))  # stdlib only: loads without the package's deps
    modules = spec["MODULES"]
    (CORE / spec["DIGESTS"]).write_text(json.dumps(spec["source_digests"](CORE), indent=1, sort_keys=True))
    # a config of its own: the project's mypy settings load plugins (pydantic) a build env lacks
    config = Path(tempfile.mkdtemp()) / "mypyc.ini"
    config.write_text("[mypy]\nignore_missing_imports = True\n")
    paths = [f"--config-file={config}", *(str(CORE / f"{m}.py") for m in modules)]
    return mypycify(paths, opt_level="3", group_name="lifecycle_core")


setup(ext_modules=ext_modules())
