"""Write the image's SBOM (CycloneDX 1.5 JSON) from pip's metadata, without Docker.

The image installs the project without extras (no embedded broker, no dev tools), so the
SBOM is the project's runtime requirement closure as installed in this environment, which
`make setup` builds from the same lock file as the image."""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

PROJECT = "lifecycle-ops"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_closure(root: str) -> list[metadata.Distribution]:
    """Every distribution the root needs at run time: requirements whose marker holds with
    no extra selected, followed transitively."""
    seen: dict[str, metadata.Distribution] = {}
    todo = [root]
    while todo:
        name = canonical(todo.pop())
        if name in seen:
            continue
        dist = metadata.distribution(name)
        seen[name] = dist
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return [seen[n] for n in sorted(seen)]


def component(dist: metadata.Distribution) -> dict[str, object]:
    name, version = canonical(dist.metadata["Name"]), dist.version
    entry: dict[str, object] = {
        "type": "library",
        "bom-ref": f"pkg:pypi/{name}@{version}",
        "name": name,
        "version": version,
        "purl": f"pkg:pypi/{name}@{version}",
    }
    licence = dist.metadata["License-Expression"] or dist.metadata["License"]
    if licence and len(licence) < 100:  # some packages put the whole licence text here
        entry["licenses"] = [{"license": {"name": licence.strip()}}]
    return entry


def sbom(root: str = PROJECT) -> dict[str, object]:
    dists = runtime_closure(root)
    main = next(d for d in dists if canonical(d.metadata["Name"]) == root)
    return {
        "bomFormat": "CycloneDX",
        "specVersion": "1.5",
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "component": {**component(main), "type": "application"},
        },
        "components": [component(d) for d in dists if d is not main],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--output", type=Path, default=Path("sbom.cdx.json"))
    args = parser.parse_args()
    args.output.write_text(json.dumps(sbom(), indent=2) + "\n")
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
