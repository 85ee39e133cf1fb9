#!/usr/bin/env python3
"""A real server for the sluice testbed.

    realserver.py NAME PORT DATA_DIR LOG

HTTP/1.0 on PORT (one connection per request):
    GET /whoami  -> "NAME client=IP:PORT\\n"  (the address this server saw)
    GET /slow?ms=N -> the same as /whoami, after waiting N ms (0..60000): a request
                    that keeps its connection open for a while
    GET /health  -> 200 "NAME ok"; if DATA_DIR/health-NAME exists, the status it
                    holds instead (e.g. "500"): a test breaks one real's health check
                    without stopping it
    GET /FILE    -> the bytes of DATA_DIR/FILE
UDP echo on 5353: any datagram -> "NAME client=IP:PORT\\n".

Every request appends one line to LOG, flushed at once:
    IP:PORT tcp GET /path
    IP:PORT udp LEN
so a test can see which source address the server saw.
"""

import http.server
import os
import shutil
import socket
import sys
import threading
import time
import urllib.parse

UDP_ECHO_PORT = 5353
MAX_SLOW_MS = 60000


class RequestLog:
    def __init__(self, path):
        self._file = open(path, "a", buffering=1)
        self._lock = threading.Lock()

    def write(self, line):
        with self._lock:
            self._file.write(line + "\n")
            self._file.flush()


def make_handler(name, data_dir, request_log):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"
        server_version = "sluice-realserver"

        def client(self):
            ip, port = self.client_address[:2]
            return f"{ip}:{port}"

        def send_body(self, status, body, content_type="text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def do_GET(self):
            request_log.write(f"{self.client()} tcp {self.command} {self.path}")
            path, _, query = self.path.partition("?")
            if path == "/whoami":
                self.send_body(200, f"{name} client={self.client()}\n".encode())
                return
            if path == "/health":
                status = 200
                try:
                    with open(os.path.join(data_dir, f"health-{name}")) as f:
                        status = int(f.read().strip() or "200")
                except FileNotFoundError:
                    pass
                except ValueError:
                    status = 500
                self.send_body(status, f"{name} {'ok' if status == 200 else 'unwell'}\n".encode())
                return
            if path == "/slow":
                try:
                    ms = int(urllib.parse.parse_qs(query).get("ms", ["1000"])[0])
                except ValueError:
                    ms = -1
                if not 0 <= ms <= MAX_SLOW_MS:
                    self.send_body(400, f"ms must be 0..{MAX_SLOW_MS}\n".encode())
                    return
                time.sleep(ms / 1000)
                self.send_body(200, f"{name} client={self.client()}\n".encode())
                return
            rel = path.lstrip("/")
            full = os.path.realpath(os.path.join(data_dir, rel))
            root = os.path.realpath(data_dir)
            if not rel or not full.startswith(root + os.sep) or not os.path.isfile(full):
                self.send_body(404, b"not found\n")
                return
            size = os.path.getsize(full)
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            if self.command != "HEAD":
                with open(full, "rb") as f:
                    shutil.copyfileobj(f, self.wfile, 1 << 16)

        do_HEAD = do_GET

        def log_message(self, fmt, *args):
            # The request log above is the record; keep stderr for errors.
            pass

    return Handler


class Server(http.server.ThreadingHTTPServer):
    allow_reuse_address = True
    daemon_threads = True
    # Tests open 1000 connections at once; a short accept queue would drop the
    # handshakes' last ACKs and turn a burst into seconds of retransmissions.
    request_queue_size = 1024


def udp_echo(name, request_log):
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", UDP_ECHO_PORT))
    while True:
        data, (ip, port) = sock.recvfrom(65535)
        request_log.write(f"{ip}:{port} udp {len(data)}")
        sock.sendto(f"{name} client={ip}:{port}\n".encode(), (ip, port))


def main():
    if len(sys.argv) != 5:
        sys.exit("usage: realserver.py NAME PORT DATA_DIR LOG")
    name, port, data_dir, log_path = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    request_log = RequestLog(log_path)
    threading.Thread(target=udp_echo, args=(name, request_log), daemon=True).start()
    server = Server(("0.0.0.0", port), make_handler(name, data_dir, request_log))
    print(f"{name}: http on :{port}, udp echo on :{UDP_ECHO_PORT}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
