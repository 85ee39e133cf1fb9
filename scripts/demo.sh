#!/usr/bin/env bash
# Demo: sluice with its embedded config in front of two real servers.
# Brings up the `sluice-demo` testbed, starts `sluice run` in the lb namespace, sends six
# requests to http://10.10.0.100/whoami from the client, stops sluice (printing its
# counters) and tears everything down, also on failure or Ctrl-C.
# SLUICE_BIN=PATH uses that binary instead of building target/release/sluice.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

NAME=sluice-demo
if [[ -d $HOME/.cargo/bin && :$PATH: != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

scripts/setup-host.sh
if [[ -z ${SLUICE_BIN:-} ]]; then
    cargo build --release
    SLUICE_BIN="${CARGO_TARGET_DIR:-target}/release/sluice"
fi
SLUICE_BIN=$(realpath "$SLUICE_BIN")

LOGS=$(mktemp -d /tmp/sluice-demo.XXXXXX)
SLUICE_PID=

stop_sluice() {
    [[ -n $SLUICE_PID ]] || return 0
    local pid=$SLUICE_PID i
    SLUICE_PID=
    kill -INT "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        echo "demo: sluice did not stop within 15 s of SIGINT; killing it" >&2
        kill -KILL "$pid" 2>/dev/null || true
    fi
    local status=0
    wait "$pid" || status=$?
    echo "demo: sluice exited with status $status"
}

cleanup() {
    local rc=$?
    stop_sluice
    if ((rc != 0)); then
        echo "demo: failed; sluice stderr (last 30 lines):" >&2
        tail -n 30 "$LOGS/sluice.err" >&2 2>/dev/null || true
    fi
    scripts/testbed.sh down "$NAME" || true
    rm -rf "$LOGS"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

scripts/testbed.sh down "$NAME"
scripts/testbed.sh up "$NAME" --reals 2

echo "demo: starting sluice (embedded demo config) in $NAME-lb"
ip netns exec "$NAME-lb" "$SLUICE_BIN" run </dev/null >"$LOGS/sluice.out" 2>"$LOGS/sluice.err" &
SLUICE_PID=$!
for ((i = 0; i < 300; i++)); do
    grep -qx 'sluice: ready' "$LOGS/sluice.out" && break
    if ! kill -0 "$SLUICE_PID" 2>/dev/null; then
        SLUICE_PID=
        echo "demo: sluice exited before it was ready" >&2
        exit 1
    fi
    sleep 0.1
done
grep -qx 'sluice: ready' "$LOGS/sluice.out" || { echo "demo: sluice not ready after 30 s" >&2; exit 1; }
echo "demo: sluice is ready"

for i in 1 2 3 4 5 6; do
    printf 'request %d: ' "$i"
    scripts/testbed.sh exec "$NAME" client curl -sS --connect-timeout 5 -m 10 http://10.10.0.100/whoami
done

stop_sluice
sed -n '/^sluice counters:/,$p' "$LOGS/sluice.out"
