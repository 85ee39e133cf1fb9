#!/usr/bin/env bash
# End to end in network namespaces: sluice (NAT mode) versus the kernel's own NAT
# (nftables DNAT + IP forwarding), same topology, same load, same real servers.
#
#   client (10.10.0.2) --veth-- lb (lb-wan | lb-lan) --veth-- sw (bridge) --veth-- r1, r2
#
# Three phases, one after the other on the same testbed:
#   sluice       `sluice run` in the lb namespace drives lb-wan and lb-lan through DPDK
#                net_af_packet, one worker lcore (EAL -l 0-1: the worker busy-polls CPU 1),
#                the testbed's standard config. Client and servers pinned off CPU 1, as a
#                dedicated core would be in production (otherwise the scheduler time-shares
#                CPU 1 between the busy-polling worker and nginx/wrk: milliseconds of latency).
#   kernel_same  the kernel NAT in the same lb namespace: lb-wan 10.10.0.1/24 plus the VIP
#                10.10.0.100/32 (so the lb answers ARP for it), lb-lan 192.168.10.1/24,
#                ip_forward=1, nftables DNAT of the VIP to the reals. Client and servers on
#                the same CPUs as in the sluice phase; the NAT runs in their softirq.
#   kernel_all   the same, nothing pinned: the kernel may use every CPU.
# No SNAT for the kernel: in NAT mode the reals route back through the lb, so conntrack
# un-DNATs the replies, exactly as sluice does (and both keep the client address visible).
#
# Services (identical in every phase):
#   tcp 10.10.0.100:80   -> 192.168.10.2:8081, 192.168.10.3:8081 (round robin; nginx)
#   tcp+udp 10.10.0.100:5201 -> 192.168.10.2:5201               (iperf3 server on r1)
#
# Measurements, each for D seconds (10; 3 with --quick), each with CPU use from /proc/stat:
#   udp_pps       iperf3 -u -b 0 -l 18 (60-byte frames), one flow, as fast as the client
#                 can send; figure = datagrams the real server received per second.
#   tcp_stream    iperf3 TCP, one stream; figure = Gbit/s received (offloads are off on the
#                 testbed veths, so every 1500-byte frame is forwarded on its own).
#   wrk_keepalive wrk -t1 -c50 http://10.10.0.100/whoami (HTTP/1.1 keep-alive); requests/s.
#   wrk_close     the same with -H 'Connection: close' (one TCP connection per request).
#
# Usage: perf/e2e.sh [--quick] [--duration SECS] [--only sluice|kernel] [--wait-idle SECS]
#                    [--ingress-drop] [--keep-logs]
#   --quick        3 s per test instead of 10 (about 1.5 min in all instead of 3.5)
#   --wait-idle S  first wait (at most S seconds) until the CPUs are idle: other work on
#                  this machine (builds, tests) lowers every figure
#   --ingress-drop add a phase `sluice_ingress_drop`: sluice again, with an nftables netdev
#                  ingress drop on lb-wan and lb-lan (packet sockets see a frame before the
#                  ingress hooks do), so the lb namespace's kernel no longer also receives,
#                  routes and drops every frame sluice handles, as with a NIC bound to DPDK
#   --keep-logs    keep the outputs (sluice's, iperf3's, wrk's) in /tmp/sluice-e2e.PID/
# Env:   SLUICE_BIN=PATH  use this binary instead of building it
#        CARGO_TARGET_DIR  where cargo builds (default: the repo's target/)
# Output: progress on stderr; one JSON line per measurement and a summary table on stdout.
set -euo pipefail
# The whole script is one brace group, parsed before it runs: editing this file while it runs
# cannot derail it.
{

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TESTBED="$REPO/scripts/testbed.sh"
STATE_ROOT=${SLUICE_TESTBED_DIR:-/tmp/sluice-testbed}

DURATION=10
ONLY=
WAIT_IDLE=0
INGRESS_DROP=0
KEEP_LOGS=0
while (($#)); do
    case $1 in
        --wait-idle) WAIT_IDLE=${2:?--wait-idle needs seconds}; shift 2 ;;
        --ingress-drop) INGRESS_DROP=1; shift ;;
        --keep-logs) KEEP_LOGS=1; shift ;;
        --quick) DURATION=3; shift ;;
        --duration) DURATION=${2:?--duration needs seconds}; shift 2 ;;
        --only) ONLY=${2:?--only needs sluice or kernel}; shift 2 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "e2e: unknown argument '$1' (try --help)" >&2; exit 2 ;;
    esac
