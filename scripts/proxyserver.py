#!/usr/bin/env python3
"""A real server that reads the PROXY protocol v2 header, for the sluice testbed.

    proxyserver.py http NAME PORT DATA_DIR LOG
    proxyserver.py banner NAME PORT LOG
    proxyserver.py toa PORT LOG

Every TCP connection must start with a PROXY protocol v2 header (HAProxy's
specification: the 12-byte signature, version 2, PROXY, TCP over IPv4, the
original source and destination). The server reads it before anything else, as
nginx's `listen ... proxy_protocol` does, and logs one line per connection,
flushed at once:

    PROXY CLIENT_IP:PORT VIP_IP:PORT via PEER_IP:PORT
    NOHEADER via PEER_IP:PORT first=HEX        (the stream did not start with one)

http: HTTP/1.1 with keep-alive on PORT:
    GET /whoami -> "NAME client=IP:PORT\\n" (the address the header named)
    GET /FILE   -> the bytes of DATA_DIR/FILE
banner: a server-speaks-first service: once the header is read (the client
    sends nothing), it writes "220 NAME client=IP:PORT\\r\\n", then answers
    each line the client sends with "250 " + the line, until it closes.
toa: no server; a reader of the TOA option (TCP option 254: client port and
    IPv4 address) on a raw socket, for traffic to PORT: for every connection
    (by its source address and port, a local address of sluice's), the first
    segment that is not a SYN, as the TOA kernel module reads it:
        TOA PEER_IP:PORT client=IP:PORT          (or client=none)

Connections without a valid header are closed. Bounded by the test that runs it
(the testbed's teardown ends it).
"""

import http.server
import os
import shutil
import socket
import struct
import sys
import threading

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
HEADER_TIMEOUT_S = 10

# The real server's own request log (a line per request, thread-safe), from
# the script beside this one.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realserver import RequestLog as Log  # noqa: E402


def recv_exactly(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def read_proxy_header(sock, peer, log):
    """Reads the v2 header off `sock`; returns (client, vip) as "IP:PORT", or None
    (logged) when the stream does not start with a valid one."""
    sock.settimeout(HEADER_TIMEOUT_S)
    try:
        fixed = recv_exactly(sock, 16)
        if len(fixed) < 16 or fixed[:12] != SIGNATURE or fixed[12] >> 4 != 2:
            log.write(f"NOHEADER via {peer} first={fixed.hex()}")
            return None
        (length,) = struct.unpack("!H", fixed[14:16])
        rest = recv_exactly(sock, length)
        if len(rest) < length or fixed[12] != 0x21 or fixed[13] != 0x11 or length < 12:
            log.write(f"NOHEADER via {peer} first={(fixed + rest).hex()}")
            return None
        src, dst, sport, dport = struct.unpack("!4s4sHH", rest[:12])
        client = f"{socket.inet_ntoa(src)}:{sport}"
        vip = f"{socket.inet_ntoa(dst)}:{dport}"
        log.write(f"PROXY {client} {vip} via {peer}")
        return client, vip
    except OSError as e:
        log.write(f"NOHEADER via {peer} error={e}")
        return None
    finally:
        sock.settimeout(None)


def http_server(name, port, data_dir, log):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sluice-proxyserver"

        def setup(self):
            peer = "{}:{}".format(*self.client_address[:2])
            found = read_proxy_header(self.request, peer, log)
            if found is None:
                self.request.close()
                raise ConnectionAbortedError("no PROXY header")
            self.proxied_client = found[0]
            super().setup()

        def end_headers(self):
            # HTTP/1.1: say so when the request asked to close (or was 1.0).
            if self.close_connection:
                self.send_header("Connection", "close")
            super().end_headers()

        def send_body(self, status, body):
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path = self.path.partition("?")[0]
            if path == "/whoami":
                self.send_body(200, f"{name} client={self.proxied_client}\n".encode())
                return
            rel = path.lstrip("/")
            full = os.path.realpath(os.path.join(data_dir, rel))
            root = os.path.realpath(data_dir)
            if not rel or not full.startswith(root + os.sep) or not os.path.isfile(full):
                self.send_body(404, b"not found\n")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(os.path.getsize(full)))
            self.end_headers()
            with open(full, "rb") as f:
                shutil.copyfileobj(f, self.wfile, 1 << 16)

        def log_message(self, fmt, *args):
            pass

    class Server(http.server.ThreadingHTTPServer):
        allow_reuse_address = True
        daemon_threads = True
        request_queue_size = 1024

        def handle_error(self, request, client_address):
            # A connection without a header was refused and logged above.
            if not isinstance(sys.exc_info()[1], ConnectionAbortedError):
                super().handle_error(request, client_address)

    Server(("0.0.0.0", port), Handler).serve_forever()


def banner_server(name, port, log):
    def serve(conn, peer):
        with conn:
            found = read_proxy_header(conn, peer, log)
            if found is None:
                return
            conn.sendall(f"220 {name} client={found[0]}\r\n".encode())
            lines = conn.makefile("rb")
            for line in lines:
                conn.sendall(b"250 " + line.rstrip(b"\r\n") + b"\r\n")

    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("0.0.0.0", port))
    listener.listen(1024)
    while True:
        conn, addr = listener.accept()
        peer = "{}:{}".format(*addr[:2])
        threading.Thread(target=serve, args=(conn, peer), daemon=True).start()


def toa_option(options):
    """The client (IP:PORT) a TOA option in `options` names, or None."""
    i = 0
    while i < len(options):
        kind = options[i]
        if kind == 0:
            break
        if kind == 1:
            i += 1
            continue
        if i + 1 >= len(options) or options[i + 1] < 2:
            break
        length = options[i + 1]
        if kind == 254 and length == 8 and i + 8 <= len(options):
            (port,) = struct.unpack("!H", options[i + 2 : i + 4])
            return f"{socket.inet_ntoa(options[i + 4 : i + 8])}:{port}"
        i += length
    return None


def toa_reader(port, log):
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_TCP)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    seen = set()
    log.write("READY")
    while True:
        packet = raw.recv(65535)
        ihl = (packet[0] & 0x0F) * 4
        tcp = packet[ihl:]
        if len(tcp) < 20:
            continue
        sport, dport = struct.unpack("!HH", tcp[:4])
        if dport != port:
            continue
        peer = f"{socket.inet_ntoa(packet[12:16])}:{sport}"
        if tcp[13] & 0x02:
            # A SYN: a new connection from this address and port.
            seen.discard(peer)
            continue
        if peer in seen:
            continue
        seen.add(peer)
        data_offset = (tcp[12] >> 4) * 4
        client = toa_option(tcp[20:data_offset])
        log.write(f"TOA {peer} client={client or 'none'}")


def main():
    args = sys.argv[1:]
    if len(args) == 5 and args[0] == "http":
        _, name, port, data_dir, path = args
        http_server(name, int(port), data_dir, Log(path))
    elif len(args) == 4 and args[0] == "banner":
        _, name, port, path = args
        banner_server(name, int(port), Log(path))
    elif len(args) == 3 and args[0] == "toa":
        _, port, path = args
        toa_reader(int(port), Log(path))
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
