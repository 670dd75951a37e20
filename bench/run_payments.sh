#!/usr/bin/env bash
# Run the two payment benchmarks one after the other (~1.5 min in all).
# payment_roundtrip.py starts a provider and a requestor daemon (plus reqresp.py's two processes) and
# stops them by PID; it needs Docker and local/busybox:1 (see bench/README.md). payment_vouchers.py
# runs in-process, pinned to one CPU.
# Usage: bench/run_payments.sh            (uses .venv/bin/python if present)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
[ -x .venv/bin/python ] && PY=${PYTHON:-.venv/bin/python}
status=0
for b in payment_roundtrip payment_vouchers; do
    echo
    "$PY" "bench/$b.py" || { echo "bench/$b.py failed" >&2; status=1; }
done
exit $status
