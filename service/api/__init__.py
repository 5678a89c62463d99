"""The HTTP edge: the read API, the collector, the console, audiences and the population exporter."""
