# The two commands the README opens with. Each sets itself up from nothing but
# Python 3.11 and Node/npm: a virtualenv with the pinned requirements, and Azurite from npm.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo serve test lint bench clean

$(STAMP): requirements.txt requirements-dev.txt package.json package-lock.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m localcloud demo

# The function app's HTTP API on 127.0.0.1:7071 (PORT=... for another) until Ctrl-C, like func start.
serve: $(STAMP)
	$(PY) -m localcloud serve $(if $(PORT),--port $(PORT))

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m pytest

# By hand, never in CI: ratios against a ceiling loop and dlt, measured in the same run.
bench: $(STAMP)
	$(PY) bench/throughput.py
	$(PY) bench/memory.py

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy

clean:
	rm -rf $(VENV) .venv-bench node_modules .state .demo
