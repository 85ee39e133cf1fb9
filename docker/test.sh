#!/usr/bin/env bash
# The docker test: sluice in a container between a client and two real
# servers (docker/compose.yaml), every container with docker's default
# interface settings (offloads on). Installs docker.io and docker-compose
# when absent, starts the daemon, builds the images, brings the project up
# under a name of its own, checks, and tears everything down, also on
# failure. Safe to rerun.
#
# Checks, through the VIPs from the client:
#   NAT      curl answers, both reals serve, each sees the client's address
#   FULLNAT  curl answers, both reals serve, each sees one of sluice's local addresses
#   ping     the VIPs and sluice's address answer, once (the kernel does not)
#   UDP      a datagram to the NAT VIP is echoed by a real server
#   50 MB    a download through each VIP arrives intact (sha256)
# then SIGTERM: sluice exits 0 after printing its counters (shown), and no
# frame was dropped as truncated (the veth peers segment before sending).
set -euo pipefail
PROG=docker-test
# shellcheck source=docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

if [[ $(id -u) -ne 0 ]]; then
    [[ -z ${CI:-} ]] || die "needs root (docker) and CI is set: this test must run in CI, not skip"
    log "SKIPPED: needs root (docker); run scripts/test.sh or docker/test.sh as root"
    exit 0
fi

t_all=$SECONDS
# A project of our own (the pid marks it: see remove_stale_projects), on
# subnets of its own so that the demo can stay up meanwhile.
PROJECT=sluicetest$$
export SLUICE_WAN_NET=${SLUICE_TEST_WAN_NET:-10.211.0}
export SLUICE_LAN_NET=${SLUICE_TEST_LAN_NET:-10.212.0}
CLIENT_ADDR=$SLUICE_WAN_NET.10
NAT_VIP=$SLUICE_WAN_NET.100
FULLNAT_VIP=$SLUICE_WAN_NET.101
LADDRS=("$SLUICE_LAN_NET.100" "$SLUICE_LAN_NET.101")
BIG_SIZE_MB=50
WORK=

# Projects of earlier runs that died without tearing down (SIGKILL, a lost
# machine session): their pid is gone. Their networks would overlap ours.
remove_stale_projects() {
    local name pid
    { docker ps -a --format '{{.Label "com.docker.compose.project"}}'
      docker network ls --format '{{.Label "com.docker.compose.project"}}'; } 2>/dev/null \
        | sort -u | while read -r name; do
            [[ $name =~ ^sluicetest([0-9]+)$ ]] || continue
            pid=${BASH_REMATCH[1]}
            [[ $pid != "$$" && ! -e /proc/$pid ]] || continue
            log "removing the stale project $name"
            PROJECT=$name compose down -v --remove-orphans -t 1 >/dev/null 2>&1 || true
        done
}

teardown() {
    local rc=$?
    trap - EXIT INT TERM
    if ((rc != 0)) && [[ -n ${PROJECT_UP:-} ]]; then
        log "logs of the failed run:"
        compose logs --no-color --tail 40 >&2 2>&1 || true
    fi
    if [[ -n ${PROJECT_UP:-} ]]; then
        compose down -v --remove-orphans -t 5 >/dev/null 2>&1 \
            || log "compose down $PROJECT failed; remove it by hand (docker-compose -p $PROJECT down)"
    fi
    [[ -n $WORK ]] && rm -rf "$WORK"
    if ((rc == 0)); then
        log "PASSED ($(took "$t_all") in all)"
    else
        log "FAILED after $(took "$t_all") (project $PROJECT torn down)"
    fi
    exit "$rc"
}
trap teardown EXIT
trap 'exit 130' INT TERM

in_client() { docker exec "$CLIENT" "$@"; }

# `curl http://$1/$2` from the client, with a timeout; prints the body.
client_get() { in_client curl -sS --fail --max-time 5 "http://$1/$2"; }

# Checks $1 /whoami answers through VIP $2: each names a real server and the
# address it saw, which must match the regular expression $3. Both reals must answer.
check_whoami() {
    local mode=$1 vip=$2 expect=$3 i answer real saw seen=""
    for ((i = 1; i <= 4; i++)); do
        answer=$(client_get "$vip" whoami) || die "$mode: curl http://$vip/whoami failed"
        log "$mode: $answer"
        [[ $answer =~ ^(r[12])\ client=([0-9.]+):[0-9]+$ ]] || die "$mode: unexpected answer '$answer'"
        real=${BASH_REMATCH[1]} saw=${BASH_REMATCH[2]}
        [[ $saw =~ $expect ]] || die "$mode: the real server saw $saw, expected $expect"
        [[ $seen == *$real* ]] || seen+=" $real"
    done
    [[ $seen == *r1* && $seen == *r2* ]] || die "$mode: only${seen} answered; both reals should"
}

