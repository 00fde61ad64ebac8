#!/usr/bin/env bash
# ctrack and Open vSwitch's userspace connection tracker side by side, on this machine, in
# one run: the rounds alternate the two, and the table gives medians and ratios.
#
#   bash benches/ovs/run.sh [ROUNDS]        (3 rounds unless told; about a minute a round)
#
# OVS comes from Debian's openvswitch-source package (installed with apt-get when missing),
# built once into target/ovs with its own flags (-O2). Its own `ovstest test-conntrack
# benchmark` times the one hot flow; ovs-conntrack-bench.c, built against its library,
# times the many-flow workloads and the bytes a connection takes. Run as root on an idle
# machine; see BENCHMARKS.md for what each figure means.
set -euo pipefail

rounds=${1:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
work="$root/target/ovs"
src="$work/openvswitch"
mkdir -p "$work"

if [ ! -f /usr/src/openvswitch/openvswitch.tar.gz ]; then
    echo "installing Debian's openvswitch-source (and a C toolchain)" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openvswitch-source gcc make python3 >/dev/null
fi
if [ ! -x "$src/tests/ovstest" ]; then
    echo "building Open vSwitch into $work (a few minutes)" >&2
    rm -rf "$src"
    tar xzf /usr/src/openvswitch/openvswitch.tar.gz -C "$work"
    (cd "$src" && ./configure -q --disable-ssl --disable-libcapng >"$work/configure.log" 2>&1 &&
        make -j"$(nproc)" >"$work/make.log" 2>&1) || {
        echo "building Open vSwitch failed: see $work/configure.log and $work/make.log" >&2
        exit 1
    }
fi
gcc -O2 -I "$src" -I "$src/include" -I "$src/lib" -o "$work/ovs-conntrack-bench" \
    "$root/benches/ovs/ovs-conntrack-bench.c" "$src/lib/.libs/libopenvswitch.a" \
    -latomic -lm -lpthread
(cd "$root" && cargo build --release -q)
ctrack="$root/target/release/ctrack"
ovstest="$src/tests/ovstest"
bench="$work/ovs-conntrack-bench"
out="$work/figures.jsonl"
: >"$out"

# OVS's benchmark prints "conntrack:  N ms" for threads x packets.
ovs_hot() {
    local threads=$1 count=10000000 ms
    ms=$("$ovstest" test-conntrack benchmark "$threads" "$count" 32 2>/dev/null |
        sed -n 's/^conntrack: *\([0-9]*\) ms.*/\1/p')
    python3 -c "import json,sys; t,n,ms=int(sys.argv[1]),int(sys.argv[2]),int(sys.argv[3]); \
print(json.dumps({'workload':'ovs-single','threads':t,'packets':t*n,'mpps':t*n/ms/1e3}))" \
        "$threads" "$count" "$ms"
}

tag() { sed "s/^{/{\"tracker\":\"$1\",\"round\":$2,/"; }

for r in $(seq 1 "$rounds"); do
    echo "round $r of $rounds" >&2
    # Each ratio's two runs one right after the other: the machine's speed moves within
    # seconds, and a ratio of runs seconds apart measured the machine as much as the
    # trackers. OVS's one thread, then ctrack's one and two, then OVS's two; the machine's
    # own ceiling for threads against one, in the same minute.
    ovs_hot 1 | tag ovs "$r" >>"$out"
    for threads in 1 2; do
        "$ctrack" bench ovs-single --threads "$threads" --json | tag ctrack "$r" >>"$out"
    done
    ovs_hot 2 | tag ovs "$r" >>"$out"
    for threads in 1 2; do
        "$ctrack" bench cpu --threads "$threads" --json | tag machine "$r" >>"$out"
    done
    for flows in 10000 1000000; do
        "$bench" many-flows "$flows" 10000000 2>/dev/null | tag ovs "$r" >>"$out"
        "$ctrack" bench many-flows --flows "$flows" --json | tag ctrack "$r" >>"$out"
    done
    "$bench" tcp 1000000 2>/dev/null | tag ovs "$r" >>"$out"
    "$ctrack" bench memory --flows 1000000 --json | tag ctrack "$r" >>"$out"
done

python3 - "$out" <<'EOF'
import json, statistics, sys

rows = [json.loads(l) for l in open(sys.argv[1])]

def median(tracker, workload, threads=1, key="mpps"):
    v = [r[key] for r in rows if r["tracker"] == tracker and r["workload"] == workload
         and r["threads"] == threads and r.get(key) is not None]
    return statistics.median(v) if v else None

# (what, OVS's workload, ctrack's workload, threads, target ratio)
pairs = [
    ("one hot flow", "ovs-single", "ovs-single", 1, 4),
    ("one hot flow, 2 threads", "ovs-single", "ovs-single", 2, None),
    ("10,000 flows, random", "many-flows 10000 random", "many-flows 10000 random batched", 1, 5),
    ("10,000 flows, random (ctrack one by one)", "many-flows 10000 random", "many-flows 10000 random", 1, None),
    ("10,000 flows, in order", "many-flows 10000 sequential", "many-flows 10000 sequential", 1, None),
    ("1M flows, random", "many-flows 1000000 random", "many-flows 1000000 random batched", 1, 8),
    ("1M flows, random (ctrack one by one)", "many-flows 1000000 random", "many-flows 1000000 random", 1, None),
    ("1M flows, in order", "many-flows 1000000 sequential", "many-flows 1000000 sequential", 1, None),
    ("1M new connections", "many-flows-insert 1000000", "many-flows-insert 1000000 batched", 1, 3),
    ("1M new connections (ctrack one by one)", "many-flows-insert 1000000", "many-flows-insert 1000000", 1, None),
]
n = len({r["round"] for r in rows})
print(f"Medians of {n} rounds, Mpps (new connections: millions a second).\n")
print("| workload | OVS | ctrack | ctrack / OVS | target |")
print("|---|---|---|---|---|")
for what, o, c, t, target in pairs:
    a, b = median("ovs", o, t), median("ctrack", c, t)
    if a is None or b is None:
        print(f"| {what} | {a} | {b} | – | – |")
        continue
    print(f"| {what} | {a:.2f} | {b:.2f} | {b / a:.2f}× | {f'≥ {target}×' if target else ''} |")
print("\n| 2 threads against 1, round by round | median | range | rounds at 1.8× |")
print("|---|---|---|---|")
for what, tracker, workload in [
    ("ctrack, one hot flow a thread", "ctrack", "ovs-single"),
    ("OVS, one hot flow a thread, its shared table", "ovs", "ovs-single"),
    ("register arithmetic, no packets (`ctrack bench cpu`)", "machine", "cpu"),
]:
    by_round = {}
    for r in rows:
        if r["tracker"] == tracker and r["workload"] == workload:
            by_round.setdefault(r["round"], {})[r["threads"]] = r["mpps"]
    v = [x[2] / x[1] for x in by_round.values() if 1 in x and 2 in x]
    if v:
        print(f"| {what} | {statistics.median(v):.2f}× | {min(v):.2f}–{max(v):.2f}× "
              f"| {sum(x >= 1.8 for x in v)} of {len(v)} |")
print("\n| bytes a connection, 1M | OVS | ctrack | target |")
print("|---|---|---|---|")
for what, o, c, target in [
    ("UDP, IPv4", "many-flows-insert 1000000", "memory udp ipv4 1000000", ""),
    ("TCP, IPv4", "tcp-handshakes 1000000", "memory tcp ipv4 1000000", "≤ 96"),
]:
    a, b = median("ovs", o, key="bytes_per_conn"), median("ctrack", c, key="bytes_per_conn")
    print(f"| {what} | {a:.0f} | {b:.0f} | {target} |")
EOF
