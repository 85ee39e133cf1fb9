#!/usr/bin/env bash
# sluice's fuzz targets with cargo-fuzz (libFuzzer); see fuzz/README.md.
#
#   fuzz/run.sh smoke [SECONDS]      each target for SECONDS (default 5) from
#                                    its seeds: what scripts/test.sh runs
#   fuzz/run.sh campaign SECONDS [TARGET...]
#                                    each TARGET (default: all) for SECONDS at
#                                    nice 19, one after the other; a line per
#                                    target: executions, execs/s, coverage,
#                                    corpus size, crash
#   fuzz/run.sh build                the targets only
#
# Builds with `-s none` (no sanitizer: the code is safe Rust, and it keeps
# cargo-fuzz off nightly-only flags, so the stable toolchain does) and `-a`
# (debug assertions and overflow checks on). Build output and the corpus a
# campaign grows go to $CARGO_TARGET_DIR (default fuzz/target): the corpus in
# $CARGO_TARGET_DIR/corpus/TARGET, the seeds in fuzz/corpus/TARGET are only
# read. A crash stops with a non-zero status and leaves its input in
# fuzz/artifacts/TARGET/. Installs cargo-fuzz if it is missing.
set -euo pipefail
FUZZ=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$FUZZ"
if [[ -d $HOME/.cargo/bin && :$PATH: != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$FUZZ/target}
TARGETS=(pipeline synproxy_adjust config control)
CARGO_FUZZ_VERSION=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

build() { ${NICE:-} cargo fuzz build -s none -a "$@"; }

# libFuzzer's options for target $1: inputs up to 4 KiB, a hang is an input
# that takes 25 s, its dictionary if it has one.
options() {
    local t=$1
    local opts=(-max_len=4096 -timeout=25)
    [[ -f dicts/$t.dict ]] && opts+=("-dict=dicts/$t.dict")
    echo "${opts[@]}"
}

# Runs target $1 with libFuzzer arguments $2...: new inputs go to the
# corpus in the target directory, the seeds are read only.
run() {
    local t=$1; shift
    local grown=$CARGO_TARGET_DIR/corpus/$t
    mkdir -p "$grown" "corpus/$t"
    # shellcheck disable=SC2046
    ${NICE:-} cargo fuzz run -s none -a "$t" "$grown" "corpus/$t" -- $(options "$t") "$@"
}

# The figures of a libFuzzer log: executions, execs/s, coverage (edges and
# features) and corpus size at the end.
figures() {
    local log=$1
    local runs rate last
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    local cov ft corp
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<<"$last")
    echo "${runs:-?} executions, ${rate:-?} execs/s, cov ${cov:-?} edges, ft ${ft:-?}, corpus ${corp:-?}"
}

case ${1:-} in
    build)
        build
        ;;
    smoke)
        secs=${2:-5}
        build
        for t in "${TARGETS[@]}"; do
            log=$(mktemp)
            start=$SECONDS
            if ! run "$t" -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
                tail -n 40 "$log" >&2
                echo "fuzz: $t FAILED (input in fuzz/artifacts/$t/)" >&2
                rm -f "$log"
                exit 1
            fi
            seeds=$(find "corpus/$t" -type f | wc -l)
            echo "fuzz: $t: $((SECONDS - start)) s from $seeds seeds: $(figures "$log"), no failure"
            rm -f "$log"
        done
        ;;
    campaign)
        secs=${2:?seconds}
        shift 2
        (($# > 0)) || set -- "${TARGETS[@]}"
        export NICE="nice -n 19"
        build
        mkdir -p "$CARGO_TARGET_DIR/campaign"
        status=0
        for t in "$@"; do
            log=$CARGO_TARGET_DIR/campaign/$t-$(date +%Y%m%d-%H%M%S).log
            start=$SECONDS
            rc=0
            run "$t" -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1 || rc=$?
            crash=none
            if ((rc != 0)); then
                crash=$(sed -n "s/.*Test unit written to \(.*\)/\1/p" "$log" | tail -n 1)
                crash="exit $rc ${crash:-(see the log)}"
                status=1
            fi
            echo "fuzz: $t: $((SECONDS - start)) s: $(figures "$log"), crash: $crash; log $log"
        done
        exit "$status"
        ;;
    *)
        sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2
        exit 2
        ;;
esac
