#!/usr/bin/env python3
"""Send hand-made malformed frames out of an interface with an AF_PACKET raw socket.

    rawsend.py IFACE DST_MAC KIND... [--count N]

Each KIND is sent N times (default 1), from IFACE's own MAC to DST_MAC. IPv4 frames go
from 10.10.0.2 to 10.10.0.100 (the testbed's client and VIP), TCP 40000 -> 80. Frames are
deterministic: the same arguments always send the same bytes.

Kinds:
    short           a 10-byte frame (shorter than an Ethernet header)
    short-ipv4      Ethernet header (type IPv4) + 10 bytes: IPv4 header cut short
    bad-ihl         IPv4 with IHL=3 (12-byte header)
    bad-total-len   IPv4 total length 1000, frame carries 40 bytes of IP
    bad-version     version 6 in an IPv4 (0x0800) frame
    tcp-bad-offset  valid IPv4, TCP data offset 3 (< 5)
    good-syn        a well-formed TCP SYN (a control)

For each frame the kernel accepted it prints "sent KIND LEN"; for each it refused,
"refused KIND LEN: REASON" (Linux does not let AF_PACKET send a frame shorter than the
device's Ethernet header, so `short` is refused on veth). Exit status 0 unless an argument
is wrong or the socket cannot be opened.
"""

import socket
import struct
import sys

SRC_IP = bytes([10, 10, 0, 2])
DST_IP = bytes([10, 10, 0, 100])
SRC_PORT = 40000
DST_PORT = 80
ETH_P_IP = 0x0800


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def tcp_header(data_offset_words=5, flags=0x02):
    # seq 1, ack 0, window 64240, checksum filled in by tcp_segment
    return struct.pack(
        "!HHIIBBHHH", SRC_PORT, DST_PORT, 1, 0, (data_offset_words & 0xF) << 4, flags, 64240, 0, 0
    )


def tcp_segment(data_offset_words=5):
    tcp = bytearray(tcp_header(data_offset_words))
    pseudo = SRC_IP + DST_IP + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp)))
    return bytes(tcp)


def ipv4_header(payload_len, version=4, ihl=5, total_len=None):
    if total_len is None:
        total_len = ihl * 4 + payload_len
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            (version << 4) | ihl,
            0,
            total_len,
            0x1234,  # identification
            0x4000,  # don't fragment
            64,
            socket.IPPROTO_TCP,
            0,
            SRC_IP,
            DST_IP,
        )
    )
    # Over the 20 bytes built, so only the field under test is wrong.
    struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    return bytes(hdr)


def frames(kind, dst_mac, src_mac):
    eth = dst_mac + src_mac + struct.pack("!H", ETH_P_IP)
    tcp = tcp_segment()
    if kind == "short":
        return (dst_mac + src_mac)[:10]
    if kind == "short-ipv4":
        return eth + ipv4_header(len(tcp))[:10]
    if kind == "bad-ihl":
        # 20 bytes laid out as usual but IHL says 3 words (12 bytes), below the minimum of 5.
        return eth + ipv4_header(len(tcp), ihl=3, total_len=20 + len(tcp)) + tcp
    if kind == "bad-total-len":
        return eth + ipv4_header(len(tcp), total_len=1000) + tcp
    if kind == "bad-version":
        return eth + ipv4_header(len(tcp), version=6) + tcp
    if kind == "tcp-bad-offset":
        bad = tcp_segment(data_offset_words=3)
        return eth + ipv4_header(len(bad)) + bad
    if kind == "good-syn":
        return eth + ipv4_header(len(tcp)) + tcp
    raise ValueError(kind)


KINDS = ["short", "short-ipv4", "bad-ihl", "bad-total-len", "bad-version", "tcp-bad-offset", "good-syn"]


def parse_mac(text):
    parts = text.split(":")
    if len(parts) != 6:
        raise ValueError(f"bad MAC {text!r}")
    return bytes(int(p, 16) for p in parts)


def main(argv):
    args = list(argv[1:])
    count = 1
    if "--count" in args:
        i = args.index("--count")
        count = int(args[i + 1])
        del args[i : i + 2]
    if len(args) < 3:
        sys.exit(__doc__)
    iface, dst, kinds = args[0], args[1], args[2:]
    for kind in kinds:
        if kind not in KINDS:
            sys.exit(f"rawsend: unknown kind {kind!r} (known: {', '.join(KINDS)})")
    dst_mac = parse_mac(dst)
    with open(f"/sys/class/net/{iface}/address") as f:
        src_mac = parse_mac(f.read().strip())

    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    for kind in kinds:
        frame = frames(kind, dst_mac, src_mac)
        for _ in range(count):
            try:
                sock.send(frame)
                print(f"sent {kind} {len(frame)}", flush=True)
            except OSError as e:
                print(f"refused {kind} {len(frame)}: {e.strerror}", flush=True)
    sock.close()


if __name__ == "__main__":
    main(sys.argv)
