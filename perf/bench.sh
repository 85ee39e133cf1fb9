#!/usr/bin/env bash
# perf/bench.sh: sluice's packet rate beside dpdk-testpmd, on the same core.
#
# For each case (TCP 1K / 64K / 1M flows, UDP 64K and a 1M-source SYN flood
# answered by the SYN proxy, each in NAT and FULLNAT, and the TCP flow cases
# in FULLNAT with client_address = "proxy-v2", mode fullnat-proxy), on one
# pcap replayed forever by net_pcap (infinite_rx=1):
#   1. dpdk-testpmd --forward-mode=5tswap: the framework's ceiling on lcore 1;
#   2. sluice, one worker on lcore 1, static neighbours (nothing waits on ARP),
# the main lcore of both on lcore 0.
# With --workers N, both get N forwarding lcores and net_pcap one rx queue
# (one pcap) per worker; see perf/README.md. Rates are the mean of the
# per-second samples after a warm-up. Prints a table, then one JSON line
# per case.
#
# Before the cases, a translation check replays a small pcap once through
# sluice in each mode with tx_pcap: every packet must come out translated
# (real server as destination, local address as source in FULLNAT) with
# valid checksums, and no drop counter may move; in fullnat-proxy each flow
# also gets one 28-byte PROXY protocol header segment ahead of its first
# data segment. No real server answers in the bench, so a proxy-v2 session
# never sees its header acknowledged: every packet takes the path a
# connection's first round trip takes (the decision, then the offsets),
# an upper bound of the steady state's cost. During the timed runs a
# case is valid only if sluice sends (tx) what it receives (rx) and holds
# one session per flow: a rate of dropped packets would be worthless.
#
# Usage: perf/bench.sh [--quick] [--dir DIR] [--warmup S] [--measure S] [--only RE] [--core N] [--changes N] [--no-huge]
#                      [--workers N [--split owner|spread] [--allow-oversubscribe]]
#   --quick     1K and 64K flows only, shorter runs (a smoke test, ~2 min)
#   --dir DIR   where pcaps, configs and logs go (default /tmp/sluice-perf)
#   --only RE   run only the cases whose name matches RE (e.g. 'fullnat-tcp')
#   --core N    the forwarding lcore, 0 or 1 (default 1; the main lcore is the
#               other): use 0 when something else busy-polls cpu 1
#   --changes N after each case, run sluice again while N configuration
#               changes per second are applied over its control socket
#               (perf/changes.py: a real's weight flips between 1 and 2, so
#               each change publishes a new snapshot to the worker); the
#               table gets a row CASE+chg beside the plain one
#   --no-huge   4 KiB pages even where hugepages could be reserved (what
#               happens anyway when they cannot; figures are then lower)
#   --workers N N forwarding lcores instead of one: testpmd with --nb-cores=N
#               --rxq=N --txq=N, sluice with N workers, each on N+1 lcores
#               (the main lcore on the first cpu this process may use, the
#               workers on the next N; --core does not apply), and net_pcap
#               with one rx_pcap, so one rx queue, per worker: pcapgen
#               --queues N splits each case's flows into N files. Needs N+1
#               cpus. The table gains a column: the share of the packets
#               sluice handed from one worker to another (steer_handoffs).
#   --split S   with --workers N: how the flows are split over the queues.
#               owner (the default): sluice gets a fixed dataplane.owner_key
#               and pcapgen the same key, so each queue carries only the
#               clients its worker owns and no packet is handed off; spread:
#               flow i on queue i mod N, blind to owners as RSS is, so about
#               (N-1)/N of the packets take a handoff ring (and the figure
#               includes that cost)
#   --allow-oversubscribe
#               with --workers N on fewer than N+1 cpus: run anyway, several
#               lcores sharing a cpu. Only to see that the N-worker path
#               works: the rates mean nothing (the table says so)
# Needs root (hugepages, DPDK). Honours CARGO_TARGET_DIR. On a shared machine
# it waits for the worker's cpu to be quiet and reruns disturbed cases, within
# QUIET_WAIT (120 s per wait) and WAIT_BUDGET (420 s in all); RETRIES=0 skips
# the reruns.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=/tmp/sluice-perf
QUICK=0
WARMUP=""
MEASURE=""
ONLY=""
WORKER_CORE=1
CORE_GIVEN=0
CHANGES=0
NO_HUGE=0
WORKERS=1
SPLIT=owner
OVERSUBSCRIBE=0
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --dir) DIR=$2; shift ;;
        --warmup) WARMUP=$2; shift ;;
        --measure) MEASURE=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --core) WORKER_CORE=$2; CORE_GIVEN=1; shift ;;
        --changes) CHANGES=$2; shift ;;
        --no-huge) NO_HUGE=1 ;;
        --workers) WORKERS=$2; shift ;;
        --split) SPLIT=$2; shift ;;
        --allow-oversubscribe) OVERSUBSCRIBE=1 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench: unknown argument: $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ $WORKER_CORE == 0 || $WORKER_CORE == 1 ]] || { echo "bench: --core must be 0 or 1" >&2; exit 2; }
MAIN_CORE=$((1 - WORKER_CORE))
[[ $WORKERS =~ ^[1-9][0-9]?$ ]] || { echo "bench: --workers must be between 1 and 99" >&2; exit 2; }
[[ $SPLIT == owner || $SPLIT == spread ]] || { echo "bench: --split must be owner or spread" >&2; exit 2; }
if ((QUICK)); then
    WARMUP=${WARMUP:-2}; MEASURE=${MEASURE:-3}
else
    WARMUP=${WARMUP:-3}; MEASURE=${MEASURE:-8}
fi

# case  proto  flows  packets-per-flow  (1M flows: SYN + one data segment)
ALL_CASES=(
    "tcp-1k  tcp 1024    64"
    "tcp-64k tcp 65536   8"
    "tcp-1m  tcp 1048576 2"
    "udp-64k udp 65536   8"
    # A spoofed-source SYN flood: one SYN from each of 1M sources, every one
    # answered by the SYN proxy with a cookie (synproxy = true), no session.
    "syn-1m  tcp 1048576 1"
)
MODES=(nat fullnat fullnat-proxy)

