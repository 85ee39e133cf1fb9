#!/usr/bin/env python3
"""Live configuration changes at a steady rate, for perf/bench.sh --changes.

    changes.py SOCKET RATE PROTO MODE

Sends RATE changes per second to a running sluice over its control socket
(one request per connection, as `sluice ctl` does): the weight of real
10.2.0.3:8080 of service PROTO 10.0.0.100:80 (perf/configs/MODE.toml.in)
alternates between 1 and 2. Every change makes sluice build and publish a
new snapshot, which every worker picks up between two bursts. On SIGTERM
prints `changes=N failed=M elapsed=S` and exits.
"""

import json
import signal
import socket
import sys
import time


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    path, rate, proto, mode = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4]
    if not 0 < rate <= 10000:
        sys.exit("RATE must be in (0, 10000]")
    done = failed = 0
    stop = False

    def on_term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    start = time.monotonic()
    key = {"proto": proto, "vip": "10.0.0.100:80"}
    while not stop:
        weight = 1 + done % 2
        change = {
            "op": "edit_real",
            "key": key,
            "real": {"addr": "10.2.0.3:8080", "weight": weight, "mode": mode},
        }
        request = {"version": 1, "request": "apply", "changes": [change]}
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(2)
            s.connect(path)
            s.sendall(json.dumps(request).encode() + b"\n")
            s.shutdown(socket.SHUT_WR)
            answer = b""
            while chunk := s.recv(4096):
                answer += chunk
            s.close()
            ok = json.loads(answer).get("status") == "ok"
        except (OSError, ValueError):
            ok = False
        done += 1
        failed += 0 if ok else 1
        # Keep the rate steady whatever a request took.
        next_at = start + done / rate
        delay = next_at - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    print(f"changes={done} failed={failed} elapsed={time.monotonic() - start:.1f}", flush=True)


if __name__ == "__main__":
    main()
