#!/usr/bin/env bash
# Closed-loop new-connection benchmark: what one whole TCP connection costs sluice's worker.
#
# --transport memif (the default): no kernel on the path. Each side is a net_memif pair, a
# shared-memory ring between the two processes; sluice is the memif server of both sockets,
# connbench the client; no namespaces, no veths, sluice's kernel twins off.
#
#   connbench  net_memif0 (client) ==== /run/sluice-NAME/wan.sock ==== net_memif0 (server)  sluice
#              net_memif1 (client) ==== /run/sluice-NAME/lan.sock ==== net_memif1 (server)
#
# --zero-copy (memif only): the roles swap and sluice is a zero-copy memif client: connbench
# reads and writes sluice's own mbufs in the shared memory, so sluice's worker copies nothing,
# as with a NIC, whose DMA does that part. sluice then needs hugepages (512 MB, one file:
# --single-file-segments, which memif shares with connbench), and connbench starts first (a
# memif client needs its server's socket; connbench waits for both links before it sends).
#
# --transport af_packet: the same over veth pairs in two namespaces, read and written through
# DPDK's net_af_packet, so every frame crosses the kernel (the veth hop, the packet sockets):
#
#   NAME-gen   gc ---- veth ---- lb-wan   NAME-lb      connbench (DPDK, af_packet on gc, gs)
#              gs ---- veth ---- lb-lan                sluice    (DPDK, af_packet on lb-wan, lb-lan)
#
# connbench emulates 200 clients (10.10.0.2..=.202 but the VIP .100) on its port 0 and 8 real
# servers (192.168.10.2..=.9:8080) on its port 1, keeps --window connections in flight through
# the VIP 10.10.0.100:80 (SYN / SYN-ACK / ACK + request / response + FIN / FIN / ACK: 3 segments
# each way, every one checksum-verified) and counts completed connections per second. It answers
# ARP for every address it emulates, so sluice resolves them as usual. sluice's own counters
# give busy_cycles (TSC cycles of worker loop iterations that had packets) and conns
# (sessions created): busy_cycles / conns is the worker's cost of one whole connection. It
# does not depend on who the bottleneck is (though bursts are smaller when sluice is not the
# bottleneck), but on af_packet it includes the kernel work each tx burst's sendto() does (the
# veth hop and the delivery into the peer's packet socket): the profile split (perf, when
# installed) says how much of it is sluice's own code. On memif the rx and tx copies between
# the shared rings and the mbufs are all user space (the PMD), and there are no system calls;
# with --zero-copy they are connbench's.
# The service runs with synproxy = false (the plain path: "auto" would answer the SYNs with
# cookies above 20,000 new connections a second) and every ARP accepted (arp_rate_limit = 0:
# sluice resolves the 208 emulated addresses at once during the warm-up).
#
# CPUs (2-core machine): sluice's worker polls CPU 1 (EAL -l 0-1; its main lcore sleeps on
# CPU 0); connbench's poll loop runs on CPU 0 (--lcores=0@0,1@0).
#
# Usage: perf/connbench.sh [--quick] [--transport memif|af_packet] [--zero-copy]
#                          [--mode nat|fullnat|both] [--window W] [--duration S]
#                          [--max-sessions N] [--no-kernel-drop] [--no-profile] [--keep-logs]
#   --quick           5 s measured instead of 20 s (10 s on memif), 1 s warm-up instead of 2
#   --transport       memif (default) or af_packet
#   --zero-copy       memif only: sluice as the zero-copy memif client (see above)
#   --mode            default both (nat, then fullnat)
#   --max-sessions    sluice's [dataplane] max_sessions (every connection stays 120 s in
#                     TIME_WAIT, so a run holds all it opened; default 16777216 on memif, where
#                     a worker opens several hundred thousand a second, 4194304 on af_packet)
#   --no-kernel-drop  af_packet only: let the kernel's IPv4 stack see the veth traffic too (by
#                     default an nftables netdev ingress chain drops every frame on the four
#                     veths after the packet sockets got their copy, so no namespace's kernel
#                     routes, ARPs or demuxes frames that are not its business)
#   --no-profile      skip the perf profile of sluice's worker thread
# Output: per mode, the figures, the profile's top symbols and one JSON line starting with
# {"tool":"connbench.sh".
# Logs: /tmp/connbench.NAME/ (removed at the end unless --keep-logs or something failed).
# Exit status: 0 when every mode ran and passed its checks.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/perf-c-target}
SLUICE=$TARGET_DIR/release/sluice
CONNBENCH=$TARGET_DIR/release/connbench
TARGET_CYCLES=2600

