"""The stream worker: the batch step per partition, its ownership, the outbox relay and its metrics."""
