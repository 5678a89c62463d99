"""Faust topologies: wiring of agents to topics. The logic lives in `service`."""
