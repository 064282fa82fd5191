#!/usr/bin/env python3
"""Renders the firewall of docs/deploy.md ("Ports and firewall") for one lab host as an
iptables-restore file: the "all machines" section plus the sections of the host's role, with the
lab's subnets in place of the placeholders. The rules come from the doc itself, so the lab enforces
exactly what operators are told to configure. Fault chains (NQFAULT_IN/OUT, empty) come first.

  firewall.py HOST        the rules of HOST
  firewall.py --check     every placeholder and section of the doc is known (used by the tests)
"""
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import lab  # noqa: E402

DOC = lab.ROOT / "docs" / "deploy.md"


def sections():
    text = DOC.read_text()
    start = text.index("## Ports and firewall")
    block = text[text.index("```sh", start) + 5:]
    block = block[:block.index("```")]
    out, name = {}, None
    for line in block.splitlines():
        line = line.strip()
        if line.startswith("# "):
            name = line[2:].split(":")[0].strip()
            out[name] = []
        elif line.startswith("iptables "):
            out[name].append(line[len("iptables "):])
    return out


def substitute(rule):
    def sub(m):
        tier = {"probe": "probe", "ingest": "ingest", "processing": "processing", "storage": "storage",
                "broker": "broker", "monitoring": "monitoring", "admin": "admin"}[m.group(1)]
        return lab.subnet(tier)
    return re.sub(r"<(\w+)_subnet>", sub, rule)


def render(host):
    s = sections()
    policy = "ACCEPT"
    rules = []
    for name in ["all machines", *lab.HOSTS[host][2]]:
        for r in s[name]:
            if r.startswith("-P INPUT "):
                policy = r.split()[-1]
            else:
                rules.append(substitute(r))
    if host == "targets-1":
        rules += [substitute(r) for r in lab.TARGET_EXTRA]
    lines = ["*filter", f":INPUT {policy} [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
             ":NQFAULT_IN - [0:0]", ":NQFAULT_OUT - [0:0]", "-A INPUT -j NQFAULT_IN", "-A OUTPUT -j NQFAULT_OUT",
             *rules, "COMMIT"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--check"]:
        s = sections()
        need = {"all machines"} | {x for h in lab.HOSTS.values() for x in h[2]}
        missing = need - set(s)
        for h in lab.HOSTS:
            render(h)
        sys.exit(f"docs/deploy.md lacks firewall sections {sorted(missing)}" if missing else 0)
    sys.stdout.write(render(sys.argv[1]))
