# One task runner; the commands of README.md and docs/testing.md are these targets.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Property tests draw from one seed per run, printed, so any failure can be repeated
# exactly: `make test SEED=<the printed seed>`.
SEED := $(or $(SEED),$(shell date +%s%N))
# the fault suite's edge part: oversize messages, far-future events, 1 MiB envelopes
EDGE_TESTS := tests/integration/test_oversize_dead_letters.py tests/integration/test_envelope_bytes.py \
	tests/integration/test_event_time_bounds.py tests/integration/test_commit_atomic_at_maxmemory.py
PYTEST := $(BIN)/pytest -q --durations=15 --hypothesis-profile=ci --hypothesis-seed=$(SEED)
# The test targets run on pytest-xdist workers, each with its own broker and redis-server
# (session fixtures), a test file whole on one worker. The broker tests mostly wait (worker
# start-ups, rebalances, sessions), so two workers nearly halve CI on two cores.
# `make test TEST_WORKERS=0` runs in one process.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

image-sbom: setup  ## the image's SBOM (CycloneDX JSON from pip metadata, no Docker): sbom.cdx.json
	$(BIN)/python scripts/sbom.py -o sbom.cdx.json

.PHONY: image-sbom setup dev test test-unit test-integration lint docs faults bench soak kafka-jars console console-deps screenshots clean

$(BIN)/lifecycle: pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c requirements.lock -e '.[dev,embedded]'
	touch $(BIN)/lifecycle
	@mkdir -p .run && touch .run/core-build  # that install compiled the core too

# The per-event core modules, compiled with mypyc (setup.py); again whenever one of them changes,
# since a stale build is not used (service/core/compiled.py). Without a C compiler: nothing to do.
CORE_SOURCES := $(wildcard service/core/*.py)
.run/core-build: $(BIN)/lifecycle setup.py $(CORE_SOURCES)
	@mkdir -p .run
	$(BIN)/pip install -q --no-deps -e .
	@$(BIN)/python -c "import service.core as c; print('the core runs', c.BUILD)"
	@touch $@

setup: $(BIN)/lifecycle .run/core-build  ## create .venv and install the project with its locked dependencies (the core compiled where a C compiler is)

dev: setup  ## the whole service on the embedded stack (Tansu + redis-server), with demo data
	scripts/install-system-deps.sh --runtime-only
	$(BIN)/lifecycle dev

kafka-jars:  ## fetch (once) the Apache Kafka broker jars used by tests and benchmarks
	scripts/fetch-kafka.sh

# The locked versions, lock file untouched. Not `npm ci`: it wants every platform's optional
# packages (esbuild's, rollup's) in the lock, and the registry here serves only linux-x64's.
console/node_modules/.package-lock.json: console/package-lock.json console/package.json
	cd console && npm install --no-save --no-audit --no-fund

console-deps: console/node_modules/.package-lock.json  ## the console's build and test tools, from console/package-lock.json

console: console-deps  ## rebuild the web console into service/api/console_static/ (committed: pip needs no npm)
	cd console && npm run build

screenshots: setup kafka-jars console-deps  ## the console's browser test, saving its screenshots to docs/
	LIFECYCLE_CONSOLE_SCREENSHOTS=docs $(BIN)/pytest -q tests/e2e/test_console.py

docs: setup  ## regenerate docs/configuration.md from service/settings.py (a unit test fails while it is stale)
	$(BIN)/python scripts/config_doc.py

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test-unit: setup
	@echo "hypothesis seed $(SEED) (make test-unit SEED=$(SEED) repeats it)"
	$(PYTEST) $(XDIST) tests/unit

test-integration: setup kafka-jars console-deps
	@echo "hypothesis seed $(SEED) (make test-integration SEED=$(SEED) repeats it)"
	$(PYTEST) $(XDIST) tests/integration tests/e2e
	LIFECYCLE_TEST_BROKER=kafka LIFECYCLE_ONLY_BROKER_TESTS=1 $(PYTEST) $(XDIST) tests/integration tests/faults/test_broker_restart.py

test: setup kafka-jars console-deps lint  ## everything CI runs: lint, types, unit, integration and e2e (the console in Chromium too) on Tansu and Apache Kafka
	@echo "hypothesis seed $(SEED) (make test SEED=$(SEED) repeats it)"
	$(PYTEST) $(XDIST) tests
	LIFECYCLE_TEST_BROKER=kafka LIFECYCLE_ONLY_BROKER_TESTS=1 $(PYTEST) $(XDIST) tests/integration tests/faults/test_broker_restart.py

faults: setup kafka-jars  ## the fault-injection suite at full size on Apache Kafka (~10 min): figures in .run/faults-*.json
	LIFECYCLE_FAULTS=full LIFECYCLE_TEST_BROKER=kafka $(PYTEST) tests/faults $(EDGE_TESTS)

bench: setup kafka-jars  ## the ingestion benchmark on Apache Kafka (1M events; ~20 min, and the sweeps): table, bench/results.json and the sweeps' chart docs/benchmark-sweeps.png; PHASES=a,b runs only those (to .run/)
	$(BIN)/pip install -q -c requirements.lock -e '.[bench]'
ifdef PHASES
	mkdir -p .run && $(BIN)/python -m bench.ingest --phases $(PHASES) --json .run/bench-phases.json
	$(if $(findstring by_,$(PHASES)),$(BIN)/python -m bench.chart .run/bench-phases.json .run/benchmark-sweeps.png)
else
	$(BIN)/python -m bench.ingest --json bench/results.json
	$(BIN)/python -m bench.chart bench/results.json docs/benchmark-sweeps.png
endif

soak: setup kafka-jars  ## 10 minutes at 70% of the measured capacity on Apache Kafka: lag, RSS, Redis per user; bench/soak.json
	$(BIN)/python -m bench.soak --json bench/soak.json

clean:
	rm -rf .run .pytest_cache .mypy_cache .ruff_cache
