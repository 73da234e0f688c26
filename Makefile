# The two set-up commands of the README: `make demo` (the whole pipeline on the demo data) and
# `make test` (lint, the manual's strict build, the test suite). Both create .venv and install the
# requirements first. `make docs` builds the manual (docs/, mkdocs.yml) into site/.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint docs bench

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

# --strict: a broken link, a missing page or an unknown anchor fails the build (and so CI).
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict  # not --quiet: it hides the warnings --strict counts

test: lint docs
	$(BIN)/python -m pytest
