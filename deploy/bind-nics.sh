#!/usr/bin/env bash
# sluice-bind-nics: bind the NICs sluice drives to vfio-pci, after checking the IOMMU.
#
# Reads the NIC list (default /etc/sluice/nics.conf: one PCI address a line, optionally
# followed by the driver, vfio-pci by default; # starts a comment), then:
#   1. reports whether the IOMMU is on (vfio-pci needs it to fence the NIC's DMA);
#   2. loads vfio-pci when it is not (modules-load.d/sluice-vfio.conf loads it at boot);
#   3. binds each listed NIC with dpdk-devbind.py (Debian package `dpdk`), unless it is
#      already bound, is in use by the kernel (has addresses or routes), or is a Mellanox
#      NIC (DPDK's mlx4/mlx5 drivers work through the kernel driver: never rebind those);
#   4. checks the driver each NIC ended up with (dpdk-devbind.py exits 0 even when it
#      refuses), and warns about other devices in its IOMMU group still on a kernel driver.
# Exit status: 0 when every listed NIC is bound (or none is listed), 1 otherwise.
# With --dry-run it changes nothing and says what it would do; the exit status still
# says whether a real run would get there. Safe to rerun: bound NICs are left alone.
#
# Usage: sluice-bind-nics [--dry-run] [--config FILE]
#
# SLUICE_SYS and SLUICE_PROC (default /sys and /proc) let the tests point it at a fake
# tree.
set -euo pipefail

SYS=${SLUICE_SYS:-/sys}
PROC=${SLUICE_PROC:-/proc}
CONFIG=/etc/sluice/nics.conf
DRY_RUN=0
DEFAULT_DRIVER=vfio-pci

usage() { sed -n '/^# Usage:/s/^# //p' "$0" >&2; exit 2; }
while (($#)); do
    case $1 in
        --dry-run) DRY_RUN=1 ;;
        --config) CONFIG=${2:?--config needs a file}; shift ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "bind-nics: unknown argument '$1'" >&2; usage ;;
    esac
    shift
done

say() { echo "bind-nics: $*"; }
FAILED=0
fail() { say "FAIL: $*"; FAILED=1; }
# Runs a command that changes the system, or with --dry-run only prints it.
act() {
    if ((DRY_RUN)); then
        say "dry run: would run: $*"
    else
        say "running: $*"
        "$@"
    fi
}
((DRY_RUN)) && say "dry run: nothing will be changed"
if ((!DRY_RUN)) && [[ $(id -u) -ne 0 ]]; then
    say "must run as root to bind NICs (try --dry-run)"
    exit 1
fi

