"""Which broker errors a retry may cure, and which it never will."""

from __future__ import annotations

from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError


def permanent(exc: KafkaError) -> bool:
    """True for an error every retry of the same message meets again: too large, not
    authorized, an invalid or unknown topic, a policy. Retrying those would stall the
    sender for ever; the rest (leaders moving, timeouts, a broker away) pass with time."""
    return not exc.retriable or isinstance(exc, UnknownTopicOrPartitionError)
