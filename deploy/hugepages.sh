#!/usr/bin/env bash
# sluice-hugepages: reserve hugepages for sluice now and at every boot, and mount them.
#
# 2 MiB pages: reserved now through sysfs, and at boot through
#   /etc/sysctl.d/80-sluice-hugepages.conf (vm.nr_hugepages, which counts pages of the
#   default size: 2 MiB on x86 unless default_hugepagesz= says otherwise).
# 1 GiB pages: they need 1 GiB of physically contiguous free memory each, which a
#   machine that has been up for a while rarely has, so they belong on the kernel
#   command line (hugepagesz=1G hugepages=N, reserved before anything fragments memory).
#   This script tries a reservation now anyway and prints the command-line change when
#   the kernel has not got them.
# Mounts: /dev/hugepages is systemd's own dev-hugepages.mount (default page size);
#   /dev/hugepages1G is dev-hugepages1G.mount from this kit (pagesize=1G), enabled here
#   when 1 GiB pages are asked for. EAL uses every mounted size.
#
# Never lowers a reservation that is already larger (another DPDK program may use it).
# Exit status: 0 when the pages asked for are reserved and mounted, 1 when something
# still needs the operator (a reboot with the new command line, more memory), 2 on a
# usage error. With --dry-run nothing is changed and it says what it would do. Safe to
# rerun.
#
# Usage: sluice-hugepages [--dry-run] [--pages-2m N] [--pages-1g N]
#   --pages-2m N  2 MiB pages to reserve (default 1024: 2 GiB)
#   --pages-1g N  1 GiB pages to reserve (default 0)
#
# SLUICE_SYS, SLUICE_PROC and SLUICE_ETC (default /sys, /proc, /etc) let the tests point
# it at a fake tree.
set -euo pipefail

SYS=${SLUICE_SYS:-/sys}
PROC=${SLUICE_PROC:-/proc}
ETC=${SLUICE_ETC:-/etc}
PAGES_2M=1024
PAGES_1G=0
DRY_RUN=0
SYSCTL_FILE=$ETC/sysctl.d/80-sluice-hugepages.conf
MOUNT_1G=/dev/hugepages1G
MOUNT_UNIT_1G="dev-hugepages1G.mount"

usage() { sed -n '/^# Usage:/,/^#$/s/^# \{0,1\}//p' "$0" >&2; exit 2; }
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --pages-2m) PAGES_2M=${2:-}; shift ;;
        --pages-1g) PAGES_1G=${2:-}; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "hugepages: unknown argument '$1'" >&2; usage ;;
    esac
    shift
done
[[ $PAGES_2M =~ ^[0-9]+$ && $PAGES_1G =~ ^[0-9]+$ ]] || { echo "hugepages: page counts must be numbers" >&2; usage; }

say() { echo "hugepages: $*"; }
TODO=()
todo() { TODO+=("$*"); }
act() {
    if ((DRY_RUN)); then
        say "dry run: would run: $*"
    else
        say "running: $*"
        "$@"
    fi
}
# Writes $2 into file $1 unless it already holds exactly that.
write_file() {
    local path=$1 content=$2
    if [[ -f $path && $(cat "$path") == "$content" ]]; then
        say "$path: up to date"
    elif ((DRY_RUN)); then
        say "dry run: would write $path:"
        while IFS= read -r l; do echo "    $l"; done <<<"$content"
    else
        mkdir -p "$(dirname "$path")"
        printf '%s\n' "$content" >"$path"
        say "wrote $path"
    fi
}
((DRY_RUN)) && say "dry run: nothing will be changed"
if ((!DRY_RUN)) && [[ $(id -u) -ne 0 ]]; then
    say "must run as root (try --dry-run)"
    exit 1
fi

systemd_running() { [[ -d /run/systemd/system ]]; }
mounted_with() { # size-kB: the mount point of a hugetlbfs of that page size, if any
    local want=$1 default_kb mnt type opts _ size
    default_kb=$(awk '/^Hugepagesize:/ {print $2}' "$PROC/meminfo")
    while read -r _ mnt type opts _; do
        [[ $type == hugetlbfs ]] || continue
        size=$default_kb
        if [[ $opts =~ pagesize=([0-9]+)([KMG]) ]]; then
            case ${BASH_REMATCH[2]} in
                K) size=${BASH_REMATCH[1]} ;;
                M) size=$((BASH_REMATCH[1] * 1024)) ;;
                G) size=$((BASH_REMATCH[1] * 1048576)) ;;
            esac
        fi
        if [[ $size == "$want" ]]; then echo "$mnt"; return 0; fi
    done <"$PROC/mounts"
    return 0
}
cmdline=$(cat "$PROC/cmdline" 2>/dev/null || true)
default_kb=$(awk '/^Hugepagesize:/ {print $2}' "$PROC/meminfo")

# ---- 2 MiB pages ----
dir2m=$SYS/kernel/mm/hugepages/hugepages-2048kB
if [[ ! -d $dir2m ]]; then
    say "2 MiB pages: this kernel has none ($dir2m missing)"
    ((PAGES_2M == 0)) || todo "2 MiB hugepages are not supported by this kernel"
