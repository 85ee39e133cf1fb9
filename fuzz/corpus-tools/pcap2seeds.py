#!/usr/bin/env python3
"""Turns the captures of one testbed scenario into a `pipeline` fuzz seed.

    pcap2seeds.py --wan-mac MAC --lan-mac MAC wan.pcap lan.pcap OUT

wan.pcap and lan.pcap were taken with tcpdump on sluice's two ports (lb-wan,
lb-lan) in the lb namespace. Frames that sluice sent (source MAC = the
port's own) are left out; the others are what sluice received, in time
order, and become the seed's RAW operations (see fuzz/README.md, "Input
format of the pipeline target"):

- the ports' MACs are replaced by the fuzz target's (02:00:00:00:00:01 and
  :02), wherever they appear (Ethernet destination, ARP target);
- frames from the real servers' side (lb-lan) get RETARGET: their addresses
  and ports are made those of the flow sluice most recently sent out of that
  port, since the fuzz target's schedulers and FULLNAT ports pick otherwise
  than the captured sluice did (checksums then recomputed);
- a client's ACK to a SYN-proxied service (:90, :91) gets COOKIE: its ack
  number made a valid cookie of the fuzz target's key;
- the time between frames (ms) goes with each, as dt;
- frames alternate between the two workers (the NIC's hash may pick either).

A second seed OUT-offload is the same with the header byte asking for tx
checksum offload on both ports.
"""
import struct
import sys

LB_WAN = bytes([2, 0, 0, 0, 0, 1])
LB_LAN = bytes([2, 0, 0, 0, 0, 2])
PROXIED = (90, 91)

# Flags of an operation (fuzz/src/pipeline.rs, mod flag).
WORKER, RETARGET, COOKIE = 1, 16, 32


def read_pcap(path):
    with open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack("<I", data[:4])[0]
    if magic == 0xA1B2C3D4:
        endian, scale = "<", 1e-6
    elif magic == 0xA1B23C4D:
        endian, scale = "<", 1e-9
    elif magic == 0xD4C3B2A1:
        endian, scale = ">", 1e-6
    else:
        raise SystemExit(f"{path}: not a pcap file")
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    if linktype != 1:
        raise SystemExit(f"{path}: link type {linktype}, not Ethernet")
    at, out = 24, []
    while at + 16 <= len(data):
        sec, frac, caplen, _ = struct.unpack(endian + "IIII", data[at : at + 16])
        out.append((sec + frac * scale, data[at + 16 : at + 16 + caplen]))
        at += 16 + caplen
    return out


def parse_mac(text):
    return bytes(int(x, 16) for x in text.split(":"))


def proxied_ack(frame):
    """A TCP segment with ACK and without SYN/RST to a proxied VIP port."""
    if len(frame) < 14 + 20 or frame[12:14] != b"\x08\x00" or frame[14 + 9] != 6:
        return False
    ihl = (frame[14] & 0x0F) * 4
    tcp = frame[14 + ihl :]
    if len(tcp) < 20:
        return False
    dport = struct.unpack(">H", tcp[2:4])[0]
    flags = tcp[13]
    return dport in PROXIED and flags & 0x10 and not flags & 0x06


def l4(frame):
    return len(frame) >= 14 + 20 and frame[12:14] == b"\x08\x00" and frame[14 + 9] in (6, 17)


def seed(wan, lan, wan_mac, lan_mac, header):
    frames = [(t, 0, f) for t, f in wan] + [(t, 1, f) for t, f in lan]
    frames.sort(key=lambda x: x[0])
    out = bytearray([header])
    last, n = None, 0
    for t, port, f in frames:
        if f[6:12] in (wan_mac, lan_mac):
            continue  # sent by sluice
        f = f.replace(wan_mac, LB_WAN).replace(lan_mac, LB_LAN)
        ms = 0 if last is None else int((t - last) * 1000)
        last = t
        dt = ms if ms < 200 else 199 + min(56, max(1, ms // 1000))
        flags = n & WORKER
        if port == 1 and l4(f):
            flags |= RETARGET
        if port == 0 and proxied_ack(f):
            flags |= COOKIE
        # tag 0 (RAW), flags, dt, target (the newest flow), port, length.
        out += bytes([0, flags, dt, 0, port]) + struct.pack("<H", len(f)) + f
        n += 1
    return bytes(out), n


def main():
    args = sys.argv[1:]
    macs = {}
    while args and args[0].startswith("--"):
        macs[args[0]] = parse_mac(args[1])
        args = args[2:]
    if len(args) != 3 or set(macs) != {"--wan-mac", "--lan-mac"}:
        raise SystemExit(__doc__)
    wan, lan = read_pcap(args[0]), read_pcap(args[1])
    for header, suffix in ((0, ""), (1, "-offload")):
        data, n = seed(wan, lan, macs["--wan-mac"], macs["--lan-mac"], header)
        with open(args[2] + suffix, "wb") as f:
            f.write(data)
    print(f"{args[2]}: {n} frames, {len(data)} bytes")


if __name__ == "__main__":
    main()
