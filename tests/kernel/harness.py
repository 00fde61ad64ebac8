#!/usr/bin/env python3
"""The kernel as oracle: run each scenario's traffic through a real Linux firewall in
network namespaces, record what conntrack did, replay the capture with ctrack, compare.

Topology (addresses only inside these namespaces):

    cl  veth 10.77.1.2/24 fd77:1::2/64 ── fw 10.77.1.1 / fd77:1::1
    sv  veth 10.77.2.2/24 fd77:2::2/64 ── fw 10.77.2.1 / fd77:2::1

fw forwards between cl and sv, and is an endpoint itself for scenarios that talk to it.
Offloads are off on every veth end (real checksums, MTU-sized segments); neighbours are
static (no ARP or ND noise).

Usage: harness.py [--ctrack PATH] [--keep DIR] [SCENARIO.toml ...]   (default: all)
Exit status: 0 when every scenario agrees, 1 when any differs, 2 when the suite cannot run.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
TOOLS = ["ip", "iptables-restore", "ip6tables-restore", "conntrack", "tcpdump", "ethtool", "ping",
         "tcpreplay", "nfct"]

CL4, FWC4, FWS4, SV4 = "10.77.1.2", "10.77.1.1", "10.77.2.1", "10.77.2.2"
CL6, FWC6, FWS6, SV6 = "fd77:1::2", "fd77:1::1", "fd77:2::1", "fd77:2::2"
ADDRS = {"cl": CL4, "sv": SV4, "fw": FWS4, "fw-cl": FWC4,
         "cl6": CL6, "sv6": SV6, "fw6": FWS6, "fw-cl6": FWC6,
         "lo": "127.0.0.1", "lo6": "::1", "cl-subnet-broadcast": "10.77.1.255",
         # The solicited-node group of fw's fd77:1::1, and one of no address of fw's, on
         # cl's link.
         "fw-cl6-solicited": "ff02::1:ff00:1%ctkcl0", "other-solicited": "ff02::1:ff00:99%ctkcl0"}

# A rule in each family that needs conntrack, so the namespace's hooks are registered,
# and that changes no verdict (the policy is ACCEPT anyway).
BASE_RULES = """*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -m conntrack --ctstate INVALID -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j ACCEPT
COMMIT
"""


def sh(*cmd, ns=None, check=True, capture=False, input=None, timeout=60):
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    r = subprocess.run(full, check=False, text=True, input=input, timeout=timeout,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(full)} failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout if capture else r


def mld_reports(ns):
    text = sh("cat", "/proc/net/snmp6", ns=ns, capture=True)
    return sum(int(l.split()[1]) for l in text.splitlines() if l.startswith("Icmp6OutMLDv2Reports")
               or l.startswith("Icmp6OutMLDv1Reports") or l.startswith("Icmp6OutNeighborAdvertisements"))


def wait_for_quiet(namespaces, settle=0.6, limit=4.0):
    """Waits until no namespace has sent a multicast listener report for `settle` seconds:
    the links' own IPv6 chatter must not fall in the middle of a scenario."""
    start = time.time()
    last = [mld_reports(n) for n in namespaces]
    quiet_since = time.time()
    while time.time() - start < limit:
        time.sleep(0.1)
        now = [mld_reports(n) for n in namespaces]
        if now != last:
            last, quiet_since = now, time.time()
        elif time.time() - quiet_since >= settle:
            return


class Topology:
    # fw's interfaces, for ctrack's host model (`--iface`).
    ifaces = [f"ctkfwc0={FWC4}/24", f"ctkfwc0={FWC6}/64", f"ctkfws0={FWS4}/24", f"ctkfws0={FWS6}/64"]

    def __init__(self, tag):
        self.ns = {n: f"ctk{tag}{n}" for n in ("cl", "fw", "sv")}

    def up(self):
        cl, fw, sv = self.ns["cl"], self.ns["fw"], self.ns["sv"]
        for n in self.ns.values():
            sh("ip", "netns", "add", n)
            sh("ip", "link", "set", "lo", "up", ns=n)
            sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", ns=n)
            sh("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", ns=n)
            sh("sysctl", "-qw", "net.ipv6.conf.default.router_solicitations=0", ns=n)
            # Multicast listener reports go out at once when the links come up, not up to a
            # second later in the middle of a scenario.
            sh("sysctl", "-qw", "net.ipv6.conf.default.mldv1_unsolicited_report_interval=1", ns=n)
            sh("sysctl", "-qw", "net.ipv6.conf.default.mldv2_unsolicited_report_interval=1", ns=n)
        macs = {"cl": "02:77:00:00:01:02", "fwc": "02:77:00:00:01:01",
                "sv": "02:77:00:00:02:02", "fws": "02:77:00:00:02:01"}
        sh("ip", "link", "add", "ctkcl0", "address", macs["cl"], "netns", cl, "type", "veth",
           "peer", "name", "ctkfwc0", "address", macs["fwc"], "netns", fw)
        sh("ip", "link", "add", "ctksv0", "address", macs["sv"], "netns", sv, "type", "veth",
           "peer", "name", "ctkfws0", "address", macs["fws"], "netns", fw)
        links = [(cl, "ctkcl0", [CL4 + "/24", CL6 + "/64"]), (fw, "ctkfwc0", [FWC4 + "/24", FWC6 + "/64"]),
                 (fw, "ctkfws0", [FWS4 + "/24", FWS6 + "/64"]), (sv, "ctksv0", [SV4 + "/24", SV6 + "/64"])]
        for n, dev, addrs in links:
            sh("ethtool", "-K", dev, "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off",
               ns=n, check=False)
            for a in addrs:
                extra = ["nodad"] if ":" in a else []
                sh("ip", "addr", "add", a, "dev", dev, *extra, ns=n)
            sh("ip", "link", "set", dev, "up", ns=n)
        sh("ip", "route", "add", "default", "via", FWC4, ns=cl)
        sh("ip", "-6", "route", "add", "default", "via", FWC6, ns=cl)
        sh("ip", "route", "add", "default", "via", FWS4, ns=sv)
        sh("ip", "-6", "route", "add", "default", "via", FWS6, ns=sv)
        neigh = [(cl, "ctkcl0", [FWC4, FWC6], macs["fwc"]), (fw, "ctkfwc0", [CL4, CL6], macs["cl"]),
                 (fw, "ctkfws0", [SV4, SV6], macs["sv"]), (sv, "ctksv0", [FWS4, FWS6], macs["fws"])]
        for n, dev, ips, mac in neigh:
            for ip in ips:
                sh("ip", "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent", ns=n)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", ns=fw)
        sh("sysctl", "-qw", "net.ipv6.conf.all.forwarding=1", ns=fw)
        wait_for_quiet(self.ns.values())

    def down(self):
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL, check=False)


