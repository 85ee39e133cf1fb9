#!/usr/bin/env bash
# Network-namespace testbed for sluice.
#
# Flat (the default; NAT mode: the reals route back through sluice):
#
#   NAME-client  eth0 10.10.0.2/24, default via 10.10.0.1 (sluice)
#        |  veth
#   NAME-lb      lb-wan  (no IP; DPDK net_af_packet0)
#                lb-lan  (no IP; DPDK net_af_packet1)
#        |  veth
#   NAME-sw      br0 = lan + r1..rN
#        |  veth each
#   NAME-rK      eth0 192.168.10.(1+K)/24, default via 192.168.10.1 (sluice),
#                HTTP on --port (default 8080), UDP echo on 5353
#
# Routed (--routed; FULLNAT: the reals never see, nor can reach, the client network):
#
#   NAME-client  eth0 10.10.0.2/24, default via 10.10.0.1 (sluice)
#   NAME-lb      lb-wan, lb-lan as above (sluice: route 172.16.0.0/24 via 192.168.10.254)
#   NAME-sw      br0 = lan + rt-lan          br1 = rt-srv + r1..rN
#   NAME-rt      eth0 192.168.10.254/24 (on br0), eth1 172.16.0.1/24 (on br1),
#                forwarding on, NO default route and no route to 10.10.0.0/24
#   NAME-rK      eth0 172.16.0.(1+K)/24, default via 172.16.0.1 (the router),
#                HTTP on --port, UDP echo on 5353
#
# Every veth keeps the kernel's default offloads (tx checksum and segmentation
# offload on, as in every container) unless --offloads off turns them off on
# every veth end (the setting sluice was first tested with).
#
# Usage:
#   testbed.sh up NAME [--reals N] [--port P] [--routed] [--offloads default|off]
#   testbed.sh down NAME
#   testbed.sh exec NAME ROLE CMD...     ROLE: client | lb | sw | rt (routed) | r1..rN
#   testbed.sh stop-real NAME K          stop real server K's HTTP server and UDP echo
#   testbed.sh start-real NAME K         start it again (waits until it listens)
#   testbed.sh status NAME
#
# State (pids, logs, data) lives in /tmp/sluice-testbed/NAME/.
set -euo pipefail

SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STATE_ROOT=${SLUICE_TESTBED_DIR:-/tmp/sluice-testbed}
UDP_ECHO_PORT=5353
OFFLOADS=default

log() { echo "testbed: $*" >&2; }
die() { log "$*"; exit 1; }

