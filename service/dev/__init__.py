"""The embedded stack for development, the demo and tests: real local processes and a generator."""
