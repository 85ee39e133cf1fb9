#!/usr/bin/env bash
# sluice in containers on this host (docker/compose.yaml): a client, sluice,
# two real servers.
#
#   docker/demo.sh          build, bring up, curl through the NAT and the FULLNAT VIP,
#                           print sluice's counters, tear down
#   docker/demo.sh up       build and bring up, and leave it running to try things
#   docker/demo.sh down     print sluice's counters and tear down
#
# Installs docker.io and docker-compose when absent and starts the daemon.
set -euo pipefail
PROG=docker-demo
# shellcheck source=docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PROJECT=sluicedemo
WAN_NET=${SLUICE_WAN_NET:-10.201.0}
LAN_NET=${SLUICE_LAN_NET:-10.202.0}
NAT_VIP=$WAN_NET.100
FULLNAT_VIP=$WAN_NET.101

up() {
    ensure_docker
    build_images
    log "bringing up project $PROJECT (wan $WAN_NET.0/24, lan $LAN_NET.0/24)"
    compose_up
    wait_for_log sluice 60 "sluice: ready"
    grep -E 'WARN|sluice-entrypoint|veth peer' <<<"$(logs_of sluice)" >&2 || true
    for r in r1 r2; do wait_for_log "$r" 30 "$r: http on :8080"; done
}

curls() {
    local client mode vip i
    client=$(container_of client)
    for mode in NAT FULLNAT; do
        vip=$NAT_VIP
        [[ $mode == FULLNAT ]] && vip=$FULLNAT_VIP
        echo "== $mode: curl http://$vip/whoami (the real server, then the address it saw)"
        for ((i = 1; i <= 4; i++)); do
            # The first request may wait for ARP: allow a few seconds.
            echo "request $i: $(docker exec "$client" curl -sS --max-time 5 "http://$vip/whoami")"
        done
    done
}

down() {
    if [[ -n $(compose ps -q sluice 2>/dev/null) ]]; then
        echo "== sluice stopped with SIGTERM:"
        # A subshell: whatever goes wrong there, the teardown below happens.
        (stop_sluice) || true
    fi
    compose down -v --remove-orphans -t 5 >/dev/null 2>&1 || die "compose down failed (docker-compose -p $PROJECT down)"
    log "project $PROJECT removed"
}

case ${1:-run} in
    run)
        trap 'down >/dev/null 2>&1 || true' EXIT
        up
        curls
        trap - EXIT
        down
        ;;
    up)
        up
        curls
        cat <<EOF

Running (project $PROJECT). Try:
  docker exec ${PROJECT}_client_1 curl -s http://$NAT_VIP/whoami  # NAT
  docker exec ${PROJECT}_client_1 curl -s http://$FULLNAT_VIP/whoami  # FULLNAT
  docker exec ${PROJECT}_client_1 ping -c 3 $NAT_VIP              # sluice answers
  docker logs ${PROJECT}_sluice_1
Stop it (and see sluice's counters): $0 down
EOF
        ;;
    down)
        need_root
        down
        ;;
    *)
        sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
