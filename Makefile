# casebridge — `make run` serves on the embedded defaults, `make test` runs the whole suite.
# Both create .venv and install the project when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Subject access reports are rendered to PDF with a font that covers Cyrillic.
PDF_FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf

.PHONY: run test lint format

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(PDF_FONT):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core; \
	else \
		echo "casebridge: install the fonts-dejavu-core package (or set CASEBRIDGE_AUDIT_PDF_FONT) for PDF reports" >&2; \
	fi

run: $(STAMP) $(PDF_FONT)
	$(BIN)/casebridge db upgrade
	$(BIN)/casebridge demo seed --if-empty
	exec $(BIN)/casebridge serve

test: $(STAMP) $(PDF_FONT)
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make bench QUICK=1` is the everyday mode (under two minutes); the last stdout line is the JSON report (DESIGN.md).
.PHONY: bench
bench: $(STAMP)
	$(BIN)/python tests/perf/bench.py $(if $(filter-out 0,$(QUICK)),--quick)
