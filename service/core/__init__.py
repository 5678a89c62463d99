"""The pure domain core: lifecycle, funnel, profiles, event decoding, batch application.

Nothing in this package imports Faust, Redis, Kafka clients, Prometheus or FastAPI;
adapters import it, never the other way round.
"""

from service.core import compiled as _compiled

# before any compiled module is imported: a stale build, or LIFECYCLE_PURE_PYTHON=1, runs the sources
BUILD = _compiled.install()
