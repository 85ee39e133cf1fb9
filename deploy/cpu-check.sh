#!/usr/bin/env bash
# sluice-cpu-check: are the CPUs of sluice's worker lcores kept free for them?
#
# Reads sluice's configuration (default /etc/sluice/sluice.toml), takes the lcores from
# its EAL arguments (-l LIST, -c MASK, --lcores MAP, --main-lcore N; the main lcore is
# the lowest unless --main-lcore says otherwise, and does control work; every other
# lcore busy-polls), and checks, for the CPUs those workers run on:
#   - isolcpus, nohz_full and rcu_nocbs on the kernel command line cover them (no other
#     task scheduled there, no timer tick, no RCU callbacks);
#   - no IRQ may be delivered to them (/proc/irq/*/smp_affinity_list);
#   - irqbalance is not running, or is told to leave them alone
#     (IRQBALANCE_BANNED_CPULIST in /etc/default/irqbalance);
#   - their frequency governor is "performance" (when the kernel exposes cpufreq);
#   - they exist and are online, and no worker shares a CPU with the main lcore.
# Prints one line per check, then what to change. Exit status: 0 when everything is in
# place, 1 when something is missing, 2 when the configuration cannot be read.
#
# With --fix it also changes what can be changed at run time (not the command line, not
# irqbalance): IRQ affinities moved to the other CPUs, governors set to performance.
# --dry-run (alone or with --fix) changes nothing and prints what --fix would do.
#
# Usage: sluice-cpu-check [--config FILE] [--fix] [--dry-run]
#
# SLUICE_SYS, SLUICE_PROC and SLUICE_ETC (default /sys, /proc, /etc) let the tests point
# it at a fake tree.
set -euo pipefail

SYS=${SLUICE_SYS:-/sys}
PROC=${SLUICE_PROC:-/proc}
ETC=${SLUICE_ETC:-/etc}
CONFIG=/etc/sluice/sluice.toml
FIX=0
DRY_RUN=0
PYTHON=/usr/bin/python3 # Debian's own: it has tomllib (Python 3.11)

usage() { sed -n '/^# Usage:/s/^# //p' "$0" >&2; exit 2; }
while (($#)); do
    case $1 in
        --config) CONFIG=${2:?--config needs a file}; shift ;;
        --fix) FIX=1 ;;
        --dry-run) DRY_RUN=1 ;;
        -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "cpu-check: unknown argument '$1'" >&2; usage ;;
    esac
    shift
done

say() { echo "cpu-check: $*"; }
MISSING=0
ok() { say "ok: $*"; }
missing() { say "MISSING: $*"; MISSING=1; }
GUIDE=()
guide() { GUIDE+=("$*"); }

