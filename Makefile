# Every target bootstraps .venv on a fresh machine with only Python and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev,all]'
	touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/jackfield serve

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

# two workers: most tests wait on servers, processes and timers, so two share two cores
# well (about 10 minutes instead of 17 on a 2-core CI machine); each worker has its own
# PostgreSQL database
test: lint
	$(BIN)/pytest -q -ra -n 2

bench: $(STAMP)
	$(BIN)/python -m benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