QUICK=0
TRANSPORT=memif
ZERO_COPY=0
MODES=(nat fullnat)
WINDOW=256
DURATION=
MAX_SESSIONS=
KERNEL_DROP=1
PROFILE=1
KEEP_LOGS=0
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
        --transport)
            shift
            case ${1:-} in
                memif | af_packet) TRANSPORT=$1 ;;
                *) echo "connbench.sh: --transport memif|af_packet" >&2; exit 2 ;;
            esac
            ;;
        --mode)
            shift
            case ${1:-} in
                nat | fullnat) MODES=("$1") ;;
                both) MODES=(nat fullnat) ;;
                *) echo "connbench.sh: --mode nat|fullnat|both" >&2; exit 2 ;;
            esac
            ;;
        --window) shift; WINDOW=${1:?--window W} ;;
        --duration) shift; DURATION=${1:?--duration S} ;;
        --max-sessions) shift; MAX_SESSIONS=${1:?--max-sessions N} ;;
        --no-kernel-drop) KERNEL_DROP=0 ;;
        --zero-copy) ZERO_COPY=1 ;;
        --no-profile) PROFILE=0 ;;
        --keep-logs) KEEP_LOGS=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "connbench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
# On memif a quiet worker completes ~780k connections a second, and every one holds its
# tuple for 120 s (TIME_WAIT): 20 s would wrap connbench's 200 clients x 64K ports (12.8 M
# tuples) and, in FULLNAT, empty the local port pools; 10 s (plus the warm-up) stays clear.
if [[ -z $DURATION ]]; then
    if ((QUICK)); then DURATION=5; elif [[ $TRANSPORT == memif ]]; then DURATION=10; else DURATION=20; fi
fi
if [[ -z $MAX_SESSIONS ]]; then
    if [[ $TRANSPORT == memif ]]; then MAX_SESSIONS=16777216; else MAX_SESSIONS=4194304; fi
fi
[[ $TRANSPORT == af_packet ]] || KERNEL_DROP=0
if ((ZERO_COPY)) && [[ $TRANSPORT != memif ]]; then
    echo "connbench.sh: --zero-copy is for --transport memif" >&2; exit 2
fi
WARMUP=$((QUICK ? 1 : 2))

log() { echo "connbench.sh: $*" >&2; }

NAME=cb$$
STATE=/tmp/connbench.$NAME
NS_LB=$NAME-lb
NS_GEN=$NAME-gen
# memif's sockets and sluice's control socket (on af_packet too: a second sluice on the
# machine, say a test, keeps its own).
RUN_DIR=/run/sluice-$NAME
# The memif ports' MACs (af_packet ports have their veths' MACs).
LB_WAN_MAC=02:5c:00:00:00:01
LB_LAN_MAC=02:5c:00:00:00:02
GEN_CLIENT_MAC=02:cb:00:00:00:01
GEN_SERVER_MAC=02:cb:00:00:00:02
PIDS=()
FAILED=0

cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill -INT "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
    done
    PIDS=()
    topology_down
}
finish() {
    local rc=$?
    cleanup
    if ((KEEP_LOGS == 0 && FAILED == 0 && rc == 0)); then
        rm -rf "$STATE"
    elif [[ -d $STATE ]]; then
        log "logs kept in $STATE"
    fi
}
trap finish EXIT
trap 'exit 130' INT TERM

