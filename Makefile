# The two commands of the README's quickstart are `make demo` and `make test`.
# Both create or reuse .venv, install the project, and fetch and start a local
# Apache Kafka broker when KAFKA_BOOTSTRAP_SERVERS does not name one.

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: tools help venv kafka kafka-stop kafka-status lint typecheck unit pytest test demo bench clean

help:
	@echo "make demo    run the whole flow locally, end to end"
	@echo "make test    lint, type-check and run every test (starts Kafka when needed)"
	@echo "make bench   run the benchmarks in bench/"
	@echo "make kafka | kafka-stop | kafka-status   the local broker"

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py connector/serde/_avro_flat.pyx connector/core/_record_checks.pyx connector/core/_dnc_scan.pyx
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

kafka:
	@deploy/local/kafka.sh start

kafka-stop:
	@deploy/local/kafka.sh stop

kafka-status:
	@deploy/local/kafka.sh status

lint: venv
	$(BIN)/ruff check connector tests bench

typecheck: venv
	$(BIN)/mypy

# pytest's exit code 5 means no test ran: that is a failure here, never a pass.
pytest: venv kafka
	@$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

test: lint typecheck tools pytest

# promtool (Debian's prometheus package) checks and unit-tests the alert rules.
tools:
	@command -v promtool >/dev/null || deploy/local/install-tools.sh

demo: venv kafka
	$(BIN)/cxone-connector demo

bench: venv kafka
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
