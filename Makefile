# The README's two commands: `make demo` (a local network) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup test demo demo-down bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

## Run every test: unit tests (tests/) and multi-process tests (e2e/).
test: setup
	$(BIN)/python -m pytest

## Bring up a local network (1 requestor + 3 providers) and show it.
demo: setup
	$(BIN)/python scripts/demo.py

## Stop the demo network.
demo-down: setup
	$(BIN)/yagna devnet down

bench: setup
	$(BIN)/python bench/startup.py
	$(BIN)/python bench/reqresp.py
	$(BIN)/python bench/gossip.py
	$(BIN)/python bench/store_backends.py
	$(BIN)/python bench/matching.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
