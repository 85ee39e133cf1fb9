#!/usr/bin/env bash
# Regenerates the captured seeds of the fuzz targets (as root):
#   fuzz/corpus/pipeline/capture-*   real traffic through sluice, per scenario
#   fuzz/corpus/control/ctl-*        the requests `sluice ctl` really sends
#
# Brings up a testbed (scripts/testbed.sh, 2 reals, offloads off so that the
# captured checksums are complete), runs `sluice run` on fuzz/pipeline.toml in
# the lb namespace, and for each scenario (curl to each TCP service, UDP to
# each UDP service, ping, arping, a port without service) captures both of
# sluice's ports with tcpdump; corpus-tools/pcap2seeds.py turns each pair of
# captures into a seed. Then it runs a few `sluice ctl` commands through a
# recording proxy in front of the control socket. Everything is torn down on
# exit. SLUICE_BIN=PATH uses that binary instead of building one.
set -euo pipefail
FUZZ=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=$(dirname "$FUZZ")
cd "$ROOT"
NAME=fuzzcap
OUT_PIPE=$FUZZ/corpus/pipeline
OUT_CTL=$FUZZ/corpus/control
WORK=$(mktemp -d /tmp/sluice-fuzzcap.XXXXXX)
SOCK=$WORK/sluice.sock
SLUICE_PID=

if [[ -d $HOME/.cargo/bin && :$PATH: != *":$HOME/.cargo/bin:"* ]]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
command -v tcpdump >/dev/null || apt-get install -y tcpdump
scripts/setup-host.sh
if [[ -z ${SLUICE_BIN:-} ]]; then
    cargo build --release
    SLUICE_BIN="${CARGO_TARGET_DIR:-target}/release/sluice"
fi
SLUICE_BIN=$(realpath "$SLUICE_BIN")

