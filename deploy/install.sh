#!/usr/bin/env bash
# Installs sluice and this kit on a bare-metal Debian 12 host:
#   /usr/local/bin/sluice                     the binary (default: target/release/sluice)
#   /usr/local/sbin/sluice-hugepages          deploy/hugepages.sh
#   /usr/local/sbin/sluice-bind-nics          deploy/bind-nics.sh
#   /usr/local/sbin/sluice-cpu-check          deploy/cpu-check.sh
#   /etc/systemd/system/sluice.service, sluice-bind-nics.service, dev-hugepages1G.mount
#   /etc/modules-load.d/sluice-vfio.conf      loads vfio-pci at boot
#   /etc/sluice/sluice.toml, /etc/sluice/nics.conf   from the examples, only if absent
#   /usr/local/share/doc/sluice/deploy-README.md
# then reloads systemd and enables sluice-bind-nics.service and sluice.service (it does
# not start them: reserve hugepages, list the NICs and edit the configuration first).
#
# Files that already hold the same content are left alone, and an existing
# configuration is never overwritten, so it is safe to rerun (e.g. after a rebuild).
# --dry-run says what it would do and changes nothing. DESTDIR=DIR installs under DIR
# and skips systemctl (for packaging, and for the tests).
#
# Usage: deploy/install.sh [--dry-run] [--binary PATH]
set -euo pipefail

KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$KIT/.." && pwd)
BINARY=${CARGO_TARGET_DIR:-$ROOT/target}/release/sluice
DRY_RUN=0
DEST=${DESTDIR:-}

usage() { sed -n '/^# Usage:/s/^# //p' "$0" >&2; exit 2; }
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --binary) BINARY=${2:?--binary needs a path}; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "install: unknown argument '$1'" >&2; usage ;;
    esac
    shift
done

say() { echo "install: $*"; }
((DRY_RUN)) && say "dry run: nothing will be changed"
if ((!DRY_RUN)) && [[ -z $DEST && $(id -u) -ne 0 ]]; then
    say "must run as root (or set DESTDIR; try --dry-run)"
    exit 1
fi
if [[ ! -x $BINARY ]]; then
    say "no sluice binary at $BINARY: run 'cargo build --release' first, or give --binary PATH"
    ((DRY_RUN)) || exit 1
fi

# put SRC DST MODE [keep]: installs SRC as DEST$DST unless it is already identical; with
# "keep", never replaces an existing DST (the operator's configuration).
put() {
    local src=$1 dst=$DEST$2 mode=$3 keep=${4:-}
    if [[ -e $dst && $keep == keep ]]; then
        say "$dst: exists, kept (the example is $src)"
    elif [[ -e $dst ]] && cmp -s "$src" "$dst"; then
        say "$dst: up to date"
    elif ((DRY_RUN)); then
        say "dry run: would install $src as $dst (mode $mode)"
    else
        install -D -m "$mode" "$src" "$dst"
        say "installed $dst"
    fi
}

put "$BINARY" /usr/local/bin/sluice 0755
put "$KIT/hugepages.sh" /usr/local/sbin/sluice-hugepages 0755
put "$KIT/bind-nics.sh" /usr/local/sbin/sluice-bind-nics 0755
put "$KIT/cpu-check.sh" /usr/local/sbin/sluice-cpu-check 0755
for unit in sluice.service sluice-bind-nics.service dev-hugepages1G.mount; do
    put "$KIT/systemd/$unit" "/etc/systemd/system/$unit" 0644
done
put "$KIT/etc/modules-load.d/sluice-vfio.conf" /etc/modules-load.d/sluice-vfio.conf 0644
put "$KIT/etc/sluice.toml.example" /etc/sluice/sluice.toml 0644 keep
put "$KIT/etc/nics.conf.example" /etc/sluice/nics.conf 0644 keep
put "$KIT/README.md" /usr/local/share/doc/sluice/deploy-README.md 0644

if [[ -n $DEST ]]; then
    say "DESTDIR=$DEST: not touching systemd"
elif [[ ! -d /run/systemd/system ]]; then
    say "systemd is not running here: enable sluice-bind-nics.service and sluice.service on the target"
elif ((DRY_RUN)); then
    say "dry run: would run: systemctl daemon-reload"
    say "dry run: would run: systemctl enable sluice-bind-nics.service sluice.service"
else
    systemctl daemon-reload
    systemctl enable sluice-bind-nics.service sluice.service
fi
say "next: sluice-hugepages, list the NICs in /etc/sluice/nics.conf, edit /etc/sluice/sluice.toml, sluice-cpu-check, then systemctl start sluice (deploy/README.md)"
