#!/usr/bin/env bash
# Prepare a Debian 12 host (as root) to build and test sluice.
# Idempotent: a second run skips apt when every package is already installed.
set -euo pipefail

PACKAGES=(
    libdpdk-dev dpdk-dev libclang-dev clang pkg-config
    iproute2 iputils-ping iputils-arping ethtool curl python3 bridge-utils tcpdump
    # load under live changes (tests/ctl.rs), promtool (/metrics), SYN floods
    wrk prometheus hping3
    # deploy/: dpdk-devbind.py (package dpdk), systemd-analyze for the unit checks
    dpdk systemd
    # tests/client_address.rs: losing one chosen segment of each connection (connbytes)
    iptables
)
HUGEPAGES=${SLUICE_HUGEPAGES:-512}

log() { echo "setup-host: $*" >&2; }

if [[ $(id -u) -ne 0 ]]; then
    log "must run as root (installs packages, creates namespaces, reserves hugepages)"
    exit 1
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$'; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    log "all packages already installed"
fi

# Hugepages are optional: the tests run DPDK with --no-huge. Never fail here.
if [[ -w /proc/sys/vm/nr_hugepages ]]; then
    current=$(cat /proc/sys/vm/nr_hugepages)
    if ((current < HUGEPAGES)); then
        echo "$HUGEPAGES" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
    fi
    log "hugepages (2 MiB): $(cat /proc/sys/vm/nr_hugepages)"
fi
if ! grep -qs ' /dev/hugepages hugetlbfs ' /proc/mounts; then
    mkdir -p /dev/hugepages 2>/dev/null || true
    mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null \
        || log "could not mount hugetlbfs on /dev/hugepages (fine: tests use --no-huge)"
fi

if ! command -v cargo >/dev/null 2>&1; then
    if [[ -x "$HOME/.cargo/bin/cargo" ]]; then
        log "cargo is in $HOME/.cargo/bin but not on PATH; add it (source \$HOME/.cargo/env)"
    else
        log "cargo not found: install Rust (https://rustup.rs) first"
    fi
    exit 1
fi
log "ok: $(cargo --version), DPDK $(pkg-config --modversion libdpdk)"