"$ROOT/scripts/setup-host.sh"
if ((KERNEL_DROP)) && ! command -v nft >/dev/null; then
    log "installing nftables (for the netdev ingress drop; --no-kernel-drop to do without)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends nftables >/dev/null
fi
if ((PROFILE)) && ! command -v perf >/dev/null; then
    log "perf not installed (apt-get install linux-perf): no profile split"
    PROFILE=0
fi
(cd "$ROOT" && CARGO_TARGET_DIR=$TARGET_DIR cargo build --release -q -p sluice -p sluice-perf)
mkdir -p "$STATE"

# Busy-polling neighbours (another benchmark) would make the figures meaningless.
busy=$(ps -eo pcpu=,pid=,comm= | awk '$1 > 30 {print $3 "(" $2 ")"}' | paste -sd' ' || true)
[[ -z $busy ]] || log "WARNING: the machine is not quiet, busy processes: $busy"

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
# Runs a command in sluice's (lb) or connbench's (gen) namespace on af_packet, as it is on
# memif. It execs: call it only where bash forks anyway (with & or in a pipeline), so that $!
# of a backgrounded call is the program itself (for the SIGINT).
on_side() {
    local side=$1; shift
    if [[ $TRANSPORT == af_packet ]]; then
        local ns=$NS_LB
        [[ $side == lb ]] || ns=$NS_GEN
        exec ip netns exec "$ns" "$@"
    fi
    exec "$@"
}

topology_up() {
    mkdir -m 0700 "$RUN_DIR"
    [[ $TRANSPORT == af_packet ]] || return 0
    # The two namespaces and the two veth pairs: IPv6 off, no IP addresses, offloads off.
    ip netns add "$NS_LB"
    ip netns add "$NS_GEN"
    in_ns "$NS_LB" ip link add lb-wan type veth peer name gc netns "$NS_GEN"
    in_ns "$NS_LB" ip link add lb-lan type veth peer name gs netns "$NS_GEN"
    local ns ifs
    for pair in "$NS_LB lb-wan lb-lan" "$NS_GEN gc gs"; do
        read -r ns ifs <<<"$pair"
        local chains="" ifname
        for ifname in $ifs; do
            in_ns "$ns" sysctl -q -w "net.ipv6.conf.$ifname.disable_ipv6=1" >/dev/null
            in_ns "$ns" ethtool -K "$ifname" tx off tso off gso off gro off >/dev/null 2>&1 || true
            in_ns "$ns" ip link set "$ifname" up
            chains+="chain ${ifname/-/_} { type filter hook ingress device \"$ifname\" priority 0; policy drop; }; "
        done
        if ((KERNEL_DROP)); then
            # Packet sockets get their copy before the netdev ingress hook runs.
            in_ns "$ns" nft "add table netdev connbench { $chains}"
        fi
    done
}

topology_down() {
    if [[ $TRANSPORT == af_packet ]]; then
        ip netns del "$NS_LB" 2>/dev/null || true
        ip netns del "$NS_GEN" 2>/dev/null || true
    fi
    rm -rf "$RUN_DIR"
    # EAL's runtime directories (made even with --no-shconf) and, with --zero-copy,
    # sluice's hugepage file (EAL keeps the files of --single-file-segments).
    rm -rf /run/dpdk/"$NAME"-lb /run/dpdk/"$NAME"-gen
    rm -f /dev/hugepages/"$NAME"-lbmap_*
}

# A memif vdev: server (sluice) or client (connbench) end of socket $RUN_DIR/$3.sock.
memif_vdev() {
    local index=$1 role=$2 sock=$3 mac=$4 extra=${5:-}
    echo "--vdev=net_memif$index,role=$role,id=0,socket=$RUN_DIR/$sock.sock,socket-abstract=no,mac=$mac$extra"
}

