# casebridge — `make run` serves on the embedded defaults, `make test` runs the whole suite.
# Both create .venv and install the project when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Subject access reports are rendered to PDF with a font that covers Cyrillic.
PDF_FONT := /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
# Referral letters are laid out by WeasyPrint, which loads Pango (with HarfBuzz and fontconfig) from the system.
PANGO_LIB := $(or $(firstword $(wildcard /usr/lib/*/libpangoft2-1.0.so.0 /usr/lib*/libpangoft2-1.0.so.0)),/usr/lib/$(shell uname -m)-linux-gnu/libpangoft2-1.0.so.0)

# The browser tests (tests/e2e) drive Debian's Chromium; Playwright never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
# `make bench` drives reads and sends with wrk, a C load generator that does not compete with the server as a Python
# client on the same cores would.
WRK := /usr/bin/wrk

.PHONY: run test lint format messages

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	else \
		echo "casebridge: install the chromium package for the browser tests (tests/e2e)" >&2; \
	fi

$(WRK):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk; \
	else \
		echo "casebridge: install the wrk package for the benchmark (tests/perf)" >&2; \
	fi

$(PDF_FONT):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fonts-dejavu-core; \
	else \
		echo "casebridge: install the fonts-dejavu-core package (or set CASEBRIDGE_AUDIT_PDF_FONT) for PDF reports" >&2; \
	fi

$(PANGO_LIB):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b fontconfig fonts-dejavu-core; \
	else \
		echo "casebridge: install the libpango-1.0-0, libpangoft2-1.0-0 and fonts-dejavu-core packages for referral letters" >&2; \
	fi

run: $(STAMP) $(PDF_FONT) $(PANGO_LIB)
	$(BIN)/casebridge db upgrade
	$(BIN)/casebridge demo seed --if-empty
	exec $(BIN)/casebridge serve

# Four workers on two cores: most tests wait on the bus, the sealer or the browser, not on the CPU.
test: $(STAMP) $(PDF_FONT) $(PANGO_LIB) $(CHROMIUM)
	$(BIN)/pytest -n 4

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make bench QUICK=1` is the everyday mode (under three minutes); the last stdout line is the JSON report
# (docs/performance.md says how to read it).
.PHONY: bench
bench: $(STAMP) $(WRK)
	$(BIN)/python -m tests.perf.bench $(if $(filter-out 0,$(QUICK)),--quick)

# Extract the web pages' strings into the gateway/web/locale catalogues (docs/web.md: how to add strings).
messages: $(STAMP)
	$(BIN)/python -m gateway.web.messages