# Downloads the big file through VIP $2 and compares its sha256 with $3.
check_download() {
    local mode=$1 vip=$2 want=$3 out got t=$SECONDS
    out=$(in_client bash -o pipefail -c \
        "curl -sS --fail --max-time 120 -o /tmp/big.bin -w '%{speed_download}' http://$vip/big.bin \
         && echo \" \$(sha256sum </tmp/big.bin | cut -c1-64)\" && rm -f /tmp/big.bin") \
        || die "$mode: downloading ${BIG_SIZE_MB} MB through $vip failed"
    got=${out##* }
    [[ $got == "$want" ]] || die "$mode: ${BIG_SIZE_MB} MB through $vip arrived corrupted (sha256 $got, sent $want)"
    log "$mode: ${BIG_SIZE_MB} MB intact through $vip ($(took "$t"), $(awk -v b="${out%% *}" 'BEGIN { printf "%.0f MB/s", b / 1e6 }'))"
}

ensure_docker
remove_stale_projects
t=$SECONDS
build_images
t_build=$(took "$t")

t=$SECONDS
log "bringing up project $PROJECT (wan $SLUICE_WAN_NET.0/24, lan $SLUICE_LAN_NET.0/24)"
PROJECT_UP=1
compose_up
CLIENT=$(container_of client)
wait_for_log sluice 60 "sluice: ready"
sluice_log=$(logs_of sluice)
xdp_ports=$(grep -c 'veth peer made to segment before sending' <<<"$sluice_log" || true)
((xdp_ports == 2)) || {
    grep -iE 'warn|xdp' <<<"$sluice_log" >&2 || true
    die "the XDP program is attached on $xdp_ports of sluice's 2 ports (see the warnings above)"
}
log "sluice ready; XDP program attached on both ports"
for r in r1 r2; do wait_for_log "$r" 30 "$r: http on :8080"; done
# The first request waits for ARP; retry a little before judging.
for ((i = 0; i < 20; i++)); do client_get "$NAT_VIP" whoami >/dev/null 2>&1 && break; sleep 0.5; done
log "up ($(took "$t"))"

t=$SECONDS
check_whoami NAT "$NAT_VIP" "^${CLIENT_ADDR//./\\.}\$"
check_whoami FULLNAT "$FULLNAT_VIP" "^(${LADDRS[0]//./\\.}|${LADDRS[1]//./\\.})\$"
# sluice answers ping for its VIPs and addresses, and only sluice: a reply
# from the container's kernel as well would show up as a duplicate.
for addr in "$NAT_VIP" "$FULLNAT_VIP" "$SLUICE_WAN_NET.2"; do
    out=$(in_client ping -c 3 -i 0.2 -W 2 "$addr" 2>&1) || { echo "$out" >&2; die "ping $addr failed"; }
    [[ $out != *DUP!* ]] || { echo "$out" >&2; die "ping $addr: duplicate replies (the container's kernel answers too)"; }
done
log "ping: ${NAT_VIP}, ${FULLNAT_VIP} and ${SLUICE_WAN_NET}.2 answer once each"
answer=$(in_client python3 -c "
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(3):
    s.sendto(b'ping', ('$NAT_VIP', 5353))
    try:
        print(s.recv(100).decode().strip()); sys.exit(0)
    except socket.timeout:
        pass
sys.exit(1)") || die "UDP: no echo from $NAT_VIP:5353"
[[ $answer =~ ^r[12]\ client=${CLIENT_ADDR//./\\.}: ]] || die "UDP: unexpected echo '$answer'"
log "UDP: $answer"
# The container's kernel reaches a real through its twin (sluice1 holds the
# lan address): what health checks and an operator's tools use.
answer=$(docker exec "$(container_of sluice)" bash -c "
exec 3<>/dev/tcp/${SLUICE_LAN_NET}.11/8080 || exit 1
printf 'GET /whoami HTTP/1.0\\r\\n\\r\\n' >&3
timeout 5 cat <&3" | tail -n 1) || die "twin: no TCP connection from sluice's container to ${SLUICE_LAN_NET}.11:8080"
[[ $answer =~ ^r1\ client=${SLUICE_LAN_NET//./\\.}\.2: ]] || die "twin: unexpected answer '$answer'"
log "twin: the container's kernel reaches r1 from ${SLUICE_LAN_NET}.2 ($answer)"

WORK=$(mktemp -d /tmp/sluice-docker-test.XXXXXX)
head -c "${BIG_SIZE_MB}M" /dev/urandom >"$WORK/big.bin"
big_sha=$(sha256sum <"$WORK/big.bin" | cut -c1-64)
for r in r1 r2; do
    docker exec -i "$(container_of "$r")" sh -c 'cat >/srv/data/big.bin' <"$WORK/big.bin"
done
check_download NAT "$NAT_VIP" "$big_sha"
check_download FULLNAT "$FULLNAT_VIP" "$big_sha"
log "checks passed ($(took "$t"))"

log "stopping sluice (SIGTERM):"
counters=$(stop_sluice) || exit 1
echo "$counters"
counter() { awk -v n="$1" '$1 == n { print $2 }' <<<"$counters"; }
[[ $(counter conns) -gt 0 ]] || die "counter conns is not positive"
[[ $(counter drop_truncated_ipv4) == 0 ]] \
    || die "sluice dropped $(counter drop_truncated_ipv4) truncated frames: a veth peer sent super-frames whole"
log "timings: images $t_build, all $(took "$t_all")"
