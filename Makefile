# The two commands the README opens with. Each sets itself up from nothing but
# Python 3.11 and Node/npm: a virtualenv with the pinned requirements, and Azurite from npm.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
TOOLS := .venv-tools
TOOLS_STAMP := $(TOOLS)/.installed

.PHONY: demo serve test lint bench clean mono

$(STAMP): requirements.txt requirements-dev.txt package.json package-lock.json
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	npm ci --no-audit --no-fund --loglevel=error
	@touch $(STAMP)

# checkov (tests/infra) pins its own boto3 and friends, which conflict with ours: a venv of its own.
$(TOOLS_STAMP): requirements-tools.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-tools.txt
	@touch $(TOOLS_STAMP)

# Microsoft's ADF evaluator (tests/adf) runs ADF's .NET expression engine on Mono. Installed with
# apt-get when missing and we are root; elsewhere those tests skip, naming what to install
# (under CI=true they fail instead).
mono: $(STAMP)
	@if command -v mono >/dev/null 2>&1 && \
	    $(PY) -c "from clr_loader.util.find import find_libmono; find_libmono()" 2>/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Mono for tests/adf: apt-get install mono-runtime mono-devel"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	    mono-runtime mono-devel >/dev/null; \
	else echo "Mono is missing and cannot be installed here (needs root and apt-get): tests/adf will skip"; fi

demo: $(STAMP)
	$(PY) -m localcloud demo

# The function app's HTTP API on 127.0.0.1:7071 (PORT=... for another) until Ctrl-C, like func start.
serve: $(STAMP)
	$(PY) -m localcloud serve $(if $(PORT),--port $(PORT))

test: $(STAMP) $(TOOLS_STAMP) mono
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
	rm -rf $(VENV) $(TOOLS) .venv-bench node_modules .state .demo
