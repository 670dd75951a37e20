#!/usr/bin/env bash
# Run the three exe-unit benchmarks one after the other (~3 min in all).
# Each script starts a provider and a requestor daemon and stops them by PID, and removes
# every container it made (Docker and local/busybox:1 needed; see bench/README.md).
# Usage: bench/run_exeunit.sh            (uses .venv/bin/python if present)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
status=0
for b in exeunit_activity exeunit_overhead exeunit_transfer; do
    echo
    "$PY" "bench/$b.py" || { echo "bench/$b.py failed" >&2; status=1; }
done
exit $status
