#!/usr/bin/env bash
# Entrypoint of a real server container: scripts/realserver.py (HTTP on
# PORT, UDP echo on 5353), serving the files in /srv/data, its request log
# on stdout (docker logs).
#
#   real-entrypoint.sh NAME PORT
#
# REAL_ROUTE, when set, is added first, e.g. "10.201.0.0/24 via 10.202.0.2":
# in NAT mode a real server's replies keep the client's address as their
# destination, so they must go back through sluice (needs NET_ADMIN).
set -euo pipefail

(($# == 2)) || { echo "usage: real-entrypoint.sh NAME PORT" >&2; exit 2; }
if [[ -n ${REAL_ROUTE:-} ]]; then
    # shellcheck disable=SC2086 # the route is words for `ip route`
    ip route replace $REAL_ROUTE
fi
exec python3 /usr/local/bin/realserver.py "$1" "$2" /srv/data /dev/stdout
