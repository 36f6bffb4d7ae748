# sparkmart — the two commands a user needs are `make demo` and `make test`;
# both run `make setup` first (idempotent: venv, Java 17, JDBC driver, PostgreSQL, database).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SPARKMART := $(VENV)/bin/sparkmart
SCALE ?= small
PYTEST_ARGS ?=

.PHONY: help setup demo test lint format generate seed-postgres batch bench bench-generate bench-batch clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

setup:  ## venv + Java 17 + JDBC driver + PostgreSQL + project database (idempotent)
	@bash scripts/setup.sh

demo: setup  ## the main job: generate data (SCALE=small), seed PostgreSQL, run the batch pipeline
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

generate: setup  ## generate SCALE (default small) data into data/batch/raw
	$(SPARKMART) generate --scale $(SCALE)

seed-postgres: setup  ## seed public.customers/products/orders with 1,000 rows each
	$(SPARKMART) generate --target postgres

batch: setup  ## run the batch pipeline on data/batch/raw (after `make generate`)
	$(SPARKMART) batch

bench: bench-generate bench-batch  ## every benchmark -> docs/benchmarks.md

bench-generate: setup  ## generator rows/s at medium, Parquet vs Avro -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.generate_bench

bench-batch: setup  ## the whole batch pipeline at medium, per step -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.batch_bench

clean:  ## remove generated data and Spark scratch (keeps .venv)
	rm -rf data spark-warehouse metastore_db derby.log
