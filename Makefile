# The two set-up commands of the README: `make demo` (the whole pipeline on the demo data) and
# `make test` (lint + test suite). Both create .venv and install the requirements first.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint bench

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/python quick_start.py

lint: install
	$(BIN)/ruff check .

test: lint
	$(BIN)/python -m pytest
