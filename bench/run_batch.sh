#!/usr/bin/env bash
# Run the two batch-job benchmarks one after the other (~4 min in all).
# Each script starts its own devnet (3 providers, a requestor) under a temporary root, stops
# it with `yagna devnet down --root` in a finally, and removes every container it made
# (Docker and local/busybox:1 needed; see bench/README.md).
# Usage: bench/run_batch.sh            (uses .venv/bin/python if present)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
status=0
for b in batch_first_result batch_overhead; do
    echo
    "$PY" "bench/$b.py" || { echo "bench/$b.py failed" >&2; status=1; }
done
exit $status
