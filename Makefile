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

## make demo: install, then train an STR model on the built-in digits data and print its budget
demo: install
	$(BIN)/strsearch train --model digits_cnn --dataset digits --weight-decay 5e-3 --s-init -5 --epochs 30 --out runs/demo

## make test: install, lint, type-check, then run the whole test suite
test: install lint
	$(BIN)/python -m pytest --cov --cov-report=term tests

lint: install
	$(BIN)/ruff check str_core strsearch workers tests benchmarks
	$(BIN)/ruff format --check str_core strsearch workers tests benchmarks
	$(BIN)/mypy

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache .coverage