class Injector:
    """fw with one interface towards an injector namespace. Every packet of a public capture
    is sent from inj to fw, which routes it back out the same way (so it is forwarded and
    tracked like on a router); inj has no addresses and drops what comes back."""

    INJ_MAC, FW_MAC = "02:77:00:00:09:02", "02:77:00:00:09:01"
    ifaces = ["ctkfw0=0.0.0.0/0", "ctkfw0=::/0"]

    def __init__(self, tag):
        self.ns = {"inj": f"ctk{tag}inj", "fw": f"ctk{tag}fw"}

    def up(self, addrs):
        inj, fw = self.ns["inj"], self.ns["fw"]
        for n in (inj, fw):
            sh("ip", "netns", "add", n)
            sh("ip", "link", "set", "lo", "up", ns=n)
            sh("sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", ns=n)
            sh("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", ns=n)
            # No link-local address: no router solicitations, no redirects, no MLD.
            sh("sysctl", "-qw", "net.ipv6.conf.default.addr_gen_mode=1", ns=n)
        sh("ip", "link", "add", "ctkinj0", "address", self.INJ_MAC, "netns", inj, "type", "veth",
           "peer", "name", "ctkfw0", "address", self.FW_MAC, "netns", fw)
        for n, dev in ((inj, "ctkinj0"), (fw, "ctkfw0")):
            sh("ethtool", "-K", dev, "rx", "off", "tx", "off", "tso", "off", "gso", "off", "gro", "off",
               ns=n, check=False)
            sh("ip", "link", "set", dev, "up", ns=n)
        for k in ("net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
                  "net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.ctkfw0.send_redirects=0",
                  "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.ctkfw0.rp_filter=0",
                  "net.ipv4.conf.all.accept_local=1"):
            sh("sysctl", "-qw", k, ns=fw)
        wait_for_quiet(self.ns.values())
        for a in sorted(addrs):
            six = ":" in a
            sh("ip", *(["-6"] if six else []), "route", "add", a + ("/128" if six else "/32"),
               "dev", "ctkfw0", ns=fw)
            sh("ip", "neigh", "replace", a, "lladdr", self.INJ_MAC, "dev", "ctkfw0", "nud", "permanent", ns=fw)

    def down(self):
        for n in self.ns.values():
            subprocess.run(["ip", "netns", "del", n], stderr=subprocess.DEVNULL, check=False)


def pcap_unicast_addresses(path):
    """Unicast source and destination addresses of a classic Ethernet pcap."""
    import ipaddress
    import struct
    data = Path(path).read_bytes()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off, addrs = 24, set()
    while off + 16 <= len(data):
        _, _, incl, _ = struct.unpack(endian + "IIII", data[off:off + 16])
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        et, at = struct.unpack(">H", frame[12:14])[0] if len(frame) >= 14 else 0, 14
        while et in (0x8100, 0x88a8) and len(frame) >= at + 4:
            et, at = struct.unpack(">H", frame[at + 2:at + 4])[0], at + 4
        ip = frame[at:]
        if et == 0x0800 and len(ip) >= 20:
            pair = (ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20]))
        elif et == 0x86DD and len(ip) >= 40:
            pair = (ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40]))
        else:
            continue
        for a in pair:
            # Another subnet's broadcast address is an address like any other to fw, which
            # has no address of its own there.
            if not (a.is_multicast or a.is_link_local or a.is_unspecified or a.is_loopback
                    or str(a) == "255.255.255.255"):
                addrs.add(str(a))
    return addrs


CORPUS = ROOT.parent / "shared" / "corpus"
LINK_LOCAL = "(ip6 and (src net fe80::/10 or dst net fe80::/10))"
UNICAST_FILTER = (f"not broadcast and not multicast and not {LINK_LOCAL}"
                  " and not (ip and dst host 255.255.255.255)")


def inject_capture(scn, work):
    """Prepares the capture to inject: the corpus file, gunzipped and cut to unicast IP (to
    IP without IPv6 link-local addresses, its broadcast and multicast kept, with
    `multicast = true`); or the one a script of this suite writes (`capture =
    "captures/SCRIPT.py"`), cut to IP, its broadcast and multicast kept."""
    raw = work / "in.pcap"
    if scn["capture"].endswith(".py"):
        sh(sys.executable, str(HERE / scn["capture"]), str(raw))
        keep = "ip or ip6"
    else:
        src = CORPUS / scn["capture"]
        if src.suffix == ".gz":
            import gzip
            raw.write_bytes(gzip.decompress(src.read_bytes()))
        else:
            shutil.copy(src, raw)
        keep = f"not {LINK_LOCAL}" if scn.get("multicast") else UNICAST_FILTER
    unicast = work / "unicast.pcap"
    sh("tcpdump", "-r", str(raw), "-w", str(unicast), keep)
    clean = work / "inject.pcap"
    clean.write_bytes(rewrite_macs(unicast.read_bytes(), Injector.INJ_MAC, Injector.FW_MAC))
    return clean


