# Ferryman: every target sets up what it needs first (idempotent; seconds once done).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test unit integration lint demo bench clean

setup:
	@scripts/setup.sh

test: setup
	@echo "[test] unit and integration tests (real criu, real agents, network namespaces)"
	$(PY) -m pytest tests $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

demo: setup
	@scripts/demo.sh

bench: setup
	$(PY) -m bench.run

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
