# STN Lab — set-up, run and test.
#
#   make run    create .venv if missing, install requirements.txt, start the app
#   make test   also install requirements-dev.txt + Debian's Chromium, run pytest
#
# Installs are keyed on a hash of the requirements files (stamp files in .venv),
# so a second call with unchanged requirements skips pip entirely.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
PORT     ?= 8501
PYTEST_ARGS ?=
CHROMIUM := /usr/bin/chromium

# Content hashes: editing a requirements file invalidates its stamp.
RUN_HASH := $(shell cat requirements.txt | sha256sum | cut -c1-16)
DEV_HASH := $(shell cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
RUN_STAMP := $(VENV)/.stamp-run-$(RUN_HASH)
DEV_STAMP := $(VENV)/.stamp-dev-$(DEV_HASH)

# pip -q still prints one harmless "Location '...' is ignored" warning per
# package on machines whose pip.conf lists missing local indexes; drop exactly
# those lines. Everything else (real warnings, errors) passes through, and
# pipefail keeps pip's exit status.
PIP_INSTALL := $(PY) -m pip install -q
PIP_FILTER  := sed -u "/^WARNING: Location '.*' is ignored: it is neither a file nor a directory\.$$/d"

.PHONY: help run test install install-dev chromium clean-venv

help:
	@echo "make run   - install runtime deps into $(VENV) and start the app (port $(PORT))"
	@echo "make test  - install dev deps + Chromium, run the full pytest suite"

$(PY):
	@echo ">> creating $(VENV) with $(PYTHON)"
	@$(PYTHON) -m venv $(VENV) || { \
	  echo "ERROR: '$(PYTHON) -m venv' failed. On Debian/Ubuntu install it with: apt-get install python3-venv" >&2; \
	  rm -rf $(VENV); exit 1; }

$(RUN_STAMP): | $(PY)
	@echo ">> installing requirements.txt into $(VENV) (quiet)"
	@$(PIP_INSTALL) -r requirements.txt 2>&1 | $(PIP_FILTER)
	@rm -f $(VENV)/.stamp-run-*
	@touch $@

$(DEV_STAMP): | $(PY)
	@echo ">> installing requirements-dev.txt into $(VENV) (quiet)"
	@$(PIP_INSTALL) -r requirements-dev.txt 2>&1 | $(PIP_FILTER)
	@rm -f $(VENV)/.stamp-dev-* $(VENV)/.stamp-run-*
	@touch $@ $(RUN_STAMP)

install: $(RUN_STAMP)
install-dev: $(DEV_STAMP)

run: install
	$(PY) -m streamlit run app.py --server.port $(PORT)

# Debian's Chromium for the browser tests (Playwright cannot download its own
# browser here). Without root/sudo we go on; tests/test_browser.py then skips
# with a reason (and fails instead when CI=true, so CI never passes without it).
chromium:
	@if [ -x $(CHROMIUM) ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then SUDO=""; \
	elif command -v sudo >/dev/null 2>&1; then SUDO="sudo"; \
	else echo "WARNING: $(CHROMIUM) missing and neither root nor sudo: browser tests will be skipped" >&2; exit 0; fi; \
	echo ">> installing Debian's chromium with apt-get$${SUDO:+ (via sudo)}"; \
	if ! { $$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }; then \
	  echo "WARNING: could not install chromium: browser tests will be skipped" >&2; fi

test: install-dev chromium
	@rc=0; $(PY) -m pytest tests -rfEs $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "ERROR: pytest collected no tests (exit 5): treating as failure" >&2; exit 1; fi; \
	exit $$rc

# Remove the virtual environment (next make run/test rebuilds it).
clean-venv:
	rm -rf $(VENV)