done
if ! [[ $DURATION =~ ^[0-9]+$ ]] || ((DURATION < 1 || DURATION > 60)); then
    echo "e2e: --duration must be 1..60" >&2
    exit 2
fi
[[ $WAIT_IDLE =~ ^[0-9]+$ ]] || { echo "e2e: --wait-idle needs a number of seconds" >&2; exit 2; }
case $ONLY in "" | sluice | kernel) ;; *) echo "e2e: --only sluice|kernel" >&2; exit 2 ;; esac

VIP=10.10.0.100
NGINX_PORT=8081
IPERF_PORT=5201
REALS=(192.168.10.2 192.168.10.3)
WRK_CONNS=50
NAME="e2e$$"
DIR="$STATE_ROOT/$NAME"

log() { echo "e2e: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (network namespaces, DPDK af_packet)"

# ---------------------------------------------------------------- set-up
if [[ -d $HOME/.cargo/bin && :$PATH: != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi

need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || need+=(nginx)
command -v nft >/dev/null || need+=(nftables)
command -v iperf3 >/dev/null || need+=(iperf3)
command -v ethtool >/dev/null || need+=(ethtool)
command -v curl >/dev/null || need+=(curl)
if ((${#need[@]})); then
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # nginx's postinst would start the distribution's server; a policy-rc.d may forbid it,
    # which is fine: we never use that instance.
    apt-get install -y -q --no-install-recommends "${need[@]}" >&2 \
        || { apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${need[@]}" >&2; }
fi

if [[ -z ${SLUICE_BIN:-} ]]; then
    if ! pkg-config --exists libdpdk 2>/dev/null || ! command -v cargo >/dev/null; then
        "$REPO/scripts/setup-host.sh" >&2
    fi
    log "building sluice (cargo build --release -p sluice)"
    (cd "$REPO" && cargo build --release -p sluice >&2)
    SLUICE_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/sluice"
fi
SLUICE_BIN=$(realpath "$SLUICE_BIN")
[[ -x $SLUICE_BIN ]] || die "no sluice binary at $SLUICE_BIN"

SLUICE_PID=
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_sluice >/dev/null 2>&1 || true
    if ((KEEP_LOGS)) && [[ -d $DIR ]]; then
        mkdir -p "/tmp/sluice-e2e.$$"
        cp -r "$DIR"/*.out "$DIR"/*.err "$DIR"/*.toml "$DIR"/*.log "/tmp/sluice-e2e.$$/" 2>/dev/null || true
        log "outputs kept in /tmp/sluice-e2e.$$/"
    fi
    "$TESTBED" down "$NAME" >/dev/null 2>&1 || true
    exit "$rc"
}
trap cleanup EXIT
trap 'log interrupted; exit 130' INT TERM

# CPU busy % over one second (all CPUs).
busy_now() {
    local a b
    a=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    sleep 1
    b=$(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $5 + $6}' /proc/stat)
    awk -v a="$a" -v b="$b" 'BEGIN { split(a, x, " "); split(b, y, " ");
        busy = y[1] - x[1]; idle = y[2] - x[2]; printf "%.0f", (busy + idle) ? 100 * busy / (busy + idle) : 0 }'
}

if ((WAIT_IDLE > 0)); then
    # Idle = at most 10% busy in three samples in a row, 5 s apart (others' benchmarks
    # often pause for a few seconds between runs).
    deadline=$((SECONDS + WAIT_IDLE)) quiet=0
    log "waiting (at most $WAIT_IDLE s) for the CPUs to be idle"
    while ((quiet < 3 && SECONDS < deadline)); do
        if (($(busy_now) <= 10)); then quiet=$((quiet + 1)); else quiet=0; fi
        ((quiet == 3)) || sleep 4
    done
fi
BACKGROUND_BUSY=$(busy_now)
if ((BACKGROUND_BUSY > 10)); then
    log "WARNING: the CPUs are already ${BACKGROUND_BUSY}% busy before the benchmark; figures will be low"
fi

# Other busy-polling processes (tests, benchmarks) on this machine skew every figure.
others=$(for p in sluice dpdk-testpmd connbench; do pgrep -x "$p"; done | tr '\n' ' ' || true)
if [[ -n ${others// /} ]]; then
    log "WARNING: other DPDK processes are running (pids: $others); figures will be low"
fi

in_ns() { local role=$1; shift; ip netns exec "$NAME-$role" "$@"; }

wait_listen() { # role proto(t|u) port
    local i
    for ((i = 0; i < 100; i++)); do
        [[ -n $(in_ns "$1" ss -H "-ln$2" "sport = :$3" 2>/dev/null) ]] && return 0
        sleep 0.05
    done
    return 1
}

start_servers() {
    local k root
    for k in 1 2; do
        root="$DIR/nginx-r$k"
        mkdir -p "$root/tmp"
        cat >"$root/nginx.conf" <<EOF
worker_processes 1;
daemon on;
pid $DIR/nginx-r$k.pid;
error_log $root/error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path $root/tmp/body;
    proxy_temp_path $root/tmp/proxy;
    fastcgi_temp_path $root/tmp/fastcgi;
    uwsgi_temp_path $root/tmp/uwsgi;
    scgi_temp_path $root/tmp/scgi;
    keepalive_requests 10000000;
    server {
        listen $NGINX_PORT backlog=4096 reuseport;
        location = /whoami {
            default_type text/plain;
            return 200 "r$k nginx client=\$remote_addr:\$remote_port\n";
        }
    }
}
EOF
        in_ns "r$k" nginx -q -c "$root/nginx.conf" -p "$root" -e "$root/error.log" </dev/null >&2
        wait_listen "r$k" t "$NGINX_PORT" || die "r$k: nginx not listening on $NGINX_PORT"
    done
    in_ns r1 iperf3 -s -p "$IPERF_PORT" -D -I "$DIR/iperf3-r1.pid" --logfile "$DIR/iperf3-r1.log"
    wait_listen r1 t "$IPERF_PORT" || die "r1: iperf3 not listening on $IPERF_PORT"
    # Wide ephemeral range: wrk with Connection: close opens tens of thousands of sockets.
    in_ns client sysctl -q -w net.ipv4.ip_local_port_range="1024 65535" >/dev/null
}

sluice_config() {
    cat <<EOF
[dpdk]
eal = ["-l", "0-1", "--no-pci", "--no-huge", "-m", "512", "--no-shconf", "--vdev=net_af_packet0,iface=lb-wan", "--vdev=net_af_packet1,iface=lb-lan"]

[[interface]]
port = 0
addrs = ["10.10.0.1/24"]

[[interface]]
port = 1
addrs = ["192.168.10.1/24"]

[[service]]
vip = "$VIP:80"
proto = "tcp"
mode = "nat"
scheduler = "rr"
[[service.real]]
addr = "${REALS[0]}:$NGINX_PORT"
weight = 1
[[service.real]]
addr = "${REALS[1]}:$NGINX_PORT"
weight = 1

[[service]]
vip = "$VIP:$IPERF_PORT"
proto = "tcp"
mode = "nat"
scheduler = "rr"
[[service.real]]
addr = "${REALS[0]}:$IPERF_PORT"
weight = 1

[[service]]
vip = "$VIP:$IPERF_PORT"
proto = "udp"
mode = "nat"
scheduler = "rr"
[[service.real]]
addr = "${REALS[0]}:$IPERF_PORT"
weight = 1
EOF
}

start_sluice() {
    sluice_config >"$DIR/sluice.toml"
    ip netns exec "$NAME-lb" env RUST_LOG=info "$SLUICE_BIN" run --config "$DIR/sluice.toml" --stats 1 \
        </dev/null >"$DIR/sluice.out" 2>"$DIR/sluice.err" &
    SLUICE_PID=$!
    local i
    for ((i = 0; i < 300; i++)); do
        grep -qx 'sluice: ready' "$DIR/sluice.out" && return 0
        if ! kill -0 "$SLUICE_PID" 2>/dev/null; then
            SLUICE_PID=
            tail -n 20 "$DIR/sluice.err" >&2
            die "sluice exited before it was ready"
        fi
        sleep 0.1
    done
    tail -n 20 "$DIR/sluice.err" >&2
    die "sluice not ready after 30 s"
}

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
        log "sluice did not stop within 15 s of SIGINT; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

start_kernel_nat() {
    ip -n "$NAME-lb" addr add 10.10.0.1/24 dev lb-wan
    ip -n "$NAME-lb" addr add "$VIP/32" dev lb-wan
    ip -n "$NAME-lb" addr add 192.168.10.1/24 dev lb-lan
    in_ns lb sysctl -q -w net.ipv4.ip_forward=1 >/dev/null
    in_ns lb nft -f - <<EOF
table ip e2e_lb {
    chain prerouting {
        type nat hook prerouting priority dstnat; policy accept;
        ip daddr $VIP tcp dport 80 counter dnat to numgen inc mod 2 map { 0 : ${REALS[0]}, 1 : ${REALS[1]} } : $NGINX_PORT
        ip daddr $VIP meta l4proto { tcp, udp } th dport $IPERF_PORT counter dnat to ${REALS[0]}:$IPERF_PORT
    }
}
EOF
}

flush_neighbours() {
    local role
    for role in client r1 r2; do ip -n "$NAME-$role" neigh flush all 2>/dev/null || true; done
}

# ---------------------------------------------------------------- measuring
# /proc/stat: "cpuN user nice system idle iowait irq softirq steal ..."
cpu_snap() { awk '/^cpu[0-9]+ /' /proc/stat; }

# Per-CPU busy % between two snapshots, and softirq as % of all CPU time:
# prints "busy0/busy1/... softirq_pct total_busy_pct".
cpu_delta() { # before after
    awk 'NR == FNR { for (i = 2; i <= 9; i++) a[$1, i] = $i; next }
        {
            tot = 0; for (i = 2; i <= 9; i++) { d[i] = $i - a[$1, i]; tot += d[i] }
            idle = d[5] + d[6]
            busy = tot > 0 ? 100 * (tot - idle) / tot : 0
            list = list (list == "" ? "" : "/") sprintf("%.0f", busy)
            sumtot += tot; sumidle += idle; sumsi += d[8]
        }
        END { printf "%s %.1f %.1f\n", list, sumtot ? 100 * sumsi / sumtot : 0,
              sumtot ? 100 * (sumtot - sumidle) / sumtot : 0 }' <(echo "$1") <(echo "$2")
}

lb_tx_packets() {
    local a b
    a=$(in_ns lb cat /sys/class/net/lb-wan/statistics/tx_packets)
    b=$(in_ns lb cat /sys/class/net/lb-lan/statistics/tx_packets)
    echo $((a + b))
}

# Mean of a field of sluice's `stats:` lines after line $1 of its stdout.
sluice_stat_mean() { # from_line field
    [[ -f $DIR/sluice.out && $MODE == sluice* ]] || { echo null; return; }
    tail -n "+$(($1 + 1))" "$DIR/sluice.out" | awk -v f="$2" '
        /^stats: / { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == f && $0 ~ /rx_pps=[1-9]/) { s += kv[2]; n++ } } }
        END { if (n) printf "%.1f\n", s / n; else print "null" }'
}

declare -A R # R[mode.test.field]
TESTS=(udp_pps tcp_stream wrk_keepalive wrk_close)

# Runs one measurement: the command's output goes to $DIR/MODE-TEST.out; sets R[...].
measure() { # test
    local test=$1 out="$DIR/$MODE-$1.out" before after tx0 tx1 line0 cpu
    line0=$(wc -l <"$DIR/sluice.out" 2>/dev/null || echo 0)
    before=$(cpu_snap)
    tx0=$(lb_tx_packets)
    case $test in
        udp_pps)
            timeout $((DURATION + 20)) ip netns exec "$NAME-client" \
                taskset -c "$LOAD_CPUS" iperf3 -c "$VIP" -p "$IPERF_PORT" -u -b 0 -l 18 -t "$DURATION" -J --connect-timeout 3000 >"$out" || true ;;
        tcp_stream)
            timeout $((DURATION + 20)) ip netns exec "$NAME-client" \
                taskset -c "$LOAD_CPUS" iperf3 -c "$VIP" -p "$IPERF_PORT" -t "$DURATION" -J --connect-timeout 3000 >"$out" || true ;;
        wrk_keepalive)
            timeout $((DURATION + 20)) ip netns exec "$NAME-client" \
                taskset -c "$LOAD_CPUS" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" "http://$VIP/whoami" >"$out" 2>&1 || true ;;
        wrk_close)
            timeout $((DURATION + 20)) ip netns exec "$NAME-client" \
                taskset -c "$LOAD_CPUS" wrk -t1 -c"$WRK_CONNS" -d"${DURATION}s" -H 'Connection: close' "http://$VIP/whoami" >"$out" 2>&1 || true ;;
    esac
    tx1=$(lb_tx_packets)
    after=$(cpu_snap)
    cpu=$(cpu_delta "$before" "$after")
    local k="$MODE.$test"
    R[$k.cpu_busy]=${cpu%% *}                         # e.g. 100/63
    R[$k.softirq_pct]=$(echo "$cpu" | awk '{print $2}')
    R[$k.cpu_total_pct]=$(echo "$cpu" | awk '{print $3}')
    R[$k.lb_tx_pps]=$(((tx1 - tx0) / DURATION))
    R[$k.sluice_cycles_per_pkt]=$(sluice_stat_mean "$line0" cycles_per_pkt)
    case $test in
        udp_pps)
            # iperf3's client JSON carries the server's loss figures in end.sum.
            local got sent loss
            read -r got sent loss < <(python3 - "$out" "$DURATION" <<'EOF' || echo "0 0 null"
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    s = d["end"]["sum"]
    secs = s.get("seconds") or float(sys.argv[2])
    pk, lost = s["packets"], s["lost_packets"]
    print(f"{(pk - lost) / secs:.0f} {pk / secs:.0f} {s['lost_percent']:.1f}")
except Exception as e:
    print("0 0 null")
EOF
)
            R[$k.value]=$got R[$k.sent_pps]=$sent R[$k.loss_pct]=$loss
            R[$k.unit]=pps ;;
        tcp_stream)
            R[$k.value]=$(python3 - "$out" <<'EOF' || echo 0
import json, sys
try:
    d = json.load(open(sys.argv[1]))
    print(f"{d['end']['sum_received']['bits_per_second'] / 1e9:.2f}")
except Exception:
    print(0)
EOF
)
            R[$k.unit]=Gbit/s ;;
        wrk_*)
            R[$k.value]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$out")
            R[$k.value]=${R[$k.value]:-0}
            R[$k.latency]=$(awk '$1 == "Latency" {print $2; exit}' "$out")
            R[$k.errors]=$(awk '/Socket errors:/ {gsub(",", ""); e += $4 + $6 + $8 + $10} /Non-2xx/ {e += $5} END {print e + 0}' "$out")
            R[$k.unit]=req/s ;;
    esac
    local v=${R[$k.value]}
    [[ $v != 0 && -n $v ]] || log "$MODE $test: no figure; output in $out: $(tail -n 5 "$out" | tr '\n' ' ')"
    printf '{"bench":"e2e","lb":"%s","load_cpus":"%s","test":"%s","value":%s,"unit":"%s","duration_s":%d,"lb_tx_pps":%s,"cpu_busy_pct":"%s","cpu_total_pct":%s,"softirq_pct":%s' \
        "$MODE" "$LOAD_CPUS" "$test" "${v:-0}" "${R[$k.unit]}" "$DURATION" "${R[$k.lb_tx_pps]}" \
        "${R[$k.cpu_busy]}" "${R[$k.cpu_total_pct]}" "${R[$k.softirq_pct]}"
    case $test in
        udp_pps) printf ',"sent_pps":%s,"loss_pct":%s' "${R[$k.sent_pps]}" "${R[$k.loss_pct]}" ;;
        wrk_*) printf ',"conns":%d,"latency_avg":"%s","errors":%s' "$WRK_CONNS" "${R[$k.latency]}" "${R[$k.errors]}" ;;
    esac
    printf ',"sluice_cycles_per_pkt":%s,"background_busy_pct":%s}\n' "${R[$k.sluice_cycles_per_pkt]}" "$BACKGROUND_BUSY"
    sleep 1
}

check_path() { # curls the VIP until both reals have answered
    local i seen="" body
    for ((i = 0; i < 10; i++)); do
        body=$(in_ns client curl -sS --connect-timeout 2 -m 5 "http://$VIP/whoami" 2>&1) || true
        case $body in r1\ nginx*) seen+=1 ;; r2\ nginx*) seen+=2 ;; *) log "$MODE: unexpected answer: $body" ;; esac
        [[ $seen == *1* && $seen == *2* ]] && { log "$MODE: both reals answer through $VIP ($body)"; return 0; }
    done
    die "$MODE: the VIP does not reach both reals"
}

# Pins every process in the real servers' namespaces (nginx master and workers, iperf3)
# to $1.
place_servers() {
    local role pid
    for role in r1 r2; do
        for pid in $(ip netns pids "$NAME-$role"); do
            taskset -a -p -c "$1" "$pid" >/dev/null 2>&1 || true
        done
    done
}

run_phase() {
    MODE=$1
    local lb=${MODE%%_*}
    if [[ $MODE == kernel_all ]]; then LOAD_CPUS=$ALL_CPUS; else LOAD_CPUS=$NON_WORKER_CPUS; fi
    place_servers "$LOAD_CPUS"
    flush_neighbours
    if [[ $MODE == sluice_ingress_drop ]]; then
        in_ns lb nft -f - <<EOF
table netdev e2e_ingress_drop {
    chain wan { type filter hook ingress device lb-wan priority 0; policy drop; }
    chain lan { type filter hook ingress device lb-lan priority 0; policy drop; }
}
EOF
    fi
    if [[ $lb == sluice ]]; then
        start_sluice
    elif ! in_ns lb nft list table ip e2e_lb >/dev/null 2>&1; then
        start_kernel_nat
    fi
    check_path
    log "$MODE: client and servers on CPUs $LOAD_CPUS"
    local t i
    for t in "${TESTS[@]}"; do
        log "$MODE: $t (${DURATION} s)"
        measure "$t"
    done
    if [[ $lb == sluice ]]; then
        stop_sluice
        if [[ $MODE == sluice_ingress_drop ]]; then
            in_ns lb nft delete table netdev e2e_ingress_drop
        fi
        local drops
        drops=$(awk '/^sluice counters:/ {c = 1; next} c && $2 > 0 && $1 ~ /^drop_/ {printf "%s=%s ", $1, $2}' "$DIR/sluice.out")
        log "$MODE: conns=$(awk '$1 == "conns" {print $2}' "$DIR/sluice.out") drops: ${drops:-none}"
    else
        log "$MODE: nft rule packets: $(in_ns lb nft list table ip e2e_lb | awk '/counter/ {for (i = 1; i <= NF; i++) if ($i == "packets") printf "%s ", $(i + 1)}')"
        log "$MODE: conntrack entries: $(in_ns lb cat /proc/sys/net/netfilter/nf_conntrack_count 2>/dev/null || echo '?')"
        local drops=""
        for i in lb-wan lb-lan; do
            drops+="$i $(in_ns lb cat "/sys/class/net/$i/statistics/rx_dropped")/$(in_ns lb cat "/sys/class/net/$i/statistics/tx_dropped") "
        done
        log "$MODE: interface drops rx/tx: $drops"
    fi
}

# ---------------------------------------------------------------- main
# sluice's worker lcore is CPU 1 (EAL -l 0-1); the load stays off it when pinned.
ALL_CPUS=$(cat /sys/devices/system/cpu/online)
NON_WORKER_CPUS=$(for ((c = 0; c < $(nproc --all); c++)); do [[ $c == 1 ]] || echo "$c"; done | paste -sd,)
LOAD_CPUS=$ALL_CPUS
log "testbed $NAME; sluice $SLUICE_BIN; $DURATION s per measurement"
"$TESTBED" up "$NAME" --reals 2 >&2
start_servers

MODES=(sluice)
((INGRESS_DROP)) && MODES+=(sluice_ingress_drop)
case $ONLY in
    sluice) ;;
    kernel) MODES=(kernel_same kernel_all) ;;
    *) MODES+=(kernel_same kernel_all) ;;
esac
for m in "${MODES[@]}"; do run_phase "$m"; done

# ---------------------------------------------------------------- summary
fmt_cell() { # mode test
    local k="$1.$2"
    [[ -n ${R[$k.value]:-} ]] || { echo "-"; return; }
    echo "${R[$k.value]} (cpu ${R[$k.cpu_busy]}%)"
}
ratio() { # a b
    [[ -n $1 && -n $2 ]] || { echo -; return; }
    awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'
}
echo
echo "sluice vs kernel NAT, end to end in namespaces ($(nproc) CPUs, ${DURATION} s per test;"
echo "CPUs ${BACKGROUND_BUSY}% busy before the start)."
echo "sluice: worker busy-polls CPU 1; client and servers on CPUs $NON_WORKER_CPUS."
((INGRESS_DROP)) && echo "sluice_ingress_drop: the same, with an nftables ingress drop on lb-wan and lb-lan after sluice's packet sockets."
echo "kernel, same CPUs: client and servers on CPUs $NON_WORKER_CPUS (the NAT runs in their softirq)."
echo "kernel, all CPUs: nothing pinned. cpu = busy % of each CPU during the test (cpu0/cpu1/...)."
echo
header="| test | unit |" sep="|---|---|"
for m in "${MODES[@]}"; do header+=" $m |"; sep+="---|"; done
has_kernel=0
[[ " ${MODES[*]} " == *" kernel_same "* ]] && has_kernel=1
if ((has_kernel)); then
    for m in "${MODES[@]}"; do
        [[ $m == sluice* ]] || continue
        header+=" $m / kernel_same | $m / kernel_all |"
        sep+="---|---|"
    done
fi
echo "$header"
echo "$sep"
for t in "${TESTS[@]}"; do
    unit=${R[${MODES[0]}.$t.unit]:-}
    row="| $t | $unit |"
    for m in "${MODES[@]}"; do row+=" $(fmt_cell "$m" "$t") |"; done
    if ((has_kernel)); then
        for m in "${MODES[@]}"; do
            [[ $m == sluice* ]] || continue
            row+=" $(ratio "${R[$m.$t.value]:-}" "${R[kernel_same.$t.value]:-}") | $(ratio "${R[$m.$t.value]:-}" "${R[kernel_all.$t.value]:-}") |"
        done
    fi
    echo "$row"
done
echo
for m in "${MODES[@]}"; do
    [[ -n ${R[$m.udp_pps.loss_pct]:-} ]] \
        && echo "- udp_pps $m: client sent ${R[$m.udp_pps.sent_pps]} pps, ${R[$m.udp_pps.loss_pct]}% lost end to end; lb-lan+lb-wan tx ${R[$m.udp_pps.lb_tx_pps]} pps"
done
for m in "${MODES[@]}"; do
    for t in wrk_keepalive wrk_close; do
        [[ -n ${R[$m.$t.value]:-} ]] && echo "- $t $m: latency avg ${R[$m.$t.latency]:-?}, socket errors ${R[$m.$t.errors]:-?}"
    done
done
for m in "${MODES[@]}"; do
    [[ $m == sluice* && -n ${R[$m.udp_pps.value]:-} ]] || continue
    echo "- $m cycles/packet (its --stats, busy loop iterations only; they include the af_packet"
    echo "  tx syscall, i.e. the kernel's veth/bridge/socket work for the packets it sends):" \
        "$(for t in "${TESTS[@]}"; do printf '%s %s; ' "$t" "${R[$m.$t.sluice_cycles_per_pkt]}"; done)"
done
echo
echo "Not the same CPU budget: sluice owns CPU 1 (100% busy whatever the load) and the client,"
echo "servers and the kernel's side of af_packet share the rest; the kernel NAT has no CPU of its own."
exit 0
}