# sluice's EAL arguments, as a TOML array's items.
sluice_eal() {
    if ((ZERO_COPY)); then
        printf '"-l", "0-1", "--no-pci", "-m", "512", "--single-file-segments", "--no-shconf", "--file-prefix=%s-lb",\n' "$NAME"
        printf '       "%s",\n       "%s"' "$(memif_vdev 0 client wan $LB_WAN_MAC ,zero-copy=yes)" \
            "$(memif_vdev 1 client lan $LB_LAN_MAC ,zero-copy=yes)"
        return
    fi
    printf '"-l", "0-1", "--no-pci", "--no-huge", "-m", "1024", "--no-shconf", "--file-prefix=%s-lb",\n' "$NAME"
    if [[ $TRANSPORT == memif ]]; then
        printf '       "%s",\n       "%s"' "$(memif_vdev 0 server wan $LB_WAN_MAC)" \
            "$(memif_vdev 1 server lan $LB_LAN_MAC)"
    else
        printf '       "--vdev=net_af_packet0,iface=lb-wan", "--vdev=net_af_packet1,iface=lb-lan"'
    fi
}

# connbench's EAL arguments, one a line.
connbench_eal() {
    printf '%s\n' --lcores=0@0,1@0 --no-pci --no-huge -m 256 --no-shconf --file-prefix="$NAME-gen"
    if ((ZERO_COPY)); then
        memif_vdev 0 server wan $GEN_CLIENT_MAC
        memif_vdev 1 server lan $GEN_SERVER_MAC
    elif [[ $TRANSPORT == memif ]]; then
        memif_vdev 0 client wan $GEN_CLIENT_MAC
        memif_vdev 1 client lan $GEN_SERVER_MAC
    else
        printf '%s\n' --vdev=net_af_packet0,iface=gc --vdev=net_af_packet1,iface=gs
    fi
}

sluice_config() {
    local mode=$1 laddrs="" i
    if [[ $mode == fullnat ]]; then
        # Every connection holds its (local address, port) for 120 s (TIME_WAIT), and the 8
        # reals share 8 port buckets by hash (three or more in one are likely), so a bucket
        # needs room for several reals' share of the run: 16 local addresses x 64512 ports
        # on af_packet (~1.5 M connections a run); on memif, where a run opens ten million,
        # 64 (sluice's most per service; 16 ran out after 2.7 M).
        local n=16 list=()
        [[ $TRANSPORT == af_packet ]] || n=64
        for i in $(seq 100 $((100 + n - 1))); do list+=("\"192.168.10.$i\""); done
        laddrs="laddrs = [$(IFS=,; echo "${list[*]}")]"
    fi
    # Twins: on af_packet as sluice runs there by default (they live in its namespace); on
    # memif there is no namespace and no kernel on the path, so none.
    local twins=true
    [[ $TRANSPORT == af_packet ]] || twins=false
    cat <<EOF
[dpdk]
eal = [$(sluice_eal)]

[control]
socket = "$RUN_DIR/sluice.sock"

[dataplane]
max_sessions = $MAX_SESSIONS
syn_recv_budget = $MAX_SESSIONS
arp_rate_limit = 0

[kernel]
twins = $twins

[[interface]]
port = 0
addrs = ["10.10.0.1/24"]

[[interface]]
port = 1
addrs = ["192.168.10.1/24"]

[[service]]
vip = "10.10.0.100:80"
proto = "tcp"
mode = "$mode"
scheduler = "rr"
synproxy = false
$laddrs
EOF
    for i in $(seq 2 9); do
        printf '\n[[service.real]]\naddr = "192.168.10.%s:8080"\n' "$i"
    done
}

# The thread id of sluice's worker.
worker_tid() {
    local t
    for t in /proc/"$1"/task/*; do
        [[ $(cat "$t/comm" 2>/dev/null) == rte-worker-* ]] && { echo "${t##*/}"; return 0; }
    done
    return 0
}

# "wall_ns wait_ns": now, and how long the worker thread has been runnable but not running
# (preempted by another task on its CPU), from schedstat.
worker_sched() {
    local pid=$1 tid=$2 wait=0
    [[ -z $tid ]] || wait=$(awk '{print $2}' "/proc/$pid/task/$tid/schedstat" 2>/dev/null || echo 0)
    echo "$(date +%s%N) ${wait:-0}"
}

