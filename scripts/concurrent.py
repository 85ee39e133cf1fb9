#!/usr/bin/env python3
"""Many simultaneous HTTP/1.0 connections from one client, for the sluice testbed.

    concurrent.py COUNT URL [--timeout S] [--hold-until FILE]

Opens COUNT TCP connections to URL's host:port all at once and, only once every
attempt has finished (so all of them are open together), sends `GET path HTTP/1.0`
on each and reads each full response. Prints one summary line on stdout:

    ok=998 failed=2 r1=499 r2=499 client:192.168.10.100=500 client:192.168.10.101=498 elapsed=1.42

ok/failed count requests (a connection that could not be opened is failed); rK=N
counts the answers per real server and client:IP=N the client address the reals
reported, both parsed from `/whoami`-style bodies ("NAME client=IP:PORT").
Exits 1 if any request failed, 2 on bad usage.

--hold-until FILE: once the connections are open, print `connected=N failed=M` and
wait (within the timeout) until FILE exists before sending the requests; a test uses
it to hold connections open while it does something else.

Bounded: COUNT <= 20000, everything within --timeout seconds (default 30), and only
to IPv4 literals in the testbed's subnets (10.10.0.0/24, 192.168.10.0/24, 172.16.0.0/24).
"""

import os
import sys

# This file shares its name with the standard library's `concurrent` package, which
# asyncio imports: keep the script's own folder off the import path.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import collections  # noqa: E402
import ipaddress  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
import urllib.parse  # noqa: E402

MAX_COUNT = 20000
TESTBED_NETS = [ipaddress.ip_network(n) for n in ("10.10.0.0/24", "192.168.10.0/24", "172.16.0.0/24")]
MAX_RESPONSE = 1 << 20


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("count", type=int)
    p.add_argument("url")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds for everything (default 30)")
    p.add_argument("--hold-until", metavar="FILE", help="hold the open connections until FILE exists")
    args = p.parse_args()
    if not 1 <= args.count <= MAX_COUNT:
        p.error(f"COUNT must be 1..{MAX_COUNT}")
    if not 0 < args.timeout <= 600:
        p.error("--timeout must be in (0, 600]")
    url = urllib.parse.urlsplit(args.url)
    if url.scheme != "http" or not url.hostname:
        p.error("URL must be http://IP[:PORT]/path")
    try:
        host = ipaddress.ip_address(url.hostname)
    except ValueError:
        p.error("URL host must be an IPv4 address (no name lookups)")
    if not any(host in net for net in TESTBED_NETS):
        p.error(f"{host} is not a testbed address ({', '.join(map(str, TESTBED_NETS))})")
    args.host = str(host)
    args.port = url.port or 80
    args.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return args


def raise_fd_limit(count):
    need = count + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        if target < need:
            sys.exit(f"concurrent.py: RLIMIT_NOFILE hard limit {hard} is below {need}")


async def connect(host, port, deadline):
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port), deadline - time.monotonic())
    except (OSError, asyncio.TimeoutError) as e:
        return e


async def request(conn, host, path, deadline):
    """Sends one GET on an open connection; returns (real, client_ip) or raises."""
    reader, writer = conn
    try:
        writer.write(f"GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n".encode())
        await asyncio.wait_for(writer.drain(), deadline - time.monotonic())
        data = await asyncio.wait_for(reader.read(MAX_RESPONSE), deadline - time.monotonic())
        # HTTP/1.0: the server closes after the response; read to the end.
        while True:
            more = await asyncio.wait_for(reader.read(MAX_RESPONSE), deadline - time.monotonic())
            if not more:
                break
            data += more
            if len(data) > MAX_RESPONSE:
                raise ValueError("response too long")
    finally:
        writer.close()
    head, sep, body = data.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split()
    if not sep or len(status) < 2 or status[1] != b"200":
        raise ValueError(f"bad response: {data[:80]!r}")
    length = next(
        (int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")[1:] if line.lower().startswith(b"content-length:")),
        None,
    )
    if length is not None and length != len(body):
        raise ValueError(f"truncated body: {len(body)} of {length} bytes")
    # "NAME client=IP:PORT"; other bodies count as ok without a real's name.
    words = body.decode(errors="replace").split()
    if len(words) == 2 and words[1].startswith("client="):
        return words[0], words[1][len("client="):].rsplit(":", 1)[0]
    return None, None


async def run(args):
    deadline = time.monotonic() + args.timeout
    started = time.monotonic()
    conns = await asyncio.gather(*(connect(args.host, args.port, deadline) for _ in range(args.count)))
    errors = collections.Counter(type(c).__name__ + (f"({c})" if str(c) else "") for c in conns if isinstance(c, BaseException))
    opened = [c for c in conns if not isinstance(c, BaseException)]

    if args.hold_until:
        print(f"connected={len(opened)} failed={args.count - len(opened)}", flush=True)
        while not os.path.exists(args.hold_until):
            if time.monotonic() >= deadline:
                for _, writer in opened:
                    writer.close()
                print(f"concurrent.py: {args.hold_until} did not appear within {args.timeout} s", file=sys.stderr)
                return 1
            await asyncio.sleep(0.02)

    results = await asyncio.gather(
        *(request(c, args.host, args.path, deadline) for c in opened), return_exceptions=True
    )
    per_real = collections.Counter()
    per_client = collections.Counter()
    ok = 0
    for r in results:
        if isinstance(r, BaseException):
            errors[type(r).__name__ + (f"({r})" if str(r) else "")] += 1
            continue
        ok += 1
        real, client = r
        if real is not None:
            per_real[real] += 1
            per_client[client] += 1
    failed = args.count - ok
    fields = [f"ok={ok}", f"failed={failed}"]
    fields += [f"{k}={v}" for k, v in sorted(per_real.items(), key=lambda kv: (len(kv[0]), kv[0]))]
    fields += [f"client:{k}={v}" for k, v in sorted(per_client.items())]
    fields.append(f"elapsed={time.monotonic() - started:.2f}")
    print(" ".join(fields), flush=True)
    for what, n in errors.most_common(5):
        print(f"concurrent.py: {n} x {what}", file=sys.stderr)
    return 1 if failed else 0


def main():
    args = parse_args()
    raise_fd_limit(args.count)
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
