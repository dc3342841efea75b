# casebridge — `make run` serves on the embedded defaults, `make test` runs the whole suite.
# Both create .venv and install the project when needed.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# What serving needs (`make run`, deploy/local-cluster), and beside it the development tools (tests, lint, docs).
STAMP := $(VENV)/.installed-stamp
DEV_STAMP := $(VENV)/.dev-stamp
# Every PDF (letters, reports) is laid out by the typst wheel with the fonts it ships: no system package is needed.

# The browser tests (tests/e2e) drive Debian's Chromium; Playwright never downloads a browser of its own.
CHROMIUM := /usr/bin/chromium
# `make bench` drives reads and sends with wrk, a C load generator that does not compete with the server as a Python
# client on the same cores would.
WRK := /usr/bin/wrk
# The witnessing test (tests/integration/audit/test_audit_witnessing.py) checks the audit log with an implementation casebridge
# did not write, Go's golang.org/x/mod/sumdb/note and tlog, built offline from Debian's packages.
# The chaos tests (tests/integration/deploy) put Debian's HAProxy in front of deploy/local-cluster's gateway nodes.
HAPROXY := /usr/sbin/haproxy
GO := /usr/bin/go
GO_X_MOD := /usr/share/gocode/src/golang.org/x/mod/sumdb/note

.PHONY: run test lint format messages docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(DEV_STAMP)

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

$(HAPROXY):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq haproxy; \
	else \
		echo "casebridge: install the haproxy package for the local cluster (deploy/local-cluster)" >&2; \
	fi

$(GO):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-go; \
	else \
		echo "casebridge: install the golang-go package for the witnessing test (tests/integration)" >&2; \
	fi

$(GO_X_MOD):
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-golang-x-mod-dev; \
	else \
		echo "casebridge: install the golang-golang-x-mod-dev package for the witnessing test (tests/integration)" >&2; \
	fi

# `make run JSON=1` prints the demo accounts as the seed's JSON instead of a table.
run: $(STAMP)
	$(BIN)/casebridge db upgrade
	$(BIN)/casebridge demo seed --if-empty $(if $(filter-out 0,$(JSON)),,--table)
	exec $(BIN)/casebridge serve

# Four workers on two cores: most tests wait on the bus, the sealer or the browser, not on the CPU.
test: $(DEV_STAMP) $(CHROMIUM) $(HAPROXY) $(GO) $(GO_X_MOD)
	$(BIN)/pytest -n 4

lint: $(DEV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: $(DEV_STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make bench QUICK=1` is the everyday mode (under three minutes); the last stdout line is the JSON report
# (docs/performance.md says how to read it).
.PHONY: bench
bench: $(DEV_STAMP) $(WRK) $(if $(filter-out 0,$(CLUSTER)),$(HAPROXY))
	$(BIN)/python -m tests.perf.bench $(if $(filter-out 0,$(QUICK)),--quick) $(if $(filter-out 0,$(CLUSTER)),--cluster)

# Extract the web pages' strings into the gateway/web/locale catalogues (docs/web.md: how to add strings).
messages: $(DEV_STAMP)
	$(BIN)/python -m gateway.web.messages

# Write docs/configuration.md from the settings dataclasses in gateway/settings.py (tests/unit/test_docs.py checks it).
docs: $(DEV_STAMP)
	$(BIN)/python -m gateway.settings_doc
