#!/usr/bin/env bash
# perf/run.sh: every benchmark of perf/, one after the other, then every
# figure the targets are judged on, with its ratio.
#
#   1. perf/bench.sh      packet rate beside dpdk-testpmd 5tswap (same core, same pcap)
#   2. perf/connbench.sh  new connections: worker cycles per connection (over memif)
#   3. pipebench          the pipeline alone (no DPDK): cycles per packet, 1K and 1M sessions
#   4. perf/e2e.sh        end to end in namespaces against the kernel's NAT (skip: --no-e2e)
#
# Usage: perf/run.sh [--quick] [--no-e2e]
# Needs root (hugepages, namespaces, DPDK). Logs and JSON lines go to
# $SLUICE_PERF_DIR (default /tmp/sluice-perf/run-<time>); the summary ends the output.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
QUICK=()
E2E=1
while (($#)); do
    case $1 in
        --quick) QUICK=(--quick) ;;
        --no-e2e) E2E=0 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "run.sh: unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
OUT=${SLUICE_PERF_DIR:-/tmp/sluice-perf/run-$(date +%Y%m%dT%H%M%S)}
mkdir -p "$OUT"
cd "$ROOT"

step() { echo; echo "==== $* ===="; }

step "packet rate beside testpmd (perf/bench.sh ${QUICK[*]})"
perf/bench.sh "${QUICK[@]}" | tee "$OUT/bench.out"

step "new connections (perf/connbench.sh ${QUICK[*]})"
perf/connbench.sh "${QUICK[@]}" | tee "$OUT/connbench.out"

step "the pipeline alone (pipebench)"
cargo build --release -q -p sluice-perf --bin pipebench
"${CARGO_TARGET_DIR:-target}/release/pipebench" --flows 1000 --flows 1000000 \
    --packets "$([[ ${#QUICK[@]} -gt 0 ]] && echo 1000000 || echo 4000000)" | tee "$OUT/pipebench.out"

if ((E2E)); then
    step "end to end against the kernel's NAT (perf/e2e.sh ${QUICK[*]})"
    perf/e2e.sh "${QUICK[@]}" | tee "$OUT/e2e.out"
fi

step "summary against the targets (issue 4)"
python3 - "$OUT" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
def lines(name):
    p = out / name
    if not p.exists():
        return []
    res = []
    for l in p.read_text().splitlines():
        l = l.strip()
        if l.startswith("{"):
            try:
                res.append(json.loads(l))
            except ValueError:
                pass
    return res
bench = {j["case"]: j for j in lines("bench.out") if "case" in j and "ratio" in j}
conn = [j for j in lines("connbench.out") if j.get("tool") == "connbench.sh"]
pipe = {j["case"]: j for j in lines("pipebench.out") if j.get("case", "").startswith("pipeline-")}
def row(target, value, ok):
    print(f"  {target:48} {value:40} {'met' if ok else 'NOT met'}")
def mpps(case):
    return bench.get(case, {}).get("sluice_mpps")
for mode in ("nat", "fullnat"):
    b1k, b1m = bench.get(f"{mode}-tcp-1k"), bench.get(f"{mode}-tcp-1m")
    if b1m and mode == "fullnat":
        row("FULLNAT, 1M sessions >= 50% of testpmd", f"{b1m['ratio']*100:.1f}% ({b1m['sluice_mpps']:.2f} / {b1m['testpmd_mpps']:.2f} Mpps)", b1m["ratio"] >= 0.5)
    if b1k:
        row(f"{mode}: 1K sessions >= 65% of testpmd", f"{b1k['ratio']*100:.1f}% ({b1k['sluice_mpps']:.2f} / {b1k['testpmd_mpps']:.2f} Mpps)", b1k["ratio"] >= 0.65)
    if b1k and b1m:
        r = b1m["sluice_mpps"] / b1k["sluice_mpps"]
        row(f"{mode}: 1M rate >= 80% of the 1K rate", f"{r*100:.1f}%", r >= 0.8)
for c in conn:
    row(f"{c['mode']} ({c.get('transport', 'af_packet')}): <= 2,600 worker cycles per connection", f"{c['cycles_per_conn']} ({c.get('user_cycles_per_conn', '?')} in user space)", c["cycles_per_conn"] <= 2600)
for case, j in sorted(pipe.items()):
    print(f"  {case:48} {j['cycles_per_pkt']} cycles/packet, {j['session_bytes']} bytes/session")
sizes = [j["session_bytes"] for j in pipe.values() if j["sessions"] >= 1000000]
if sizes:
    row("<= 128 bytes per session", f"{max(sizes)} bytes", max(sizes) <= 128)
print(f"  logs: {out}")
PY
