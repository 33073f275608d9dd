# Two commands set everything up on a fresh machine:
#   make serve   install into .venv, then start the gateway on the embedded default (SQLite)
#   make test    install into .venv (with test dependencies), then run the whole suite
VENV ?= .venv
PY ?= python3
STAMP := $(VENV)/.installed

.PHONY: serve test lint fake-upstream bench

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q -U pip
	$(VENV)/bin/pip install -q -e '.[dev,local]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/claudestore serve $(ARGS)

JS_STAMP := tests/js/node_modules/.installed

# Real JS clients for the compatibility tests (Claude Code, official JS SDKs); skipped without npm.
$(JS_STAMP): tests/js/package.json tests/js/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  cd tests/js && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed; \
	else echo "npm not found: JS client tests will be skipped"; fi

test: $(STAMP) $(JS_STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/pytest -q $(ARGS)

fake-upstream: $(STAMP)
	$(VENV)/bin/claudestore fake-upstream $(ARGS)

# Benchmark harness (issue 7), not part of `make test`: see bench/README.md. Needs wrk (apt-get install -y wrk).
bench: $(STAMP)
	$(VENV)/bin/python bench/run.py $(ARGS)
