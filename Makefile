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

## make demo: install, then search for a 90%-sparse STR model of the built-in digits data
## (local Ray, embedded MLflow server under runs/mlflow; `strsearch ui --stop` stops that server)
demo: install
	$(BIN)/strsearch search --model digits_cnn --dataset digits --target 0.9 --epochs 10 --fresh

## make test: install, lint, type-check, then run the whole test suite
test: install lint
	$(BIN)/python -m pytest --cov --cov-report=term tests

lint: install
	$(BIN)/ruff check str_core strsearch workers tests benchmarks
	$(BIN)/ruff format --check str_core strsearch workers tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache .coverage
