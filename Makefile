# The README's two commands: `make demo` (a local network) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: machine setup typecheck test demo demo-down bench clean

## The machine: Debian packages (as root), a running Docker engine, the local images.
machine:
	bash scripts/setup-machine.sh

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	# trio-typing (pulled in by libp2p) ships stubs for trio < 0.23 that hide trio's
	# own, current annotations from mypy (trio.TaskStatus "not defined"); its runtime
	# module stays. See docs/decisions.md.
	rm -rf $(VENV)/lib/python*/site-packages/trio-stubs
	touch $@

## Type-check the packages (mypy, configured in pyproject.toml).
typecheck: setup
	$(BIN)/python -m mypy

## Run every test: type check, unit tests (tests/) and multi-process tests (e2e/).
test: machine setup typecheck
	$(BIN)/python -m pytest

## Bring up a local network (1 requestor + 3 providers) and run the main job on it.
demo:
	bash scripts/setup-machine.sh --render
	$(MAKE) setup
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