cleanup() {
    local rc=$?
    if [[ -n $SLUICE_PID ]]; then
        kill -INT "$SLUICE_PID" 2>/dev/null || true
        wait "$SLUICE_PID" 2>/dev/null || true
    fi
    scripts/testbed.sh down "$NAME" >/dev/null 2>&1 || true
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() { local role=$1; shift; ip netns exec "$NAME-$role" "$@"; }

scripts/testbed.sh down "$NAME" >/dev/null 2>&1 || true
scripts/testbed.sh up "$NAME" --reals 2 --offloads off
# The fuzz target's configuration, with a control socket of our own.
{ cat "$FUZZ/pipeline.toml"; printf '\n[control]\nsocket = "%s"\n' "$SOCK"; } >"$WORK/sluice.toml"
ip netns exec "$NAME-lb" "$SLUICE_BIN" run --config "$WORK/sluice.toml" </dev/null >"$WORK/sluice.out" 2>"$WORK/sluice.err" &
SLUICE_PID=$!
for ((i = 0; i < 300; i++)); do
    grep -qx 'sluice: ready' "$WORK/sluice.out" && break
    kill -0 "$SLUICE_PID" 2>/dev/null || { cat "$WORK/sluice.err" >&2; exit 1; }
    sleep 0.1
done
grep -qx 'sluice: ready' "$WORK/sluice.out" || { echo "capture: sluice not ready" >&2; exit 1; }
WAN_MAC=$(in_ns lb cat /sys/class/net/lb-wan/address)
LAN_MAC=$(in_ns lb cat /sys/class/net/lb-lan/address)

UDP_SEND='import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(2)
for i in range(3):
    s.sendto(b"fuzz seed %d" % i, ("10.10.0.100", int(sys.argv[1])))
    try: s.recv(2048)
    except OSError: pass'

scenario() {
    local name=$1; shift
    # Not through in_ns (as sluice above): $! must be the process itself (ip
    # netns exec execs it), not a subshell that sits out the SIGINT.
    ip netns exec "$NAME-lb" tcpdump -i lb-wan -s 0 -U -w "$WORK/wan.pcap" 2>/dev/null &
    local t1=$!
    ip netns exec "$NAME-lb" tcpdump -i lb-lan -s 0 -U -w "$WORK/lan.pcap" 2>/dev/null &
    local t2=$!
    sleep 1
    "$@" || true
    sleep 1
    kill -INT "$t1" "$t2"; wait "$t1" "$t2" 2>/dev/null || true
    python3 "$FUZZ/corpus-tools/pcap2seeds.py" --wan-mac "$WAN_MAC" --lan-mac "$LAN_MAC" \
        "$WORK/wan.pcap" "$WORK/lan.pcap" "$OUT_PIPE/capture-$name"
}

client() { in_ns client "$@"; }
curl_get() { client curl -sS -o /dev/null --connect-timeout 3 -m 5 "$@"; }

mkdir -p "$OUT_PIPE" "$OUT_CTL"
# The first scenario also resolves every neighbour.
scenario nat-http      curl_get http://10.10.0.100/whoami
scenario fullnat-http  curl_get http://10.10.0.100:443/whoami
scenario synproxy-nat  curl_get http://10.10.0.100:90/whoami
scenario synproxy-fullnat curl_get http://10.10.0.100:91/whoami
s_persistence() { curl_get http://10.10.0.100:8000/; curl_get http://10.10.0.100:8000/; }
s_no_service() { curl_get http://10.10.0.100:81/; client python3 -c "$UDP_SEND" 54; }
s_ping() { client ping -c 2 -i 0.2 10.10.0.100; client ping -c 2 -i 0.2 10.10.0.1; }
s_arp() { client arping -c 2 -w 2 -I eth0 10.10.0.100; client arping -c 1 -w 1 -I eth0 10.10.0.1; }
scenario persistence   s_persistence
scenario udp-nat       client python3 -c "$UDP_SEND" 53
scenario udp-fullnat   client python3 -c "$UDP_SEND" 5353
scenario no-service    s_no_service
scenario ping          s_ping
scenario arp           s_arp

# `sluice ctl` requests, recorded on their way to the control socket.
python3 - "$SOCK" "$WORK/proxy.sock" "$OUT_CTL" <<'PY' &
import os, socket, sys
real, path, out = sys.argv[1:]
srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen(8)
n = 0
while True:
    c, _ = srv.accept()
    req = b""
    while not req.endswith(b"\n"):
        chunk = c.recv(65536)
        if not chunk:
            break
        req += chunk
    n += 1
    # The control target reads a mode byte first (0: a request).
    with open(os.path.join(out, "ctl-%02d" % n), "wb") as f:
        f.write(b"\x00" + req)
    u = socket.socket(socket.AF_UNIX); u.connect(real); u.sendall(req); u.shutdown(socket.SHUT_WR)
    while True:
        chunk = u.recv(65536)
        if not chunk:
            break
        c.sendall(chunk)
    u.close(); c.close()
PY
PROXY_PID=$!
for ((i = 0; i < 50; i++)); do [[ -S $WORK/proxy.sock ]] && break; sleep 0.1; done
ctl() { "$SLUICE_BIN" ctl --socket "$WORK/proxy.sock" "$@" >/dev/null || true; }
ctl -L -n
ctl -A -t 10.10.0.100:8080 -s rr -p 120
ctl -a -t 10.10.0.100:8080 -r 192.168.10.2:8080 -w 3
ctl -e -t 10.10.0.100:8080 -r 192.168.10.2:8080 -w 0
ctl -A -t 10.10.0.100:4443 -s mh --sched-flags mh-port
ctl --add-laddr -t 10.10.0.100:4443 -z 192.168.10.102
ctl -a -t 10.10.0.100:4443 -r 192.168.10.3:8080 -b
ctl -E -t 10.10.0.100:90 -s wlc --synproxy auto
ctl --set 600 60 120
ctl route add 172.17.0.0/16 via 192.168.10.254
ctl neigh add 192.168.10.9 lladdr 02:00:00:00:00:09 port 1
ctl -L -n -c
ctl --get-laddr -t 10.10.0.100:443
ctl -S
printf -- '-A -u 10.10.0.100:514 -s rr\n-a -u 10.10.0.100:514 -r 192.168.10.3:514\n' | "$SLUICE_BIN" ctl --socket "$WORK/proxy.sock" -R >/dev/null || true
ctl -d -t 10.10.0.100:4443 -r 192.168.10.3:8080
ctl --del-laddr -t 10.10.0.100:4443 -z 192.168.10.102
ctl -D -t 10.10.0.100:8080
ctl route del 172.17.0.0/16
ctl neigh del 192.168.10.9
ctl sysctl expire_nodest_conn 1
ctl counters
ctl -Z
ctl -C
kill "$PROXY_PID" 2>/dev/null || true
echo "capture: seeds in $OUT_PIPE and $OUT_CTL"