# Samples sluice's worker thread for a few seconds of the measured window: from a second
# after connbench says it measures (sluice's start-up, such as the first touch of its session
# table, stays out of it).
start_profile() {
    local pid=$1 dir=$2 tid
    tid=$(worker_tid "$pid")
    [[ -n $tid ]] || { log "no worker thread found in sluice: no profile"; return 0; }
    local secs=$((DURATION > 8 ? 5 : DURATION - 2))
    ((secs > 0)) || return 0
    (
        for _ in $(seq 600); do
            grep -q 'phase=measure' "$dir/connbench.out" 2>/dev/null && break
            sleep 0.1
        done
        sleep 1
        exec perf record -q -F 999 -t "$tid" -o "$dir/perf.data" -- sleep "$secs"
    ) >/dev/null 2>"$dir/perf.err" &
    PROFILE_PID=$!
    PIDS+=("$PROFILE_PID")
}

# Waits up to 30 s for the command after the first three arguments to succeed while process
# $1 runs; if it does not, logs the tail of $2 and fails ($3 names the process).
wait_start() {
    local pid=$1 err=$2 what=$3 waited=0
    shift 3
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null || ((waited > 300)); then
            log "$what did not start:"; tail -20 "$err" >&2
            return 1
        fi
        sleep 0.1; waited=$((waited + 1))
    done
}

