# Outcomes: `make run` serves the API on 127.0.0.1:8000; `make test` runs the whole suite;
# `make help` lists every target.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
PYTEST_ARGS ?=
BENCH_ARGS ?=
# `make mutation`: the module (or package) to mutate, the tests that must kill its mutants
# (docs/testing.md lists the pairs, e.g. MUTATE=app/analytics/stats.py
# MUTATION_TESTS=tests/analytics/test_stats.py), and MUTATION_SAMPLE=N to test one mutant in N.
MUTATE ?= app/auth/rules.py
MUTATION_TESTS ?= tests/auth tests/audit
MUTATION_SAMPLE ?= 1

.PHONY: install run test lint format migrate demo bench mutation screenshots clean help

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Outcomes needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP) ## create .venv and install the service with its dev tools

run: install ## migrate the database (SQLite file by default) and serve on $(HOST):$(PORT)
	$(VENV)/bin/outcomes serve --host $(HOST) --port $(PORT)

test: install ## run the whole test suite (OUTCOMES_TEST_DATABASE_URL picks the database; the dashboard's browser tests need /usr/bin/chromium)
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install ## formatting, lint, types and import contracts (pyproject.toml)
	$(VENV)/bin/ruff format --check app migrations tests bench
	$(VENV)/bin/ruff check app migrations tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

format: install ## apply ruff's formatting and fixes
	$(VENV)/bin/ruff format app migrations tests bench
	$(VENV)/bin/ruff check --fix app migrations tests bench

migrate: install ## migrate the configured database (SQLite file by default) to the latest schema
	$(VENV)/bin/outcomes migrate

demo: install ## load a synthetic cohort into the configured database
	$(VENV)/bin/outcomes demo

bench: install ## benchmarks (needs wrk; PostgreSQL at 127.0.0.1 and SQLite): one line per figure, bench/results/latest.json; BENCH_ARGS="--scale large" for 1M observations (bench/README.md)
	$(PY) -m bench.run $(BENCH_ARGS)

screenshots: install ## the dashboard's screenshots in docs/dashboard/ from the demo cohort (needs Chromium)
	$(PY) -m tests.dashboard.screenshots

mutation: install ## mutation testing of $(MUTATE) against $(MUTATION_TESTS) with mutmut, one mutant at a time (docs/testing.md)
	@git diff --quiet -- $(MUTATE) || { echo "$(MUTATE) has uncommitted changes: mutmut rewrites it in place"; exit 1; }
	@# mutmut 2 counts only exit status 1 as a kill: a mutant that breaks the import (pytest's
	@# 2 or 4) would count as a survivor. `|| exit 1` makes every failure a kill.
	rm -f .mutmut-cache
	MUTATION_SAMPLE=$(MUTATION_SAMPLE) $(VENV)/bin/mutmut run --paths-to-mutate '$(MUTATE)' \
		--tests-dir tests --CI --simple-output \
		--no-progress --test-time-base 30 \
		--runner 'sh -c "$(PY) -m pytest -x -q -p no:cacheprovider --hypothesis-profile=mutation $(MUTATION_TESTS) || exit 1"'
	$(VENV)/bin/mutmut results

clean: ## remove .venv and the tools' caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache .mutmut-cache html

help: ## list the targets with what each does
	@awk -F ':.*## ' '/^[a-z][a-z-]*:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