def rewrite_macs(data, src, dst):
    """Every Ethernet frame of a classic pcap from `src` to `dst` (tcpreplay-edit turns some
    IPv6 destinations into multicast MACs, so the frames are rewritten here)."""
    import struct
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    out, off = bytearray(data), 24
    mac = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        if incl >= 12:
            out[off + 16:off + 28] = mac
        off += 16 + incl
    return bytes(out)


# Traffic steps: each runs a short Python program inside a namespace.
SERVER = r"""
import socket, sys, threading, time
fam = socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET
kind, port, mode = sys.argv[2], int(sys.argv[3]), sys.argv[4]
if kind == 'tcp':
    s = socket.socket(fam, socket.SOCK_STREAM); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[1], port)); s.listen(64); print('ready', flush=True)
    while True:
        c, _ = s.accept()
        def serve(c):
            while True:
                d = c.recv(65536)
                if not d: break
                c.sendall(d)
                if mode == 'first': break
            if mode == 'rst':
                import struct; c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            c.close()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
else:
    s = socket.socket(fam, socket.SOCK_DGRAM); s.bind((sys.argv[1], port)); print('ready', flush=True)
    while True:
        d, a = s.recvfrom(65536); s.sendto(d, a)
"""

CLIENT = r"""
import socket, sys, time, struct
dst, kind, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ':' in dst else socket.AF_INET
if kind == 'tcp':
    close, data, count = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    sport = int(sys.argv[8]) if len(sys.argv) > 8 else 0
    socks = []
    for _ in range(count):
        s = socket.socket(fam, socket.SOCK_STREAM); s.settimeout(5)
        if sport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(('', sport))
        try:
            s.connect((dst, port))
        except OSError:
            s.close(); continue
        if data:
            s.sendall(b'x' * data); got = 0
            while got < data:
                got += len(s.recv(65536))
        socks.append(s)
    time.sleep(0.2)
    for s in socks:
        if close == 'wait':
            while s.recv(65536): pass
        if close == 'rst':
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        if close != 'open':
            s.close()
    if close == 'open':
        time.sleep(float(sys.argv[7]) if len(sys.argv) > 7 else 0)
elif kind == 'udp':
    count, gap, size = int(sys.argv[4]), float(sys.argv[5]), int(sys.argv[6])
    flows = int(sys.argv[7]) if len(sys.argv) > 7 else 1
    # Each flow its own socket, so its own source port; an unanswered request waits less
    # when there are many.
    for _ in range(flows):
        s = socket.socket(fam, socket.SOCK_DGRAM); s.settimeout(1 if flows == 1 else 0.1)
        if fam == socket.AF_INET:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        for i in range(count):
            s.sendto(b'q' * size, (dst, port))
            try: s.recvfrom(100)
            except OSError: pass
            time.sleep(gap)
        s.close()
"""


# Crafts one IPv4 TCP or UDP packet and sends it from a raw socket, for segments a real
# stack would not send: mid-stream pickups, out-of-window data, bad checksums.
CRAFT = r"""
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
src, dst, proto, sport, dport, flags, seq, ack, data, ttl, bad = sys.argv[1:12]
sport, dport, seq, ack, data, ttl = int(sport), int(dport), int(seq), int(ack), int(data), int(ttl)
payload = b'd' * data
if proto == 'tcp':
    fl = sum({'F': 1, 'S': 2, 'R': 4, 'P': 8, 'A': 16}[c] for c in flags)
    l4 = struct.pack('!HHIIBBHHH', sport, dport, seq, ack, 5 << 4, fl, 29200, 0, 0) + payload
    pn, at = 6, 16
elif proto == 'udp':
    l4 = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
    pn, at = 17, 6
elif proto == 'gre':
    l4 = struct.pack('!HH', 0, 0x0800) + payload
    pn, at = 47, None
else:
    l4 = struct.pack('!II', sport, dport) + payload
    pn, at = int(proto), None
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, pn, len(l4))
if at is not None:
    c = csum(pseudo + l4) ^ (0x5555 if bad == 'bad' else 0)
    l4 = l4[:at] + struct.pack('!H', c) + l4[at + 2:]
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(l4), 4242, 0x4000, ttl, pn, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.sendto(ip + l4, (dst, 0))
"""


