#!/usr/bin/env bash
# Run the three network/daemon benchmarks one after the other (~70 s in all).
# Each script starts and stops its own processes; see bench/README.md.
# Usage: bench/run_all.sh            (uses .venv/bin/python if present)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
status=0
for b in startup reqresp gossip; do
    echo
    "$PY" "bench/$b.py" || { echo "bench/$b.py failed" >&2; status=1; }
done
exit $status
