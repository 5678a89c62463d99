# One task runner; the README's commands are these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup dev test test-unit test-integration lint faults bench kafka-jars clean

$(BIN)/lifecycle: pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev]'
	touch $(BIN)/lifecycle

setup: $(BIN)/lifecycle  ## create .venv and install the project with its locked dependencies

dev: setup  ## the whole service on the embedded stack (Tansu + redis-server), with demo data
	scripts/install-system-deps.sh --runtime-only
	$(BIN)/lifecycle dev

kafka-jars:  ## fetch (once) the Apache Kafka broker jars used by tests and benchmarks
	scripts/fetch-kafka.sh

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-unit: setup
	$(BIN)/pytest -q tests/unit

test-integration: setup kafka-jars
	$(BIN)/pytest -q tests/integration tests/e2e
	LIFECYCLE_TEST_BROKER=kafka $(BIN)/pytest -q tests/integration

test: setup kafka-jars lint  ## everything CI runs: lint, types, unit, integration and e2e on Tansu and Apache Kafka
	$(BIN)/pytest -q tests
	LIFECYCLE_TEST_BROKER=kafka $(BIN)/pytest -q tests/integration

faults: setup kafka-jars  ## the fault-injection suite at the issue's sizes on Apache Kafka (~7 min): figures in .run/faults-*.json
	LIFECYCLE_FAULTS=full LIFECYCLE_TEST_BROKER=kafka $(BIN)/pytest -q tests/faults

bench: setup kafka-jars  ## the benchmark of issue 10 on Apache Kafka (1M events; ~20 min): table + bench/results.json
	$(BIN)/python -m bench.ingest --json bench/results.json

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