# Starts connbench in the background (its pid in CB_PID), output in $1.
start_connbench() {
    local dir=$1 eal
    log "connbench window $WINDOW, warm-up ${WARMUP}s, measuring ${DURATION}s"
    mapfile -t eal < <(connbench_eal)
    (on_side gen timeout -s INT $((DURATION + WARMUP + 90)) "$CONNBENCH" \
        --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP" -- "${eal[@]}" \
        2>"$dir/connbench.err" | tee "$dir/connbench.out" \
        | grep --line-buffered '^connbench: elapsed' >&2) &
    CB_PID=$!
    PIDS+=("$CB_PID")
}

run_mode() {
    local mode=$1
    local dir=$STATE/$mode
    mkdir -p "$dir"
    if [[ $TRANSPORT == memif ]]; then
        log "mode $mode: memif$( ((ZERO_COPY)) && echo ' (sluice the zero-copy client)'), sockets in $RUN_DIR"
    else
        log "mode $mode: af_packet, namespaces $NS_LB, $NS_GEN"
    fi
    topology_up
    sluice_config "$mode" >"$dir/sluice.toml"
    "$SLUICE" check --config "$dir/sluice.toml" >/dev/null

    if ((ZERO_COPY)); then
        # sluice is the memif client: connbench's server sockets must be there first
        # (connbench waits for both links before it sends).
        start_connbench "$dir"
        wait_start "$CB_PID" "$dir/connbench.err" connbench \
            test -S "$RUN_DIR/wan.sock" -a -S "$RUN_DIR/lan.sock" || { FAILED=1; return 1; }
    fi
    on_side lb "$SLUICE" run --config "$dir/sluice.toml" --stats 1 \
        >"$dir/sluice.out" 2>"$dir/sluice.err" &
    local sluice_pid=$!
    PIDS+=("$sluice_pid")
    wait_start "$sluice_pid" "$dir/sluice.err" sluice \
        grep -qs '^sluice: ready' "$dir/sluice.out" || { FAILED=1; return 1; }
    if [[ $TRANSPORT == memif ]] && ((ZERO_COPY == 0)); then
        # A memif client that connects in sluice's first second sometimes gets a link that
        # carries nothing either way (both ends say connected; 2 runs in 8 with
        # max_sessions = 16777216, none in 8 after this wait): wait for the second stats line.
        until (($(grep -c '^stats: ' "$dir/sluice.out") >= 2)); do
            kill -0 "$sluice_pid" 2>/dev/null || { log "sluice exited"; FAILED=1; return 1; }
            sleep 0.1
        done
    fi
    PROFILE_PID=
    ((PROFILE == 0)) || start_profile "$sluice_pid" "$dir"
    # The counters before the load: on memif the announcements sluice made before connbench
    # connected went nowhere (drop_tx_full), which is not what the checks are about.
    "$SLUICE" ctl --socket "$RUN_DIR/sluice.sock" counters >"$dir/counters.before" 2>/dev/null || true
    local tid sched_start
    tid=$(worker_tid "$sluice_pid")
    sched_start=$(worker_sched "$sluice_pid" "$tid")

    local rc=0
    ((ZERO_COPY)) || start_connbench "$dir"
    wait "$CB_PID" || rc=$?
    # (memif's note that it cannot register a multi-process action is --no-shconf's doing.)
    grep -v '^EAL: \|^TELEMETRY\|Failed to register mp action callback' "$dir/connbench.err" >&2 || true
    echo "$sched_start $(worker_sched "$sluice_pid" "$tid")" >"$dir/worker.sched"
    [[ -z $PROFILE_PID ]] || wait "$PROFILE_PID" || true

    kill -INT "$sluice_pid"
    local src=0
    wait "$sluice_pid" || src=$?
    PIDS=()
    topology_down
    if ((rc != 0)) || ! grep -q '^{"tool":"connbench"' "$dir/connbench.out"; then
        log "connbench failed (rc $rc)"
        FAILED=1; return 1
    fi
    if ((src != 0)) || ! grep -q '^sluice counters:' "$dir/sluice.out"; then
        log "sluice exited with status $src:"; tail -5 "$dir/sluice.err" >&2
        FAILED=1; return 1
    fi
    local split=""
    if [[ -s $dir/perf.data ]]; then
        perf report -i "$dir/perf.data" --sort dso --stdio -g none --percent-limit 0 \
            >"$dir/perf.dso.txt" 2>/dev/null || true
        perf report -i "$dir/perf.data" --sort dso,sym --stdio -g none --percent-limit 0.5 \
            >"$dir/perf.sym.txt" 2>/dev/null || true
        split=$dir/perf.dso.txt
    fi
    report "$mode" "$dir" "$split" || FAILED=1
}

# Figures from connbench's JSON line, sluice's counters and stats lines, and the profile.
report() {
    local mode=$1 dir=$2 split=$3
    local cpu_mhz
    cpu_mhz=$(awk -F: '/^cpu MHz/ {gsub(/ /, "", $2); print $2; exit}' /proc/cpuinfo)
    MODE=$mode WINDOW=$WINDOW KERNEL_DROP=$KERNEL_DROP CPU_MHZ=$cpu_mhz TARGET=$TARGET_CYCLES \
        TRANSPORT=$TRANSPORT ZERO_COPY=$ZERO_COPY python3 - "$dir" "$split" <<'EOF'
import json, os, re, statistics, sys

d, split_file = sys.argv[1], sys.argv[2]
transport = os.environ["TRANSPORT"]
zero_copy = os.environ["ZERO_COPY"] == "1"
cb = None
for line in open(f"{d}/connbench.out"):
    if line.startswith('{"tool":"connbench"'):
        cb = json.loads(line)
counters, stats, in_counters = {}, [], False
for line in open(f"{d}/sluice.out"):
    if line.startswith("sluice counters:"):
        in_counters = True
    elif in_counters and line.startswith("  "):
        name, value = line.split()
        counters[name] = int(value)
    elif line.startswith("stats: "):
        stats.append({k: float(v) for k, v in re.findall(r"(\w+)=([0-9.]+)", line)})

# Where the worker's time went, by shared object (perf samples of its thread).
split = {}
if split_file:
    for line in open(split_file):
        m = re.match(r"\s+([0-9.]+)%\s+(\S+)", line)
        if m:
            split[m.group(2)] = float(m.group(1)) / 100

def share(pred):
    return sum(v for k, v in split.items() if pred(k))

# The hottest symbols: (share of the worker's samples, object, symbol).
top = []
if split_file and os.path.exists(f"{d}/perf.sym.txt"):
    for line in open(f"{d}/perf.sym.txt"):
        m = re.match(r"\s+([0-9.]+)%\s+(\S+)\s+\[.\]\s+(.*\S)", line)
        if m:
            top.append((float(m.group(1)) / 100, m.group(2), m.group(3)))

# How long the worker thread was runnable but not running while connbench ran (another task
# on its CPU): busy_cycles are TSC time, so they include it.
preempted = None
try:
    w0, q0, w1, q1 = (int(x) for x in open(f"{d}/worker.sched").read().split())
    if w1 > w0:
        preempted = max(0.0, (q1 - q0) / (w1 - w0))
except (OSError, ValueError):
    pass

hz = cb["tsc_hz"]
mhz = float(os.environ["CPU_MHZ"] or 0)
target = int(os.environ["TARGET"])
conns = counters["conns"]
busy = counters["busy_cycles"]
rx = counters["rx_packets"]
total = cb["total"]
cpc = busy / conns if conns else 0
cpp = busy / rx if rx else 0
# How busy sluice's worker was while connections ran: --stats seconds with most of the peak rate.
peak = max((s.get("conns_per_s", 0) for s in stats), default=0)
loaded = [s for s in stats if peak > 0 and s.get("conns_per_s", 0) > 0.5 * peak]
busy_frac = statistics.median(s["rx_pps"] * s["cycles_per_pkt"] / hz for s in loaded) if loaded else 0
sessions_peak = max((s.get("sessions", 0) for s in stats), default=0)
# Drops while connbench ran (sluice's counters at exit less those before connbench started).
before = {}
if os.path.exists(f"{d}/counters.before"):
    for line in open(f"{d}/counters.before"):
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            before[parts[0]] = int(parts[1])
drops = {k: v - before.get(k, 0) for k, v in counters.items() if k.startswith("drop_") and v - before.get(k, 0)}
kernel = share(lambda k: k.startswith("[kernel"))
own = share(lambda k: k == "sluice")
pmd = share(lambda k: k.startswith("librte_"))
other = max(0.0, 1 - kernel - own - pmd) if split else 0
# busy_cycles leave out idle polling, which is all user space (rx_burst on the mmap'ed rings,
# no syscall): take the idle share out of the user-space samples so the split adds up to
# busy_cycles.
if split and busy_frac > 0:
    kernel_busy = min(1.0, kernel / busy_frac)
    user_busy = 1 - kernel_busy
else:
    kernel_busy = user_busy = 0

# What one worker could do flat out at this cost per connection.
capacity = hz / cpc if cpc else 0

checks = []
opened = total["opened"]
if abs(conns - opened) > max(2, opened // 10000):
    checks.append(f"sluice conns {conns} != connbench opened {opened}")
if cb["failed"] > cb["completed"] // 10000:
    checks.append(f"{cb['failed']} failed connections")
for k in ("bad_checksum", "server_bad_ack", "resets", "tuple_wraps"):
    if total[k]:
        checks.append(f"connbench {k}={total[k]}")
for k in ("drop_session_table_full", "drop_laddr_exhausted", "drop_tx_full"):
    if drops.get(k):
        checks.append(f"sluice {k}={drops[k]}")

mode, window = os.environ["MODE"], int(os.environ["WINDOW"])
print(f"== {mode}: {transport}{' zero-copy' if zero_copy else ''}, window {window}, {cb['duration_s']:.1f} s measured ==")
print(f"  connections/s (connbench)      {cb['conns_per_s']:.0f}   (completed {cb['completed']}, failed {cb['failed']}, {cb['avg_conn_us']:.0f} us per connection on average)")
print(f"  sluice conns counter           {conns}   (connbench opened {opened}: completed {total['completed']}, failed {total['failed']}, in flight at the end {total['in_flight']})")
print(f"  sluice busy_cycles             {busy}   (rx_packets {rx}: {cpp:.0f} cycles/packet)")
print(f"  worker cycles per connection   {cpc:.0f}   (busy_cycles / conns; target <= {target}: {'met' if cpc <= target else 'NOT met'})")
print(f"  connections/s per worker       {capacity:.0f}   (TSC rate / cycles per connection: one worker 100% busy at this cost)")
if split:
    kernel_what = "sendto: af_packet tx, veth, peer's packet socket" if transport == "af_packet" else "interrupts, timer ticks"
    print(f"    of which (perf samples of the worker thread, idle polling taken out)")
    print(f"      kernel ({kernel_what}) {kernel_busy*100:.0f}% = {kernel_busy*cpc:.0f}")
    print(f"      user space (sluice + {transport} PMD + libc) {user_busy*100:.0f}% = {user_busy*cpc:.0f}"
          f"   (raw samples: sluice {own*100:.1f}%, DPDK libs {pmd*100:.1f}%, other {other*100:.1f}%, kernel {kernel*100:.1f}%)")
if top:
    print(f"  profile, top symbols (share of the worker thread's samples, idle polling included):")
    for frac, dso, sym in top[:15]:
        print(f"      {frac*100:5.1f}%  {dso:<24.24} {sym[:90]}")
print(f"  TSC                            {hz/1e6:.1f} MHz (DPDK EAL's rte_get_tsc_hz() in connbench, same host TSC; /proc/cpuinfo says {mhz:.1f} MHz)")
print(f"  sluice worker busy             {busy_frac*100:.0f}% of its core (median of --stats seconds near peak rate); peak sessions {sessions_peak:.0f}")
if preempted is not None:
    note = ""
    if preempted >= 0.01:
        note = (f" (another task ran on its CPU: the cycles above include that time; spread evenly,"
                f" ~{cpc * (1 - preempted):.0f} cycles per connection on the CPU)")
    print(f"  sluice worker preempted        {preempted*100:.1f}% of connbench's run{note}")
print(f"  sluice drops                   {', '.join(f'{k}={v}' for k, v in drops.items()) or 'none'}   (while connbench ran)")
print(f"  checks                         {'; '.join(checks) or 'ok (conns == opened, no failure, checksums and acks right)'}")
out = {
    "tool": "connbench.sh", "transport": transport, "zero_copy": zero_copy, "mode": mode, "window": window,
    "kernel_drop": os.environ["KERNEL_DROP"] == "1",
    "duration_s": cb["duration_s"], "conns_per_s": round(cb["conns_per_s"], 1),
    "completed": cb["completed"], "failed": cb["failed"], "avg_conn_us": cb["avg_conn_us"],
    "sluice_conns": conns, "connbench_opened": opened, "sluice_busy_cycles": busy,
    "sluice_rx_packets": rx, "cycles_per_conn": round(cpc), "cycles_per_pkt": round(cpp),
    "target_cycles_per_conn": target, "worker_conns_per_s": round(capacity), "tsc_hz": hz, "tsc_source": "dpdk-eal", "cpuinfo_mhz": mhz,
    "sluice_busy_fraction": round(busy_frac, 3), "sessions_peak": int(sessions_peak),
    "drops": drops, "checks_ok": not checks,
}
if preempted is not None:
    out["worker_preempted_fraction"] = round(preempted, 4)
    out["cycles_per_conn_on_cpu_est"] = round(cpc * (1 - preempted))
if split:
    out["profile_samples"] = {"kernel": round(kernel, 3), "dpdk": round(pmd, 3), "sluice": round(own, 3), "other": round(other, 3)}
    out["kernel_cycles_per_conn"] = round(kernel_busy * cpc)
    out["user_cycles_per_conn"] = round(user_busy * cpc)
print(json.dumps(out, separators=(",", ":")))
sys.exit(1 if checks else 0)
EOF
}

# A failure to run stops the script (errexit; the EXIT trap tears down); failed checks do
# not. (Not `run_mode || ...`: that would turn errexit off inside it.)
for mode in "${MODES[@]}"; do
    run_mode "$mode"
done
exit $FAILED
