#!/usr/bin/env bash
# Entrypoint of the sluice container: gives sluice the container's
# interfaces, renders its configuration and runs it (extra arguments go to
# `sluice run`, e.g. --stats 1).
#
# SLUICE_INTERFACES="WAN=10.201.0.2 LAN=10.202.0.2": each ROLE=ADDR names
# the address docker gave one interface. Docker does not promise which of
# eth0/eth1 is which network, so the address finds the interface, and its
# name becomes ROLE_IF (WAN_IF, LAN_IF) for the template.
#
# Then the addresses are taken off the interfaces. sluice owns them (the
# configuration gives it the same ones): it answers ARP and ping for them
# itself. A kernel that kept them would answer as well, twice for each ARP
# request and with a reset for every TCP segment to them.
#
# The template (SLUICE_CONFIG_TEMPLATE) is sluice's TOML with @NAME@
# placeholders, each replaced by the environment variable NAME.
set -euo pipefail

TEMPLATE=${SLUICE_CONFIG_TEMPLATE:-/etc/sluice/sluice.toml.in}
CONFIG=/run/sluice/sluice.toml
WAIT_SECONDS=10

log() { echo "sluice-entrypoint: $*" >&2; }
die() { log "$*"; exit 1; }

[[ -n ${SLUICE_INTERFACES:-} ]] || die "SLUICE_INTERFACES is not set (e.g. \"WAN=10.201.0.2 LAN=10.202.0.2\")"
[[ -r $TEMPLATE ]] || die "no configuration template at $TEMPLATE"

# The interface holding IPv4 address $1, if any.
interface_with() {
    ip -o -4 addr show | awk -v addr="$1" '{ split($4, a, "/"); if (a[1] == addr) { print $2; exit } }'
}

flush=()
for pair in $SLUICE_INTERFACES; do
    role=${pair%%=*} addr=${pair#*=}
    [[ $role =~ ^[A-Z][A-Z0-9_]*$ && -n $addr && $addr != "$pair" ]] \
        || die "bad SLUICE_INTERFACES entry '$pair' (want ROLE=ADDR)"
    ifname=
    # Compose connects the second network just before the start; wait a little.
    for ((i = 0; i < WAIT_SECONDS * 10; i++)); do
        ifname=$(interface_with "$addr")
        [[ -n $ifname ]] && break
        sleep 0.1
    done
    [[ -n $ifname ]] || die "no interface has address $addr ($role); interfaces: $(ip -o -4 addr show | awk '{print $2, $4}' | tr '\n' ' ')"
    log "$role: $ifname ($addr, $(cat "/sys/class/net/$ifname/address"))"
    export "${role}_IF=$ifname"
    flush+=("$ifname")
done

text=$(<"$TEMPLATE")
while [[ $text =~ @([A-Z][A-Z0-9_]*)@ ]]; do
    name=${BASH_REMATCH[1]}
    [[ -n ${!name:-} ]] || die "$TEMPLATE uses @$name@ but $name is not set"
    text=${text//"@$name@"/${!name}}
done
mkdir -p "$(dirname "$CONFIG")"
printf '%s\n' "$text" >"$CONFIG"
sluice check --config "$CONFIG" >/dev/null || die "the rendered configuration $CONFIG is not valid"

for ifname in "${flush[@]}"; do
    ip -4 addr flush dev "$ifname"
done
log "addresses taken off ${flush[*]}; starting sluice"
exec sluice run --config "$CONFIG" "$@"
