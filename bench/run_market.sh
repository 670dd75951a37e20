#!/usr/bin/env bash
# Run the four market benchmarks one after the other (~2.5 min in all).
# Each script starts real daemons and stops them by PID; see bench/README.md.
# Usage: bench/run_market.sh            (uses .venv/bin/python if present)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
status=0
for b in market_propagation market_latejoin market_burst market_agreement; do
    echo
    "$PY" "bench/$b.py" || { echo "bench/$b.py failed" >&2; status=1; }
done
exit $status
