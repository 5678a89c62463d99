"""The packages of `service/` are layers, and imports only go downward.

`core` is the pure domain; `storage` (Redis) and `kafka` are adapters over it; `worker`,
`api` and `webhooks` are the processes' edges and never import each other; `cli` starts any of
them; `dev` is the embedded stack. `stream_topologies` wires the worker to Faust.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# What each layer may import of the project (itself always allowed).
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "settings": {"core"},
    "storage": {"core", "settings"},
    "kafka": {"core", "settings"},
    "worker": {"core", "settings", "storage", "kafka"},
    "api": {"core", "settings", "storage", "kafka"},
    "dev": {"core", "settings", "storage", "kafka"},
    "webhooks": {"core", "settings", "kafka"},
    "cli": {"core", "settings", "storage", "kafka", "worker", "api", "dev", "webhooks", "stream_topologies"},
    "stream_topologies": {"core", "settings", "storage", "kafka", "worker"},
}
# Client libraries the pure core must not touch.
CLIENTS = {
    "faust",
    "aiokafka",
    "kafka",
    "redis",
    "prometheus_client",
    "fastapi",
    "starlette",
    "uvicorn",
    "mode",
}


def _layer(path: Path) -> str:
    rel = path.relative_to(ROOT).parts
    if rel[0] == "stream_topologies":
        return "stream_topologies"
    if rel[1] == "settings.py":
        return "settings"
    if len(rel) == 2:
        return "service"
    return rel[1]


def _imports(source: str) -> list[tuple[int, str]]:
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _target(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "stream_topologies":
        return "stream_topologies"
    if parts[0] != "service" or len(parts) < 2:
        return None
    return "settings" if parts[1] == "settings" else parts[1]


SOURCES = sorted([*ROOT.joinpath("service").rglob("*.py"), *ROOT.joinpath("stream_topologies").rglob("*.py")])


def test_every_module_belongs_to_a_layer() -> None:
    loose = [str(p.relative_to(ROOT)) for p in SOURCES if _layer(p) == "service" and p.name != "__init__.py"]
    assert loose == [], "modules directly in service/ other than settings.py: put each in its layer's package"


def _violations(layer: str, source: str) -> list[str]:
    upward = []
    for line, module in _imports(source):
        target = _target(module)
        if target is not None and target != layer and target not in ALLOWED[layer]:
            upward.append(f"line {line}: {layer} imports {module}")
        if layer == "core" and module.split(".")[0] in CLIENTS:
            upward.append(f"line {line}: the pure core imports the client library {module}")
    return upward


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_downward(path: Path) -> None:
    layer = _layer(path)
    if layer != "service":
        assert _violations(layer, path.read_text()) == []


def test_the_rule_reports_upward_imports() -> None:
    """The checker itself: the api importing the worker, and the core importing redis."""
    assert _violations("api", "from service.worker.processor import X\n") == [
        "line 1: api imports service.worker.processor"
    ]
    assert _violations("core", "import redis.asyncio\n") == [
        "line 1: the pure core imports the client library redis.asyncio"
    ]
    assert _violations("worker", "from service.storage.store import RedisStore\n") == []
