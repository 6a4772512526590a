# One virtual environment in .venv; the CPU wheel of torch is installed first
# so that pip never pulls a multi-GB CUDA build. Override TORCH_SPEC to pick
# another build, e.g. `make install TORCH_SPEC="torch==2.5.1"`.
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
# Sleeping (not spinning) OpenMP threads: see torch_geometric_mgvae/__init__.py
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install demo test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[test]"

demo: install
	$(BIN)/mgvae demo

test: install
	$(BIN)/python -m pytest -m "not slow"