# ---- the NIC list ----
NICS=() DRIVERS=()
if [[ -r $CONFIG ]]; then
    lineno=0
    while IFS= read -r line || [[ -n $line ]]; do
        lineno=$((lineno + 1))
        line=${line%%#*}
        read -r addr driver extra <<<"$line" || true
        [[ -n ${addr:-} ]] || continue
        if [[ -n ${extra:-} ]]; then
            fail "$CONFIG:$lineno: expected 'PCI-ADDRESS [DRIVER]', got '$line'"
            continue
        fi
        # Accept the short form 03:00.0 for domain 0000, as lspci prints it.
        [[ $addr =~ ^[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]] && addr="0000:$addr"
        if ! [[ $addr =~ ^[0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]$ ]]; then
            fail "$CONFIG:$lineno: '$addr' is not a PCI address (like 0000:03:00.0)"
            continue
        fi
        NICS+=("${addr,,}")
        DRIVERS+=("${driver:-$DEFAULT_DRIVER}")
    done <"$CONFIG"
else
    say "no NIC list at $CONFIG"
fi

# ---- the IOMMU ----
iommu_groups=0
if [[ -d $SYS/kernel/iommu_groups ]]; then
    iommu_groups=$(find "$SYS/kernel/iommu_groups" -mindepth 1 -maxdepth 1 | wc -l)
fi
cmdline=$(cat "$PROC/cmdline" 2>/dev/null || true)
vendor=$(awk -F': ' '/^vendor_id/ {print $2; exit}' "$PROC/cpuinfo" 2>/dev/null || true)
noiommu=N
[[ -r $SYS/module/vfio/parameters/enable_unsafe_noiommu_mode ]] &&
    noiommu=$(cat "$SYS/module/vfio/parameters/enable_unsafe_noiommu_mode")
IOMMU_ON=0
if ((iommu_groups > 0)); then
    IOMMU_ON=1
    say "IOMMU: on ($iommu_groups groups in $SYS/kernel/iommu_groups)"
else
    asked=""
    for word in $cmdline; do
        case $word in intel_iommu=* | amd_iommu=* | iommu=*) asked+="$word " ;; esac
    done
    say "IOMMU: off: no IOMMU groups in $SYS/kernel/iommu_groups${asked:+ (although the kernel command line has: ${asked% })}"
    if [[ $vendor == AuthenticAMD ]]; then
        hint="enable AMD-Vi (IOMMU) in the firmware setup; the kernel turns it on by itself (amd_iommu=on is not needed, iommu=pt keeps host devices fast)"
    else
        hint="enable VT-d in the firmware setup and add 'intel_iommu=on iommu=pt' to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then update-grub and reboot"
    fi
    say "  vfio-pci needs the IOMMU to confine each NIC's DMA to sluice's memory: $hint."
    if command -v systemd-detect-virt >/dev/null && virt=$(systemd-detect-virt --vm 2>/dev/null); then
        say "  This is a virtual machine ($virt): its hypervisor must give it a virtual IOMMU (QEMU: -device intel-iommu or amd-iommu) and pass the NICs through."
    fi
    say "  Unsafe last resort, only on a machine you trust entirely (the NIC can then write anywhere in memory): modprobe vfio enable_unsafe_noiommu_mode=1 (or echo 1 > $SYS/module/vfio/parameters/enable_unsafe_noiommu_mode)."
    [[ $noiommu == Y ]] && say "  vfio no-IOMMU mode is enabled (unsafe): binding anyway"
fi

if ((${#NICS[@]} == 0)); then
    if ((FAILED)); then
        say "no valid NIC in $CONFIG"
        exit 1
    fi
    say "no NIC listed in $CONFIG: nothing to bind (add one PCI address a line; 'dpdk-devbind.py --status-dev net' lists the NICs)"
    exit 0
fi

needs_vfio=0
for d in "${DRIVERS[@]}"; do [[ $d == vfio-pci ]] && needs_vfio=1; done
if ((needs_vfio && !IOMMU_ON)) && [[ $noiommu != Y ]]; then
    fail "not binding to vfio-pci with the IOMMU off (see above)"
    exit 1
fi

# ---- the driver modules ----
for d in $(printf '%s\n' "${DRIVERS[@]}" | sort -u); do
    if [[ -d $SYS/bus/pci/drivers/$d ]]; then
        say "driver $d: loaded"
    else
        act modprobe "$d" || fail "modprobe $d failed"
    fi
done
if ((needs_vfio)) && ! grep -qsx 'vfio-pci' /etc/modules-load.d/*.conf; then
    say "note: no /etc/modules-load.d entry loads vfio-pci at boot (deploy/install.sh installs sluice-vfio.conf); the bind unit loads it anyway"
fi

DEVBIND=$(command -v dpdk-devbind.py || true)
for candidate in /usr/bin/dpdk-devbind.py /usr/share/dpdk/usertools/dpdk-devbind.py; do
    [[ -z $DEVBIND && -x $candidate ]] && DEVBIND=$candidate
done
if [[ -z $DEVBIND ]]; then
    fail "dpdk-devbind.py not found: apt-get install dpdk (Debian puts it in /usr/bin)"
    exit 1
fi

# The kernel interface of a PCI NIC, if it has one.
ifname_of() {
    local dir=$SYS/bus/pci/devices/$1/net
    [[ -d $dir ]] && find "$dir" -mindepth 1 -maxdepth 1 -printf '%f\n' | head -n1
    return 0
}
driver_of() {
    local link=$SYS/bus/pci/devices/$1/driver
    [[ -L $link ]] && basename "$(readlink "$link")"
    return 0
}

# ---- each NIC ----
for i in "${!NICS[@]}"; do
    addr=${NICS[$i]} want=${DRIVERS[$i]}
    dev=$SYS/bus/pci/devices/$addr
    if [[ ! -e $dev ]]; then
        fail "$addr: no such PCI device (lspci -D lists them)"
        continue
    fi
    cur=$(driver_of "$addr")
    ifname=$(ifname_of "$addr")
    what="$addr${ifname:+ ($ifname)}"
    case $cur in
        mlx4_core | mlx5_core)
            say "$what: Mellanox NIC on $cur: DPDK's mlx4/mlx5 drivers use the kernel driver, so it stays bound to $cur (remove it from $CONFIG)"
            continue
            ;;
    esac
    if [[ $cur == "$want" ]]; then
        say "$what: already bound to $want"
    else
        if [[ -n $ifname ]] && { [[ -n $(ip -o addr show dev "$ifname" scope global 2>/dev/null) ]] ||
            [[ -n $(ip route show dev "$ifname" 2>/dev/null) ]]; }; then
            fail "$what: in use by the kernel (it has addresses or routes): not binding it; if this is really sluice's NIC, first run: ip addr flush dev $ifname; ip link set $ifname down"
            continue
        fi
        say "$what: on ${cur:-no driver}: binding to $want"
        if ! act "$DEVBIND" -b "$want" "$addr"; then
            fail "$what: dpdk-devbind.py failed"
            continue
        fi
        if ((!DRY_RUN)); then
            now=$(driver_of "$addr")
            if [[ $now == "$want" ]]; then
                say "$what: bound to $want"
            else
                fail "$what: still on ${now:-no driver} after dpdk-devbind.py (see its messages above)"
                continue
            fi
        fi
    fi
    # vfio-pci hands out whole IOMMU groups: every other device in the group must be on
    # vfio-pci, on no driver, or a PCI bridge, or EAL will find the group "not viable".
    group=$dev/iommu_group
    if [[ $want == vfio-pci && -d $group/devices ]]; then
        for member in "$group"/devices/*; do
            m=$(basename "$member")
            [[ $m == "$addr" ]] && continue
            mdrv=$(driver_of "$m")
            case $mdrv in
                "" | vfio-pci | pcieport) ;;
                *)
                    listed=0
                    for n in "${NICS[@]}"; do [[ $n == "$m" ]] && listed=1; done
                    ((listed)) || say "warning: $addr shares IOMMU group $(basename "$(readlink "$group")") with $m (on $mdrv): EAL will refuse the group until $m is unbound or on vfio-pci too"
                    ;;
            esac
        done
    fi
done

if ((FAILED)); then
    say "some NICs are not bound (see FAIL lines)"
    exit 1
fi
if ((DRY_RUN)); then
    say "dry run: done; a real run would bind the NICs above"
else
    say "done: every listed NIC is bound"
fi
