# Gatehouse: `make run` serves it with embedded LDAP and mail; `make test` runs every test.
# Both install what they need first (virtualenv, pip packages; Debian packages for tests).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
SYSTEM_PACKAGES := slapd ldap-utils xmlsec1 chromium

.PHONY: run test install system-packages bench clean

run: $(STAMP)
	GATEHOUSE_ENV=development $(BIN)/flask --app app dev

test: $(STAMP) system-packages
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || { echo "cannot create $(VENV): install Python 3.11+ with venv (apt-get install python3-venv)"; exit 1; }
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

system-packages:
	@scripts/ensure-system-packages $(SYSTEM_PACKAGES)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache test-artifacts
