"""The webhook relay process: trigger CloudEvents from Kafka to an HTTP receiver, signed."""