else
    have=$(cat "$dir2m/nr_hugepages")
    free=$(cat "$dir2m/free_hugepages")
    if ((have >= PAGES_2M)); then
        say "2 MiB pages: $have reserved ($free free), $PAGES_2M asked: nothing to do now"
    else
        say "2 MiB pages: $have reserved, $PAGES_2M asked"
        if ((DRY_RUN)); then
            say "dry run: would write $PAGES_2M to $dir2m/nr_hugepages"
        else
            echo "$PAGES_2M" >"$dir2m/nr_hugepages" || true
            got=$(cat "$dir2m/nr_hugepages")
            say "2 MiB pages: now $got reserved"
            ((got >= PAGES_2M)) || todo "only $got of $PAGES_2M 2 MiB pages could be reserved now (not enough free memory); the boot-time reservation below has the best chance"
        fi
    fi
    # Persistent: vm.nr_hugepages counts pages of the default size.
    if [[ $default_kb == 2048 ]]; then
        write_file "$SYSCTL_FILE" "# Written by sluice-hugepages: 2 MiB hugepages reserved at boot for sluice (DPDK).
vm.nr_hugepages = $PAGES_2M"
    else
        say "the default hugepage size is ${default_kb} kB (default_hugepagesz= on the kernel command line), so vm.nr_hugepages would count those: not writing $SYSCTL_FILE"
        todo "reserve 2 MiB pages at boot on the kernel command line instead: hugepagesz=2M hugepages=$PAGES_2M"
    fi
    mnt=$(mounted_with 2048)
    if [[ -n $mnt ]]; then
        say "2 MiB pages: mounted at $mnt"
    elif systemd_running; then
        act systemctl start dev-hugepages.mount || todo "mount hugetlbfs on /dev/hugepages (systemctl status dev-hugepages.mount)"
    else
        # No systemd (a container or a minimal VM): mount it now; at boot, systemd's
        # dev-hugepages.mount does it on any ordinary Debian.
        act mkdir -p /dev/hugepages
        act mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages || todo "mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages"
    fi
fi

# ---- 1 GiB pages ----
dir1g=$SYS/kernel/mm/hugepages/hugepages-1048576kB
if ((PAGES_1G == 0)); then
    say "1 GiB pages: none asked (--pages-1g N to reserve some)"
elif [[ ! -d $dir1g ]]; then
    say "1 GiB pages: this CPU or kernel has none ($dir1g missing; the CPU flag is pdpe1gb)"
    todo "1 GiB pages are not available here: use 2 MiB pages"
else
    have=$(cat "$dir1g/nr_hugepages")
    on_cmdline=0
    [[ " $cmdline " =~ \ hugepagesz=1G\ hugepages=([0-9]+) ]] && on_cmdline=${BASH_REMATCH[1]}
    if ((have < PAGES_1G)); then
        say "1 GiB pages: $have reserved, $PAGES_1G asked"
        if ((DRY_RUN)); then
            say "dry run: would write $PAGES_1G to $dir1g/nr_hugepages (works only while that much contiguous memory is free)"
        else
            echo "$PAGES_1G" >"$dir1g/nr_hugepages" || true
            have=$(cat "$dir1g/nr_hugepages")
            say "1 GiB pages: now $have reserved"
        fi
    else
        say "1 GiB pages: $have reserved, $PAGES_1G asked: nothing to do now"
    fi
    if ((on_cmdline >= PAGES_1G)); then
        say "1 GiB pages: the kernel command line reserves $on_cmdline at boot"
    else
        say "1 GiB pages: to reserve them at every boot, add to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub:"
        say "    hugepagesz=1G hugepages=$PAGES_1G"
        say "  then run update-grub and reboot (keep default_hugepagesz unset, so /dev/hugepages stays 2 MiB)"
        todo "put 'hugepagesz=1G hugepages=$PAGES_1G' on the kernel command line (/etc/default/grub, update-grub, reboot)"
    fi
    ((DRY_RUN || have >= PAGES_1G)) || todo "only $have of $PAGES_1G 1 GiB pages are reserved until the next boot with the command line above"
    mnt=$(mounted_with 1048576)
    if [[ -n $mnt ]]; then
        say "1 GiB pages: mounted at $mnt"
    elif systemd_running; then
        if [[ -f $ETC/systemd/system/$MOUNT_UNIT_1G || -f /lib/systemd/system/$MOUNT_UNIT_1G ]]; then
            act systemctl enable --now "$MOUNT_UNIT_1G" || todo "mount $MOUNT_1G (systemctl status $MOUNT_UNIT_1G)"
        else
            say "$MOUNT_UNIT_1G is not installed (deploy/install.sh installs it)"
            todo "install $MOUNT_UNIT_1G (deploy/install.sh), then run this again"
        fi
    else
        act mkdir -p "$MOUNT_1G"
        act mount -t hugetlbfs -o pagesize=1G nodev "$MOUNT_1G" || todo "mount -t hugetlbfs -o pagesize=1G nodev $MOUNT_1G"
        say "no systemd here: that mount lasts until the next boot (or add to /etc/fstab: nodev $MOUNT_1G hugetlbfs pagesize=1G 0 0)"
    fi
fi

if ((${#TODO[@]})); then
    say "not everything is in place; left to do:"
    for t in "${TODO[@]}"; do say "  - $t"; done
    exit 1
fi
if ((DRY_RUN)); then
    say "dry run: done (the steps above are what a real run would do)"
else
    say "done: hugepages reserved and mounted"
fi
