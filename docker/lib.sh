# shellcheck shell=bash
# Shared by docker/demo.sh and docker/test.sh (sourced, not run): a docker
# engine that runs, the images, and docker-compose on docker/compose.yaml.
# The caller sets `set -euo pipefail` and defines PROG (its name in messages).

DOCKER_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$DOCKER_DIR/.." && pwd)

export SLUICE_BASE_IMAGE=${SLUICE_BASE_IMAGE:-sluice-base:bookworm}
export SLUICE_IMAGE=${SLUICE_IMAGE:-sluice:local}
export SLUICE_NODE_IMAGE=${SLUICE_NODE_IMAGE:-sluice-node:local}
DOCKERD_LOG=/var/log/sluice-dockerd.log

log() { echo "$PROG: $*" >&2; }
die() { log "FAILED: $*"; exit 1; }

# Seconds since $1 (a $SECONDS value), for the timings.
took() { echo "$((SECONDS - $1)) s"; }

need_root() {
    [[ $(id -u) -eq 0 ]] || die "must run as root (installs packages, runs the docker daemon)"
}

# docker.io, docker-compose (v1) and debootstrap from Debian, when absent.
install_packages() {
    local missing=() pkg
    for pkg in docker.io docker-compose debootstrap; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q '^install ok installed$' \
            || missing+=("$pkg")
    done
    ((${#missing[@]})) || return 0
    log "installing ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

# Starts the docker daemon unless it answers: through systemd when systemd
# runs, else dockerd in the background (it keeps running after we exit).
start_daemon() {
    docker info >/dev/null 2>&1 && return 0
    if [[ -d /run/systemd/system ]] && systemctl start docker 2>/dev/null; then
        log "started docker through systemd"
    else
        log "starting dockerd in the background (log: $DOCKERD_LOG)"
        setsid dockerd </dev/null >>"$DOCKERD_LOG" 2>&1 &
    fi
    local i
    for ((i = 0; i < 60; i++)); do
        docker info >/dev/null 2>&1 && return 0
        sleep 1
    done
    tail -20 "$DOCKERD_LOG" >&2 2>/dev/null || true
    die "the docker daemon did not come up within 60 s"
}

# The capability that lets sluice load its XDP program. Docker 20.10 knows no
# CAP_BPF and its seccomp profile allows bpf() only with SYS_ADMIN; from 23.0
# on, BPF is accepted and enough (see compose.yaml).
bpf_capability() {
    local version major
    version=$(docker version -f '{{.Server.Version}}' 2>/dev/null) || die "cannot ask the docker daemon its version"
    major=${version%%.*}
    if [[ $major =~ ^[0-9]+$ ]] && ((major >= 23)); then echo BPF; else echo SYS_ADMIN; fi
}

ensure_docker() {
    need_root
    local t=$SECONDS
    install_packages
    start_daemon
    export SLUICE_BPF_CAP=${SLUICE_BPF_CAP:-$(bpf_capability)}
    log "docker $(docker version -f '{{.Server.Version}}'), $(docker-compose version --short 2>/dev/null | sed 's/^/docker-compose /'); sluice gets ${SLUICE_BPF_CAP} for its XDP program ($(took "$t"))"
}

# Crates for the image build. From a container crates.io may be out of reach
# (no proxy or CA of the host's there), so when the host has cargo the
# crates go into the build context (target/docker-vendor, see .dockerignore);
# without cargo the build fetches them itself.
vendor_crates() {
    local vendor="$REPO_ROOT/target/docker-vendor" cargo
    cargo=$(command -v cargo || true)
    [[ -z $cargo && -x $HOME/.cargo/bin/cargo ]] && cargo=$HOME/.cargo/bin/cargo
    if [[ -z $cargo ]]; then
        rm -rf "$vendor"
        log "no cargo on the host: the image build fetches crates from crates.io"
        return 0
    fi
    # Vendored for this very Cargo.lock already: nothing to do (saves asking
    # the registry index again).
    local stamp="$vendor.lock" want
    want=$(sha256sum <"$REPO_ROOT/Cargo.lock")
    if [[ -d $vendor && -f $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    rm -f "$stamp"
    (cd "$REPO_ROOT" && "$cargo" vendor --locked --quiet "$vendor" >/dev/null) \
        || die "cargo vendor failed"
    echo "$want" >"$stamp"
}

# The base image, then the two images from docker/Dockerfile. Unchanged
# layers come from docker's cache, so a rebuild after a source change
# compiles sluice alone.
build_images() {
    local t=$SECONDS t0
    "$DOCKER_DIR/make-base-image.sh" "$SLUICE_BASE_IMAGE"
    vendor_crates
    local build_log
    build_log=$(mktemp /tmp/sluice-docker-build.XXXXXX)
    for target in node runtime; do
        local image=$SLUICE_NODE_IMAGE
        [[ $target == runtime ]] && image=$SLUICE_IMAGE
        t0=$SECONDS
        log "building $image (docker/Dockerfile, target $target)"
        # --force-rm: a failed step leaves no stopped container behind.
        if ! docker build --force-rm -f "$DOCKER_DIR/Dockerfile" --target "$target" \
            --build-arg "BASE_IMAGE=$SLUICE_BASE_IMAGE" -t "$image" "$REPO_ROOT" >"$build_log" 2>&1; then
            tail -40 "$build_log" >&2
            rm -f "$build_log"
            die "docker build of $image failed"
        fi
        log "built $image ($(took "$t0"), $(docker image inspect -f '{{.Size}}' "$image" | awk '{printf "%.0f MB", $1/1e6}'))"
    done
    rm -f "$build_log"
    log "images ready ($(took "$t"))"
}

# docker-compose on docker/compose.yaml, as project $PROJECT.
compose() {
    docker-compose --ansi never -f "$DOCKER_DIR/compose.yaml" -p "$PROJECT" "$@"
}

# Brings project $PROJECT up; shows compose's output only when it fails.
compose_up() {
    local out
    out=$(compose up -d 2>&1) || { echo "$out" >&2; die "docker-compose up failed"; }
}

# The container id of service $1 in project $PROJECT.
container_of() {
    local id
    id=$(compose ps -q "$1" 2>/dev/null) || true
    [[ -n $id ]] || die "no container for service $1 in project $PROJECT"
    echo "$id"
}

# Everything service $1 printed (stdout and stderr).
logs_of() {
    docker logs "$(container_of "$1")" 2>&1
}

# Waits up to $2 seconds for the text $3 in service $1's logs.
wait_for_log() {
    local service=$1 timeout=$2 text=$3 id i
    id=$(container_of "$service")
    for ((i = 0; i < timeout * 5; i++)); do
        [[ $(docker logs "$id" 2>&1) == *"$text"* ]] && return 0
        [[ $(docker inspect -f '{{.State.Running}}' "$id") == true ]] || break
        sleep 0.2
    done
    docker logs "$id" 2>&1 | tail -30 >&2
    die "$service: no '$text' in its log within $timeout s"
}

# Stops sluice with SIGTERM and prints its counters; fails unless it exits 0
# after printing them.
stop_sluice() {
    local id code out
    id=$(container_of sluice)
    if [[ $(docker inspect -f '{{.State.Running}}' "$id") == true ]]; then
        docker kill -s TERM "$id" >/dev/null
    fi
    code=$(timeout 40 docker wait "$id") || die "sluice did not stop within 40 s of SIGTERM"
    out=$(docker logs "$id" 2>/dev/null)
    [[ $out == *$'\nsluice counters:'* ]] || die "sluice printed no counters"
    sed -n '/^sluice counters:/,$p' <<<"$out"
    [[ $code == 0 ]] || die "sluice exited with $code"
}
