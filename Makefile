# metarl — set-up, tests and demo. `make test` and `make demo` create .venv on first use.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch is pinned to a CPU build that installs from a local wheel on the development machines;
# on a GPU machine install the matching CUDA build of torch first, then `pip install -e .`.
TORCH  ?= torch==2.13.0

.PHONY: install test test-fast test-slow demo bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

install: $(BIN)/.installed

test: install
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: install
	$(BIN)/python -m pytest -q -m slow

demo: install
	$(BIN)/python -m metarl.demo

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
