#!/usr/bin/env bash
# perf/capture-cost.sh: what live capture (the pdump server, for dpdk-dumpcap) costs sluice.
#
# One worker replays a pcap forever from net_pcap (perf/configs/nat.toml.in, 1K TCP
# flows, 64 packets each, as perf/bench.sh's tcp-1k case), on hugepages, in three
# set-ups, alternated ROUNDS times so that drift on a shared machine hits all alike:
#   in-memory  EAL --in-memory: no shared files, so no capture server (what bench.sh runs)
#   shared     EAL --file-prefix=...: shared files, the capture server idle
#   capturing  shared, and dpdk-dumpcap capturing port 0 (rx+tx) into /dev/null
# For each it reports the worker's packets/s and cycles per packet (sluice --stats) and
# how much of the time the worker was preempted, and from those the cycles a packet cost
# on the CPU (median of the rounds).
# Then, per process: the threads, the files in EAL's runtime directory and the 2 MiB
# hugepages in use.
#
# Usage: perf/capture-cost.sh [--rounds N] [--measure S] [--dir DIR]
# Needs root and about 150 free 2 MiB hugepages. Honours CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=/tmp/sluice-capture-cost
ROUNDS=3
MEASURE=6
WARMUP=3
FLOWS=1024
PER_FLOW=64
# mbufs: the pcap (net_pcap copies it into the pool) plus room for bursts and caches.
MBUFS=$((FLOWS * PER_FLOW + 16383))
PREFIX=slcost$$
while (($#)); do
    case $1 in
        --rounds) ROUNDS=$2; shift ;;
        --measure) MEASURE=$2; shift ;;
        --dir) DIR=$2; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "capture-cost: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "capture-cost: $*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) -eq 0 ]] || die "must run as root (hugepages, DPDK)"
if [[ -d $HOME/.cargo/bin && :$PATH: != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v dpdk-dumpcap >/dev/null || die "dpdk-dumpcap not found (package dpdk-dev)"
free_pages() { cat /sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages; }
need=$((MBUFS * 2368 / 2097152 + 40))
(($(free_pages) >= need)) || die "need $need free 2 MiB hugepages, $(free_pages) free (scripts/setup-host.sh reserves 512)"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log "building (release) into $TARGET"
(cd "$ROOT" && cargo build --release -q -p sluice -p sluice-perf)
SLUICE=$TARGET/release/sluice
PCAPGEN=$TARGET/release/pcapgen
mkdir -p "$DIR"
PCAP=$DIR/tcp-1k.pcap
[[ -s $PCAP && $PCAP -nt $PCAPGEN ]] ||
    "$PCAPGEN" --out "$PCAP" --flows $FLOWS --proto tcp --packets-per-flow $PER_FLOW >&2

SLUICE_PID="" DUMPCAP_PID=""
cleanup() {
    [[ -n $DUMPCAP_PID ]] && kill -INT "$DUMPCAP_PID" 2>/dev/null && wait "$DUMPCAP_PID" 2>/dev/null
    [[ -n $SLUICE_PID ]] && kill -INT "$SLUICE_PID" 2>/dev/null && wait "$SLUICE_PID" 2>/dev/null
    # EAL leaves its hugepage files and runtime dir behind (see deploy/README.md).
    rm -f /dev/hugepages/"$PREFIX"map_* 2>/dev/null
    rm -rf /var/run/dpdk/"$PREFIX"
    return 0
}
trap cleanup EXIT

config() { # setup out
    local mem
    case $1 in
        # A prefix of our own here too: EAL still puts its telemetry sockets in
        # /var/run/dpdk/PREFIX, and the default prefix may be another program's.
        in-memory) mem="\"--in-memory\", \"--file-prefix=$PREFIX\"," ;;
        *) mem="\"--file-prefix=$PREFIX\"," ;;
    esac
    sed -e "s|\"--no-shconf\", @EAL_MEM@|$mem|" -e "s|@PCAP@,infinite_rx=1|$PCAP,infinite_rx=1|" \
        -e "s|@MBUFS@|$MBUFS|" -e "s|@MAX_SESSIONS@|$((FLOWS * 2 + 1024))|" \
        -e "s|@PROTO@|tcp|" -e 's|@LCORES@|"-l", "0-1", "--main-lcore", "0", |' \
        "$ROOT/perf/configs/nat.toml.in" >"$2"
    "$SLUICE" check --config "$2" >/dev/null || die "$2: sluice refused the configuration"
}

wait_for() { # pid file regex count timeout_s
    local t=0 n
    while n=$(grep -c -E "$3" "$2" 2>/dev/null) || true; ((${n:-0} < $4)); do
        kill -0 "$1" 2>/dev/null || return 1
        sleep 0.2
        t=$((t + 1))
        ((t < $5 * 5)) || return 1
    done
}

