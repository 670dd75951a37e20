#!/usr/bin/env bash
# Everything `make demo` and `make test` need from the machine, set up once:
# Debian packages, a running Docker engine and the local test images.
# Used by the Makefile and by CI (.ci/run), so CI sets up exactly what a user does.
#
# As root it installs what is missing and starts a Docker engine the way CI
# does (left running afterwards; it says so). Not as root, it prints the exact
# commands to run and fails. It never reports success without an engine.
#
#   scripts/setup-machine.sh            packages + engine + test image
#   scripts/setup-machine.sh --render   also the render image of the demo
set -euo pipefail
cd "$(dirname "$0")/.."

# iproute2, iptables, procps: the NAT testbed (yagna devnet up --topology nat, e2e/test_nat_*.py)
# squashfs-tools: Golem VM images (.gvmi: yagna image pack, providers running Golem packages)
# chromium: the dashboard in a real headless browser (e2e/test_dashboard.py)
PACKAGES=(docker.io gcc libc6-dev libgmp-dev make python3-venv busybox-static iproute2 iptables procps squashfs-tools chromium)
DOCKERD_ARGS=(--bridge=none --iptables=false --ip-masq=false)
DOCKERD_LOG=${YAGNA_DOCKERD_LOG:-/var/log/yagna-dockerd.log}

say() { printf '== %s\n' "$*" >&2; }
fail() { printf 'setup: %s\n' "$*" >&2; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }

# -- Debian packages -------------------------------------------------------------------
missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
# Node and npm: the contract compiler (solc, wasm) and the local chain (anvil) come from npm,
# pinned in contracts/package-lock.json (`make setup` runs `npm ci`). Any Node >= 18 will do,
# from Debian or elsewhere.
command -v npm >/dev/null || missing+=(nodejs npm)
if [ "${#missing[@]}" -gt 0 ]; then
    command -v apt-get >/dev/null || fail "missing ${missing[*]} and no apt-get here: install them by hand (Debian/Ubuntu names)"
    is_root || fail "missing packages; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}"
    say "apt-get install ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# -- Docker engine -----------------------------------------------------------------------
if ! docker info >/dev/null 2>&1; then
    if ! is_root; then
        fail "no Docker engine is running and this is not root; run: sudo dockerd ${DOCKERD_ARGS[*]} &  (or start the docker service), and add yourself to the docker group"
    fi
    command -v dockerd >/dev/null || fail "dockerd is not installed (apt-get install docker.io)"
    say "no Docker engine is running: starting one (dockerd ${DOCKERD_ARGS[*]}), logs in $DOCKERD_LOG"
    nohup dockerd "${DOCKERD_ARGS[@]}" >>"$DOCKERD_LOG" 2>&1 &
    pid=$!
    for _ in $(seq 1 120); do
        docker info >/dev/null 2>&1 && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if ! docker info >/dev/null 2>&1; then
        tail -n 20 "$DOCKERD_LOG" >&2 || true
        fail "the Docker engine did not start (see $DOCKERD_LOG); the exe-units and the main job need one"
    fi
    say "Docker engine started (pid $pid) and left running for later runs; stop it with: kill $pid"
fi

# -- images (built locally: no registry is needed) ---------------------------------------------
bash scripts/build-test-image.sh >/dev/null || fail "cannot build the local/busybox:1 test image"
if [ "${1:-}" = "--render" ]; then
    bash scripts/build-render-image.sh >/dev/null || fail "cannot build the local/render:1 image of the demo"
fi