# ---- CPU lists: "0-3,8" <-> one number a line ----
expand() {
    local part a b
    local IFS=,
    for part in $1; do
        part=${part// /}
        [[ -n $part ]] || continue
        if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
            a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
            seq "$a" "$b"
        elif [[ $part =~ ^[0-9]+$ ]]; then
            echo "$part"
        fi
    done
}
# Compresses numbers (one a line, any order) into a list such as "0-3,8".
compress() {
    sort -n -u | awk 'NR == 1 {s = p = $1; next}
        $1 == p + 1 {p = $1; next}
        {printf "%s%s,", s, (s == p ? "" : "-" p); s = p = $1}
        END {if (NR) printf "%s%s", s, (s == p ? "" : "-" p); print ""}'
}
# The numbers of list $1 that are not in list $2.
minus() { comm -23 <(expand "$1" | sort -u) <(expand "$2" | sort -u) | compress; }
intersect() { comm -12 <(expand "$1" | sort -u) <(expand "$2" | sort -u) | compress; }

# ---- the lcores, from the configuration's EAL arguments ----
[[ -r $CONFIG ]] || { say "cannot read $CONFIG"; exit 2; }
[[ -x $PYTHON ]] || PYTHON=$(command -v python3)
# Prints "lcore ID CPULIST" for each lcore, then "main ID", or an error on stderr.
lcores=$("$PYTHON" - "$CONFIG" <<'PY'
import sys, tomllib

def expand(spec):
    out = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out

def lcores_map(spec):
    # EAL --lcores: elements LCORES[@CPUS], comma-separated; a parenthesised group
    # holds commas of its own. "(0,6)" alone puts both lcores on CPUs 0 and 6; "7-8"
    # alone is lcore 7 on CPU 7 and lcore 8 on CPU 8.
    elements, depth, cur = [], 0, ""
    for ch in spec:
        if ch == "," and depth == 0:
            elements.append(cur)
            cur = ""
            continue
        depth += ch == "("
        depth -= ch == ")"
        cur += ch
    elements.append(cur)
    result = {}
    for el in filter(None, (e.strip() for e in elements)):
        left, _, right = el.partition("@")
        group = left.startswith("(")
        ids = expand(left.strip("()"))
        if right:
            cpus = expand(right.strip("()"))
            for i in ids:
                result[i] = cpus
        elif group:
            for i in ids:
                result[i] = ids
        else:
            for i in ids:
                result[i] = [i]
    return result

try:
    with open(sys.argv[1], "rb") as f:
        eal = tomllib.load(f)["dpdk"]["eal"]
    lcores, main = None, None
    i = 0
    while i < len(eal):
        a = eal[i]
        if a in ("-l", "-c", "--lcores", "--main-lcore"):
            v = eal[i + 1]
            i += 1
        elif a.startswith("--lcores=") or a.startswith("--main-lcore="):
            a, v = a.split("=", 1)
        elif a[:2] in ("-l", "-c") and len(a) > 2:
            a, v = a[:2], a[2:]
        else:
            i += 1
            continue
        i += 1
        if a == "-l":
            lcores = {n: [n] for n in expand(v)}
        elif a == "-c":
            mask = int(v, 16)
            lcores = {n: [n] for n in range(mask.bit_length()) if mask >> n & 1}
        elif a == "--lcores":
            lcores = lcores_map(v)
        else:
            main = int(v)
    if lcores is None:
        print("none")
        sys.exit(0)
    if main is None:
        main = min(lcores)
    for n in sorted(lcores):
        print("lcore", n, ",".join(map(str, lcores[n])))
    print("main", main)
except (OSError, KeyError, TypeError, ValueError, IndexError, tomllib.TOMLDecodeError) as e:
    print(f"{sys.argv[1]}: cannot read the EAL lcores: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(2)
PY
) || { say "$CONFIG: no usable [dpdk] eal lcores (see above)"; exit 2; }

online=$(cat "$SYS/devices/system/cpu/online" 2>/dev/null || echo 0)
if [[ $lcores == none ]]; then
    say "$CONFIG: the EAL arguments give no -l, -c or --lcores, so EAL takes every CPU ($online) and polls on all but the first: name the lcores explicitly"
    lcores=$(for c in $(expand "$online"); do echo "lcore $c $c"; done; echo "main $(expand "$online" | head -n1)")
fi
main=$(awk '$1 == "main" {print $2}' <<<"$lcores")
main_cpus=$(awk -v m="$main" '$1 == "lcore" && $2 == m {print $3}' <<<"$lcores")
[[ -n $main_cpus ]] || { say "$CONFIG: the main lcore $main is not among the lcores"; exit 2; }
workers=$(awk -v m="$main" '$1 == "lcore" && $2 != m {print $3}' <<<"$lcores" | tr '\n' , | sed 's/,$//')
workers=$(expand "$workers" | compress)
if [[ -z $workers ]]; then
    say "$CONFIG: only the main lcore ($main): sluice needs at least one worker lcore"
    exit 2
fi
worker_ids=$(awk -v m="$main" '$1 == "lcore" && $2 != m {print $2}' <<<"$lcores" | compress)
say "config $CONFIG: main lcore $main on CPU $main_cpus; worker lcore(s) $worker_ids on CPU(s) $workers"
housekeeping=$(minus "$online" "$workers")

# ---- the CPUs themselves ----
absent=$(minus "$workers" "$online")
if [[ -n $absent ]]; then
    missing "worker CPU(s) $absent are not online here (online: $online)"
    guide "give the workers CPUs that exist: this machine has $online"
else
    ok "worker CPU(s) $workers are online"
fi
shared=$(intersect "$workers" "$main_cpus")
if [[ -n $shared ]]; then
    missing "worker lcore(s) share CPU(s) $shared with the main lcore"
    guide "put the main lcore on a CPU of its own, outside the workers (e.g. -l $(expand "$housekeeping" | head -n1),$workers)"
fi
if [[ -z $housekeeping ]]; then
    missing "no CPU is left for the kernel and the main lcore: every online CPU polls"
    housekeeping=$main_cpus
fi

# ---- the kernel command line ----
cmdline=$(cat "$PROC/cmdline" 2>/dev/null || true)
param() { # the value of kernel parameter $1 (the last one wins, as in the kernel)
    local word value=""
    for word in $cmdline; do [[ $word == "$1="* ]] && value=${word#"$1="}; done
    echo "$value"
}
param_cpus() { # the CPU list of parameter $1, without flags such as isolcpus' "domain,"
    local v
    v=$(param "$1")
    [[ $v == all ]] && { echo "$online"; return; }
    tr ',' '\n' <<<"$v" | { grep -E '^[0-9]+(-[0-9]+)?$' || true; } | tr '\n' , | sed 's/,$//'
}
cmdline_missing=0
for p in isolcpus nohz_full rcu_nocbs; do
    have=$(param_cpus "$p")
    lacking=$(minus "$workers" "$have")
    if [[ -z $lacking ]]; then
        ok "$p=$(param "$p") covers the worker CPU(s) $workers"
    elif [[ -z $have ]]; then
        missing "$p is not on the kernel command line (needed for CPU(s) $workers)"
        cmdline_missing=1
    else
        missing "$p=$(param "$p") leaves out worker CPU(s) $lacking"
        cmdline_missing=1
    fi
done
if ((cmdline_missing)); then
    guide "kernel command line: add 'isolcpus=$workers nohz_full=$workers rcu_nocbs=$workers irqaffinity=$housekeeping' to GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, run update-grub, reboot (irqaffinity= keeps new IRQs off the workers too)"
fi

# ---- IRQs ----
# With --dry-run, says what --fix would do and succeeds (so the caller does nothing).
would() {
    if ((DRY_RUN)); then
        say "dry run: would $*"
        return 0
    fi
    return 1
}
irqs_on_workers=()
for f in "$PROC"/irq/[0-9]*/smp_affinity_list; do
    [[ -r $f ]] || continue
    irqdir=$(dirname "$f")
    irq=$(basename "$irqdir")
    on=$(intersect "$(cat "$f")" "$workers")
    [[ -n $on ]] || continue
    name=$(find "$irqdir" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' 2>/dev/null | head -n1)
    irqs_on_workers+=("$irq${name:+ ($name)}")
    if ((FIX)); then
        if ! would "write $housekeeping to $f (IRQ $irq${name:+ $name})"; then
            if echo "$housekeeping" >"$f" 2>/dev/null; then
                say "fixed: IRQ $irq now on CPU(s) $housekeeping"
                unset 'irqs_on_workers[-1]'
            else
                say "IRQ $irq${name:+ ($name)}: the kernel refused a new affinity (a managed IRQ, e.g. a per-CPU queue of a device: isolcpus=managed_irq,... keeps those off)"
            fi
        fi
    fi
done
if ((${#irqs_on_workers[@]})); then
    list=$(printf '%s, ' "${irqs_on_workers[@]:0:12}")
    list=${list%, }
    ((${#irqs_on_workers[@]} > 12)) && list+=" and $((${#irqs_on_workers[@]} - 12)) more"
    missing "${#irqs_on_workers[@]} IRQ(s) may be delivered to worker CPU(s) $workers: $list"
    guide "IRQs: move them to the other CPUs now with '$0 --fix' (or: echo $housekeeping > /proc/irq/N/smp_affinity_list), and keep new ones there with irqaffinity=$housekeeping on the kernel command line"
else
    ok "no IRQ is delivered to worker CPU(s) $workers"
fi

# ---- irqbalance ----
irqbalance_pid=""
for c in "$PROC"/[0-9]*/comm; do
    if [[ $(cat "$c" 2>/dev/null) == irqbalance ]]; then
        irqbalance_pid=$(basename "$(dirname "$c")")
        break
    fi
done
if [[ -z $irqbalance_pid ]]; then
    ok "irqbalance is not running"
else
    banned=""
    if [[ -r $ETC/default/irqbalance ]]; then
        banned=$(sed -n 's/^[[:space:]]*IRQBALANCE_BANNED_CPULIST=["'\'']\{0,1\}\([0-9,-]*\).*/\1/p' "$ETC/default/irqbalance" | tail -n1)
    fi
    if [[ -n $banned && -z $(minus "$workers" "$banned") ]]; then
        ok "irqbalance is running (pid $irqbalance_pid) with IRQBALANCE_BANNED_CPULIST=$banned, which keeps it off the workers"
    else
        missing "irqbalance is running (pid $irqbalance_pid) and may move IRQs onto worker CPU(s) $workers"
        guide "irqbalance: set IRQBALANCE_BANNED_CPULIST=$workers in /etc/default/irqbalance and systemctl restart irqbalance, or systemctl disable --now irqbalance"
    fi
fi

# ---- frequency governor ----
no_cpufreq=()
for cpu in $(expand "$workers"); do
    gov_file=$SYS/devices/system/cpu/cpu$cpu/cpufreq/scaling_governor
    if [[ ! -r $gov_file ]]; then
        no_cpufreq+=("$cpu")
        continue
    fi
    gov=$(cat "$gov_file")
    if [[ $gov == performance ]]; then
        ok "CPU $cpu: governor performance"
    elif ((FIX)) && ! would "write performance to $gov_file (now $gov)"; then
        if echo performance >"$gov_file" 2>/dev/null; then
            say "fixed: CPU $cpu governor performance (was $gov)"
        else
            missing "CPU $cpu: governor $gov, and the kernel refused performance"
        fi
    else
        missing "CPU $cpu: frequency governor $gov, not performance"
        guide "governor: '$0 --fix' sets performance now (or: echo performance > $gov_file); at boot: apt-get install cpufrequtils and GOVERNOR=performance in /etc/default/cpufrequtils"
    fi
done
if ((${#no_cpufreq[@]})); then
    say "note: no cpufreq for CPU(s) $(printf '%s\n' "${no_cpufreq[@]}" | compress) (a virtual machine, or the firmware controls the frequency): governor not checked; set the firmware's power profile to performance"
fi

# ---- verdict ----
if ((MISSING)); then
    say "not everything is in place for the workers on CPU(s) $workers. To do:"
    printf '%s\n' "${GUIDE[@]}" | awk '!seen[$0]++' | sed 's/^/cpu-check:   - /'
    exit 1
fi
say "everything is in place for the workers on CPU(s) $workers"