# Whether mode $1 applies to case or protocol $2: the PROXY header is for
# TCP connections (tcp-*), not UDP nor the SYN flood, which makes none.
mode_fits() { [[ $1 != fullnat-proxy || $2 == tcp* ]]; }
# Mbufs beyond the ones net_pcap fills with the pcap: rx bursts in flight,
# tx buffers and the per-lcore caches of both lcores.
SPARE_MBUFS=16383
# Bytes an mbuf takes in its pool (128 rte_mbuf + 2176 data room + 64
# object header), for sizing the memory.
MBUF_BYTES=2368
# Seconds to wait for a DPDK process to start (pcap loading included).
START_TIMEOUT=180
# Seconds to wait for the workers' cpus to be quiet before a run; a case
# whose workers were preempted more than MAX_WAIT_PCT % of the time (their
# mean) is run again, up to
# RETRIES more times, and the least disturbed attempt is kept.
# All waiting and retrying together stops after WAIT_BUDGET s, which keeps a
# run on a busy machine bounded (about 6 min quiet, at most ~12 min more).
QUIET_WAIT=${QUIET_WAIT:-120}
WAIT_BUDGET=${WAIT_BUDGET:-420}
MAX_WAIT_PCT=3
RETRIES=${RETRIES:-2}
# Seconds spent so far waiting for quiet and on discarded attempts.
EXTRA=0

