# Ferryman: every target sets up what it needs first (idempotent; seconds once done).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup test unit integration matrix lint demo bench clean

setup:
	@scripts/setup.sh

test: setup
	@echo "[test] unit and integration tests (real criu, real agents, network namespaces)"
	$(PY) -m pytest tests $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest tests/integration $(PYTEST_ARGS)

# The fault matrix (also part of `make test`): prints it, writes docs/fault-matrix.md.
matrix: setup
	$(PY) -m pytest tests/integration/test_fault_matrix.py $(PYTEST_ARGS)

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

demo: setup
	@scripts/demo.sh

bench: setup
	$(PY) -m bench.run
	@tests/vm/make-vm.sh
	$(PY) -m bench.vm

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache

# QEMU test guests (soft-dirty kernel, real two-kernel runs): builds the image once (cached in
# /var/cache/ferryman/vm, ~2 min cold), then boots guests (~11-13 min, 4.5 of them CRIU's zdtm
# tests pre-copied by hand and by ferryman). Not part of `make test`;
# CI runs it after `make test`.
.PHONY: test-vm
test-vm: setup
	@tests/vm/make-vm.sh
	FERRYMAN_VM=1 $(PY) -m pytest tests/vm -m vm -v -s $(PYTEST_ARGS)
