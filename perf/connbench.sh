#!/usr/bin/env bash
# Closed-loop new-connection benchmark: what one whole TCP connection costs sluice's worker.
#
#   NAME-gen   gc ---- veth ---- lb-wan   NAME-lb      connbench (DPDK, af_packet on gc, gs)
#              gs ---- veth ---- lb-lan                sluice    (DPDK, af_packet on lb-wan, lb-lan)
#
# connbench emulates 200 clients (10.10.0.2..=.202 but the VIP .100) on gc and 8 real servers
# (192.168.10.2..=.9:8080) on gs, keeps --window connections in flight through the VIP
# 10.10.0.100:80 (SYN / SYN-ACK / ACK + request / response + FIN / FIN / ACK: 3 segments each
# way, every one checksum-verified) and counts completed connections per second. sluice's own counters
# give busy_cycles (TSC cycles of worker loop iterations that had packets) and conns
# (sessions created): busy_cycles / conns is the worker's cost of one whole connection. It
# does not depend on who the bottleneck is, but on af_packet it includes the kernel work each
# tx burst's sendto() does (the veth hop and the delivery into the peer's packet socket): the
# profile split (perf, when installed) says how much of it is sluice's own code.
#
# CPUs (2-core machine): sluice's worker polls CPU 1 (EAL -l 0-1; its main lcore sleeps on
# CPU 0); connbench's poll loop runs on CPU 0 (--lcores=0@0,1@0).
#
# Usage: perf/connbench.sh [--quick] [--mode nat|fullnat|both] [--window W] [--duration S]
#                          [--max-sessions N] [--no-kernel-drop] [--no-profile] [--keep-logs]
#   --quick           5 s measured instead of 20 s, 1 s warm-up instead of 2
#   --mode            default both (nat, then fullnat)
#   --max-sessions    sluice's [dataplane] max_sessions (default 4194304: every connection
#                     stays 120 s in TIME_WAIT, so a run holds all it opened)
#   --no-kernel-drop  let the kernel's IPv4 stack see the veth traffic too (by default an
#                     nftables netdev ingress chain drops every frame on the four veths after
#                     the packet sockets got their copy, so no namespace's kernel routes,
#                     ARPs or demuxes frames that are not its business)
#   --no-profile      skip the perf profile of sluice's worker thread
# Output: per mode, the figures and one JSON line starting with {"tool":"connbench.sh".
# Logs: /tmp/connbench.NAME/ (removed at the end unless --keep-logs or something failed).
# Exit status: 0 when every mode ran and passed its checks.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET_DIR=${CARGO_TARGET_DIR:-/tmp/perf-c-target}
SLUICE=$TARGET_DIR/release/sluice
CONNBENCH=$TARGET_DIR/release/connbench
TARGET_CYCLES=2600

QUICK=0
MODES=(nat fullnat)
WINDOW=256
DURATION=
MAX_SESSIONS=4194304
KERNEL_DROP=1
PROFILE=1
KEEP_LOGS=0
while (($#)); do
    case $1 in
        --quick) QUICK=1 ;;
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
        --no-profile) PROFILE=0 ;;
        --keep-logs) KEEP_LOGS=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "connbench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
[[ -n $DURATION ]] || DURATION=$((QUICK ? 5 : 20))
WARMUP=$((QUICK ? 1 : 2))

log() { echo "connbench.sh: $*" >&2; }

NAME=cb$$
STATE=/tmp/connbench.$NAME
NS_LB=$NAME-lb
NS_GEN=$NAME-gen
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
    ip netns del "$NS_LB" 2>/dev/null || true
    ip netns del "$NS_GEN" 2>/dev/null || true
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

# The two namespaces and the two veth pairs: IPv6 off, no IP addresses, offloads off.
topology_up() {
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

sluice_config() {
    local mode=$1 laddrs="" i
    if [[ $mode == fullnat ]]; then
        # 16 local addresses x 64512 ports per real-server bucket: far more pairs than one
        # run's connections hold in TIME_WAIT (120 s).
        local list=()
        for i in $(seq 100 115); do list+=("\"192.168.10.$i\""); done
        laddrs="laddrs = [$(IFS=,; echo "${list[*]}")]"
    fi
    cat <<EOF
[dpdk]
eal = ["-l", "0-1", "--no-pci", "--no-huge", "-m", "1024", "--no-shconf", "--file-prefix=$NAME-lb",
       "--vdev=net_af_packet0,iface=lb-wan", "--vdev=net_af_packet1,iface=lb-lan"]

[dataplane]
max_sessions = $MAX_SESSIONS

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
$laddrs
EOF
    for i in $(seq 2 9); do
        printf '\n[[service.real]]\naddr = "192.168.10.%s:8080"\n' "$i"
    done
}

# Samples sluice's worker thread for a few seconds of the measured window.
start_profile() {
    local pid=$1 dir=$2 tid="" t
    for t in /proc/"$pid"/task/*; do
        [[ $(cat "$t/comm" 2>/dev/null) == rte-worker-* ]] && tid=${t##*/}
    done
    [[ -n $tid ]] || { log "no worker thread found in sluice: no profile"; return 0; }
    local secs=$((DURATION > 8 ? 5 : DURATION - 2))
    ((secs > 0)) || return 0
    (
        sleep $((WARMUP + 2))
        exec perf record -q -F 999 -t "$tid" -o "$dir/perf.data" -- sleep "$secs"
    ) >/dev/null 2>"$dir/perf.err" &
    PROFILE_PID=$!
    PIDS+=("$PROFILE_PID")
}