log() { echo "bench: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---- lcores: the main one and the workers ----
# The cpus this process may run on, in order (nproc counts the same).
allowed_cpus() {
    local part parts
    IFS=, read -ra parts <<<"$(awk '/^Cpus_allowed_list:/ {print $2}' /proc/self/status)"
    for part in "${parts[@]}"; do
        if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
    done
}
mapfile -t CPUS < <(allowed_cpus)
OVERSUBSCRIBED=0
if ((WORKERS == 1)); then
    # As always: lcore = cpu, the worker on --core, the main lcore on the other.
    LCORE_ARGS=(-l 0-1 --main-lcore "$MAIN_CORE")
    WORKER_LCORES=("$WORKER_CORE")
    WORKER_CPUS=("$WORKER_CORE")
else
    ((CORE_GIVEN)) && die "--core is for one worker; with --workers the main lcore takes the first cpu and the workers the next $WORKERS"
    if ((${#CPUS[@]} < WORKERS + 1)); then
        ((OVERSUBSCRIBE)) || die "--workers $WORKERS needs $((WORKERS + 1)) cores, this machine has ${#CPUS[@]}" \
            "(--allow-oversubscribe runs it anyway, as a functional test whose rates mean nothing)"
        OVERSUBSCRIBED=1
    fi
    # Lcore 0 (main) on the first cpu, lcore i on the (i+1)th; oversubscribed,
    # the workers take turns on the cpus after the first.
    MAIN_CORE=${CPUS[0]}
    map="0@$MAIN_CORE"
    WORKER_LCORES=()
    WORKER_CPUS=()
    for ((i = 1; i <= WORKERS; i++)); do
        if ((${#CPUS[@]} > 1)); then cpu=${CPUS[1 + (i - 1) % (${#CPUS[@]} - 1)]}; else cpu=$MAIN_CORE; fi
        map+=",$i@$cpu"
        WORKER_LCORES+=("$i")
        [[ " ${WORKER_CPUS[*]} " == *" $cpu "* ]] || WORKER_CPUS+=("$cpu")
    done
    LCORE_ARGS=(--lcores "$map" --main-lcore 0)
    # Rates of workers sharing cpus mean nothing: no rerun will fix that.
    ((OVERSUBSCRIBED)) && RETRIES=0
fi
WORKER_CPU_LIST=$(IFS=,; echo "${WORKER_CPUS[*]}")
# The key sluice and pcapgen share with --split owner (any fixed value).
OWNER_KEY=5eed0000000000000000000000c0ffee
BENCH_OWNER_KEY=""
((WORKERS > 1)) && [[ $SPLIT == owner ]] && BENCH_OWNER_KEY=$OWNER_KEY

[[ $(id -u) -eq 0 ]] || die "must run as root (hugepages, DPDK)"
if [[ -d $HOME/.cargo/bin && :$PATH: != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
"$ROOT/scripts/setup-host.sh"
command -v dpdk-testpmd >/dev/null || die "dpdk-testpmd not found (package dpdk-dev)"
command -v tcpdump >/dev/null || die "tcpdump not found"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
log "building (release) into $TARGET"
(cd "$ROOT" && cargo build --release -q -p sluice -p sluice-perf)
SLUICE=$TARGET/release/sluice
PCAPGEN=$TARGET/release/pcapgen
mkdir -p "$DIR"
RUN_LOG=$DIR/runs
mkdir -p "$RUN_LOG"

# ---- the cases of this run ----
CASES=()
for c in "${ALL_CASES[@]}"; do
    read -r name _ flows _ <<<"$c"
    if ((QUICK)) && ((flows > 65536)); then continue; fi
    want=0
    for m in "${MODES[@]}"; do
        mode_fits "$m" "$name" || continue
        [[ -z $ONLY || $m-$name =~ $ONLY ]] && want=1
    done
    ((want)) && CASES+=("$c")
done
((${#CASES[@]})) || die "no case matches --only '$ONLY'"

# The pcap files of case $1: one, or one per worker with --workers.
pcap_files_of() {
    if ((WORKERS == 1)); then
        echo "$DIR/$1.pcap"
    else
        local q
        for ((q = 0; q < WORKERS; q++)); do echo "$DIR/$1-w$WORKERS-$SPLIT-q$q.pcap"; done
    fi
}
# net_pcap's rx_pcap value for case $1: the files joined by ",rx_pcap=".
pcap_of() {
    local files joined
    mapfile -t files < <(pcap_files_of "$1")
    joined=$(printf ',rx_pcap=%s' "${files[@]}")
    echo "${joined#,rx_pcap=}"
}
packets_of() { echo $(($2 * $3)); } # name flows k
# Spare mbufs for every worker (its descriptors, cache and bursts).
mbufs_of() { echo $(($1 + SPARE_MBUFS * WORKERS)); } # packets
# MB of --no-huge memory (-m) for a pool of $1 mbufs. With 4 KiB pages
# DPDK 22.11 cannot place a pool in -m of its own size: 540,671 mbufs (the
# 64K case, 1.28 GB) fail with "Cannot allocate memory" at -m 3000 and
# start at -m 6000; 2.1M (1M flows) start at -m 10500. Twice the pool and a
# GB more is what was seen to work.
no_huge_mb() { echo $(($1 * MBUF_BYTES / 1048576 * 2 + 1024)); }


# ---- pcaps (kept between runs while pcapgen is unchanged) ----
for c in "${CASES[@]}"; do
    read -r name proto flows k <<<"$c"
    fresh=1
    while read -r f; do
        [[ -s $f && $f -nt $PCAPGEN ]] || fresh=0
        # The owner split follows OWNER_KEY, which lives in this script.
        [[ -z $BENCH_OWNER_KEY || $f -nt $0 ]] || fresh=0
    done < <(pcap_files_of "$name")
    if ((fresh)); then
        log "$(pcap_of "$name"): up to date"
        continue
    fi
    if ((WORKERS == 1)); then
        "$PCAPGEN" --out "$(pcap_of "$name")" --flows "$flows" --proto "$proto" --packets-per-flow "$k" >&2
    else
        "$PCAPGEN" --out "$DIR/$name-w$WORKERS-$SPLIT-q{q}.pcap" --queues "$WORKERS" \
            ${BENCH_OWNER_KEY:+--owner-key "$BENCH_OWNER_KEY"} \
            --flows "$flows" --proto "$proto" --packets-per-flow "$k" >&2
    fi
done

# ---- memory: hugepages for the mbuf pools, else --no-huge ----
# net_pcap with infinite_rx copies the whole pcap into mbufs of the port's
# pool at start, so the pool holds packets + SPARE_MBUFS (2.1M mbufs, about
# 5 GB, for 1M flows). 2 MiB hugepages are used because that is how sluice
# runs in production, and because with 4 KiB pages (--no-huge) each of the
# millions of mbufs the PMD copies from is a TLB miss for both programs,
# which would measure the page size rather than the forwarding. Only one
# DPDK process runs at a time, so one pool's worth is enough.
max_mb=0
for c in "${CASES[@]}"; do
    read -r name proto flows k <<<"$c"
    mb=$(( $(mbufs_of $((flows * k))) * MBUF_BYTES / 1048576 + 512 ))
    ((mb > max_mb)) && max_mb=$mb
done
HUGE_ORIG=$(cat /proc/sys/vm/nr_hugepages)
HUGE_SET=""
restore_hugepages() {
    if [[ -n $HUGE_SET && $(cat /proc/sys/vm/nr_hugepages) == "$HUGE_SET" ]]; then
        echo "$HUGE_ORIG" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    fi
}
CHILD=""
# sluice runs in a network namespace of its own: its port's kernel twin
# (net_tap, on by default, so the bench measures the packet path with twins
# present) then carries the bench's addresses and routes there, not on the
# host. `ip netns exec` execs, so $! is sluice itself (a shell function
# here would put a subshell between).
BENCH_NS=sluice-bench-$$
ip netns add "$BENCH_NS" || die "cannot make network namespace $BENCH_NS"
IN_BENCH_NS=(ip netns exec "$BENCH_NS")
cleanup() {
    if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
        kill -KILL "$CHILD" 2>/dev/null || true
    fi
    ip netns del "$BENCH_NS" 2>/dev/null || true
    restore_hugepages
}
trap cleanup EXIT
trap 'exit 130' INT TERM
need_pages=$(( (max_mb + 1) / 2 ))
# Pages other programs hold stay theirs: reserve what is missing on top.
free_pages=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
if ((!NO_HUGE && free_pages < need_pages)); then
    echo $((HUGE_ORIG + need_pages - free_pages)) >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    HUGE_SET=$(cat /proc/sys/vm/nr_hugepages)
fi
free_pages=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo)
if ((!NO_HUGE)) && grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts && ((free_pages >= need_pages)); then
    MEM_MODE=hugepages
    log "memory: $free_pages free 2 MiB hugepages (need $need_pages for ${max_mb} MB)"
else
    MEM_MODE=no-huge
    if ((NO_HUGE)); then
        log "memory: --no-huge as asked (4 KiB pages; both programs pay TLB misses on the mbufs)"
    else
        log "warning: only $free_pages free hugepages (need $need_pages): using --no-huge" \
            "(4 KiB pages; both programs pay TLB misses on the mbufs)"
    fi
    # One DPDK process runs at a time; the biggest case must fit in memory.
    max_mbufs=0
    for c in "${CASES[@]}"; do
        read -r name proto flows k <<<"$c"
        m=$(mbufs_of $((flows * k)))
        ((m > max_mbufs)) && max_mbufs=$m
    done
    avail_mb=$(awk '/MemAvailable/ {print int($2 / 1024)}' /proc/meminfo)
    want_mb=$(no_huge_mb "$max_mbufs")
    ((want_mb <= avail_mb)) \
        || die "--no-huge needs ${want_mb} MB for the largest case and ${avail_mb} MB is available:" \
            "reserve $need_pages free 2 MiB hugepages, or leave out the large cases (--quick, --only)"
fi

# EAL memory arguments for a pool of $1 mbufs, one per line.
eal_mem() {
    if [[ $MEM_MODE == hugepages ]]; then
        echo "--in-memory"
    else
        printf '%s\n' --no-huge -m "$(no_huge_mb "$1")"
    fi
}

# The words of an array as the items of a TOML list, each followed by ", ".
toml_items() { local a s=""; for a in "$@"; do s+="\"$a\", "; done; echo "$s"; }

# sluice configuration from a template in perf/configs, with the lcores of
# $7 (TOML items) and, when $8 is given, that dataplane.owner_key.
write_config() { # mode proto pcap-vdev-args mbufs max_sessions out lcores [owner-key]
    local mode=$1 proto=$2 vdev=$3 mbufs=$4 max_sessions=$5 out=$6 lcores=$7 key=${8:-} mem=""
    local a template=$mode client_address=none keyed=()
    if [[ $mode == fullnat-proxy ]]; then template=fullnat; client_address=proxy-v2; fi
    [[ -n $key ]] && keyed=(-e "s|^syn_recv_budget = .*|&\nowner_key = \"$key\"|")
    while read -r a; do mem+="\"$a\", "; done < <(eal_mem "$mbufs")
    sed -e "s|@EAL_MEM@|$mem|" -e "s|@PCAP@,infinite_rx=1|$vdev|" \
        -e "s|@MBUFS@|$mbufs|" -e "s|@MAX_SESSIONS@|$max_sessions|" \
        -e "s|@PROTO@|$proto|" -e "s|@LCORES@|$lcores|" \
        -e "s|^mode = \"fullnat\"$|&\nclient_address = \"$client_address\"|" \
        "${keyed[@]}" \
        "$ROOT/perf/configs/$template.toml.in" >"$out"
    printf '\n[control]\nsocket = "%s"\n' "$RUN_LOG/sluice.sock" >>"$out"
    "$SLUICE" check --config "$out" >/dev/null || die "$out: sluice refused the configuration"
}

# Waits until file $2 has $3 lines matching $4, while process $1 lives.
# The file may not exist yet (the process's shell opens it after the fork):
# grep then prints nothing, which counts as 0.
wait_lines() { # pid file count regex timeout
    local pid=$1 file=$2 count=$3 re=$4 timeout=$5 t=0 n
    while n=$(grep -c -E "$re" "$file" 2>/dev/null); ((${n:-0} < count)); do
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
        t=$((t + 1))
        ((t > timeout * 5)) && return 1
    done
    return 0
}

# Stops process $1 (a child of this shell) with SIGINT; sets STOP_RC to its
# exit status.
stop_process() {
    local pid=$1 t=0
    kill -INT "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null && ((t < 150)); do sleep 0.2; t=$((t + 1)); done
    if kill -0 "$pid" 2>/dev/null; then
        log "warning: process $pid ignored SIGINT for 30 s: killed"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    STOP_RC=0
    wait "$pid" 2>/dev/null || STOP_RC=$?
    CHILD=""
}

# Time (ns) the DPDK worker threads of process $1 (lcores WORKER_LCORES)
# spent runnable but not running (preempted by other tasks), summed, from
# schedstat.
worker_wait_ns() {
    local pid=$1 t sum=0
    for t in /proc/"$pid"/task/*; do
        [[ $(cat "$t/comm" 2>/dev/null) =~ ^(rte|lcore)-worker-([0-9]+)$ ]] || continue
        [[ " ${WORKER_LCORES[*]} " == *" ${BASH_REMATCH[2]} "* ]] || continue
        sum=$((sum + $(awk '{print $2}' "$t/schedstat" 2>/dev/null || echo 0)))
    done
    echo "$sum"
}

# Share (%) of the time between two readings ($1 ns of waiting in $2 ns)
# the workers were preempted, their mean.
wait_pct() {
    awk -v w="$1" -v t="$2" -v n="${#WORKER_LCORES[@]}" 'BEGIN {printf "%.1f", (t > 0 ? 100 * w / (t * n) : 0)}'
}

# Other processes' busy-polling DPDK lcores (any program's EAL worker
# threads) on the workers' cpus, as "pid:name" words.
other_pollers() {
    local t comm pid cpu
    for t in /proc/[0-9]*/task/[0-9]*; do
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        [[ $comm =~ ^(rte|lcore)-worker- ]] || continue
        # Field 39 of stat, counted after the ")" that ends the name.
        cpu=$(sed 's/.*) //' "$t/stat" 2>/dev/null | awk '{print $37}')
        [[ " ${WORKER_CPUS[*]} " == *" $cpu "* ]] || continue
        pid=${t#/proc/}; pid=${pid%%/*}
        [[ $pid == "${CHILD:-none}" ]] && continue
        echo -n "$pid:$(cat /proc/"$pid"/comm 2>/dev/null) "
    done
}

# Busy and idle ticks of each worker cpu, one line each.
cpu_ticks() {
    local c
    for c in "${WORKER_CPUS[@]}"; do
        awk -v c="cpu$c" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat
    done
}

# Busy share (%) over half a second of the busiest worker cpu, from /proc/stat.
cpu_busy() {
    local a b
    a=$(cpu_ticks)
    sleep 0.5
    b=$(cpu_ticks)
    paste -d' ' <(echo "$a") <(echo "$b") | awk '{busy = $3 - $1; idle = $4 - $2;
        p = (busy + idle > 0 ? 100 * busy / (busy + idle) : 0); if (p > m) m = p}
        END {printf "%.0f", m}'
}

# Before a timed run: waits (at most QUIET_WAIT s) until no other program
# polls a DPDK lcore and the worker's cpu is mostly idle, since on a 2-core
# machine anything else there takes its share from the worker under test.
wait_quiet() {
    local t=0 others busy limit=$QUIET_WAIT start
    start=$(date +%s)
    ((WAIT_BUDGET - EXTRA < limit)) && limit=$((WAIT_BUDGET > EXTRA ? WAIT_BUDGET - EXTRA : 0))
    while :; do
        others=$(other_pollers)
        busy=$(cpu_busy)
        if [[ -z $others ]] && ((busy < 25)); then
            EXTRA=$((EXTRA + $(date +%s) - start))
            return 0
        fi
        if ((t == 0)); then
            log "waiting for cpu $WORKER_CPU_LIST to be quiet (busy ${busy}%; other DPDK workers: ${others:-none})"
        fi
        ((t += 1))
        if ((t > limit)); then
            log "warning: cpu $WORKER_CPU_LIST still busy after ${limit}s (busy ${busy}%, ${others:-no other DPDK}): measuring anyway"
            EXTRA=$((EXTRA + $(date +%s) - start))
            return 1
        fi
        sleep 0.5
    done
}

# Mean, min and max of numbers on stdin: "mean min max n".
stats_of() {
    awk '{s += $1; n++; if (n == 1 || $1 < lo) lo = $1; if ($1 > hi) hi = $1}
         END {if (n) printf "%.0f %.0f %.0f %d\n", s / n, lo, hi, n; else print "0 0 0 0"}'
}

# ---- translation check: every packet of a small pcap, once, to tx_pcap ----
# On one worker whatever --workers says: what it checks (the rewrite of every
# packet) does not depend on the number of workers, and one worker keeps
# tx_pcap's output in order.
if ((WORKERS == 1)); then
    CHECK_LCORES=$(toml_items "${LCORE_ARGS[@]}")
else
    CHECK_LCORES=$(toml_items --lcores "0@$MAIN_CORE,1@${WORKER_CPUS[0]}" --main-lcore 0)
fi
declare -A CHECK_OK
check_translation() { # mode proto
    local mode=$1 proto=$2 k=3
    [[ $proto == udp ]] && k=2
    local in=$DIR/check-$proto.pcap out=$DIR/check-$mode-$proto-out.pcap
    local cfg=$RUN_LOG/check-$mode-$proto.toml so=$RUN_LOG/check-$mode-$proto.out
    "$PCAPGEN" --out "$in" --flows 64 --proto "$proto" --packets-per-flow $k >/dev/null
    rm -f "$out"
    write_config "$mode" "$proto" "$in,tx_pcap=$out" 16383 4096 "$cfg" "$CHECK_LCORES"
    "${IN_BENCH_NS[@]}" "$SLUICE" run --config "$cfg" >"$so" 2>"$so.err" </dev/null &
    CHILD=$!
    local pid=$CHILD ok=1 why=""
    if ! wait_lines "$pid" "$so" 1 '^sluice: ready' "$START_TIMEOUT"; then
        why="sluice did not start (see $so.err)"; ok=0
    fi
    sleep 1
    stop_process "$pid"
    local rc=$STOP_RC packets=$((64 * k)) headers=0
    # fullnat-proxy: a header segment of sluice's own ahead of each flow's
    # first data segment (its ACK, which would carry it, is not in the pcap).
    [[ $mode == fullnat-proxy ]] && headers=64
    counter() { awk -v n="$1" '$1 == n {print $2}' "$so"; }
    if ((ok)); then
        local in_pkts drops
        in_pkts=$(counter in_pkts)
        drops=$(awk '$1 ~ /^drop_/ {s += $2} END {print s + 0}' "$so")
        local dump
        dump=$(tcpdump -nvv -r "$out" ip 2>/dev/null || true)
        local ip_out bad dst_ok src_ok
        ip_out=$(grep -c -E '^ +[0-9.]+ > [0-9.]+: ' <<<"$dump" || true)
        bad=$(grep -c -E 'incorrect|bad cksum|bad udp cksum' <<<"$dump" || true)
        dst_ok=$(grep -c -E '^ +[0-9.]+ > 10\.2\.0\.[1-8]\.8080: ' <<<"$dump" || true)
        local proxy_headers
        proxy_headers=$(grep -c -E ', length 28(: .*)?$' <<<"$dump" || true)
        if [[ $mode == fullnat* ]]; then
            src_ok=$(grep -c -E '^ +10\.3\.0\.[0-9]+\.[0-9]+ > ' <<<"$dump" || true)
        else
            src_ok=$(grep -c -E '^ +172\.(1[6-9]|2[0-9]|3[01])\.[0-9]+\.[0-9]+\.[0-9]+ > ' <<<"$dump" || true)
        fi
        if [[ $rc != 0 ]]; then why="sluice exited with status $rc"; ok=0
        elif [[ ${in_pkts:-0} != "$packets" ]]; then why="in_pkts=${in_pkts:-?}, expected $packets"; ok=0
        elif ((drops != 0)); then why="drop counters moved by $drops (see $so)"; ok=0
        elif ((ip_out != packets + headers)); then why="$ip_out IPv4 packets out of $packets in (+ $headers headers)"; ok=0
        elif ((bad != 0)); then why="$bad packets with a bad checksum"; ok=0
        elif ((proxy_headers != headers)); then why="$proxy_headers PROXY header segments, expected $headers"; ok=0
        elif ((dst_ok != packets + headers || src_ok != packets + headers)); then
            why="addresses not translated as expected ($dst_ok/$((packets + headers)) to a real, $src_ok from the right source)"; ok=0
        fi
    fi
    if ((ok)); then
        local extra=""
        ((headers)) && extra=" and $headers PROXY header segments"
        log "translation check $mode $proto: ok ($packets packets translated$extra, checksums valid, no drops)"
    else
        log "warning: translation check $mode $proto FAILED: $why"
    fi
    CHECK_OK[$mode-$proto]=$ok
}

for mode in "${MODES[@]}"; do
    for proto in tcp udp; do
        mode_fits "$mode" "$proto" || continue
        need=0
        for c in "${CASES[@]}"; do
            read -r name p _ <<<"$c"
            mode_fits "$mode" "$name" || continue
            [[ $p == "$proto" && ( -z $ONLY || $mode-$name =~ $ONLY ) ]] && need=1
        done
        ((need)) && check_translation "$mode" "$proto"
    done
done

# ---- the timed runs ----
TSC_MHZ=""
# testpmd on pcap $2 with $3 mbufs; sets T_PPS T_LO T_HI (packets/s),
# T_CPP (cycles per packet) and T_WAIT (% of the time the worker was preempted).
run_testpmd() {
    local name=$1 pcap=$2 mbufs=$3 out=$RUN_LOG/testpmd-$1.out
    local mem=()
    mapfile -t mem < <(eal_mem "$mbufs")
    local queues=()
    ((WORKERS > 1)) && queues=(--nb-cores="$WORKERS" --rxq="$WORKERS" --txq="$WORKERS")
    dpdk-testpmd "${LCORE_ARGS[@]}" --no-pci "${mem[@]}" --no-shconf \
        --vdev="net_pcap0,rx_pcap=$pcap,infinite_rx=1" -- \
        --forward-mode=5tswap --stats-period 1 --total-num-mbufs="$mbufs" \
        "${queues[@]}" --record-core-cycles >"$out" 2>&1 </dev/null &
    CHILD=$!
    local pid=$CHILD
    # The first periodic line has no previous reading (0 pps): skip it too.
    T_PPS=0 T_LO=0 T_HI=0 T_CPP=0 T_WAIT=0
    if ! wait_lines "$pid" "$out" $((1 + WARMUP)) 'Rx-pps:' "$START_TIMEOUT"; then
        stop_process "$pid"
        log "warning: testpmd did not run (see $out)"
        return
    fi
    local w0 t0
    w0=$(worker_wait_ns "$pid"); t0=$(date +%s%N)
    wait_lines "$pid" "$out" $((1 + WARMUP + MEASURE)) 'Rx-pps:' $((MEASURE + 30)) || true
    local w1 t1
    w1=$(worker_wait_ns "$pid"); t1=$(date +%s%N)
    stop_process "$pid"
    local rx
    rx=$(grep -E 'Rx-pps:' "$out" | awk -v a=$((1 + WARMUP)) -v b=$((1 + WARMUP + MEASURE)) \
        'NR > a && NR <= b {print $2}' | stats_of)
    local mhz
    mhz=$(grep -oE 'at [0-9]+ MHz Clock' "$out" | awk '{print $2}' | tail -1)
    [[ -n $mhz ]] && TSC_MHZ=$mhz
    read -r T_PPS T_LO T_HI _ <<<"$rx"
    if [[ -n $mhz ]] && ((T_PPS > 0)); then
        # Every forwarding core polls all the time: all their cycles count.
        T_CPP=$(awk -v m="$mhz" -v p="$T_PPS" -v n="$WORKERS" 'BEGIN {printf "%.1f", n * m * 1e6 / p}')
    fi
    T_WAIT=$(wait_pct $((w1 - w0)) $((t1 - t0)))
}

# Sessions per worker (max_sessions) for $1 flows: each worker owns about
# 1/WORKERS of them.
sessions_per_worker() { echo $(((($1 + $1 / 8) / WORKERS) + 1024)); }

# sluice on the same pcap; sets S_PPS S_LO S_HI (packets/s), S_CPP (worker
# cycles per packet), S_SESSIONS, S_TXRX (tx/rx), S_RSS (RssAnon kB), S_WAIT,
# S_HANDOFF (handed-off packets per received packet), S_VALID (true/false)
# and S_WHY (what made it invalid, or a note).
run_sluice() { # case mode proto pcap mbufs flows [changes-per-second]
    local case=$1 mode=$2 proto=$3 pcap=$4 mbufs=$5 flows=$6 changes=${7:-0}
    local cfg=$RUN_LOG/sluice-$case.toml out=$RUN_LOG/sluice-$case.out
    local max_sessions
    max_sessions=$(sessions_per_worker "$flows")
    write_config "$mode" "$proto" "$pcap,infinite_rx=1" "$mbufs" "$max_sessions" "$cfg" \
        "$(toml_items "${LCORE_ARGS[@]}")" "$BENCH_OWNER_KEY"
    local expect_sessions=$flows
    if [[ $case == *-syn-* ]]; then
        # The flood case: the SYN proxy answers every SYN, and keeps nothing.
        sed -i 's/^synproxy = false$/synproxy = true/' "$cfg"
        expect_sessions=0
    fi
    rm -f "$out"
    "${IN_BENCH_NS[@]}" "$SLUICE" run --config "$cfg" --stats 1 >"$out" 2>"$out.err" </dev/null &
    CHILD=$!
    local pid=$CHILD
    S_PPS=0 S_LO=0 S_HI=0 S_CPP=0 S_SESSIONS=0 S_TXRX=0 S_RSS=0 S_WAIT=0 S_HANDOFF=0
    S_VALID=false S_WHY="sluice did not run"
    if ! wait_lines "$pid" "$out" $((WARMUP + 1)) '^stats: ' "$START_TIMEOUT"; then
        stop_process "$pid"
        log "warning: sluice did not run (status $STOP_RC; see $out.err)"
        return
    fi
    local w0 t0 rss changer=""
    if ((changes > 0)); then
        # On the main lcore's cpu, like any control client: the worker's
        # cpu measures the swaps, not the client. fullnat-proxy's reals
        # are FULLNAT reals.
        taskset -c "$MAIN_CORE" python3 "$ROOT/perf/changes.py" "$RUN_LOG/sluice.sock" \
            "$changes" "$proto" "${mode%-proxy}" >"$out.changes" 2>&1 &
        changer=$!
    fi
    w0=$(worker_wait_ns "$pid"); t0=$(date +%s%N)
    # Heap of the process once every session exists (the mbufs are in
    # hugepages, which RSS does not count).
    rss=$(awk '/^RssAnon:/ {print $2}' /proc/"$pid"/status 2>/dev/null || echo 0)
    wait_lines "$pid" "$out" $((WARMUP + MEASURE)) '^stats: ' $((MEASURE + 30)) || true
    local w1 t1
    w1=$(worker_wait_ns "$pid"); t1=$(date +%s%N)
    S_CHANGES=""
    if [[ -n $changer ]]; then
        kill -TERM "$changer" 2>/dev/null || true
        wait "$changer" 2>/dev/null || true
        S_CHANGES=$(grep -m1 '^changes=' "$out.changes" || echo "changes=? (see $out.changes)")
    fi
    stop_process "$pid"
    local rc=$STOP_RC window
    window=$(grep -E '^stats: ' "$out" | awk -v a="$WARMUP" -v b=$((WARMUP + MEASURE)) 'NR > a && NR <= b')
    field() { sed -nE "s/.* $1=([0-9.]+).*/\1/p" <<<"$window"; }
    local rx tx cpp sessions handoff
    rx=$(field rx_pps | stats_of)
    tx=$(field tx_pps | stats_of)
    handoff=$(field handoffs_per_s | stats_of)
    cpp=$(field cycles_per_pkt | awk '{s += $1; n++} END {printf "%.1f", (n ? s / n : 0)}')
    sessions=$(field sessions | tail -1)
    read -r mean lo hi n <<<"$rx"
    read -r txmean _ <<<"$tx"
    read -r hmean _ <<<"$handoff"
    local ratio
    ratio=$(awk -v t="$txmean" -v r="$mean" 'BEGIN {printf "%.4f", (r > 0 ? t / r : 0)}')
    S_HANDOFF=$(awk -v h="$hmean" -v r="$mean" 'BEGIN {printf "%.4f", (r > 0 ? h / r : 0)}')
    local valid=true why=""
    if ((n < MEASURE)); then valid=false; why="only $n of $MEASURE samples"
    elif ((mean == 0)); then valid=false; why="no packets"
    elif awk -v x="$ratio" 'BEGIN {exit !(x < 0.99)}'; then
        valid=false; why="tx/rx=$ratio: sluice dropped packets"
    elif [[ ${sessions:-0} != "$expect_sessions" ]]; then
        valid=false; why="sessions=${sessions:-?}, expected $expect_sessions"
    elif [[ ${CHECK_OK[$mode-$proto]:-0} != 1 ]]; then
        valid=false; why="translation check failed"
    fi
    # The exit counters, when sluice prints them, must agree.
    if grep -q '^sluice counters:' "$out"; then
        local rxp inp drops
        rxp=$(awk '$1 == "rx_packets" {print $2}' "$out")
        inp=$(awk '$1 == "in_pkts" {print $2}' "$out")
        if [[ $case == *-syn-* ]]; then
            # What counts there is a cookie SYN-ACK for every SYN.
            inp=$(awk '$1 == "synproxy_cookies_sent" {print $2}' "$out")
        fi
        drops=$(awk '$1 ~ /^drop_/ {s += $2} END {print s + 0}' "$out")
        if awk -v i="$inp" -v r="$rxp" -v d="$drops" 'BEGIN {exit !(r == 0 || i < 0.99 * r || d > 0.01 * r)}'; then
            valid=false; why="${why:+$why; }counters: rx_packets=$rxp in_pkts=$inp drops=$drops"
        fi
        # A packet handed to a worker that does not own it is dropped.
        local misses
        misses=$(awk '$1 == "steer_misses" {print $2}' "$out")
        if ((${misses:-0} > 0)); then
            valid=false; why="${why:+$why; }steer_misses=$misses"
        fi
    elif [[ $rc != 0 ]]; then
        why="${why:+$why; }exit status $rc before printing counters"
    fi
    S_PPS=$mean S_LO=$lo S_HI=$hi S_CPP=$cpp S_SESSIONS=${sessions:-0} S_TXRX=$ratio
    if [[ -n $BENCH_OWNER_KEY ]] && awk -v h="$S_HANDOFF" 'BEGIN {exit !(h > 0.001)}'; then
        # Split by owner, nothing should need the ring.
        why="${why:+$why; }handoffs/rx=$S_HANDOFF with the flows split by owner"
    fi
    S_RSS=${rss:-0} S_VALID=$valid S_WHY=$why
    S_WAIT=$(wait_pct $((w1 - w0)) $((t1 - t0)))
}

mpps() { awk -v p="$1" 'BEGIN {printf "%.2f", p / 1e6}'; }

# One row of the table from: case, testpmd Mpps, sluice Mpps, ratio,
# cycles/pkt, sessions, wait%T, wait%S, handoff%, valid (and notes); the
# handoff column only with --workers.
row() {
    if ((WORKERS > 1)); then
        printf '%-22s %9s %9s %7s %8s %9s %6s %6s %8s %s\n' "${@:1:9}" "${*:10}"
    else
        printf '%-22s %9s %9s %7s %8s %9s %6s %6s %s\n' "${@:1:8}" "${*:10}"
    fi
}
pct() { awk -v x="$1" 'BEGIN {printf "%.1f", 100 * x}'; }
# JSON fields of the --workers mode, for the line of a case whose sluice
# handed off $1 of its packets.
workers_json() {
    ((WORKERS > 1)) || return 0
    printf ',"workers":%s,"split":"%s","handoffs_per_rx":%s,"oversubscribed":%s' "$WORKERS" "$SPLIT" "$1" \
        "$( ((OVERSUBSCRIBED)) && echo true || echo false)"
}

ROWS=()
JSONS=()
declare -A SLUICE_PPS RSS_KB MAXS
started=$(date +%s)
for c in "${CASES[@]}"; do
    read -r name proto flows k <<<"$c"
    pcap=$(pcap_of "$name")
    packets=$((flows * k))
    mbufs=$(mbufs_of "$packets")
    for mode in "${MODES[@]}"; do
        case=$mode-$name
        mode_fits "$mode" "$name" || continue
        [[ -n $ONLY && ! $case =~ $ONLY ]] && continue
        best=""
        for attempt in $(seq 0 "$RETRIES"); do
            attempt_start=$(date +%s)
            wait_quiet || true
            log "$case: $flows flows x $k packets, $mbufs mbufs: testpmd ..."
            run_testpmd "$case" "$pcap" "$mbufs"
            log "$case: testpmd $(mpps "$T_PPS") Mpps ($(mpps "$T_LO")..$(mpps "$T_HI")); sluice ..."
            wait_quiet || true
            run_sluice "$case" "$mode" "$proto" "$pcap" "$mbufs" "$flows"
            worst=$(awk -v a="$T_WAIT" -v b="$S_WAIT" 'BEGIN {print (a > b ? a : b)}')
            if [[ -z $best ]] || awk -v w="$worst" -v b="$best" 'BEGIN {exit !(w < b)}'; then
                best=$worst
                t_pps=$T_PPS t_lo=$T_LO t_hi=$T_HI t_cpp=$T_CPP t_cont=$T_WAIT
                s_pps=$S_PPS s_lo=$S_LO s_hi=$S_HI s_cpp=$S_CPP s_sess=$S_SESSIONS s_txrx=$S_TXRX
                s_rss=$S_RSS s_cont=$S_WAIT s_hand=$S_HANDOFF valid=$S_VALID why=$S_WHY
            fi
            awk -v w="$worst" -v m="$MAX_WAIT_PCT" 'BEGIN {exit !(w <= m)}' && break
            ((attempt < RETRIES && EXTRA < WAIT_BUDGET)) || break
            log "$case: the worker was preempted ${worst}% of the time: again"
            EXTRA=$((EXTRA + $(date +%s) - attempt_start))
        done
        log "$case: sluice $(mpps "$s_pps") Mpps ($(mpps "$s_lo")..$(mpps "$s_hi")), $s_cpp cycles/pkt," \
            "$s_sess sessions, tx/rx $s_txrx${why:+ -- $why}"
        [[ $valid == true ]] || log "warning: $case is INVALID: $why"
        if awk -v c="$best" -v m="$MAX_WAIT_PCT" 'BEGIN {exit !(c > m)}'; then
            log "warning: $case: the worker was preempted ${best}% of the time (other load on cpu $WORKER_CPU_LIST): figures are low and noisy"
            why="${why:+$why; }worker preempted ${best}% of the time"
        fi
        ratio=$(awk -v s="$s_pps" -v t="$t_pps" 'BEGIN {printf "%.3f", (t > 0 ? s / t : 0)}')
        SLUICE_PPS[$case]=$s_pps
        RSS_KB[$case]=$s_rss
        MAXS[$case]=$((WORKERS * $(sessions_per_worker "$flows")))
        ROWS+=("$(row "$case" "$(mpps "$t_pps")" "$(mpps "$s_pps")" "$ratio" "$s_cpp" "$s_sess" \
            "$t_cont" "$s_cont" "$(pct "$s_hand")" "$valid")")
        if ((CHANGES > 0)); then
            # The same case again while the configuration changes, beside
            # the same testpmd figure.
            wait_quiet || true
            log "$case: sluice again with $CHANGES changes/s ..."
            run_sluice "$case-chg" "$mode" "$proto" "$pcap" "$mbufs" "$flows" "$CHANGES"
            c_ratio=$(awk -v s="$S_PPS" -v t="$t_pps" 'BEGIN {printf "%.3f", (t > 0 ? s / t : 0)}')
            log "$case+chg: sluice $(mpps "$S_PPS") Mpps, $S_CPP cycles/pkt, $S_CHANGES${S_WHY:+ -- $S_WHY}"
            ROWS+=("$(row "$case+chg" "$(mpps "$t_pps")" "$(mpps "$S_PPS")" "$c_ratio" "$S_CPP" \
                "$S_SESSIONS" "$t_cont" "$S_WAIT" "$(pct "$S_HANDOFF")" "$S_VALID $S_CHANGES")")
            JSONS+=("$(printf '{"case":"%s+chg","changes_per_s":%s,"testpmd_mpps":%s,"sluice_mpps":%s,"ratio":%s,"cycles_per_pkt":%s,"sessions":%s,"valid":%s,"applied":"%s"%s%s}' \
                "$case" "$CHANGES" "$(mpps "$t_pps")" "$(mpps "$S_PPS")" "$c_ratio" "$S_CPP" "$S_SESSIONS" "$S_VALID" \
                "$S_CHANGES" "$(workers_json "$S_HANDOFF")" "${S_WHY:+,\"note\":\"$S_WHY\"}")")
        fi
        JSONS+=("$(printf '{"case":"%s","testpmd_mpps":%s,"sluice_mpps":%s,"ratio":%s,"cycles_per_pkt":%s,"sessions":%s,"valid":%s,"testpmd_cycles_per_pkt":%s,"flows":%s,"packets_per_flow":%s,"testpmd_mpps_min":%s,"testpmd_mpps_max":%s,"sluice_mpps_min":%s,"sluice_mpps_max":%s,"tx_rx":%s,"rss_anon_mb":%s,"memory":"%s","warmup_s":%s,"measure_s":%s,"worker_preempted_pct":%s%s%s}' \
            "$case" "$(mpps "$t_pps")" "$(mpps "$s_pps")" "$ratio" "$s_cpp" "$s_sess" "$valid" \
            "$t_cpp" "$flows" "$k" "$(mpps "$t_lo")" "$(mpps "$t_hi")" "$(mpps "$s_lo")" "$(mpps "$s_hi")" "$s_txrx" \
            "$((s_rss / 1024))" "$MEM_MODE" "$WARMUP" "$MEASURE" "$best" \
            "$(workers_json "$s_hand")" "${why:+,\"note\":\"$why\"}")")
    done
done

echo
if ((WORKERS == 1)); then
    echo "sluice beside dpdk-testpmd (5tswap), one worker on lcore $WORKER_CORE, 64-byte frames from net_pcap"
else
    echo "sluice beside dpdk-testpmd (5tswap), $WORKERS workers / forwarding cores (lcores ${LCORE_ARGS[1]}," \
        "main lcore 0), one net_pcap rx queue each, flows split $SPLIT" \
        "($([[ $SPLIT == owner ]] && echo "by sluice's owner key: no handoff expected" || echo "round robin, blind to owners")), 64-byte frames"
    if ((OVERSUBSCRIBED)); then
        echo "OVERSUBSCRIBED: $WORKERS workers and the main lcore on ${#CPUS[@]} cpus (--allow-oversubscribe):" \
            "a functional test of the N-worker path; the rates mean nothing"
    fi
fi
echo "($(nproc) cpus, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), TSC ${TSC_MHZ:-?} MHz," \
    "memory: $MEM_MODE, warm-up ${WARMUP}s, mean of ${MEASURE} 1-s samples, $(date -u +%FT%TZ))"
row case "testpmd" "sluice" ratio "cyc/pkt" sessions "wait%T" "wait%S" "handoff%" valid
row "" "Mpps" "Mpps" "" "(sluice)" "" "" "" "" ""
printf '%s\n' "${ROWS[@]}"
if ((WORKERS == 1)); then
    echo "(wait%: share of the measurement the worker thread was runnable but preempted, testpmd/sluice)"
else
    echo "(wait%: share of the measurement the worker threads were runnable but preempted, their mean, testpmd/sluice;" \
        "handoff%: packets sluice handed from the receiving worker to the owner, per packet received;" \
        "cyc/pkt: summed over the workers)"
fi
for mode in "${MODES[@]}"; do
    small=${SLUICE_PPS[$mode-tcp-1k]:-}
    big=${SLUICE_PPS[$mode-tcp-1m]:-}
    if [[ -n $small && -n $big ]] && ((small > 0)); then
        echo "$mode: 1M-session rate / 1K-session rate = $(awk -v b="$big" -v s="$small" 'BEGIN {printf "%.3f", b / s}')"
    fi
    rs=${RSS_KB[$mode-tcp-1k]:-}
    rb=${RSS_KB[$mode-tcp-1m]:-}
    if [[ $MEM_MODE == hugepages && -n $rs && -n $rb ]] && ((rb > rs)); then
        echo "$mode: heap per session (RssAnon 1M case - 1K case) / (max_sessions difference) =" \
            "$(awk -v b="$rb" -v s="$rs" -v n=$((MAXS[$mode-tcp-1m] - MAXS[$mode-tcp-1k])) \
                'BEGIN {printf "%.0f", (b - s) * 1024 / n}') bytes"
    fi
done
if grep -qs 'exit status 139' <<<"${JSONS[*]}"; then
    echo "note: sluice crashed (SIGSEGV) at shutdown after the measurement, before printing its counters; see perf/RESULTS.md"
fi
echo "logs: $RUN_LOG; took $(( $(date +%s) - started )) s"
printf '%s\n' "${JSONS[@]}"