class Recorder:
    def __init__(self, topo, work):
        self.topo, self.work = topo, work
        self.procs = []

    def start(self):
        fw = self.topo.ns["fw"]
        self.pcap = self.work / "fw.pcap"
        self.tcpdump = subprocess.Popen(
            ["ip", "netns", "exec", fw, "tcpdump", "-i", "any", "-y", "LINUX_SLL2", "-w", str(self.pcap),
             "-U", "--immediate-mode", "-B", "65536", "-s", "262144", "--time-stamp-precision=nano"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.events = open(self.work / "kernel-events.txt", "w")
        # A large socket buffer: a burst of events must not overflow it (conntrack says
        # "We have hit ENOBUFS" and events are lost).
        self.events_err = open(self.work / "conntrack-E.stderr", "w")
        self.conntrack_e = subprocess.Popen(
            ["ip", "netns", "exec", fw, "conntrack", "-E", "-o", "timestamp,extended,id",
             "-b", "16777216"],
            stdout=self.events, stderr=self.events_err)
        deadline = time.time() + 5
        while time.time() < deadline:
            if self.tcpdump.poll() is not None:
                raise RuntimeError("tcpdump exited: " + self.tcpdump.stderr.read())
            time.sleep(0.1)
            if self.pcap.exists() and self.pcap.stat().st_size >= 24:
                break
        time.sleep(0.3)

    def stop(self):
        time.sleep(0.2)
        self.tcpdump.send_signal(signal.SIGINT)
        _, err = self.tcpdump.communicate(timeout=10)
        self.conntrack_e.send_signal(signal.SIGINT)
        self.conntrack_e.wait(timeout=10)
        self.events.close()
        self.events_err.close()
        m = re.search(r"(\d+) packets? dropped by kernel", err)
        if not m or int(m.group(1)) != 0:
            raise RuntimeError(f"tcpdump lost packets or said nothing: {err.strip()}")
        lost = (self.work / "conntrack-E.stderr").read_text()
        if "ENOBUFS" in lost:
            raise RuntimeError(f"conntrack -E lost events: {lost.strip()}")


def run_steps(topo, steps, servers, log):
    for st in steps:
        a = st["action"]
        log.write(f"{time.time():.6f} start {st}\n")
        ns = topo.ns[st.get("from", "cl")]
        if a == "sleep":
            time.sleep(float(st["seconds"]))
        elif a == "tcp":
            sh("python3", "-c", CLIENT, ADDRS[st["to"]], "tcp", str(st["port"]), st.get("close", "fin"),
               str(st.get("data", 0)), str(st.get("count", 1)), str(st.get("hold", 0)),
               str(st.get("sport", 0)), ns=ns)
        elif a == "udp":
            sh("python3", "-c", CLIENT, ADDRS[st["to"]], "udp", str(st["port"]),
               str(st.get("count", 1)), str(st.get("gap", 0)), str(st.get("size", 20)),
               str(st.get("flows", 1)), ns=ns, timeout=120)
        elif a == "ping":
            dst = ADDRS[st["to"]]
            sh("ping", "-6" if ":" in dst else "-4", "-c", str(st.get("count", 1)), "-i", "0.2", "-W", "1",
               "-t", str(st.get("ttl", 64)), "-s", str(st.get("size", 56)), dst, ns=ns, check=False)
        elif a == "tftp":
            sh("python3", "-c", TFTP_CLIENT, ADDRS[st["to"]], ns=ns)
        elif a == "ftp":
            sh("python3", "-c", FTP_CLIENT, ADDRS[st["to"]], st.get("mode", "passive"), ns=ns)
        elif a == "craft":
            src = ADDRS[st.get("from", "cl")]
            sh("python3", "-c", CRAFT, src, ADDRS[st["to"]], st.get("proto", "tcp"), str(st["sport"]),
               str(st["dport"]), st.get("flags", "A"), str(st.get("seq", 1000)), str(st.get("ack", 0)),
               str(st.get("data", 0)), str(st.get("ttl", 64)), "bad" if st.get("bad_checksum") else "good",
               ns=ns)
        elif a == "iptables":
            sh("iptables", *st["args"].split(), ns=topo.ns[st.get("on", "fw")])
        else:
            raise ValueError(f"unknown step action {a!r}")
        log.write(f"{time.time():.6f} end\n")


FTP_CLIENT = r"""
import ftplib, sys, time

def quit(f):
    # The server closes first and the client only after its FIN: two FINs crossing are
    # handled on two CPUs in an order no capture shows.
    f.putcmd('QUIT')
    f.getresp()
    while f.sock.recv(4096):
        pass
    time.sleep(0.05)
    f.close()

f = ftplib.FTP()
f.connect(sys.argv[1], 21, timeout=5)
f.login()
if sys.argv[2] == 'announce-only':
    f.sendcmd('PASV')
    f.sendcmd('EPSV')
    quit(f)
    sys.exit(0)
f.set_pasv(sys.argv[2] == 'passive')
data = []
f.retrbinary('RETR file.bin', data.append)
f.retrlines('LIST', lambda line: None)
quit(f)
"""


def start_ftp(ns, work, srv):
    """pyftpdlib on port 21. `family = "ipv6"` listens on both families; `permit_foreign`
    accepts an active-mode address that is not the control connection's peer, written
    differently (NAT writes IPv6 addresses in full)."""
    root = work / "ftp-root"
    root.mkdir(exist_ok=True)
    (root / "file.bin").write_bytes(b"ctrack" * 2000)
    extra = ["-i", "::"] if srv.get("family") == "ipv6" else []
    if srv.get("permit_foreign"):
        extra.append("--permit-foreign-addresses")
    p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-m", "pyftpdlib", "-p", "21", "-d", str(root),
                          "-r", "30000-30010", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    probe = "import socket; socket.create_connection(('localhost', 21), timeout=1).close()"
    for _ in range(50):
        if sh("python3", "-c", probe, ns=ns, check=False).returncode == 0:
            return p
        time.sleep(0.1)
    p.kill()
    raise RuntimeError("FTP server did not start (is pyftpdlib installed?)")


TFTP_SERVER = r"""
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('0.0.0.0', 69)); print('ready', flush=True)
while True:
    req, peer = s.recvfrom(600)
    if req[:2] != b'\x00\x01':
        continue
    t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); t.bind(('0.0.0.0', 0)); t.settimeout(2)
    t.sendto(b'\x00\x03\x00\x01' + b'ctrack' * 20, peer)
    try:
        t.recvfrom(100)
    except OSError:
        pass
    t.close()
"""

TFTP_CLIENT = r"""
import socket, sys
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.settimeout(2)
c.sendto(b'\x00\x01file.bin\x00octet\x00', (sys.argv[1], 69))
data, peer = c.recvfrom(600)
c.sendto(b'\x00\x04\x00\x01', peer)
"""


def start_servers(topo, scenario, work):
    procs = []
    for srv in scenario.get("servers", []):
        ns = topo.ns[srv.get("on", "sv")]
        if srv["proto"] == "ftp":
            procs.append(start_ftp(ns, work, srv))
            continue
        if srv["proto"] == "tftp":
            p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", TFTP_SERVER],
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            p.stdout.readline()
            procs.append(p)
            continue
        bind = "::" if srv.get("family", "ipv4") == "ipv6" else "0.0.0.0"
        p = subprocess.Popen(["ip", "netns", "exec", ns, "python3", "-c", SERVER, bind, srv["proto"],
                              str(srv["port"]), srv.get("close", "fin")],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        p.stdout.readline()
        procs.append(p)
    return procs


def kernel_state(topo, work):
    fw = topo.ns["fw"]
    at = time.time()
    listing = sh("conntrack", "-L", "-o", "extended", ns=fw, capture=True)
    stats = sh("conntrack", "-S", ns=fw, capture=True)
    (work / "kernel-at.txt").write_text(f"{at:.9f}\n")
    (work / "kernel-table.txt").write_text(listing)
    (work / "kernel-stats.txt").write_text(stats)
    (work / "kernel-proc.txt").write_text(sh("cat", "/proc/net/nf_conntrack", ns=fw, capture=True))
    (work / "kernel-expect.txt").write_text(sh("conntrack", "-L", "expect", ns=fw, capture=True, check=False) or "")
    (work / "kernel-iptables-save.txt").write_text(sh("iptables-save", "-c", ns=fw, capture=True))
    (work / "kernel-ip6tables-save.txt").write_text(sh("ip6tables-save", "-c", ns=fw, capture=True))
    return at, listing, stats


# "table full, dropping packet" in the initial namespace, "table full in netns N, dropping
# packet" in others: the harness's fw is the latter, ctrack models the former.
TABLE_FULL = "table full"


LOG_LINE = re.compile(r"^\[[^\]]*\] (.*IN=\S* OUT=\S* .*)$")


LOG_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]")


def kernel_log_mark():
    """The timestamp of the kernel log's last line: a run compares what came after it (the
    ring buffer is shared by all namespaces, and once full it drops its oldest lines, so
    counting lines would not tell what a run added)."""
    r = subprocess.run(["dmesg"], capture_output=True, text=True, check=False)
    stamps = [float(m.group(1)) for l in r.stdout.splitlines() if (m := LOG_STAMP.match(l))]
    return max(stamps, default=0.0)


def kernel_log_lines(since):
    """The kernel's `table full` and LOG lines stamped after `since`, timestamps dropped."""
    r = subprocess.run(["dmesg"], capture_output=True, text=True, check=False)
    out = []
    for l in r.stdout.splitlines():
        stamp = LOG_STAMP.match(l)
        if not stamp or float(stamp.group(1)) <= since:
            continue
        if TABLE_FULL in l:
            out.append(TABLE_FULL)
        elif m := LOG_LINE.match(l):
            out.append(m.group(1))
    return out


def ctrack_log_lines(path):
    out = []
    for l in Path(path).read_text().splitlines():
        if TABLE_FULL in l:
            out.append(TABLE_FULL)
        elif m := LOG_LINE.match(l):
            out.append(m.group(1))
    return out


def counter_tables(text):
    """`iptables-save -c` text by (family, table): chain and rule lines with counters. The
    IPv6 part starts at a comment naming ip6tables-save."""
    out, cur = {}, None
    fam = "ipv4"
    for line in text.splitlines():
        if line.startswith("#") and "ip6tables-save" in line:
            fam = "ipv6"
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("*"):
            cur = (fam, line[1:])
            out[cur] = []
        elif line == "COMMIT":
            cur = None
        elif cur:
            # iptables-save on these machines prints only the first 4 bytes of a CT
            # --timeout policy name (`udp-short` saves as `udp-`); ctrack prints the name
            # given, so both sides are compared on those 4 bytes (docs/compat.md).
            out[cur].append(re.sub(r"(--timeout \S{1,4})\S*", r"\1", line))
    return {f"{k[0]}/{k[1]}": v for k, v in out.items()}


def sll2_packets(path):
    """(index, outgoing, IP bytes) of every packet of a Linux cooked v2 capture."""
    import struct
    data = Path(path).read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off, i, out = 24, 0, []
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        frame = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if len(frame) > 20 and struct.unpack(">H", frame[0:2])[0] in (0x0800, 0x86DD):
            out.append((i, frame[10] == 4, frame[20:]))
        i += 1
    return out


def reply_differences(pcap, verdicts_path):
    """Each REJECT answer ctrack made must be the packet the kernel sent: the first outgoing
    packet after the rejected one between the same addresses (IPv4 identification and
    header checksum aside, which the kernel draws at random for ICMP)."""
    import json
    packets = sll2_packets(pcap)
    diffs = []
    for line in Path(verdicts_path).read_text().splitlines():
        v = json.loads(line)
        if not v.get("reply"):
            continue
        ours = bytes.fromhex(v["reply"])
        v6 = ours[0] >> 4 == 6
        addrs = ours[8:40] if v6 else ours[12:20]
        theirs = next((p for i, out, p in packets if out and i > v["index"]
                       and (p[8:40] if v6 else p[12:20]) == addrs), None)
        if theirs is None:
            diffs.append(f"REJECT answer to packet {v['index']}: the kernel sent none")
            continue
        # The kernel picks IPv4 identifications and IPv6 flow labels itself.
        mask = ((lambda b: b[:1] + bytes([b[1] & 0xf0]) + b"\0\0" + b[4:]) if v6
                else (lambda b: b[:4] + b"\0\0" + b[6:10] + b"\0\0" + b[12:]))
        if mask(theirs) != mask(ours):
            diffs.append(f"REJECT answer to packet {v['index']}: kernel {theirs.hex()} / ctrack {ours.hex()}")
    return diffs


def raw_packets(path):
    """IP datagrams of a pcap of link type RAW (ctrack's --out)."""
    import struct
    data = Path(path).read_bytes()
    endian = "<" if data[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    off, out = 24, []
    while off + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[off + 8:off + 12])[0]
        out.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return out


def out_differences(pcap, ours_path):
    """What left fw (the capture's outgoing packets) must be what ctrack says leaves,
    byte for byte, NAT and TTL included."""
    theirs = sorted(p.hex() for _, out, p in sll2_packets(pcap) if out)
    ours = sorted(p.hex() for p in raw_packets(ours_path))
    if theirs == ours:
        return []
    only_k = sorted(set(theirs) - set(ours))
    only_o = sorted(set(ours) - set(theirs))
    return [f"leaving packets: {len(theirs)} from the kernel, {len(ours)} from ctrack; kernel only "
            f"{only_k[:1]}, ctrack only {only_o[:1]}"]


def parse_stats(text):
    total = {}
    for line in text.splitlines():
        for k, v in re.findall(r"(\w+)=(\d+)", line):
            if k != "cpu":
                total[k] = total.get(k, 0) + int(v)
    return total


TIMEOUT = re.compile(r"^(\S+\s+\d+\s+\S+\s+\d+) (\d+) ")


def normalise_entries(text):
    """Entries keyed without the timeout and delta-time; the value is the timeout. Both are
    whole seconds of a moment a little apart (the dump runs after `--at` was taken), so they
    are compared within a second; delta-time is folded into the value for that."""
    out = {}
    for line in text.strip().splitlines():
        line = re.sub(r" use=\d+$", "", line.strip())
        m = TIMEOUT.match(line)
        if not m:
            continue
        rest = line[m.end():]
        delta = re.search(r" delta-time=(\d+)", rest)
        rest = re.sub(r" delta-time=\d+", " delta-time=*", rest)
        out[m.group(1) + " " + rest] = (int(m.group(2)), int(delta.group(1)) if delta else 0)
    return out


def normalise_events(text):
    """(time, event) pairs; the time is kept to recognise events the kernel merged."""
    out = []
    for line in text.strip().splitlines():
        if not line.startswith("["):
            continue
        stamp, body = line.split("\t", 1)
        body = re.sub(r" id=\d+", "", body.strip())
        out.append((float(stamp.strip("[]")), body))
    return out


EVENT_TIMEOUT = re.compile(r"^(\S+ \S+\s+\d+ \S+\s+\d+ )(\d+) ")


def event_key(body):
    """The connection an event is about: family, protocol and the original tuple."""
    toks = body.split()
    first = next(i for i, t in enumerate(toks) if t.startswith("src="))
    key = [toks[1], toks[3]]
    for t in toks[first:]:
        if t.startswith("src=") and len(key) > 2:
            break
        if not (t.startswith("packets=") or t.startswith("bytes=") or t.startswith("[")):
            key.append(t)
    return " ".join(key)


def same_event(x, y):
    """Equal but for a timeout one second apart: the kernel delivers an event a few
    microseconds after the timer was set, and a jiffy can tick in between."""
    mx, my = EVENT_TIMEOUT.match(x), EVENT_TIMEOUT.match(y)
    if mx and my:
        if abs(int(mx.group(2)) - int(my.group(2))) > 1:
            return False
        x, y = mx.group(1) + x[mx.end():], my.group(1) + y[my.end():]
    return x == y


def event_differences(a, b):
    """Compares the events of each connection in order. Across connections the kernel's
    order is not the capture's: two CPUs handle packets at once, and netlink and the
    capture each interleave them their own way. For the same reason, two packets of one
    connection handled at the same moment on two CPUs can report one UPDATE where ctrack,
    one packet after the other, reports two: an UPDATE of ctrack's followed within a
    millisecond by the one the kernel reported is taken as merged."""
    by_a, by_b = {}, {}
    for t, ev in a:
        by_a.setdefault(event_key(ev), []).append((t, ev))
    for t, ev in b:
        by_b.setdefault(event_key(ev), []).append((t, ev))
    out = []
    for key in sorted(set(by_a) | set(by_b)):
        xa, xb = by_a.get(key, []), by_b.get(key, [])
        i = j = 0
        while i < len(xa) or j < len(xb):
            x = xa[i][1] if i < len(xa) else "(none)"
            y = xb[j][1] if j < len(xb) else "(none)"
            if same_event(x, y):
                i, j = i + 1, j + 1
                continue
            merged = (j + 1 < len(xb) and "[UPDATE]" in y and same_event(x, xb[j + 1][1])
                      and xb[j + 1][0] - xb[j][0] < 0.001)
            if merged:
                j += 1
                continue
            out.append(f"{key}: event {i}: kernel {x!r} / ctrack {y!r}")
            break
    return out


def compare(scn_name, kernel, ours):
    k_entries, o_entries = normalise_entries(kernel["table"]), normalise_entries(ours["table"])
    def expectations(text):
        out = {}
        for line in text.strip().splitlines():
            head, _, rest = line.strip().partition(" ")
            if head.isdigit():
                out[rest] = int(head)
        return out
    ke, oe = expectations(kernel["expect"]), expectations(ours["expect"])
    diffs = {"entries": [], "events": [], "stats": [], "counters": []}
    k_proc, o_proc = normalise_entries(kernel["proc"]), normalise_entries(ours["proc"])
    for key in sorted(set(k_proc) ^ set(o_proc)):
        side = "kernel" if key in k_proc else "ctrack"
        diffs["entries"].append(f"/proc/net/nf_conntrack, {side} only: {key}")
    for key in sorted(set(ke) | set(oe)):
        if key not in ke or key not in oe or abs(ke[key] - oe[key]) > 1:
            side = "kernel" if key in ke else "ctrack"
            diffs["entries"].append(f"expectation, {side}: {key}")
    for key in sorted(set(k_entries) | set(o_entries)):
        if key not in o_entries:
            diffs["entries"].append(f"kernel only: {key}")
        elif key not in k_entries:
            diffs["entries"].append(f"ctrack only: {key}")
        elif any(abs(a - b) > 1 for a, b in zip(k_entries[key], o_entries[key])):
            diffs["entries"].append(f"timeout {k_entries[key]} vs {o_entries[key]}: {key}")
    k_ev, o_ev = normalise_events(kernel["events"]), normalise_events(ours["events"])
    diffs["events"] = event_differences(k_ev, o_ev)
    ks, os_ = parse_stats(kernel["stats"]), parse_stats(ours["stats"])
    for k in ("invalid", "drop", "early_drop", "insert_failed"):
        if ks.get(k, 0) != os_.get(k, 0):
            diffs["stats"].append(f"{k}: kernel {ks.get(k, 0)} / ctrack {os_.get(k, 0)}")
    kc, oc = counter_tables(kernel["counters"]), counter_tables(ours["counters"])
    for key in sorted(set(kc) | set(oc)):
        a, b = kc.get(key, []), oc.get(key, [])
        if a != b:
            diff = next(((x, y) for x, y in zip(a + ["(none)"] * len(b), b + ["(none)"] * len(a)) if x != y), None)
            diffs["counters"].append(f"{key}: iptables-save -c {diff[0]!r} / ctrack {diff[1]!r}")
            break
    kf = [l for l in kernel["log"] if l == TABLE_FULL]
    of = [l for l in ours["log"] if l == TABLE_FULL]
    if len(kf) != len(of):
        diffs["stats"].append(f"'{TABLE_FULL}' lines: kernel {len(kf)} / ctrack {len(of)}")
    kl = [l for l in kernel["log"] if l != TABLE_FULL]
    ol = [l for l in ours["log"] if l != TABLE_FULL]
    if kl != ol:
        first = next(((a, b) for a, b in zip(kl + ["(none)"] * len(ol), ol + ["(none)"] * len(kl)) if a != b))
        diffs["counters"].append(f"LOG line: kernel {first[0]!r} / ctrack {first[1]!r}")
    return diffs


def run_scenario(path, ctrack, keep):
    scn = tomllib.loads(path.read_text())
    tag = str(os.getpid() % 10000)
    injected = "capture" in scn
    topo = Injector(tag) if injected else Topology(tag)
    work = Path(tempfile.mkdtemp(prefix=f"ctk-{path.stem}-"))
    servers = []
    saved = []
    try:
        topo.down()
        if injected:
            clean = inject_capture(scn, work)
            topo.up(pcap_unicast_addresses(clean))
        else:
            topo.up()
        fw = topo.ns["fw"]
        for g in scn.get("global_sysctls", []):
            key = g.split("=", 1)[0]
            saved.append(f"{key}={sh('sysctl', '-n', key, capture=True).strip()}")
            sh("sysctl", "-qw", g)
        sysctls = ["net.netfilter.nf_conntrack_acct=1"] + scn.get("sysctls", []) + scn.get("global_sysctls", [])
        for s in sysctls:
            sh("sysctl", "-qw", s, ns=fw)
        # Timeout policies for CT --timeout, defined before the rules that name them.
        nfct = scn.get("nfct", [])
        for line in nfct:
            sh("nfct", *line.split(), ns=fw)
        (work / "nfct.conf").write_text("".join(line + "\n" for line in nfct))
        rules = scn.get("rules", BASE_RULES)
        sh("iptables-restore", ns=fw, input=rules)
        (work / "rules.v4").write_text(rules)
        rules6 = scn.get("rules6", BASE_RULES)
        sh("ip6tables-restore", ns=fw, input=rules6)
        (work / "rules.v6").write_text(rules6)
        (work / "sysctl.conf").write_text("\n".join(sysctls) + "\n")
        # Loading the rules sets off multicast listener reports; they must not race with the
        # zeroing of the counters below.
        wait_for_quiet(topo.ns.values())
        servers = [] if injected else start_servers(topo, scn, work)
        log_mark = kernel_log_mark()
        rec = Recorder(topo, work)
        rec.start()
        # Counters start with the capture: what fw sent while the links came up is in
        # neither.
        # `-Z` alone zeroes only the filter table; ctrack's --zero-counters-at zeroes them all
        # (the links' multicast reports after the rules loaded have passed raw OUTPUT).
        zeroed = time.time()
        for cmd, text in (("iptables", rules), ("ip6tables", rules6)):
            for table in re.findall(r"^\*(\w+)", text, re.M):
                sh(cmd, "-t", table, "-Z", ns=fw)
        if injected:
            sh("tcpreplay", "-q", "-i", "ctkinj0", "-x", str(scn.get("multiplier", 1)), str(clean),
               ns=topo.ns["inj"], timeout=300)
        else:
            with open(work / "steps.log", "w") as log:
                run_steps(topo, scn.get("steps", []), servers, log)
        time.sleep(float(scn.get("settle", 0.3)))
        at, table, stats = kernel_state(topo, work)
        rec.stop()
        kernel_log = kernel_log_lines(log_mark)
        kernel = {"table": table, "stats": stats, "events": (work / "kernel-events.txt").read_text(),
                  "log": kernel_log,
                  "counters": (work / "kernel-iptables-save.txt").read_text()
                  + "# ip6tables-save\n" + (work / "kernel-ip6tables-save.txt").read_text()}
        rule_args = ["--rules", str(work / "rules.v4"), "--rules6", str(work / "rules.v6"),
                     "--nfct", str(work / "nfct.conf")]
        for spec in topo.ifaces:
            rule_args += ["--iface", spec]
        r = subprocess.run([ctrack, "replay", str(rec.pcap), "--sysctl-file", str(work / "sysctl.conf"),
                            *rule_args, "--out", str(work / "ctrack-out.pcap"), "--counters",
                            "--zero-counters-at", f"{zeroed:.9f}", "--verdicts", str(work / "ctrack-verdicts.jsonl"),
                            "--at", f"{at:.9f}", "--table", "conntrack", "--stats",
                            "--events", str(work / "ctrack-events.txt"), "--log", str(work / "ctrack-log.txt"),
                            "-q"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ctrack replay failed: {r.stderr.strip()}")
        lines = r.stdout.splitlines()
        ours = {"table": "\n".join(l for l in lines if l.startswith("ipv")),
                "stats": "\n".join(l for l in lines if l.startswith("cpu=")),
                "counters": "\n".join(l for l in lines if l[:1] in "*:[-C#"),
                "events": (work / "ctrack-events.txt").read_text(),
                "log": ctrack_log_lines(work / "ctrack-log.txt")}
        (work / "ctrack-table.txt").write_text(ours["table"] + "\n")
        r = subprocess.run([ctrack, "replay", str(rec.pcap), "--sysctl-file", str(work / "sysctl.conf"),
                            *rule_args, "--at", f"{at:.9f}", "--table", "proc", "-q"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ctrack replay --table proc failed: {r.stderr.strip()}")
        ours["proc"] = r.stdout
        kernel["proc"] = (work / "kernel-proc.txt").read_text()
        r = subprocess.run([ctrack, "replay", str(rec.pcap), "--sysctl-file", str(work / "sysctl.conf"),
                            *rule_args, "--at", f"{at:.9f}", "--table", "conntrack-expect", "-q"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise RuntimeError(f"ctrack replay --table conntrack-expect failed: {r.stderr.strip()}")
        ours["expect"] = r.stdout
        kernel["expect"] = (work / "kernel-expect.txt").read_text()
        diffs = compare(path.stem, kernel, ours)
        diffs["stats"] += reply_differences(rec.pcap, work / "ctrack-verdicts.jsonl")
        if scn.get("compare_out"):
            diffs["counters"] += out_differences(rec.pcap, work / "ctrack-out.pcap")
        if keep:
            dest = Path(keep) / path.stem
            shutil.rmtree(dest, ignore_errors=True)
            shutil.copytree(work, dest)
        return diffs, len(normalise_entries(table)), len(normalise_events(kernel["events"]))
    finally:
        for g in saved:
            sh("sysctl", "-qw", g, check=False)
        for p in servers:
            p.kill()
        topo.down()
        shutil.rmtree(work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ctrack", default=str(ROOT / "target" / "release" / "ctrack"))
    ap.add_argument("--keep", help="copy each run's captures and dumps into this directory")
    ap.add_argument("scenarios", nargs="*")
    a = ap.parse_args()
    if os.geteuid() != 0:
        print("kernel suite: must run as root (network namespaces, iptables)", file=sys.stderr)
        return 2
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        print(f"kernel suite: missing tools {missing}: install iptables conntrack tcpdump ethtool iproute2",
              file=sys.stderr)
        return 2
    if not Path(a.ctrack).exists():
        print(f"kernel suite: no ctrack binary at {a.ctrack} (cargo build --release)", file=sys.stderr)
        return 2
    paths = [Path(p) for p in a.scenarios] or sorted((HERE / "scenarios").glob("*.toml"))
    known = tomllib.loads((HERE / "known-differences.toml").read_text())
    # LOG from a network namespace reaches the kernel log only with this global switch.
    log_all = sh("sysctl", "-n", "net.netfilter.nf_log_all_netns", capture=True).strip()
    sh("sysctl", "-qw", "net.netfilter.nf_log_all_netns=1")
    try:
        return run_all(paths, known, a)
    finally:
        sh("sysctl", "-qw", f"net.netfilter.nf_log_all_netns={log_all}", check=False)


def run_all(paths, known, a):
    failed = 0
    rows = []
    for p in paths:
        t0 = time.time()
        try:
            diffs, n_entries, n_events = run_scenario(p, a.ctrack, a.keep)
        except Exception as e:  # a scenario that cannot run is a failure, never a skip
            rows.append((p.stem, "ERROR", "ERROR", "ERROR", "ERROR", str(e)))
            failed += 1
            continue
        allowed = known.get(p.stem, {})
        cells = ["agree" if not diffs[k] else ("known" if k in allowed else "DIFFER")
                 for k in ("entries", "events", "stats", "counters")]
        first = next((d for k in ("entries", "events", "stats", "counters") for d in diffs[k]), "")
        rows.append((p.stem, *cells, f"{n_entries} entries, {n_events} events, {time.time() - t0:.1f}s"
                     + (f"; first difference: {first}" if first else "")))
        failed += "DIFFER" in cells
    width = max(len(r[0]) for r in rows) if rows else 10
    print(f"{'scenario':<{width}}  entries  events   stats    counters notes")
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:<7}  {r[2]:<7}  {r[3]:<7}  {r[4]:<7}  {r[5]}")
    print(f"{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
