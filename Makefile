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
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(VENV)/bin/claudestore serve $(ARGS)

test: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/pytest -q $(ARGS)

fake-upstream: $(STAMP)
	$(VENV)/bin/claudestore fake-upstream $(ARGS)