worker_wait_ns() { # pid: ns the worker thread was runnable but not running
    local t
    for t in /proc/"$1"/task/*; do
        [[ $(cat "$t/comm" 2>/dev/null) == rte-worker-1 || $(cat "$t/comm" 2>/dev/null) == lcore-worker-1 ]] &&
            { awk '{print $2}' "$t/schedstat"; return; }
    done
    echo 0
}

declare -A PPS CPP WAIT
run() { # setup round
    local setup=$1 round=$2 cfg=$DIR/$1.toml out=$DIR/$1-$2.out
    config "$setup" "$cfg"
    local free0
    free0=$(free_pages)
    # A previous run's output would satisfy the waits below before this sluice has even
    # opened the file (the redirection happens in the background job).
    rm -f "$out" "$out.err" "$out.dumpcap"
    "$SLUICE" run --config "$cfg" --stats 1 >"$out" 2>"$out.err" </dev/null &
    SLUICE_PID=$!
    wait_for "$SLUICE_PID" "$out" '^sluice: ready' 1 120 || die "sluice did not start (see $out.err)"
    if [[ $setup == capturing ]]; then
        # -q: no running count (megabytes of it at this rate); stdout line-buffered so
        # that "Capturing on" shows when the capture callbacks are in place.
        stdbuf -oL dpdk-dumpcap --file-prefix="$PREFIX" -q -i 0 -w /dev/null >"$out.dumpcap" 2>&1 </dev/null &
        DUMPCAP_PID=$!
        if ! wait_for "$DUMPCAP_PID" "$out.dumpcap" '^Capturing on' 1 30; then
            ls -la /var/run/dpdk/"$PREFIX" >>"$out.dumpcap" 2>&1 || true
            die "dumpcap did not start (see $out.dumpcap)"
        fi
    fi
    local skip
    skip=$(grep -c '^stats: ' "$out" || true)
    skip=$((skip + WARMUP))
    wait_for "$SLUICE_PID" "$out" '^stats: ' "$skip" 60 || die "no stats from sluice"
    local w0 t0 w1 t1
    w0=$(worker_wait_ns "$SLUICE_PID"); t0=$(date +%s%N)
    wait_for "$SLUICE_PID" "$out" '^stats: ' $((skip + MEASURE)) $((MEASURE + 30)) || die "no stats from sluice"
    w1=$(worker_wait_ns "$SLUICE_PID"); t1=$(date +%s%N)
    if ((round == 1)); then
        {
            echo "== $setup: threads of sluice"
            for t in /proc/"$SLUICE_PID"/task/*; do cat "$t/comm"; done | sort | uniq -c | sed 's/^/   /'
            echo "== $setup: EAL runtime files"
            find /var/run/dpdk/"$PREFIX" -mindepth 1 -printf '   %f\n' 2>/dev/null | sort || true
            [[ -d /var/run/dpdk/$PREFIX ]] || echo "   (none)"
            echo "== $setup: 2 MiB hugepages in use: $((free0 - $(free_pages)))"
        } >>"$DIR/process.txt"
    fi
    if [[ -n $DUMPCAP_PID ]]; then
        kill -INT "$DUMPCAP_PID"; wait "$DUMPCAP_PID" || true; DUMPCAP_PID=""
        grep -a 'received/dropped' "$out.dumpcap" | sed "s/^/capture-cost: $setup: dumpcap: /" >&2 || true
    fi
    kill -INT "$SLUICE_PID"; wait "$SLUICE_PID" || true; SLUICE_PID=""
    rm -f /dev/hugepages/"$PREFIX"map_*; rm -rf /var/run/dpdk/"$PREFIX"
    local stats
    stats=$(grep '^stats: ' "$out" | sed -n "$((skip + 1)),$((skip + MEASURE))p")
    PPS[$setup-$round]=$(grep -oE 'rx_pps=[0-9]+' <<<"$stats" | cut -d= -f2 | awk '{s += $1} END {printf "%.0f", s / NR}')
    CPP[$setup-$round]=$(grep -oE 'cycles_per_pkt=[0-9.]+' <<<"$stats" | cut -d= -f2 | awk '{s += $1} END {printf "%.1f", s / NR}')
    WAIT[$setup-$round]=$(awk -v w=$((w1 - w0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", 100 * w / t}')
    log "$setup round $round: ${PPS[$setup-$round]} pkt/s, ${CPP[$setup-$round]} cycles/pkt, worker preempted ${WAIT[$setup-$round]} %"
}

SETUPS=(in-memory shared capturing)
: >"$DIR/process.txt"
for ((r = 1; r <= ROUNDS; r++)); do
    for s in "${SETUPS[@]}"; do run "$s" "$r"; done
done

# On a shared machine the worker is preempted now and then. Its cycles per packet are TSC
# time per packet, so they include the time it was preempted: cycles/pkt x (1 - preempted
# share) is what a packet cost on the CPU, and the median of the rounds is the estimate.
echo "setup       median cycles/pkt on CPU  best pkt/s  mean preempted %  rounds (cycles/pkt on CPU)"
for s in "${SETUPS[@]}"; do
    for ((r = 1; r <= ROUNDS; r++)); do
        echo "${PPS[$s-$r]} ${CPP[$s-$r]} ${WAIT[$s-$r]}"
    done | awk -v s="$s" '{
            adj[NR] = $2 * (1 - $3 / 100); if ($1 > best) best = $1; w += $3
        } END {
            n = NR
            list = ""; for (i = 1; i <= n; i++) { list = list sprintf("%.0f ", adj[i]); v[i] = adj[i] }
            for (i = 2; i <= n; i++) for (j = i; j > 1 && v[j - 1] > v[j]; j--) { t = v[j]; v[j] = v[j - 1]; v[j - 1] = t }
            med = (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
            printf "%-11s %24.0f  %10d  %16.1f  %s\n", s, med, best, w / n, list
        }'
done
echo
cat "$DIR/process.txt"
