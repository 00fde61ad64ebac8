#!/usr/bin/env bash
# Every test of ctrack: unit and integration tests, then the kernel differential suite.
# Needs root (network namespaces, iptables) and installs its Debian packages when missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for t in iptables:iptables conntrack:conntrack tcpdump:tcpdump ethtool:ethtool ip:iproute2 ping:iputils-ping tcpreplay:tcpreplay nfct:nfct; do
    command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if [ "${#need[@]}" -gt 0 ]; then
    echo "installing ${need[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# The FTP scenarios' server.
python3 -c 'import pyftpdlib' 2>/dev/null || python3 -m pip install -q --root-user-action=ignore pyftpdlib

cargo build --release -p ctrack
cargo test --workspace --release
python3 tests/kernel/rules_roundtrip.py target/release/ctrack
# iptables' own extension tests (fetched from Debian's iptables source package), judged by
# the real iptables.
python3 tests/kernel/iptables_tests.py target/release/ctrack
python3 tests/kernel/harness.py --ctrack target/release/ctrack
