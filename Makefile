# The README's two commands: `make demo` (a local network) and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
GOLEM_VENV ?= .venv-golem

.PHONY: machine setup typecheck test demo demo-down bench bench-smoke clean contracts

## The machine: Debian packages (as root), a running Docker engine, the local images.
machine:
	bash scripts/setup-machine.sh

setup: $(VENV)/.installed contracts/node_modules/.installed $(GOLEM_VENV)/.installed exeunit/forwarder/bin/yagna-forward

## yagna-forward, the static C bridge (Unix socket -> TCP) run inside containers; needs gcc, libc6-dev.
exeunit/forwarder/bin/yagna-forward: exeunit/forwarder/yagna-forward.c | $(VENV)/.installed
	$(BIN)/python -m exeunit.forwarder

## Golem's SDK (yapapi) and gvmkit-build in a venv of their own (they pin old libraries).
$(GOLEM_VENV)/.installed: golem-compat/requirements.txt
	$(PYTHON) -m venv $(GOLEM_VENV)
	$(GOLEM_VENV)/bin/pip install -q -r golem-compat/requirements.txt
	touch $@

## The contract compiler and the local chain (anvil), pinned in contracts/package-lock.json.
contracts/node_modules/.installed: contracts/package-lock.json
	cd contracts && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## Rebuild the contract artifacts (contracts/build/*.json, committed); `make test` checks them.
contracts: contracts/node_modules/.installed
	cd contracts && node build.js

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
	cd contracts && node build.js --check
	$(BIN)/python -m pytest

## Bring up a local network (1 requestor + 3 providers) and run the main job on it.
demo:
	bash scripts/setup-machine.sh --render
	$(MAKE) setup
	$(BIN)/python scripts/demo.py

## Stop the demo network.
demo-down: setup
	$(BIN)/yagna devnet down

## Run every benchmark in bench/ (~25 min; Docker and local/busybox:1 needed), one after the other;
## the exit code says whether any failed. `make bench-smoke`: each one in its smoke mode (~3 min),
## as CI does through e2e/test_bench_smoke.py.
BENCHES = $(filter-out bench/_%,$(sort $(wildcard bench/*.py)))

bench: setup
	@status=0; for b in $(BENCHES); do echo; echo "### $$b"; $(BIN)/python $$b || { echo "$$b failed" >&2; status=1; }; done; exit $$status

bench-smoke: setup
	@status=0; for b in $(BENCHES); do echo; echo "### $$b --smoke"; $(BIN)/python $$b --smoke || { echo "$$b failed" >&2; status=1; }; done; exit $$status

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .hypothesis
