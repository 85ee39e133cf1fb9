#!/usr/bin/env bash
# Makes a local Debian bookworm base image without any image registry:
# debootstrap a minimal system, import it, then bring it up to date with
# bookworm-updates and bookworm-security (where rustc-web/cargo-web 1.96 live).
#
#   docker/make-base-image.sh [NAME]      NAME defaults to $SLUICE_BASE_IMAGE or sluice-base:bookworm
#
# Idempotent: does nothing when the image exists (remove it to remake it).
# Needs root, debootstrap and a running docker daemon; deb.debian.org must be reachable.
set -euo pipefail

NAME=${1:-${SLUICE_BASE_IMAGE:-sluice-base:bookworm}}
MIRROR=${SLUICE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SLUICE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

log() { echo "make-base-image: $*" >&2; }
die() { log "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap)"
command -v docker >/dev/null || die "docker not found (apt-get install docker.io)"
docker info >/dev/null 2>&1 || die "the docker daemon is not running"

if docker image inspect "$NAME" >/dev/null 2>&1; then
    log "$NAME exists; nothing to do"
    exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap)"

start=$SECONDS
root=$(mktemp -d /var/tmp/sluice-base.XXXXXX)
raw="sluice-base-raw:$$"
box="sluice-base-upgrade-$$"
cleanup() {
    docker rm -f "$box" >/dev/null 2>&1 || true
    docker image rm "$raw" >/dev/null 2>&1 || true
    rm -rf "$root"
}
trap cleanup EXIT

log "debootstrap --variant=minbase bookworm into $root"
debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$root.log" 2>&1 \
    || { tail -30 "$root.log" >&2; rm -f "$root.log"; die "debootstrap failed"; }
rm -f "$root.log"

# The same three suites a Debian 12 host uses: the point release, its
# updates, and the security archive.
rm -f "$root/etc/apt/sources.list"
cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
# Image layers should not keep what apt downloads, nor recommended extras,
# nor translated package descriptions.
cat >"$root/etc/apt/apt.conf.d/90sluice-image" <<'EOF'
Acquire::Languages "none";
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Binary::apt::APT::Keep-Downloaded-Packages "false";
EOF
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*

log "importing as $raw"
tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "$raw" >/dev/null

# Upgrade inside a container rather than a chroot: package scripts then see
# a normal /proc and /dev.
log "upgrading from bookworm-updates and bookworm-security"
docker run --name "$box" "$raw" bash -c \
    'export DEBIAN_FRONTEND=noninteractive; apt-get update -q && apt-get upgrade -y -q && apt-get clean && rm -rf /var/lib/apt/lists/*' \
    >"$root/upgrade.log" 2>&1 || { tail -30 "$root/upgrade.log" >&2; die "upgrade failed"; }
docker commit --change 'CMD ["bash"]' "$box" "$NAME" >/dev/null
log "made $NAME ($(docker image inspect -f '{{.Size}}' "$NAME" | awk '{printf "%.0f MB", $1/1e6}')) in $((SECONDS - start)) s"
