"""Kafka adapters shared by every process: connection options, topics, the publisher and the bridge."""
