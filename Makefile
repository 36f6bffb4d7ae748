# sparkmart — the two commands a user needs are `make demo` and `make test`;
# both run `make setup` first (idempotent: venv, Java 17, JDBC driver, PostgreSQL, database).
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SPARKMART := $(VENV)/bin/sparkmart
SCALE ?= small
PYTEST_ARGS ?=

.PHONY: help setup demo test lint format generate seed-postgres batch stream simulate ml bench \
	bench-all bench-generate bench-batch bench-stream bench-ml bench-optimizations dashboard clean \
	notebooks \
	cluster-up cluster-down cluster-status cluster-submit

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

ml: setup  ## train every model on the gold layer and score it back (after `make batch`)
	$(SPARKMART) ml train score

NOTEBOOK_DATA ?= data
notebooks: setup  ## execute notebooks/*.ipynb in place on NOTEBOOK_DATA (generates small data + models if missing)
	$(PY) -m sparkmart.notebooks --data-dir $(NOTEBOOK_DATA)

bench: setup  ## Spark vs pandas/DuckDB/Polars at small+medium (SCALE=large adds large) -> docs/benchmarks.md
	$(SPARKMART) bench --runs 3 --scales small,medium$$(case "$(SCALE)" in large) echo ,large;; \
		xlarge) echo ,large,xlarge;; xxlarge) echo ,large,xlarge,xxlarge;; esac)

bench-all: bench bench-generate bench-batch bench-stream bench-ml bench-optimizations  ## every benchmark -> docs/benchmarks.md

bench-generate: setup  ## generator rows/s at medium, Parquet vs Avro -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.generate_bench

bench-batch: setup  ## the whole batch pipeline at medium, per step -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.batch_bench

bench-stream: setup  ## sustained streaming rate and event-to-PostgreSQL latency -> docs/benchmarks.md
	$(PY) -m sparkmart.bench.stream_bench

bench-ml: setup  ## every model against its target on `small` -> docs/ml.md
	$(PY) -m sparkmart.bench.ml_eval

bench-optimizations: setup  ## each Spark tuning choice on/off at medium -> docs/optimizations.md
	$(PY) -m sparkmart.bench.optimizations

# Spark standalone on 127.0.0.1 from the venv's pyspark (ports etc.: scripts/cluster.sh, docs/cluster.md)
cluster-up: setup  ## Spark standalone master + 2 workers on 127.0.0.1 (UI http://127.0.0.1:8080)
	@bash scripts/cluster.sh up

cluster-down:  ## stop the standalone cluster (no JVM left behind)
	@bash scripts/cluster.sh down

cluster-status:  ## the standalone cluster's daemons, workers and applications
	@bash scripts/cluster.sh status

BATCH_ARGS ?=
cluster-submit: setup  ## the batch pipeline on the cluster via spark-submit (BATCH_ARGS= for `sparkmart batch`)
	@bash scripts/cluster.sh submit $(BATCH_ARGS)

clean:  ## remove generated data and Spark scratch (keeps .venv)
	-@bash scripts/cluster.sh down >/dev/null 2>&1  # its pid files live under data/cluster
	rm -rf data spark-warehouse metastore_db derby.log