usage() {
    sed -n '/^# Usage:/,/^# State/p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

check_name() {
    [[ $1 =~ ^[A-Za-z0-9_.]([A-Za-z0-9_.-]{0,40})$ ]] \
        || die "bad testbed name '$1' (letters, digits, _ . -; at most 41 characters)"
}

# Namespaces that belong to testbed $1, whatever state it is in.
namespaces_of() {
    local name=$1 ns
    ip netns list 2>/dev/null | awk '{print $1}' | while read -r ns; do
        case ${ns#"$name-"} in
            "$ns") ;;  # prefix not present
            client | lb | sw | rt) echo "$ns" ;;
            r[0-9]*) [[ ${ns#"$name-r"} =~ ^[0-9]+$ ]] && echo "$ns" ;;
        esac
    done
    return 0
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

quiet_sysctl() { in_ns "$1" sysctl -q -w "$2" >/dev/null; }

# IPv6 off on one veth end (router solicitations would be unexpected frames); with
# --offloads off, checksum and segmentation offloads off too. By default veth hands
# out TCP/UDP segments with only a partial checksum (CHECKSUM_PARTIAL) and sends
# segmentation super-frames whole: sluice must cope with both, as in a container.
prepare_if() {
    local ns=$1 ifname=$2
    quiet_sysctl "$ns" "net.ipv6.conf.$ifname.disable_ipv6=1"
    if [[ $OFFLOADS == off ]]; then
        in_ns "$ns" ethtool -K "$ifname" tx off tso off gso off >/dev/null 2>&1 || true
        in_ns "$ns" ethtool -K "$ifname" gro off >/dev/null 2>&1 || true
    fi
}

new_ns() {
    local ns=$1
    ip netns add "$ns"
    quiet_sysctl "$ns" net.ipv6.conf.all.disable_ipv6=1
    quiet_sysctl "$ns" net.ipv6.conf.default.disable_ipv6=1
    ip -n "$ns" link set lo up
}

wait_listening() {
    local ns=$1 proto=$2 port=$3 i
    for ((i = 0; i < 100; i++)); do
        if [[ -n $(in_ns "$ns" ss -H "-ln$proto" "sport = :$port" 2>/dev/null) ]]; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

# Starts real server K (HTTP on $port, UDP echo) in its namespace.
start_real() {
    local name=$1 dir=$2 port=$3 k=$4
    # stdin/stdout/stderr to files: a caller capturing our output must not wait on it.
    setsid ip netns exec "$name-r$k" python3 "$SCRIPT_DIR/realserver.py" \
        "r$k" "$port" "$dir/data" "$dir/r$k.log" \
        </dev/null >"$dir/r$k.out" 2>&1 &
    echo $! >"$dir/r$k.pid"
}

cmd_up() {
    local name=$1; shift
    local reals=2 port=8080 routed=0
    while (($#)); do
        case $1 in
            --reals) reals=${2:?--reals needs a value}; shift 2 ;;
            --port) port=${2:?--port needs a value}; shift 2 ;;
            --routed) routed=1; shift ;;
            --offloads)
                OFFLOADS=${2:?--offloads needs default or off}
                [[ $OFFLOADS == default || $OFFLOADS == off ]] || die "--offloads must be default or off"
                shift 2
                ;;
            *) die "up: unknown argument '$1'" ;;
        esac
    done
    if ! [[ $reals =~ ^[0-9]+$ ]] || ((reals < 1 || reals > 200)); then die "--reals must be 1..200"; fi
    if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then die "--port must be 1..65535"; fi
    ((port != UDP_ECHO_PORT)) || die "--port $UDP_ECHO_PORT is taken by the UDP echo"
    [[ $(id -u) -eq 0 ]] || die "must run as root"
    local dir="$STATE_ROOT/$name"
    if [[ -n $(namespaces_of "$name") || -e $dir ]]; then
        die "testbed '$name' already exists (run: $0 down $name)"
    fi

    # From here on, anything that fails tears down what was built.
    UP_DONE=0
    trap 'if ((UP_DONE == 0)); then log "up $name failed; tearing down"; cmd_down "$name" || true; fi' EXIT

    mkdir -p "$dir/data"
    echo "$reals" >"$dir/reals"
    echo "$port" >"$dir/port"
    if ((routed)); then echo routed >"$dir/topology"; else echo flat >"$dir/topology"; fi
    echo "$OFFLOADS" >"$dir/offloads"

    local client="$name-client" lb="$name-lb" sw="$name-sw" rt="$name-rt" k rns
    # The bridge the reals sit on, and their subnet and gateway.
    local real_br=br0 real_net=192.168.10 real_gw=192.168.10.1
    if ((routed)); then real_br=br1 real_net=172.16.0 real_gw=172.16.0.1; fi

    new_ns "$client"
    new_ns "$lb"
    new_ns "$sw"
    if ((routed)); then new_ns "$rt"; fi
    for ((k = 1; k <= reals; k++)); do new_ns "$name-r$k"; done

    # client <-> lb
    ip -n "$client" link add eth0 type veth peer name lb-wan netns "$lb"
    # lb <-> switch
    ip -n "$lb" link add lb-lan type veth peer name lan netns "$sw"
    ip -n "$sw" link add br0 type bridge stp_state 0 forward_delay 0
    quiet_sysctl "$sw" net.ipv6.conf.br0.disable_ipv6=1
    ip -n "$sw" link set lan master br0
    if ((routed)); then
        ip -n "$sw" link add br1 type bridge stp_state 0 forward_delay 0
        quiet_sysctl "$sw" net.ipv6.conf.br1.disable_ipv6=1
        ip -n "$rt" link add eth0 type veth peer name rt-lan netns "$sw"
        ip -n "$rt" link add eth1 type veth peer name rt-srv netns "$sw"
        ip -n "$sw" link set rt-lan master br0
        ip -n "$sw" link set rt-srv master br1
    fi
    for ((k = 1; k <= reals; k++)); do
        rns="$name-r$k"
        ip -n "$rns" link add eth0 type veth peer name "r$k" netns "$sw"
        ip -n "$sw" link set "r$k" master "$real_br"
    done

    prepare_if "$client" eth0
    prepare_if "$lb" lb-wan
    prepare_if "$lb" lb-lan
    prepare_if "$sw" lan
    if ((routed)); then
        prepare_if "$rt" eth0
        prepare_if "$rt" eth1
        prepare_if "$sw" rt-lan
        prepare_if "$sw" rt-srv
    fi
    for ((k = 1; k <= reals; k++)); do
        prepare_if "$name-r$k" eth0
        prepare_if "$sw" "r$k"
    done

    ip -n "$sw" link set br0 up
    ip -n "$sw" link set lan up
    if ((routed)); then
        ip -n "$sw" link set br1 up
        ip -n "$sw" link set rt-lan up
        ip -n "$sw" link set rt-srv up
    fi
    for ((k = 1; k <= reals; k++)); do ip -n "$sw" link set "r$k" up; done
    ip -n "$lb" link set lb-wan up
    ip -n "$lb" link set lb-lan up

    ip -n "$client" addr add 10.10.0.2/24 dev eth0
    ip -n "$client" link set eth0 up
    ip -n "$client" route add default via 10.10.0.1

    if ((routed)); then
        ip -n "$rt" addr add 192.168.10.254/24 dev eth0
        ip -n "$rt" addr add 172.16.0.1/24 dev eth1
        ip -n "$rt" link set eth0 up
        ip -n "$rt" link set eth1 up
        quiet_sysctl "$rt" net.ipv4.ip_forward=1
        # Deliberately no default route: the router knows only its two connected subnets,
        # so a packet for the client network (10.10.0.0/24) cannot be forwarded from here.
        if ip -n "$rt" route get 10.10.0.2 >/dev/null 2>&1; then
            die "router $rt has a route to 10.10.0.2; the routed topology needs it not to"
        fi
    fi

    for ((k = 1; k <= reals; k++)); do
        rns="$name-r$k"
        ip -n "$rns" addr add "$real_net.$((1 + k))/24" dev eth0
        ip -n "$rns" link set eth0 up
        ip -n "$rns" route add default via "$real_gw"
        start_real "$name" "$dir" "$port" "$k"
    done
    for ((k = 1; k <= reals; k++)); do
        rns="$name-r$k"
        wait_listening "$rns" t "$port" || { cat "$dir/r$k.out" >&2; die "r$k: HTTP server not listening on $port"; }
        wait_listening "$rns" u "$UDP_ECHO_PORT" || { cat "$dir/r$k.out" >&2; die "r$k: UDP echo not listening"; }
    done

    # shellcheck disable=SC2034 # read by the EXIT trap
    UP_DONE=1
    trap - EXIT
    if ((routed)); then
        log "up $name (routed): client, lb, sw, rt, r1..r$reals at 172.16.0.2.. (http :$port, udp :$UDP_ECHO_PORT); state in $dir"
    else
        log "up $name: client, lb, sw, r1..r$reals (http :$port, udp :$UDP_ECHO_PORT); state in $dir"
    fi
}

kill_pids() {
    local sig=$1; shift
    local pid
    for pid in "$@"; do kill "-$sig" "$pid" 2>/dev/null || true; done
}

alive_pids() {
    local pid
    for pid in "$@"; do
        kill -0 "$pid" 2>/dev/null && echo "$pid"
    done
    return 0
}

cmd_down() {
    local name=$1
    local dir="$STATE_ROOT/$name" ns pidfile pids=() found=() i
    # Everything running inside the testbed's namespaces (servers, sluice), plus recorded pids.
    for ns in $(namespaces_of "$name"); do
        read -r -d '' -a found < <(ip netns pids "$ns" 2>/dev/null) || true
        pids+=("${found[@]}")
    done
    if [[ -d $dir ]]; then
        for pidfile in "$dir"/*.pid; do
            [[ -f $pidfile ]] || continue
            read -r -d '' -a found <"$pidfile" || true
            pids+=("${found[@]}")
        done
    fi
    if ((${#pids[@]})); then
        kill_pids TERM "${pids[@]}"
        for ((i = 0; i < 40; i++)); do
            [[ -z $(alive_pids "${pids[@]}") ]] && break
            sleep 0.05
        done
        read -r -d '' -a found < <(alive_pids "${pids[@]}") || true
        kill_pids KILL "${found[@]}"
    fi
    for ns in $(namespaces_of "$name"); do
        ip netns delete "$ns" 2>/dev/null || log "could not delete namespace $ns"
    done
    rm -rf "$dir"
    return 0
}

real_pidfile() {
    local name=$1 k=${2:-}
    [[ $k =~ ^[0-9]+$ ]] || die "real server number expected, got '$k'"
    local dir="$STATE_ROOT/$name"
    [[ -f $dir/reals ]] || die "no testbed '$name'"
    ((k >= 1 && k <= $(cat "$dir/reals"))) || die "no real server r$k in testbed '$name'"
    echo "$dir/r$k.pid"
}

# Whether $1 runs (a zombie no longer does: nothing may reap it soon).
running() {
    local state
    state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ -n $state && $state != Z ]]
}

cmd_stop_real() {
    local name=$1 k=${2:-} pidfile pid i
    pidfile=$(real_pidfile "$name" "$k")
    pid=$(cat "$pidfile" 2>/dev/null || true)
    [[ -n $pid ]] || return 0
    kill_pids TERM "$pid"
    for ((i = 0; i < 100; i++)); do
        running "$pid" || break
        sleep 0.02
    done
    if running "$pid"; then kill_pids KILL "$pid"; fi
    rm -f "$pidfile"
}

cmd_start_real() {
    local name=$1 k=${2:-} pidfile
    pidfile=$(real_pidfile "$name" "$k")
    local dir="$STATE_ROOT/$name" port
    port=$(cat "$dir/port")
    [[ -f $pidfile ]] && die "r$k is running (pid $(cat "$pidfile"))"
    start_real "$name" "$dir" "$port" "$k"
    wait_listening "$name-r$k" t "$port" || { cat "$dir/r$k.out" >&2; die "r$k: HTTP server not listening on $port"; }
    wait_listening "$name-r$k" u "$UDP_ECHO_PORT" || { cat "$dir/r$k.out" >&2; die "r$k: UDP echo not listening"; }
}

cmd_exec() {
    local name=$1 role=${2:-}
    shift 2 || usage
    [[ -n $role ]] || usage
    (($#)) || die "exec: no command"
    exec ip netns exec "$name-$role" "$@"
}

cmd_status() {
    local name=$1
    local dir="$STATE_ROOT/$name" ns pidfile pid state nss
    nss=$(namespaces_of "$name")
    if [[ -z $nss ]]; then
        echo "testbed $name: down"
        [[ -d $dir ]] && echo "  (stale state dir $dir)"
        return 1
    fi
    echo "testbed $name: $(cat "$dir/topology" 2>/dev/null || echo unknown) topology, offloads $(cat "$dir/offloads" 2>/dev/null || echo unknown), state in $dir"
    for ns in $nss; do
        echo "== $ns"
        ip -n "$ns" -br addr show | grep -v '^lo ' | sed 's/^/  /'
        echo "  processes: $(ip netns pids "$ns" | tr '\n' ' ')"
    done
    if [[ -d $dir ]]; then
        for pidfile in "$dir"/*.pid; do
            [[ -f $pidfile ]] || continue
            pid=$(cat "$pidfile")
            if kill -0 "$pid" 2>/dev/null; then state=running; else state=dead; fi
            echo "$(basename "$pidfile" .pid): pid $pid $state"
        done
    fi
}

(($# >= 2)) || usage
cmd=$1 name=$2
shift 2
check_name "$name"
case $cmd in
    up) cmd_up "$name" "$@" ;;
    down) cmd_down "$name" ;;
    exec) cmd_exec "$name" "$@" ;;
    stop-real) cmd_stop_real "$name" "$@" ;;
    start-real) cmd_start_real "$name" "$@" ;;
    status) cmd_status "$name" ;;
    *) usage ;;
esac
