"""The pure domain core: lifecycle, funnel, profiles, event decoding, batch application.

Nothing in this package imports Faust, Redis, Kafka clients, Prometheus or FastAPI;
adapters import it, never the other way round.
"""
