# sparkmart — the two commands a user needs are `make demo` and `make test`;
# both run `make setup` first (idempotent: venv, Java 17, JDBC driver, PostgreSQL, database).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SPARKMART := $(VENV)/bin/sparkmart
SCALE ?= small
PYTEST_ARGS ?=

.PHONY: help setup demo test lint format generate seed-postgres bench-generate clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup:  ## venv + Java 17 + JDBC driver + PostgreSQL + project database (idempotent)
	@bash scripts/setup.sh

demo: setup  ## the main job: generate $(SCALE) data in every format, seed PostgreSQL, summary
	$(SPARKMART) demo --scale $(SCALE)

test: setup  ## lint, then the whole test suite (one SparkSession, a fresh PostgreSQL database)
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: setup  ## ruff check and format check
	$(VENV)/bin/ruff check src tests scripts
	$(VENV)/bin/ruff format --check src tests scripts

format: setup  ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix src tests scripts
	$(VENV)/bin/ruff format src tests scripts

generate: setup  ## generate $(SCALE) data into data/batch/raw
	$(SPARKMART) generate --scale $(SCALE)

seed-postgres: setup  ## seed public.customers/products/orders with 1,000 rows each
	$(SPARKMART) generate --target postgres

bench-generate: setup  ## rows/s of the generator at medium scale -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.generate_bench

clean:  ## remove generated data and Spark scratch (keeps .venv)
	rm -rf data spark-warehouse metastore_db derby.log