run_mode() {
    local mode=$1
    local dir=$STATE/$mode
    mkdir -p "$dir"
    log "mode $mode: namespaces $NS_LB, $NS_GEN"
    topology_up
    sluice_config "$mode" >"$dir/sluice.toml"
    "$SLUICE" check --config "$dir/sluice.toml" >/dev/null

    # Not through in_ns: $! must be sluice itself (ip netns exec execs it) for the SIGINT.
    ip netns exec "$NS_LB" "$SLUICE" run --config "$dir/sluice.toml" --stats 1 \
        >"$dir/sluice.out" 2>"$dir/sluice.err" &
    local sluice_pid=$!
    PIDS+=("$sluice_pid")
    local waited=0
    until grep -q '^sluice: ready' "$dir/sluice.out" 2>/dev/null; do
        if ! kill -0 "$sluice_pid" 2>/dev/null || ((waited > 300)); then
            log "sluice did not start:"; tail -20 "$dir/sluice.err" >&2
            FAILED=1; return 1
        fi
        sleep 0.1; waited=$((waited + 1))
    done
    PROFILE_PID=
    ((PROFILE == 0)) || start_profile "$sluice_pid" "$dir"

    log "mode $mode: connbench window $WINDOW, warm-up ${WARMUP}s, measuring ${DURATION}s"
    local rc=0
    in_ns "$NS_GEN" timeout -s INT $((DURATION + WARMUP + 30)) "$CONNBENCH" \
        --window "$WINDOW" --duration "$DURATION" --warmup "$WARMUP" -- \
        --lcores=0@0,1@0 --no-pci --no-huge -m 256 --no-shconf --file-prefix="$NAME-gen" \
        --vdev=net_af_packet0,iface=gc --vdev=net_af_packet1,iface=gs \
        2>"$dir/connbench.err" | tee "$dir/connbench.out" \
        | grep --line-buffered '^connbench: elapsed' >&2 || rc=$?
    grep -v '^EAL: \|^TELEMETRY' "$dir/connbench.err" >&2 || true
    [[ -z $PROFILE_PID ]] || wait "$PROFILE_PID" || true

    kill -INT "$sluice_pid"
    local src=0
    wait "$sluice_pid" || src=$?
    PIDS=()
    ip netns del "$NS_LB"
    ip netns del "$NS_GEN"
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
        python3 - "$dir" "$split" <<'EOF'
import json, os, re, statistics, sys

d, split_file = sys.argv[1], sys.argv[2]
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
drops = {k: v for k, v in counters.items() if k.startswith("drop_") and v}
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
    if counters.get(k):
        checks.append(f"sluice {k}={counters[k]}")

mode, window = os.environ["MODE"], int(os.environ["WINDOW"])
print(f"== {mode}: window {window}, {cb['duration_s']:.1f} s measured ==")
print(f"  connections/s (connbench)      {cb['conns_per_s']:.0f}   (completed {cb['completed']}, failed {cb['failed']}, {cb['avg_conn_us']:.0f} us per connection on average)")
print(f"  sluice conns counter           {conns}   (connbench opened {opened}: completed {total['completed']}, failed {total['failed']}, in flight at the end {total['in_flight']})")
print(f"  sluice busy_cycles             {busy}   (rx_packets {rx}: {cpp:.0f} cycles/packet)")
print(f"  worker cycles per connection   {cpc:.0f}   (busy_cycles / conns; target <= {target}: {'met' if cpc <= target else 'NOT met'})")
if split:
    print(f"    of which (perf samples of the worker thread, idle polling taken out)")
    print(f"      kernel (sendto: af_packet tx, veth, peer's packet socket) {kernel_busy*100:.0f}% = {kernel_busy*cpc:.0f}")
    print(f"      user space (sluice + af_packet PMD + libc)               {user_busy*100:.0f}% = {user_busy*cpc:.0f}"
          f"   (raw samples: sluice {own*100:.1f}%, DPDK libs {pmd*100:.1f}%, other {other*100:.1f}%, kernel {kernel*100:.1f}%)")
print(f"  TSC                            {hz/1e6:.1f} MHz (DPDK EAL's rte_get_tsc_hz() in connbench, same host TSC; /proc/cpuinfo says {mhz:.1f} MHz)")
print(f"  sluice worker busy             {busy_frac*100:.0f}% of its core (median of --stats seconds near peak rate); peak sessions {sessions_peak:.0f}")
print(f"  sluice drops                   {', '.join(f'{k}={v}' for k, v in drops.items()) or 'none'}")
print(f"  checks                         {'; '.join(checks) or 'ok (conns == opened, no failure, checksums and acks right)'}")
out = {
    "tool": "connbench.sh", "mode": mode, "window": window,
    "kernel_drop": os.environ["KERNEL_DROP"] == "1",
    "duration_s": cb["duration_s"], "conns_per_s": round(cb["conns_per_s"], 1),
    "completed": cb["completed"], "failed": cb["failed"], "avg_conn_us": cb["avg_conn_us"],
    "sluice_conns": conns, "connbench_opened": opened, "sluice_busy_cycles": busy,
    "sluice_rx_packets": rx, "cycles_per_conn": round(cpc), "cycles_per_pkt": round(cpp),
    "target_cycles_per_conn": target, "tsc_hz": hz, "tsc_source": "dpdk-eal", "cpuinfo_mhz": mhz,
    "sluice_busy_fraction": round(busy_frac, 3), "sessions_peak": int(sessions_peak),
    "drops": drops, "checks_ok": not checks,
}
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
