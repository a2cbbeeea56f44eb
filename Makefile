# One obvious way to run each thing. Every target bootstraps .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA ?= data
OUTPUT ?= output

.PHONY: install test lint run run-distributed data lock clean bench bench-quiet bench-e2e bench-load bench-scale bench-partitions bench-runs compose-env docs

install: $(STAMP)

# Re-installs only when a requirements file, the lock or the package metadata changed.
$(STAMP): requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-dev.txt -c constraints.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

test: lint
	$(BIN)/pytest

# The documentation site (mkdocs.yml, docs/) into site/; strict: a broken link or a page left out of nav fails.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict

# Synthetic BankSim files, unless real ones are already in $(DATA)/.
data: $(STAMP)
	@if [ -f $(DATA)/transactions.csv ] && [ -f $(DATA)/CustomerImportance.csv ]; then \
		echo "using the files in $(DATA)/"; \
	else \
		$(BIN)/patternflow generate --out $(DATA) --seed 0; \
	fi

# The main job: an S3 server on 127.0.0.1, Airflow standalone and the two DAGs streaming $(DATA)/.
# Extra flags through RUN_FLAGS, e.g. make run RUN_FLAGS="--exit-when-done --ui-port 8081".
run: $(STAMP)
	$(BIN)/patternflow run --data $(DATA) --output $(OUTPUT) $(RUN_FLAGS)

# The docker-compose topology without Docker: PostgreSQL and Redis from Debian's packages
# (apt-get install postgresql redis-server), CeleryExecutor, two workers; state under .run/.
run-distributed: $(STAMP)
	$(BIN)/patternflow run --distributed --data $(DATA) --output $(OUTPUT) $(RUN_FLAGS)

# The compose deployment's .env: .env.example with every secret freshly generated (an existing .env
# is never overwritten). Needs only python3: make compose-env && docker compose up
ENV_FILE ?= .env
compose-env:
	$(PYTHON) include/patternflow/local/compose_env.py --example .env.example --out $(ENV_FILE)

# Regenerate the lock from the current virtualenv after changing requirements*.txt.
lock: $(STAMP)
	{ echo "# The full lock: every package version the test suite ran with (make lock regenerates it)."; \
	  echo "# Used like Airflow's official constraints files: pip install -r requirements.txt -c constraints.txt"; \
	  $(BIN)/pip freeze --all --exclude-editable | grep -viE '^(patternflow|pip|wheel)=='; } > constraints.txt

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

# Engine figures on full-size generated data and at 10x (printed, not asserted).
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_engine

# Full size only, 5 runs, each started the moment a probe finds the (shared) machine quiet.
bench-quiet: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_engine --at-quiet-moments 5

# Upload-to-commit lag per chunk through make run's setup, full-size data, 1-second tick.
bench-e2e: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_e2e

# The producer at 10 chunks a second (tick 0.1 s): lag, backlog, the detection task's peak RSS.
# SCALE=10 for ten times the BankSim volume.
bench-load: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_load $(if $(SCALE),--scale $(SCALE))

# patternflow replay at 1x, 10x and 100x BankSim: fold time, peak RSS, bytes a commit, wall, kill and
# resume, each against its target and 1x. Data generated once into .bench-data/. SCALES=1,10 for fewer.
bench-scale: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_scale $(if $(SCALES),--scales $(SCALES))

# How max_rows_per_run trades a detection task's throughput against how often it commits, at 10x
# BankSim (SCALE=N to change; printed, not asserted).
bench-runs: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_runs $(if $(SCALE),--scale $(SCALE))

# Merchant partitions N = 1, 2, 4, 8 at 10x BankSim: a partition's state bytes and load time, a
# partition task's peak RSS, and the lag through Airflow at a chunk a second (N = 4 against N = 1).
# PARTS=1,2 to leave out Airflow.
bench-partitions: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench_partitions $(if $(PARTS),--parts $(PARTS))
