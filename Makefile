# The two set-up commands of the README. Both create .venv on first use and install into it,
# always through constraints.txt so torch stays the pinned CPU build.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install --quiet -c constraints.txt

.PHONY: demo test lint install install-dev clean

$(BIN)/python:
	$(PY) -m venv $(VENV)

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(PIP) --upgrade pip
	$(PIP) -e '.[dev]'
	touch $@

install: $(VENV)/.installed

## make demo: install, then run the service on this machine (API + MLflow + Ray + agent under runs/),
## submit one 90%-sparse digits_cnn job, follow it to the end and print the result; the MLflow
## server stays up for browsing (`strsearch ui` prints its address, `strsearch ui --stop` stops it)
demo: install
	$(BIN)/strsearch demo

## make test: install, lint, type-check, then run the whole test suite in TEST_WORKERS processes,
## a test file per process at a time (each has its own Ray head and MLflow server)
TEST_WORKERS ?= 2
test: install lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --cov --cov-report=term tests

lint: install
	$(BIN)/ruff check str_core strsearch workers service tests benchmarks deploy
	$(BIN)/ruff format --check str_core strsearch workers service tests benchmarks deploy
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache .coverage
