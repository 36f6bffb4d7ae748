# sparkmart — the two commands a user needs are `make demo` and `make test`;
# both run `make setup` first (idempotent: venv, Java 17, JDBC driver, PostgreSQL, database).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SPARKMART := $(VENV)/bin/sparkmart
SCALE ?= small
PYTEST_ARGS ?=

.PHONY: help setup demo test lint format generate seed-postgres batch stream simulate ml bench \
	bench-generate bench-batch bench-stream bench-ml dashboard clean

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

RATE ?= 100

stream: setup  ## simulator (RATE events/s) + streaming query with progress, until Ctrl-C
	$(SPARKMART) stream --simulate $(RATE)

simulate: setup  ## only the simulator: order events into data/streaming/input, until Ctrl-C
	$(SPARKMART) simulate --rate $(RATE)

dashboard: setup  ## web dashboard on http://127.0.0.1:8050 (HOST=, PORT= to change), until Ctrl-C
	$(SPARKMART) dashboard $(if $(HOST),--host $(HOST)) $(if $(PORT),--port $(PORT))

ml: setup  ## train, evaluate and score every model on the gold layer (after `make batch`)
	$(SPARKMART) ml train

bench: bench-generate bench-batch bench-stream bench-ml  ## every benchmark -> docs/benchmarks.md

bench-generate: setup  ## generator rows/s at medium, Parquet vs Avro -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.generate_bench

bench-batch: setup  ## the whole batch pipeline at medium, per step -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.batch_bench

bench-stream: setup  ## sustained streaming rate and event-to-PostgreSQL latency -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.stream_bench

bench-ml: setup  ## every model against its target on `small` -> docs/ml.md
	$(PY) -m sparkmart.bench.ml_eval

clean:  ## remove generated data and Spark scratch (keeps .venv)
	rm -rf data spark-warehouse metastore_db derby.log
