#!/usr/bin/env bash
# perf/twinflood.sh: what a flood at sluice's interface address costs forwarding.
#
# The namespace testbed (scripts/testbed.sh, NAT, two reals) with sluice's
# embedded default configuration and its kernel twins on. wrk through the VIP
# (Connection: close, 8 connections) in three set-ups, alternated ROUNDS times
# in ABC/CBA order so that drift on a shared machine hits all alike:
#   quiet     no flood
#   twin      hping3 SYNs at the client-side interface address 10.10.0.1:22
#             (the dataplane hands them up to the twin within kernel.rate;
#             the twin's kernel answers each with a RST)
#   elsewhere the same flood at the VIP's unserved port 10.10.0.100:22
#             (parsed and dropped by the dataplane; the twins play no part)
# and prints each set-up's median requests/s and twin/elsewhere, twin/quiet.
# twin/elsewhere is the twin path's own cost. On a 2-core machine the flood's
# sender, the client's kernel, wrk and the reals share the one core the
# worker does not busy-poll, so any flood costs forwarding there and the
# samples spread widely: quote medians of many rounds.
#
# Usage: perf/twinflood.sh [--rounds N] [--secs S] [--rate R] [--interval USEC]
#   --rate R        kernel.rate (frames a second up to the twins; default 20000)
#   --interval USEC hping3's interval between SYNs (default 10)
# Needs root, wrk and hping3 (scripts/setup-host.sh). Honours CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROUNDS=7
SECS=3
RATE=20000
INTERVAL=10
while (($#)); do
    case $1 in
        --rounds) ROUNDS=$2; shift ;;
        --secs) SECS=$2; shift ;;
        --rate) RATE=$2; shift ;;
        --interval) INTERVAL=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "twinflood: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
log() { echo "twinflood: $*" >&2; }
[[ $(id -u) -eq 0 ]] || { log "must run as root (namespaces, DPDK)"; exit 1; }

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
(cd "$ROOT" && cargo build --release -q)
SLUICE=$TARGET/release/sluice
NAME=tf$$
TB=$ROOT/scripts/testbed.sh
DIR=$(mktemp -d /tmp/sluice-twinflood.XXXXXX)
LB_PID=""
cleanup() {
    [[ -n $LB_PID ]] && kill -INT "$LB_PID" 2>/dev/null && sleep 2
    "$TB" down "$NAME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$TB" up "$NAME" --reals 2 >/dev/null
{
    "$SLUICE" default-config
    printf '\n[control]\nsocket = "%s/sluice.sock"\n\n[kernel]\nrate = %s\n' "$DIR" "$RATE"
} >"$DIR/sluice.toml"
ip netns exec "$NAME-lb" "$SLUICE" run --config "$DIR/sluice.toml" >"$DIR/sluice.out" 2>"$DIR/sluice.err" &
LB_PID=$!
for ((i = 0; i < 100; i++)); do
    grep -q '^sluice: ready' "$DIR/sluice.out" 2>/dev/null && break
    sleep 0.1
done
grep -q '^sluice: ready' "$DIR/sluice.out" || { log "sluice did not start: $(tail -3 "$DIR/sluice.err")"; exit 1; }

wrk_rate() {
    ip netns exec "$NAME-client" wrk -t2 -c8 -d"${SECS}s" --timeout 5s -H "Connection: close" \
        http://10.10.0.100/whoami | awk '/^Requests\/sec:/ {print $2}'
}
run_one() { # setup
    local target="" hping=""
    case $1 in
        twin) target=10.10.0.1 ;;
        elsewhere) target=10.10.0.100 ;;
    esac
    if [[ -n $target ]]; then
        ip netns exec "$NAME-client" hping3 -q -S -i "u$INTERVAL" -p 22 "$target" >/dev/null 2>&1 &
        hping=$!
        sleep 0.5
    fi
    local r
    r=$(wrk_rate)
    if [[ -n $hping ]]; then kill "$hping" 2>/dev/null || true; wait "$hping" 2>/dev/null || true; fi
    sleep 0.3
    echo "${r:-0}"
}

wrk_rate >/dev/null # warm-up: ARP, the reals' first connections
declare -A RATES=([quiet]="" [twin]="" [elsewhere]="")
for ((round = 0; round < ROUNDS; round++)); do
    order=(quiet twin elsewhere)
    ((round % 2)) && order=(elsewhere twin quiet)
    for s in "${order[@]}"; do
        r=$(run_one "$s")
        RATES[$s]+="$r "
        log "round $((round + 1)): $s $r req/s"
    done
done
kill -INT "$LB_PID" 2>/dev/null || true
wait "$LB_PID" 2>/dev/null || true
LB_PID=""

median() { tr ' ' '\n' | sed '/^$/d' | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
q=$(median <<<"${RATES[quiet]}")
t=$(median <<<"${RATES[twin]}")
e=$(median <<<"${RATES[elsewhere]}")
counter() { awk -v n="$1" '$1 == n {print $2}' "$DIR/sluice.out"; }
echo "wrk through the VIP, Connection: close, ${SECS}s x $ROUNDS rounds; kernel.rate=$RATE; hping3 -i u$INTERVAL"
printf '%-10s %10s   %s\n' setup "median r/s" samples
printf '%-10s %10s   %s\n' quiet "$q" "${RATES[quiet]}"
printf '%-10s %10s   %s\n' twin "$t" "${RATES[twin]}"
printf '%-10s %10s   %s\n' elsewhere "$e" "${RATES[elsewhere]}"
awk -v t="$t" -v e="$e" -v q="$q" 'BEGIN {printf "twin/elsewhere %.3f   twin/quiet %.3f   elsewhere/quiet %.3f\n", t / e, t / q, e / q}'
echo "sluice: kernel_in $(counter kernel_in), kernel_out $(counter kernel_out)," \
    "drop_kernel_rate $(counter drop_kernel_rate), drop_kernel_queue_full $(counter drop_kernel_queue_full)"
