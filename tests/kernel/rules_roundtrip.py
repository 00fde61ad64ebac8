#!/usr/bin/env python3
"""Rulesets through the real iptables: every file of tests/rules/valid is loaded with
iptables-restore (or run as an iptables script) in a fresh network namespace, with the nft
and the legacy backend, and what iptables-save prints must equal `ctrack rules fmt` table by
table. Every file of tests/rules/invalid must be refused by both iptables and ctrack. Every
ruleset `ctrack plan --write-rules` generates (from tests/rules/plan, tests/rules/valid and
the bundled examples) must load in both and print back as ctrack wrote it.

Exit status 0 when all agree, 1 otherwise, 2 when it cannot run.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RULES = ROOT / "tests" / "rules"
BACKENDS = {"nft": ("iptables-nft", "iptables-nft-restore", "iptables-nft-save", "ip6tables-nft",
                    "ip6tables-nft-restore", "ip6tables-nft-save"),
            "legacy": ("iptables-legacy", "iptables-legacy-restore", "iptables-legacy-save", "ip6tables-legacy",
                       "ip6tables-legacy-restore", "ip6tables-legacy-save")}


def tables(text):
    """Table blocks of iptables-save output, comments dropped, keyed by table name."""
    out, cur, name = {}, [], None
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        if line.startswith("*"):
            name, cur = line[1:], [line]
        elif line == "COMMIT":
            cur.append(line)
            out[name] = "\n".join(cur)
        else:
            cur.append(line)
    return out


def netns(name, *cmd, input=None):
    return subprocess.run(["ip", "netns", "exec", name, *cmd], input=input, capture_output=True, text=True)


def kernel_side(path, backend):
    ipt, restore, save, ip6t, restore6, save6 = BACKENDS[backend]
    text = path.read_text()
    v6 = ("ip6tables" in text or "icmpv6" in text or "ipv6-icmp" in text or "fe80::" in text
          or path.name.endswith("6.rules"))
    ns = f"ctkrules{os.getpid()}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        if path.suffix == ".sh":
            script = text.replace("iptables ", f"{ip6t if v6 else ipt} ")
            r = netns(ns, "sh", "-e", "-c", script)
        else:
            r = netns(ns, restore6 if v6 else restore, input=text)
        if r.returncode != 0:
            return None, r.stderr.strip()
        return netns(ns, save6 if v6 else save).stdout, ""
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


def main():
    if os.geteuid() != 0:
        print("rules round trip: must run as root", file=sys.stderr)
        return 2
    ctrack = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "target" / "release" / "ctrack")
    missing = [b for names in BACKENDS.values() for b in names if shutil.which(b) is None]
    if missing or not Path(ctrack).exists():
        print(f"rules round trip: missing {missing or ctrack}", file=sys.stderr)
        return 2
    failed = passed = 0
    for path in sorted((RULES / "valid").iterdir()):
        for backend in BACKENDS:
            ours = subprocess.run([ctrack, "rules", "fmt", "--backend", backend, str(path)],
                                  capture_output=True, text=True)
            if ours.returncode != 0:
                print(f"FAIL {path.name}: ctrack refused it: {ours.stderr.strip()}")
                failed += 1
                continue
            kernel, err = kernel_side(path, backend)
            if kernel is None:
                print(f"FAIL {path.name} [{backend}]: iptables refused it: {err}")
                failed += 1
                continue
            k, o = tables(kernel), tables(ours.stdout)
            if k == o:
                passed += 1
                continue
            failed += 1
            for t in sorted(set(k) | set(o)):
                if k.get(t) != o.get(t):
                    kl, ol = (k.get(t) or "").splitlines(), (o.get(t) or "").splitlines()
                    first = next(((a, b) for a, b in zip(kl + [""] * len(ol), ol + [""] * len(kl)) if a != b), None)
                    print(f"FAIL {path.name} [{backend}] table {t}: iptables-save {first[0]!r} / ctrack {first[1]!r}")
                    break
    import tempfile
    sources = sorted((RULES / "plan").iterdir()) + sorted(p for p in (RULES / "valid").iterdir()
                                                           if p.suffix == ".rules")
    sources += [ROOT / "examples" / "table-full" / "rules.v4", ROOT / "examples" / "basic" / "rules.v4"]
    for src in sources:
        with tempfile.TemporaryDirectory() as out:
            r = subprocess.run([ctrack, "plan", "--rules", str(src), "--write-rules", out, "--format", "json"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                print(f"FAIL plan {src.name}: {r.stderr.strip()}")
                failed += 1
                continue
            generated = sorted(Path(out).iterdir())
            if not generated:
                print(f"FAIL plan {src.name}: no ruleset generated")
                failed += 1
            for gen in generated:
                ok = True
                for backend in BACKENDS:
                    ours = subprocess.run([ctrack, "rules", "fmt", "--backend", backend, str(gen)],
                                          capture_output=True, text=True).stdout
                    kernel, err = kernel_side(gen, backend)
                    if kernel is None:
                        print(f"FAIL plan {src.name} -> {gen.name} [{backend}]: iptables refused it: {err}")
                        failed += 1
                        ok = False
                    elif tables(kernel) != tables(ours):
                        print(f"FAIL plan {src.name} -> {gen.name} [{backend}]: iptables-save prints it otherwise")
                        failed += 1
                        ok = False
                    else:
                        passed += 1
                if ok:
                    print(f"ok   plan {src.name} -> {gen.name}: loads in iptables-nft and iptables-legacy")
    for path in sorted((RULES / "invalid").iterdir()):
        ours = subprocess.run([ctrack, "rules", "fmt", str(path)], capture_output=True, text=True)
        kernel, err = kernel_side(path, "nft")
        if kernel is not None:
            print(f"FAIL {path.name}: iptables accepted what is meant to be invalid")
            failed += 1
        elif ours.returncode == 0:
            print(f"FAIL {path.name}: ctrack accepted a ruleset iptables refuses ({err})")
            failed += 1
        elif f"{path.name}:" not in ours.stderr:
            print(f"FAIL {path.name}: ctrack's error does not name the file and line: {ours.stderr.strip()}")
            failed += 1
        else:
            passed += 1
            print(f"ok   {path.name}: refused: {ours.stderr.strip()}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
