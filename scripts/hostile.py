#!/usr/bin/env python3
"""Hostile frames for the namespace tests, sent with an AF_PACKET raw socket (no scapy).

    hostile.py claim IFACE --every SECONDS --for SECONDS
    hostile.py spoof IFACE DST_MAC KIND... [--count N]

claim: every SECONDS, for SECONDS, sends from IFACE the ARP claims a client-side host can
make (the testbed's addresses):
    - "who-has 10.10.0.100 (the VIP), tell 192.168.10.2 (r1)" from IFACE's own MAC: the
      issue's original finding, which taught sluice that r1 lives on the client side;
    - a gratuitous reply "192.168.10.3 (r2) is-at IFACE's MAC";
    - a gratuitous request "10.10.0.100 (the VIP) is-at 02:00:00:00:66:66" (another
      station claiming the VIP: an address conflict).
Prints "claims N" (rounds sent) at the end.

spoof: sends each KIND N times (default 1, a millisecond apart): TCP SYNs to 10.10.0.100:80 from IFACE's MAC to
DST_MAC with a forged source or a routing option. Prints "sent KIND LEN" for each.
    own-vip       source 10.10.0.100 (the VIP)
    own-wan       source 10.10.0.1 (sluice's client-side address)
    own-lan       source 192.168.10.1 (sluice's real-server-side address)
    martian-zero  source 0.0.0.1
    martian-lo    source 127.0.0.1
    martian-mc    source 224.0.0.5
    martian-bc    source 255.255.255.255
    other-side    source 192.168.10.50 (the real servers' subnet, from the client side)
    lsrr          source 10.10.0.2 with a loose source route option (via 192.168.10.3)
    ssrr          source 10.10.0.2 with a strict source route option
    rr            source 10.10.0.2 with a record route option
    good-syn      source 10.10.0.2 (a control)
"""

import socket
import struct
import sys
import time

VIP = "10.10.0.100"
R1 = "192.168.10.2"
R2 = "192.168.10.3"
OTHER_MAC = bytes([0x02, 0, 0, 0, 0x66, 0x66])
BROADCAST = b"\xff" * 6
ETH_P_ARP = 0x0806
ETH_P_IP = 0x0800


def addr(text):
    return socket.inet_aton(text)


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def arp(op, src_mac, sender_mac, sender_ip, target_ip, dst_mac=BROADCAST):
    body = struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, op)
    body += sender_mac + addr(sender_ip) + b"\0" * 6 + addr(target_ip)
    frame = dst_mac + src_mac + struct.pack("!H", ETH_P_ARP) + body
    return frame + b"\0" * (60 - len(frame))


def syn(src_ip, options=b""):
    src, dst = addr(src_ip), addr(VIP)
    tcp = bytearray(struct.pack("!HHIIBBHHH", 40000, 80, 1, 0, 5 << 4, 0x02, 64240, 0, 0))
    pseudo = src + dst + struct.pack("!BBH", 0, socket.IPPROTO_TCP, len(tcp))
    struct.pack_into("!H", tcp, 16, checksum(pseudo + bytes(tcp)))
    ihl = 5 + len(options) // 4
    hdr = bytearray(
        struct.pack(
            "!BBHHHBBH4s4s",
            (4 << 4) | ihl,
            0,
            ihl * 4 + len(tcp),
            0x1234,
            0x4000,
            64,
            socket.IPPROTO_TCP,
            0,
            src,
            dst,
        )
        + options
    )
    struct.pack_into("!H", hdr, 10, checksum(bytes(hdr)))
    return bytes(hdr) + bytes(tcp)


ROUTE = addr(R2) + b"\0"  # one hop, then END: 8 bytes with the 3-byte option header
SPOOFS = {
    "own-vip": lambda: syn(VIP),
    "own-wan": lambda: syn("10.10.0.1"),
    "own-lan": lambda: syn("192.168.10.1"),
    "martian-zero": lambda: syn("0.0.0.1"),
    "martian-lo": lambda: syn("127.0.0.1"),
    "martian-mc": lambda: syn("224.0.0.5"),
    "martian-bc": lambda: syn("255.255.255.255"),
    "other-side": lambda: syn("192.168.10.50"),
    "lsrr": lambda: syn("10.10.0.2", bytes([0x83, 7, 4]) + ROUTE),
    "ssrr": lambda: syn("10.10.0.2", bytes([0x89, 7, 4]) + ROUTE),
    "rr": lambda: syn("10.10.0.2", bytes([7, 7, 4]) + b"\0" * 5),
    "good-syn": lambda: syn("10.10.0.2"),
}


def parse_mac(text):
    return bytes(int(p, 16) for p in text.split(":"))


def own_mac(iface):
    with open(f"/sys/class/net/{iface}/address") as f:
        return parse_mac(f.read().strip())


def take(args, flag, default):
    if flag in args:
        i = args.index(flag)
        value = args[i + 1]
        del args[i : i + 2]
        return value
    return default


def claim(args):
    every = float(take(args, "--every", "0.2"))
    duration = float(take(args, "--for", "10"))
    iface = args[0]
    mac = own_mac(iface)
    frames = [
        arp(1, mac, mac, R1, VIP),
        arp(2, mac, mac, R2, R2),
        arp(1, OTHER_MAC, OTHER_MAC, VIP, VIP),
    ]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    rounds = 0
    end = time.monotonic() + duration
    while time.monotonic() < end:
        for f in frames:
            sock.send(f)
        rounds += 1
        time.sleep(every)
    print(f"claims {rounds}", flush=True)


def spoof(args):
    count = int(take(args, "--count", "1"))
    iface, dst, kinds = args[0], parse_mac(args[1]), args[2:]
    for kind in kinds:
        if kind not in SPOOFS:
            sys.exit(f"hostile: unknown kind {kind!r} (known: {', '.join(SPOOFS)})")
    src = own_mac(iface)
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((iface, 0))
    for kind in kinds:
        frame = dst + src + struct.pack("!H", ETH_P_IP) + SPOOFS[kind]()
        for _ in range(count):
            sock.send(frame)
            # Paced: a back-to-back burst can overrun the receiving
            # af_packet ring, and the tests count every frame.
            time.sleep(0.001)
        print(f"sent {kind} {len(frame)}", flush=True)


def main(argv):
    args = list(argv[1:])
    if len(args) < 2 or args[0] not in ("claim", "spoof"):
        sys.exit(__doc__)
    (claim if args[0] == "claim" else spoof)(args[1:])


if __name__ == "__main__":
    main(sys.argv)
