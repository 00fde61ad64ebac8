#!/usr/bin/env python3
"""Writes multicast-broadcast.pcap: UDP datagrams from another host on the link to the
limited broadcast address and to multicast groups. Some groups every Linux host joins by
itself (224.0.0.1, ff02::1, and ff02::2 and ff05::2 on a router); others only programs
join (mDNS, SSDP, DHCPv6 servers, 224.0.0.2, ff0e::1); ff01::1 is interface-local, which
no packet from the wire may address.

Usage: make-multicast-broadcast.py OUT.pcap
"""
import ipaddress
import struct
import sys

SRC4, SRC6 = "10.9.0.5", "2001:db8::5"
# (destination, source port, destination port[, source]), one datagram each, a second
# apart; the source is SRC4 or SRC6 unless given.
DATAGRAMS = [
    ("255.255.255.255", 68, 67),
    ("224.0.0.251", 5353, 5353),
    ("239.255.255.250", 40000, 1900),
    ("224.0.0.1", 40001, 9999),
    ("ff02::fb", 5353, 5353),
    ("ff02::1", 40002, 9999),
    ("ff05::1:3", 546, 547),
    ("224.0.0.2", 40003, 9999),
    ("ff02::2", 40004, 9999),
    ("ff05::2", 40005, 9999),
    ("ff01::1", 40006, 9999),
    ("ff0e::1", 40007, 9999),
    ("255.255.255.255", 40008, 9999),
    # Martians: refused by IPv4's routing after conntrack, by IPv6 before netfilter.
    ("10.9.0.9", 40009, 9999, "127.0.0.1"),
    ("10.9.0.9", 40010, 9999, "0.0.0.0"),
    ("10.9.0.9", 40011, 9999, "224.0.0.9"),
    ("0.0.0.0", 40012, 9999),
    # 0.0.0.0/8 is unicast but for 0.0.0.0 itself (Linux 5.3 on).
    ("10.9.0.9", 40015, 9999, "0.1.2.3"),
    ("0.0.0.9", 40016, 9999),
    ("224.0.0.1", 40013, 9999, "127.0.0.1"),
    ("2001:db8::9", 40014, 9999, "ff02::9"),
]
# The injector's and the firewall's hardware addresses (the harness's Injector).
ETHERNET = bytes.fromhex("027700000901" "0277000009aa")


def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def udp(pseudo, sport, dport, payload):
    u = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    c = checksum(pseudo(len(u)) + u) or 0xFFFF
    return u[:6] + struct.pack("!H", c) + u[8:]


def datagram(dst, sport, dport, src=None, payload=b"hello"):
    d = ipaddress.ip_address(dst)
    if d.version == 4:
        s = ipaddress.IPv4Address(src or SRC4).packed
        u = udp(lambda n: s + d.packed + struct.pack("!BBH", 0, 17, n), sport, dport, payload)
        h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(u), 1, 0, 64, 17, 0, s, d.packed)
        return 0x0800, h[:10] + struct.pack("!H", checksum(h)) + h[12:] + u
    s = ipaddress.IPv6Address(src or SRC6).packed
    u = udp(lambda n: s + d.packed + struct.pack("!IxxxB", n, 17), sport, dport, payload)
    return 0x86DD, struct.pack("!IHBB", 0x60000000, len(u), 17, 64) + s + d.packed + u


def main(out):
    with open(out, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        for i, (dst, sport, dport, *src) in enumerate(DATAGRAMS):
            ethertype, ip = datagram(dst, sport, dport, *src)
            frame = ETHERNET + struct.pack("!H", ethertype) + ip
            f.write(struct.pack("<IIII", 1700000000 + i, 0, len(frame), len(frame)) + frame)


if __name__ == "__main__":
    main(sys.argv[1])
