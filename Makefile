# Every target installs what it needs first; `make install` is idempotent.
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
CLIENT_PORT ?= 8501

.PHONY: install run test fuzz lint format migrate clean serve bench cluster-test

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt client/requirements.txt client/requirements-dev.txt constraints.txt
	@test -n "$(PYTHON)" || { echo "error: Python 3.11 or newer is required" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt -r client/requirements-dev.txt \
		-c constraints.txt
	@touch $(STAMP)

migrate: install
	$(BIN)/alembic upgrade head

# The API and the web client together on SQLite; Ctrl-C stops both.
run: install
	@BIN=$(BIN) HOST=$(HOST) PORT=$(PORT) CLIENT_PORT=$(CLIENT_PORT) scripts/run-local.sh

# pytest in TEST_WORKERS processes (pytest-xdist; 0 runs it in this one). Each process makes
# its own databases; more than two share PostgreSQL's 100 connections with the race and
# server tests (docs/decisions/0037).
TEST_WORKERS ?= 2

# The main suite's summary ends with what failed and, loudly, what was skipped for want of
# PostgreSQL, Redis or Chromium; the isolated-network tests (seconds) follow it.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy client
	$(BIN)/python -m pytest -m "not isolated_network" -n $(TEST_WORKERS) --dist worksteal --durations=25
	scripts/run-isolated-tests.sh $(BIN)/python

# The service on several hosts made on this machine (network namespaces, root only): a load
# balancer, two API hosts, PgBouncer, Redis, two job workers; load and faults, then checks.
# CLUSTER_SEED=N moves the faults' order and moments (tests/cluster/run.py).
cluster-test: install
	$(BIN)/python -m tests.cluster.run

# `make test` fuzzes the API briefly (tests/fuzz, on PostgreSQL); this is the long run.
# Any of these can be given: make fuzz FUZZ_MAX_EXAMPLES=5000 FUZZ_SEED=7
FUZZ_MAX_EXAMPLES ?= 1000
FUZZ_STATEFUL_SUITES ?= 100
FUZZ_STATEFUL_MAX_EXAMPLES ?= 100

fuzz: install
	FUZZ_MAX_EXAMPLES=$(FUZZ_MAX_EXAMPLES) FUZZ_STATEFUL_SUITES=$(FUZZ_STATEFUL_SUITES) \
	FUZZ_STATEFUL_MAX_EXAMPLES=$(FUZZ_STATEFUL_MAX_EXAMPLES) \
	$(BIN)/python -m pytest tests/fuzz

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/mypy client

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

# Production serving: several uvicorn workers on PostgreSQL, uvloop, httptools, no access log.
# Needs DATABASE_URL (PostgreSQL, migrated: make migrate) and SECRET_KEY in the environment;
# ENVIRONMENT defaults to production here, and LOG_LEVEL to WARNING: at INFO the service logs
# a line per request (an access log by another name). One worker per core: see the README.
#   DATABASE_URL=postgresql://... SECRET_KEY=... make serve WORKERS=4 PORT=8080
WORKERS ?= $(shell nproc 2>/dev/null || getconf _NPROCESSORS_ONLN 2>/dev/null || echo 2)
APP ?= app.main:app

serve: install
	@case "$$DATABASE_URL" in postgres*) ;; *) \
		echo "error: make serve runs on PostgreSQL: set DATABASE_URL=postgresql://... (and SECRET_KEY)" >&2; \
		exit 1;; esac
	export ENVIRONMENT="$${ENVIRONMENT:-production}" LOG_LEVEL="$${LOG_LEVEL:-WARNING}"; \
	exec $(BIN)/uvicorn $(APP) \
		--workers $(WORKERS) --loop uvloop --http httptools --no-access-log --host $(HOST) --port $(PORT)

# Seeds its own PostgreSQL database (BENCH_DATABASE_URL, default .../tasks_bench; dropped and
# recreated), serves the API and the raw ASGI ceiling (bench/ceiling.py) with `make serve`,
# loads them with wrk and writes bench/results/latest.md. See docs/performance.md.
bench: install
	WORKERS=$(WORKERS) $(BIN)/python bench/run.py
