#!/usr/bin/env python3
"""The multi-machine deployment of docs/deploy.md on one Linux host (#17).

Every host is a network namespace `nq-<host>` with its own address, routes and firewall; one bridge
per tier subnet lives in `nq-router`, which routes between them. RabbitMQ (3 nodes clustered over
Erlang distribution), Cassandra, HAProxy, Prometheus and netqoe's roles run in their hosts with the
shipped configs (deploy/…), rendered with the lab's addresses. Addresses exist only inside these
namespaces (10.77.0.0/16); nothing is sent anywhere else. Entry point: deploy/lab/lab.sh.

  up              build the hosts, firewalls and processes; print the addresses
  down            stop every process and remove every namespace, link and file (also on failure)
  status          each host's processes and health
  firewall-test   every documented flow open, undocumented ones refused (docs/deploy.md)
  check           probe → lb-1 → ingest → broker → aggregators → Cassandra → query API, end to end
  fault KIND …    cut HOST | link A B | loss A B PCT | kill HOST | restart HOST | pause HOST |
                  resume HOST | clock HOST SECONDS | disk HOST
  heal [HOST…]    remove network faults and disk fillers (every host when none is named)
  suite [short]   the load generator through HAProxy with the oracle under each fault; a table
  ci              up, firewall-test, check, suite short, down (also on failure): what .ci/run runs
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

# Every host gets the configuration a real machine would get, never the test harness's (.ci/run
# exports NETQOE_SCYLLA_URI and other test knobs; a NETQOE__* variable would override the lab's
# files). Only the lab's own knobs survive.
LAB_KNOBS = ("NETQOE_LAB_", "NETQOE_BIN", "NETQOE_LOADGEN")
for _k in [k for k in os.environ if k.startswith("NETQOE") and not k.startswith(LAB_KNOBS)]:
    del os.environ[_k]

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
LAB = Path(os.environ.get("NETQOE_LAB_DIR", "/tmp/nqlab"))
BIN = os.environ.get("NETQOE_BIN", str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "debug" / "netqoe"))
LOADGEN = os.environ.get("NETQOE_LOADGEN", str(Path(BIN).parent / "netqoe-loadgen"))
NS = "nq-"
ROUTER = NS + "router"

TIERS = {"probe": 10, "ingest": 20, "processing": 30, "storage": 40, "broker": 50, "monitoring": 60,
         "targets": 70, "admin": 80}
# host: (tier, last octet, firewall sections of docs/deploy.md, other names)
HOSTS = {
    "probe-1": ("probe", 11, ["probe machines"], []),
    "probe-2": ("probe", 12, ["probe machines"], []),
    "probe-3": ("probe", 13, ["probe machines"], []),
    "lb-1": ("ingest", 10, ["ingest-lb"], ["ingest-lb"]),
    "ingest-1": ("ingest", 11, ["ingest machines"], []),
    "ingest-2": ("ingest", 12, ["ingest machines"], []),
    "aggregate-1": ("processing", 11, ["processing machines"], []),
    "aggregate-2": ("processing", 12, ["processing machines"], []),
    "diagnose-1": ("processing", 13, ["processing machines"], []),
    "cql-1": ("storage", 11, ["storage machines"], ["scylla-1"]),
    "rabbit-1": ("broker", 11, ["broker machines"], []),
    "rabbit-2": ("broker", 12, ["broker machines"], []),
    "rabbit-3": ("broker", 13, ["broker machines"], []),
    "monitor-1": ("monitoring", 11, ["monitoring machines"], ["prometheus"]),
    "targets-1": ("targets", 11, ["reflector machines"], ["reflector-1", "shop.example"]),
    "admin-1": ("admin", 11, [], []),
}
# The targets host runs services the probes measure (a web shop and its resolver): not netqoe's
# ports, so not in docs/deploy.md; the lab opens them to the probes itself.
TARGET_EXTRA = ["-A INPUT -p tcp --dport 80 -s <probe_subnet> -j ACCEPT",
                "-A INPUT -p udp --dport 53 -s <probe_subnet> -j ACCEPT"]
RABBIT_PASSWORD = "lab-rabbit-secret"
# Data directories on a small filesystem of their own, so `fault disk HOST` fills a real disk: the
# broker nodes' (RabbitMQ's disk alarm watches it; the lab's limit is 1 GB) and the aggregators'.
DISKS = {"rabbit-1": ("mnesia", "1536m"), "rabbit-2": ("mnesia", "1536m"), "rabbit-3": ("mnesia", "1536m"),
         "aggregate-1": ("data", "64m"), "aggregate-2": ("data", "64m")}
FILLER = "nq-disk-filler"
LOAD_SOURCES = [f"10.77.10.{100 + i}" for i in range(40)]
SHARDS = 8


def ip(host):
    tier, octet, _, _ = HOSTS[host]
    return f"10.77.{TIERS[tier]}.{octet}"


def subnet(tier):
    return f"10.77.{TIERS[tier]}.0/24"


def log(*a):
    print("lab:", *a, file=sys.stderr, flush=True)


def sh(*cmd, check=True, capture=False, timeout=120, env=None):
    r = subprocess.run(cmd, check=False, timeout=timeout, env=env,
                       stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
                       stderr=subprocess.PIPE if capture else subprocess.DEVNULL, text=True)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {(r.stderr or '').strip()[:500]}")
    return r


def nsx(host, *cmd, **kw):
    return sh("ip", "netns", "exec", NS + host, *cmd, **kw)


def spawn(host, name, cmd, env=None):
    """Starts a long-running process in a host; its output goes to LAB/logs/<host>.<name>.log."""
    (LAB / "logs").mkdir(parents=True, exist_ok=True)
    out = open(LAB / "logs" / f"{host}.{name}.log", "ab")
    full_env = dict(os.environ)
    full_env.update(env or {})
    p = subprocess.Popen(["ip", "netns", "exec", NS + host, *cmd], stdout=out, stderr=subprocess.STDOUT,
                         env=full_env, start_new_session=True, cwd=str(LAB))
    procs = load_procs()
    procs.setdefault(host, {})[name] = {"cmd": cmd, "env": env or {}, "pid": p.pid}
    save_procs(procs)
    return p


def load_procs():
    f = LAB / "procs.json"
    return json.loads(f.read_text()) if f.exists() else {}


def save_procs(p):
    (LAB / "procs.json").write_text(json.dumps(p, indent=1))


def ns_pids(host):
    r = sh("ip", "netns", "pids", NS + host, check=False, capture=True)
    return [int(x) for x in r.stdout.split()] if r.returncode == 0 else []


def lab_namespaces():
    r = sh("ip", "netns", "list", check=False, capture=True)
    return [line.split()[0] for line in r.stdout.splitlines() if line.startswith(NS)]


def wait(what, f, secs):
    deadline = time.time() + secs
    last = None
    while time.time() < deadline:
        try:
            v = f()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - reported below when time is up
            last = e
        time.sleep(1)
    raise RuntimeError(f"{what}: not within {secs} s ({last})")


def http_in(host, url, token=None, timeout=5, method="GET", body=None, basic=None):
    """An HTTP request made from inside a host (so its firewall and routes apply)."""
    script = ("import sys,urllib.request as u\n"
              "r=u.Request(sys.argv[1],method=sys.argv[2],data=(sys.argv[4].encode() if sys.argv[4] else None))\n"
              "t=sys.argv[3]\n"
              "t and r.add_header('Authorization',t)\n"
              "r.add_header('Content-Type','application/json')\n"
              "try:\n  x=u.urlopen(r,timeout=float(sys.argv[5])); print(x.status); sys.stdout.write(x.read().decode())\n"
              "except u.HTTPError as e: print(e.code); sys.stdout.write(e.read().decode())\n")
    import base64
    auth = f"Bearer {token}" if token else ""
    if basic:
        auth = "Basic " + base64.b64encode(f"{basic[0]}:{basic[1]}".encode()).decode()
    r = nsx(host, sys.executable, "-c", script, url, method, auth, body or "", str(timeout),
            check=False, capture=True, timeout=timeout + 10)
    if r.returncode != 0:
        raise RuntimeError(f"{host} → {url}: {r.stderr.strip()[-300:]}")
    status, _, text = r.stdout.partition("\n")
    return int(status), text


def connects(src, dst_ip, port, timeout=1.5):
    script = ("import socket,sys\ns=socket.socket();s.settimeout(float(sys.argv[3]))\n"
              "try:\n  s.connect((sys.argv[1],int(sys.argv[2])));print('open')\n"
              "except socket.timeout: print('filtered')\nexcept OSError as e: print('closed')\n")
    r = nsx(src, sys.executable, "-c", script, dst_ip, str(port), str(timeout), capture=True, check=False)
    return r.stdout.strip()


# ---------------------------------------------------------------------------------------------
# topology

def hosts_file():
    lines = ["127.0.0.1 localhost"]
    for h, (_, _, _, aliases) in HOSTS.items():
        lines.append(f"{ip(h)} {h} {' '.join(aliases)}".rstrip())
    return "\n".join(lines) + "\n"


def build_network():
    sh("ip", "netns", "add", ROUTER)
    nsx("router", "ip", "link", "set", "lo", "up")
    nsx("router", "sysctl", "-qw", "net.ipv4.ip_forward=1")
    for tier, n in TIERS.items():
        br = f"br{n}"
        nsx("router", "ip", "link", "add", br, "type", "bridge")
        nsx("router", "ip", "addr", "add", f"10.77.{n}.1/24", "dev", br)
        nsx("router", "ip", "link", "set", br, "up")
    for h in HOSTS:
        tier = HOSTS[h][0]
        etc = Path("/etc/netns") / (NS + h)
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts_file())
        (etc / "resolv.conf").write_text(f"nameserver {ip('targets-1')}\noptions timeout:1 attempts:1\n")
        sh("ip", "netns", "add", NS + h)
        v, e = f"v-{h}"[:15], f"e-{h}"[:15]
        sh("ip", "link", "add", v, "type", "veth", "peer", "name", e)
        sh("ip", "link", "set", v, "netns", ROUTER)
        sh("ip", "link", "set", e, "netns", NS + h)
        nsx("router", "ip", "link", "set", v, "master", f"br{TIERS[tier]}", "up")
        nsx(h, "ip", "link", "set", "lo", "up")
        nsx(h, "ip", "link", "set", e, "name", "eth0")
        nsx(h, "ip", "addr", "add", f"{ip(h)}/24", "dev", "eth0")
        nsx(h, "ip", "link", "set", "eth0", "up")
        nsx(h, "ip", "route", "add", "default", "via", f"10.77.{TIERS[tier]}.1")
    # the load generator on probe-1 posts from 40 addresses, as a fleet does (HAProxy limits each)
    for a in LOAD_SOURCES:
        nsx("probe-1", "ip", "addr", "add", f"{a}/24", "dev", "eth0")


def mount_disks():
    for h, (sub, size) in DISKS.items():
        d = LAB / "hosts" / h / sub
        d.mkdir(parents=True, exist_ok=True)
        sh("mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", f"nq-{h}", str(d))


def unmount_disks():
    r = sh("findmnt", "-rn", "-o", "TARGET", check=False, capture=True)
    for target in sorted((t for t in r.stdout.split() if t.startswith(str(LAB) + "/")), reverse=True):
        sh("umount", "-l", target, check=False)


def fill_disk(h):
    """Fills the host's data filesystem: a broker node down to 200 MB free (below its 1 GB disk
    limit), any other host to the last byte."""
    sub, _ = DISKS[h]
    d = LAB / "hosts" / h / sub
    st = os.statvfs(d)
    free = st.f_bavail * st.f_frsize
    keep = 200 * 2**20 if h.startswith("rabbit-") else 0
    with open(d / FILLER, "ab") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, free - keep) + os.fstat(f.fileno()).st_size)
    st = os.statvfs(d)
    log(f"disk of {h} ({d}) filled: {st.f_bavail * st.f_frsize // 2**20} MB free")


def apply_firewalls():
    for h in HOSTS:
        rules = sh(sys.executable, str(HERE / "firewall.py"), h, capture=True).stdout
        r = subprocess.run(["ip", "netns", "exec", NS + h, "iptables-restore"], input=rules, text=True,
                           capture_output=True)
        if r.returncode != 0:
            raise RuntimeError(f"{h}: iptables-restore: {r.stderr}")


# ---------------------------------------------------------------------------------------------
# processes

def tokens():
    f = LAB / "tokens.json"
    if f.exists():
        return json.loads(f.read_text())
    def mint(kind, name):
        out = sh(BIN, "token", "mint", f"--{kind}", name, capture=True).stdout
        tok = next(line.split()[1] for line in out.splitlines() if line.startswith("token:"))
        sha = next(line.split()[1] for line in out.splitlines() if line.startswith("sha256:"))
        return tok, sha
    t = {"probes": {}, "query": mint("query", "lab"), "admin": mint("admin", "lab")}
    for p in ["probe-1", "probe-2", "probe-3"]:
        t["probes"][p] = mint("probe", p)
    # the load generator's probes (it runs on probe-1; netqoe-loadgen setup mints them)
    sh(LOADGEN, "setup", "--probes", str(int(os.environ.get("NETQOE_LAB_LOAD_PROBES", "200"))),
       "--out", str(LAB / "loadgen"), "--bus", "rabbitmq")
    cfg = (LAB / "loadgen" / "netqoe.toml").read_text()
    ids = [line.split('"')[1] for line in cfg.splitlines() if line.startswith("id = ")]
    shas = [line.split('"')[1] for line in cfg.splitlines() if line.startswith("token_sha256 = ")]
    t["load"] = list(zip(ids, shas))
    lt = json.loads((LAB / "loadgen" / "tokens.json").read_text())
    lt["query"] = t["query"][0]
    (LAB / "loadgen" / "tokens.json").write_text(json.dumps(lt))
    f.write_text(json.dumps(t))
    return t


def netqoe_env(host):
    t = tokens()
    probes = [f'{{id="{p}",token_sha256="{sha}",labels={{region="lab",access="veth"}}}}'
              for p, (_, sha) in t["probes"].items()]
    probes += [f'{{id="{p}",token_sha256="{sha}"}}' for p, sha in t["load"]]
    uris = [f"amqp://netqoe:{RABBIT_PASSWORD}@rabbit-{i}:5672/%2f?heartbeat=10" for i in (1, 2, 3)]
    return {
        "NETQOE__RABBITMQ__URIS": json.dumps(uris),
        "NETQOE__RABBITMQ__SHARDS": str(SHARDS),
        "NETQOE__RABBITMQ__MANAGEMENT_URL": "http://rabbit-1:15672",
        # one Cassandra node in dc1 (as the shipped config names it), so replication 1
        "NETQOE__SCYLLA__CONTACT_POINTS": '["cql-1:9042"]',
        "NETQOE__SCYLLA__DATACENTERS": "{ dc1 = 1 }",
        "NETQOE__SCYLLA__PASSWORD": "unused-by-allow-all",
        "NETQOE__STORAGE__DATA_DIR": str(LAB / "hosts" / host / "data"),
        "NETQOE__PROBES": "[" + ",".join(probes) + "]",
        "NETQOE__QUERY_TOKENS": f'[{{name="lab",token_sha256="{t["query"][1]}"}}]',
        "NETQOE__ADMIN_TOKENS": f'[{{name="lab",token_sha256="{t["admin"][1]}"}}]',
        "NETQOE__LOG__FORMAT": "json",
    }


ROLE_ENV = {
    "ingest": {},
    "aggregate": {"NETQOE__HTTP__BIND": "0.0.0.0:9091", "NETQOE__HTTP__ADMIN_BIND": ""},
    "diagnose": {"NETQOE__HTTP__BIND": "0.0.0.0:9092", "NETQOE__HTTP__ADMIN_BIND": ""},
}
ROLE_OF = {"ingest-1": "ingest", "ingest-2": "ingest", "aggregate-1": "aggregate", "aggregate-2": "aggregate",
           "diagnose-1": "diagnose"}
HEALTH = {"ingest": 9090, "aggregate": 9091, "diagnose": 9092}


def start_role(host):
    role = ROLE_OF[host]
    (LAB / "hosts" / host / "data").mkdir(parents=True, exist_ok=True)
    env = netqoe_env(host)
    env.update(ROLE_ENV[role])
    spawn(host, "netqoe", [BIN, "--config", str(ROOT / "deploy" / "netqoe.cluster.toml"), role], env)


def ready(host, port, path="/readyz"):
    try:
        return http_in(host, f"http://{ip(host)}:{port}{path}", timeout=3)[0] == 200
    except RuntimeError:
        return False


def rabbit_env(i):
    d = LAB / "hosts" / f"rabbit-{i}"
    return {
        "RABBITMQ_CONF_ENV_FILE": str(d / "rabbitmq-env.conf"),
        "RABBITMQ_NODENAME": f"rabbit@rabbit-{i}",
        "RABBITMQ_CONFIG_FILE": str(d / "rabbitmq"),
        "RABBITMQ_MNESIA_BASE": str(d / "mnesia"),
        "RABBITMQ_LOG_BASE": str(d / "log"),
        "RABBITMQ_PID_FILE": str(d / "pid"),
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(d / "enabled_plugins"),
    }


def start_rabbit(i):
    d = LAB / "hosts" / f"rabbit-{i}"
    for sub in ("mnesia", "log"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    # the shipped node config, with the lab's paths and a disk limit this machine has
    conf = (ROOT / "deploy" / "rabbitmq" / "rabbitmq.conf").read_text()
    defs = d / "definitions.json"
    shutil.copy(ROOT / "deploy" / "rabbitmq" / "definitions.json", defs)
    conf = conf.replace("/etc/rabbitmq/definitions.json", str(defs)).replace("disk_free_limit.absolute = 5GB",
                                                                              "disk_free_limit.absolute = 1GB")
    (d / "rabbitmq.conf").write_text(conf)
    shutil.copy(ROOT / "deploy" / "rabbitmq" / "enabled_plugins", d / "enabled_plugins")
    # its own env file: the machine-wide one may pin the node to 127.0.0.1
    (d / "rabbitmq-env.conf").write_text(f"NODENAME=rabbit@rabbit-{i}\n")
    sh("chown", "-R", "rabbitmq:rabbitmq", str(d))
    os.chmod(LAB / "hosts", 0o755)
    os.chmod(LAB, 0o755)
    spawn(f"rabbit-{i}", "rabbitmq", ["rabbitmq-server"], rabbit_env(i))


def rabbitmqctl(i, *args, check=True, timeout=60):
    return nsx(f"rabbit-{i}", "rabbitmqctl", "-n", f"rabbit@rabbit-{i}", *args, check=check, capture=True,
               timeout=timeout, env={**os.environ, **rabbit_env(i)})


def start_brokers():
    for i in (1, 2, 3):
        start_rabbit(i)
    for i in (1, 2, 3):
        wait(f"rabbit-{i} up", lambda i=i: rabbitmqctl(i, "await_startup", "--timeout", "5", check=False)
             .returncode == 0, 180)
    # classic_config peer discovery forms the cluster when the nodes boot together; join whoever
    # booted alone (a node that came up before its peers answered)
    def running():
        s = json.loads(rabbitmqctl(1, "cluster_status", "--formatter", "json").stdout)
        return sorted(s["running_nodes"])
    for i in (2, 3):
        if f"rabbit@rabbit-{i}" not in running():
            rabbitmqctl(i, "stop_app")
            rabbitmqctl(i, "join_cluster", "rabbit@rabbit-1")
            rabbitmqctl(i, "start_app")
    nodes = wait("3 running nodes", lambda: len(running()) == 3 and running(), 60)
    log("broker cluster:", " ".join(nodes))
    rabbitmqctl(1, "add_user", "netqoe", RABBIT_PASSWORD, check=False)
    rabbitmqctl(1, "set_user_tags", "netqoe", "monitoring")
    rabbitmqctl(1, "set_permissions", "-p", "/", "netqoe", ".*", ".*", ".*")


def start_cassandra():
    env = {**os.environ, "NETQOE_CASSANDRA_ADDRESS": ip("cql-1"), "NETQOE_CASSANDRA_HOME": str(LAB / "hosts" / "cql-1"),
           "NETQOE_CASSANDRA_DC": "dc1",
           "NETQOE_CASSANDRA_HEAP": os.environ.get("NETQOE_LAB_CASSANDRA_HEAP", "768M")}
    nsx("cql-1", "bash", str(ROOT / "scripts" / "ensure-cassandra.sh"), env=env, timeout=400)
    log("cassandra on cql-1:9042")


TARGET_SERVER = HERE / "target_server.py"


def start_targets():
    spawn("targets-1", "reflector", [BIN, "reflector", "--bind", f"{ip('targets-1')}:862"])
    spawn("targets-1", "shop", [sys.executable, str(TARGET_SERVER), ip("targets-1")])


def probe_config(host):
    t = tokens()
    d = LAB / "hosts" / host
    (d / "state").mkdir(parents=True, exist_ok=True)
    (d / "token").write_text(t["probes"][host][0])
    cfg = (ROOT / "deploy" / "probe" / "probe.example.toml").read_text()
    # the shipped example, rendered for this host: its id and token file, the shop's plain-HTTP
    # health page and port (the lab's shop serves no certificate the probes would trust)
    cfg = (cfg.replace('token_file = "/run/secrets/probe_token"', f'token_file = "{d / "token"}"')
           .replace('state_dir = "/var/lib/netqoe-probe"', f'state_dir = "{d / "state"}"')
           .replace('probe_id = "probe-1"', f'probe_id = "{host}"')
           .replace('region = "eu-west"', 'region = "lab"')
           .replace("https://shop.example/health", "http://shop.example/health")
           .replace('address = "shop.example:443"', 'address = "shop.example:80"'))
    # drop the TLS target (no certificate to trust here)
    blocks = cfg.split("[[targets]]")
    cfg = "[[targets]]".join(b for b in blocks if 'kind = "tls"' not in b)
    (d / "probe.toml").write_text(cfg)
    return d / "probe.toml"


def start_probe(host, faketime=None):
    env = {}
    if faketime is not None:
        env = {"LD_PRELOAD": "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1", "FAKETIME": f"{faketime:+d}s",
               "FAKETIME_DONT_FAKE_MONOTONIC": "1", "FAKETIME_NO_CACHE": "1"}
    spawn(host, "probe", [BIN, "probe", str(probe_config(host))], env)


def start_lb():
    cfg = (ROOT / "deploy" / "haproxy" / "haproxy.cfg").read_text()
    # the shipped config without Docker's resolver: names come from the host's /etc/hosts (libc)
    out, skip = [], False
    for line in cfg.splitlines():
        if line.startswith("resolvers docker"):
            skip = True
            continue
        if skip and (line.startswith(" ") or not line.strip()):
            continue
        skip = False
        out.append(line.replace(" resolvers docker", ""))
    d = LAB / "hosts" / "lb-1"
    d.mkdir(parents=True, exist_ok=True)
    (d / "haproxy.cfg").write_text("\n".join(out) + "\n")
    sh("haproxy", "-c", "-f", str(d / "haproxy.cfg"), capture=True)
    # -n: this machine's file limit (20000) is below what maxconn 20000 asks for (2 per connection)
    spawn("lb-1", "haproxy", ["haproxy", "-db", "-n", "8000", "-f", str(d / "haproxy.cfg")])


def prometheus_config():
    import re
    text = (ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text()
    # the shipped scrape config with the lab's hosts: every probe host; no single-host `netqoe`
    # job; no Scylla job (Cassandra serves no Prometheus endpoint); HAProxy is ingest-lb
    jobs = re.split(r"(?m)^  - job_name: ", text)
    keep = [jobs[0]]
    for j in jobs[1:]:
        name = j.split("\n", 1)[0].strip()
        if name in ("netqoe-run", "scylla"):
            continue
        if name == "netqoe-probe":
            j = j.replace('["probe-1:9101"]', '["probe-1:9101", "probe-2:9101", "probe-3:9101"]')
        keep.append(j)
    text = "  - job_name: ".join(keep).replace("scrape_interval: 15s", "scrape_interval: 5s") \
        .replace("evaluation_interval: 15s", "evaluation_interval: 5s")
    return text


ALERT_TIME_SCALE = 10


def alerts_config():
    """The shipped rules with every duration (`for:` and range selectors) divided by
    ALERT_TIME_SCALE, so a fault held for a minute shows the alert a 10-minute outage raises;
    expressions and thresholds are unchanged."""
    import re
    text = (ROOT / "deploy" / "prometheus" / "alerts.yml").read_text()

    def scaled(m):
        secs = int(m.group(1)) * {"s": 1, "m": 60, "h": 3600}[m.group(2)] // ALERT_TIME_SCALE
        return f"{m.group(0)[0]}{max(secs, 0)}s" if m.group(0)[0] == "[" else f"for: {secs}s"
    text = re.sub(r"for: (\d+)([smh])", scaled, text)
    return re.sub(r"\[(\d+)([smh])", scaled, text)


def start_monitor():
    d = LAB / "hosts" / "monitor-1"
    (d / "tsdb").mkdir(parents=True, exist_ok=True)
    (d / "prometheus.yml").write_text(prometheus_config())
    (d / "alerts.yml").write_text(alerts_config())
    spawn("monitor-1", "prometheus", ["prometheus", f"--config.file={d / 'prometheus.yml'}",
                                      f"--storage.tsdb.path={d / 'tsdb'}", "--web.listen-address=0.0.0.0:9090"])


# ---------------------------------------------------------------------------------------------
# commands

def up():
    if os.geteuid() != 0:
        sys.exit("lab: needs root (network namespaces, iptables)")
    for tool in ("ip", "iptables-restore", "haproxy", "prometheus", "rabbitmq-server", "java", "faketime"):
        if not shutil.which(tool):
            sys.exit(f"lab: {tool} is missing (apt-get install -y iproute2 iptables haproxy prometheus "
                     "rabbitmq-server faketime; Java 17 + Maven for Cassandra)")
    for b in (BIN, LOADGEN):
        if not os.access(b, os.X_OK):
            sys.exit(f"lab: {b} is missing: cargo build --bins (or set NETQOE_BIN / NETQOE_LOADGEN)")
    if lab_namespaces():
        log("an earlier lab is still up; taking it down first")
        down()
    LAB.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        build_network()
        apply_firewalls()
        mount_disks()
        tokens()
        start_targets()
        start_brokers()
        start_cassandra()
        env = {**os.environ, **netqoe_env("aggregate-1")}
        nsx("aggregate-1", BIN, "--config", str(ROOT / "deploy" / "netqoe.cluster.toml"), "migrate", env=env,
            timeout=180, capture=True)
        for h in ("aggregate-1", "aggregate-2", "diagnose-1", "ingest-1", "ingest-2"):
            start_role(h)
        for h in ("aggregate-1", "aggregate-2", "diagnose-1", "ingest-1", "ingest-2"):
            wait(f"{h} ready", lambda h=h: ready(h, HEALTH[ROLE_OF[h]]), 120)
        start_lb()
        # netqoe behind it answers (401 without a token), not HAProxy's 503 of a backend with no server up
        wait("lb-1 routes to ingest", lambda: http_in("admin-1", f"http://{ip('lb-1')}:8080/v1/probes")[0] == 401, 60)
        for h in ("probe-1", "probe-2", "probe-3"):
            start_probe(h)
        start_monitor()
        wait("prometheus ready", lambda: http_in("admin-1", f"http://{ip('monitor-1')}:9090/-/ready")[0] == 200, 60)
    except BaseException as e:
        log(f"up failed: {e}; the logs are in {LAB}/logs; taking the lab down")
        keep = LAB.with_name(LAB.name + ".failed")
        shutil.rmtree(keep, ignore_errors=True)
        shutil.copytree(LAB / "logs", keep, dirs_exist_ok=True) if (LAB / "logs").exists() else None
        down()
        sys.exit(1)
    log(f"up in {time.time() - t0:.0f} s")
    for h in HOSTS:
        print(f"{h:12} {ip(h):12} {' '.join(HOSTS[h][3])}")


def down():
    for h in list(HOSTS) + ["router"]:
        for sig in (signal.SIGCONT, signal.SIGKILL):
            for pid in ns_pids(h):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
    time.sleep(0.5)
    for n in lab_namespaces():
        sh("ip", "netns", "del", n, check=False)
        shutil.rmtree(Path("/etc/netns") / n, ignore_errors=True)
    for h in HOSTS:
        shutil.rmtree(Path("/etc/netns") / (NS + h), ignore_errors=True)
    unmount_disks()
    left = lab_namespaces()
    if left:
        sys.exit(f"lab: namespaces left behind: {left}")
    shutil.rmtree(LAB, ignore_errors=True)
    log("down: no lab namespace, link or process left")


def status():
    procs = load_procs()
    for h in HOSTS:
        pids = ns_pids(h)
        names = []
        for name, p in procs.get(h, {}).items():
            alive = Path(f"/proc/{p['pid']}").exists()
            names.append(f"{name}({'up' if alive else 'DOWN'})")
        health = ""
        if h in ROLE_OF:
            health = "ready" if ready(h, HEALTH[ROLE_OF[h]]) else "NOT READY"
        print(f"{h:12} {ip(h):12} {len(pids):3} processes  {' '.join(names)}  {health}")


def firewall_test():
    """Every documented flow connects; undocumented ones are refused by the firewall (the port
    listens — checked from the host itself — but the source gets no answer)."""
    allowed = [("probe-1", "lb-1", 8080), ("admin-1", "lb-1", 8080), ("monitor-1", "lb-1", 8404),
               ("lb-1", "ingest-1", 8080), ("lb-1", "ingest-2", 9090), ("monitor-1", "ingest-1", 9090),
               ("admin-1", "ingest-2", 9090), ("monitor-1", "aggregate-1", 9091), ("admin-1", "aggregate-2", 9091),
               ("monitor-1", "diagnose-1", 9092), ("ingest-1", "rabbit-1", 5672), ("ingest-2", "rabbit-3", 5672),
               ("aggregate-1", "rabbit-2", 5672), ("diagnose-1", "rabbit-3", 5672),
               ("aggregate-1", "rabbit-1", 15672), ("admin-1", "rabbit-2", 15672), ("rabbit-2", "rabbit-1", 25672),
               ("rabbit-3", "rabbit-1", 4369), ("monitor-1", "rabbit-1", 15692), ("ingest-1", "cql-1", 9042),
               ("aggregate-2", "cql-1", 9042), ("monitor-1", "probe-1", 9101), ("admin-1", "monitor-1", 9090)]
    refused = [("probe-1", "rabbit-1", 5672), ("probe-1", "aggregate-1", 9091), ("probe-1", "cql-1", 9042),
               ("probe-2", "ingest-1", 8080), ("probe-1", "ingest-2", 9090), ("ingest-1", "rabbit-1", 15672),
               ("ingest-1", "rabbit-2", 25672), ("monitor-1", "rabbit-1", 5672), ("aggregate-1", "ingest-1", 8080),
               ("targets-1", "lb-1", 8080), ("probe-1", "monitor-1", 9090), ("admin-1", "cql-1", 9042),
               ("ingest-1", "cql-1", 7000), ("probe-3", "diagnose-1", 9092), ("diagnose-1", "probe-1", 9101)]
    bad = []
    for src, dst, port in allowed:
        got = connects(src, ip(dst), port)
        ok = got == "open"
        print(f"{'ok ' if ok else 'BAD'} allowed  {src:12} → {dst}:{port:<6} {got}")
        bad += [] if ok else [(src, dst, port, got)]
    for src, dst, port in refused:
        local = connects(dst, ip(dst), port)
        got = connects(src, ip(dst), port)
        ok = got == "filtered" and local == "open"
        print(f"{'ok ' if ok else 'BAD'} refused  {src:12} → {dst}:{port:<6} {got} (from {dst} itself: {local})")
        bad += [] if ok else [(src, dst, port, got)]
    print(f"firewall: {len(allowed) + len(refused) - len(bad)}/{len(allowed) + len(refused)} flows as documented")
    if bad:
        sys.exit(1)


def check():
    """The whole path, as the probes use it: each probe's measurements reach the query API (via
    lb-1, ingest, the broker, an aggregator and Cassandra) and /v1/probes lists it."""
    q = tokens()["query"][0]
    lb = f"http://{ip('lb-1')}:8080"

    def probes_seen():
        s, body = http_in("admin-1", f"{lb}/v1/probes", q)
        seen = {p["probe"]: p for p in json.loads(body)["probes"]} if s == 200 else {}
        return all(seen.get(p, {}).get("events", 0) > 0 for p in ("probe-1", "probe-2", "probe-3")) and seen
    seen = wait("every probe's events in /v1/probes", probes_seen, 150)
    now = int(time.time() * 1000)

    def stored():
        s, body = http_in("admin-1", f"{lb}/v1/rollups?metric=rtt&tier=1m&from={now - 900_000}&to={now + 60_000}", q)
        rows = json.loads(body).get("rollups", []) if s == 200 else []
        return {r["probe"] for r in rows} >= {"probe-1", "probe-2", "probe-3"} and rows
    rows = wait("RTT windows of every probe stored (STAMP over the lab network)", stored, 150)
    print(f"check: {len(rows)} RTT windows stored; events per probe: "
          + ", ".join(f"{p} {seen[p]['events']}" for p in ("probe-1", "probe-2", "probe-3")))


# ---------------------------------------------------------------------------------------------
# faults

def kill_host(h):
    for pid in ns_pids(h):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def fault_rules(host, rules):
    for chain, rule in rules:
        nsx(host, "iptables", "-A", chain, *rule)


def fault(kind, *args):
    if kind == "cut":
        (h,) = args
        fault_rules(h, [("NQFAULT_IN", ["!", "-i", "lo", "-j", "DROP"]), ("NQFAULT_OUT", ["!", "-o", "lo", "-j", "DROP"])])
    elif kind in ("link", "loss"):
        a, b = args[0], args[1]
        extra = []
        if kind == "loss":
            extra = ["-m", "statistic", "--mode", "random", "--probability", str(float(args[2]) / 100)]
        for x, y in ((a, b), (b, a)):
            fault_rules(x, [("NQFAULT_IN", ["-s", ip(y), *extra, "-j", "DROP"]),
                            ("NQFAULT_OUT", ["-d", ip(y), *extra, "-j", "DROP"])])
    elif kind in ("kill", "pause", "resume"):
        (h,) = args
        sig = {"kill": signal.SIGKILL, "pause": signal.SIGSTOP, "resume": signal.SIGCONT}[kind]
        for pid in ns_pids(h):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    elif kind == "restart":
        (h,) = args
        restart(h)
    elif kind == "disk":
        (h,) = args
        if h not in DISKS:
            sys.exit(f"lab: {h} has no data disk of its own (one of {', '.join(DISKS)})")
        fill_disk(h)
    elif kind == "clock":
        h, secs = args[0], int(args[1])
        kill_host(h)
        start_probe(h, faketime=secs)
    else:
        sys.exit(f"lab: unknown fault {kind!r} (cut, link, loss, kill, restart, pause, resume, clock, disk)")
    log("fault:", kind, *args)


def restart(h):
    kill_host(h)
    time.sleep(0.5)
    if h in ROLE_OF:
        start_role(h)
    elif h.startswith("probe-"):
        start_probe(h)
    elif h.startswith("rabbit-"):
        start_rabbit(int(h[-1]))
    elif h == "lb-1":
        start_lb()
    elif h == "targets-1":
        start_targets()
    elif h == "monitor-1":
        start_monitor()
    elif h == "cql-1":
        start_cassandra()


def heal(*hosts):
    for h in hosts or HOSTS:
        for chain in ("NQFAULT_IN", "NQFAULT_OUT"):
            nsx(h, "iptables", "-F", chain, check=False)
        if h in DISKS:
            (LAB / "hosts" / h / DISKS[h][0] / FILLER).unlink(missing_ok=True)
    log("healed:", *(hosts or ["every host"]))


# ---------------------------------------------------------------------------------------------
# the suite

def loadgen(secs, out, rate, batch):
    """Starts the load generator on probe-1, through lb-1, with the oracle."""
    return subprocess.Popen(
        ["ip", "netns", "exec", NS + "probe-1", LOADGEN, "run", "--lab", "--url", f"http://{ip('lb-1')}:8080",
         "--tokens", str(LAB / "loadgen" / "tokens.json"), "--rate", str(rate), "--batch", str(batch),
         "--duration", str(secs), "--oracle", "--settle-by-oracle", "--settle", "300", "--retry-secs", "240", "--source-addrs", ",".join(LOAD_SOURCES), "--json", str(out)],
        stdout=open(str(out) + ".log", "w"), stderr=subprocess.STDOUT)


def shard_consumers():
    """(shard queue, peer host, active) of every consumer, from the management API (admin-1)."""
    s, body = http_in("admin-1", f"http://{ip('rabbit-1')}:15672/api/consumers", basic=("netqoe", RABBIT_PASSWORD))
    return [(c["queue"]["name"], c["channel_details"]["peer_host"], c["active"]) for c in json.loads(body)
            if ".shard." in c["queue"]["name"]]


def active_aggregator():
    """The aggregate host that is the single active consumer of most shard queues."""
    counts = {}
    for _, peer, active in shard_consumers():
        counts[peer] = counts.get(peer, 0) + (1 if active else 0)
    best = max(counts.items(), key=lambda kv: kv[1], default=(None, 0))[0]
    return next((h for h in ("aggregate-1", "aggregate-2") if ip(h) == best), "aggregate-1")


def probe_row(probe):
    """The probe's row of /v1/probes (through lb-1; asked again for up to 90 s: under load and
    right after a fault the answer can take longer than one request's timeout)."""
    q = tokens()["query"][0]

    def row():
        s, body = http_in("admin-1", f"http://{ip('lb-1')}:8080/v1/probes", q, timeout=20)
        return next(p for p in json.loads(body)["probes"] if p["probe"] == probe) if s == 200 else None
    return wait(f"{probe}'s row in /v1/probes", row, 90)


def spool_depth(probe):
    s, body = http_in("monitor-1", f"http://{ip(probe)}:9101/metrics")
    return next(float(line.split()[1]) for line in body.splitlines() if line.startswith("netqoe_probe_spool_depth "))


def alerts_now():
    """(alertname, instance or "", state) of every pending or firing alert, from Prometheus's API."""
    s, body = http_in("admin-1", f"http://{ip('monitor-1')}:9090/api/v1/alerts")
    return [(a["labels"].get("alertname", ""), a["labels"].get("instance", ""), a["state"])
            for a in json.loads(body)["data"]["alerts"]] if s == 200 else []


def incidents_of(probe, scope, since_ms):
    q = tokens()["query"][0]
    s, body = http_in("admin-1", f"http://{ip('lb-1')}:8080/v1/incidents?from={since_ms}", q)
    return [i for i in json.loads(body)["incidents"]
            if i["scope"] == scope and probe in (i.get("affected_probes") or [i.get("subject", {}).get("probe")])] \
        if s == 200 else []


def probe_metric(probe, name):
    s, body = http_in("monitor-1", f"http://{ip(probe)}:9101/metrics")
    return sum(float(line.split()[-1]) for line in body.splitlines() if line.startswith(name))


class Fault:
    """One row of the suite: what to break and mend, the alerts it must raise (alertname, instance
    prefix), and checks before the load and after the heal that add to the row's note."""

    def __init__(self, name, inject, undo, alerts=(), before=None, after=None):
        self.name, self.inject, self.undo, self.alerts = name, inject, undo, list(alerts)
        self.before, self.after = before, after


def fault_f():
    """f: diagnose-1 killed while an incident is open (probe-3 silenced: probe-offline), restarted,
    then probe-3 back: the same incident, once, resolved."""
    st = {}

    def before():
        st["since"] = int(time.time() * 1000) - 60_000
        kill_host("probe-3")
        inc = wait("probe-3's probe-offline incident open",
                   lambda: [i for i in incidents_of("probe-3", "probe-offline", st["since"]) if i["state"] == "open"],
                   600)
        st["id"] = inc[0]["id"]
        return f"incident {st['id']} open before the kill"

    def undo():
        restart("diagnose-1")
        wait("diagnose-1 ready", lambda: ready("diagnose-1", HEALTH["diagnose"]), 120)
        start_probe("probe-3")

    def after():
        wait("probe-3's incident resolved",
             lambda: all(i["state"] == "resolved" for i in incidents_of("probe-3", "probe-offline", st["since"])), 720)
        incs = incidents_of("probe-3", "probe-offline", st["since"])
        ok = len(incs) == 1 and incs[0]["id"] == st["id"] and incs[0]["state"] == "resolved"
        row = probe_row("probe-3")
        note = (f"probe-3's probe-offline incidents since: {len(incs)} ({', '.join(i['id'] + ' ' + i['state'] for i in incs)}); "
                f"probe-3 missing {row['missing']}, late dropped {row['late_dropped']}")
        return note, ok and row["missing"] == 0 and row["late_dropped"] == 0

    return Fault("f: diagnose-1 killed mid-incident (probe-3 offline)", lambda: kill_host("diagnose-1"), undo,
                 [("NetqoeRoleDown", "diagnose-1")], before, after)


def fault_g(offset=90):
    """g: probe-3's clock +90 s (libfaketime): accepted (within ingest.max_future_s), the skew in
    /v1/probes, nothing refused or dropped."""
    st = {}

    def before():
        st["refused"] = probe_metric("probe-3", "netqoe_probe_events_refused_total")
        st["rejected"] = probe_metric("probe-3", 'netqoe_probe_posts_total{outcome="rejected"}')
        return ""

    def inject():
        fault("clock", "probe-3", str(offset))

    def undo():
        st["skew"] = probe_row("probe-3").get("clock_skew_ms")
        st["refused_d"] = probe_metric("probe-3", "netqoe_probe_events_refused_total")
        st["rejected_d"] = probe_metric("probe-3", 'netqoe_probe_posts_total{outcome="rejected"}')
        kill_host("probe-3")
        start_probe("probe-3")

    def after():
        row = probe_row("probe-3")
        skew = st.get("skew")
        # a fresh probe process starts its counters at 0: what it refused under the fault is read
        # just before the heal
        ok = (skew is not None and abs(skew) >= offset * 1000 / 3 and st["refused_d"] == 0 and st["rejected_d"] == 0
              and row["missing"] == 0 and row["late_dropped"] == 0)
        return (f"probe-3: clock_skew_ms {skew:.0f} under the fault (/v1/probes), events refused "
                f"{st['refused_d']:.0f}, batches rejected {st['rejected_d']:.0f}, missing {row['missing']}, "
                f"late dropped {row['late_dropped']}"), ok

    return Fault(f"g: probe-3's clock +{offset} s", inject, undo, [("NetqoeProbeClockAhead", "")], before, after)


def suite_faults(short, victim_agg):
    faults = [
        Fault("a: ingest-1 killed", lambda: fault("kill", "ingest-1"), lambda: restart("ingest-1"),
              [("NetqoeRoleDown", "ingest-1")]),
        Fault(f"b: {victim_agg} cut from rabbit-1..3", lambda: [fault("link", victim_agg, f"rabbit-{i}") for i in (1, 2, 3)],
              lambda: heal(victim_agg, "rabbit-1", "rabbit-2", "rabbit-3"),
              [("NetqoeAggregatorNotConsuming", victim_agg)]),
        Fault("e: probe-2 cut from lb-1", lambda: fault("link", "probe-2", "lb-1"), lambda: heal("probe-2", "lb-1"),
              [("NetqoeProbeCannotDeliver", "probe-2")]),
    ]
    if short:
        return faults
    return faults + [
        Fault("c: rabbit-2 cut from rabbit-1/3 (pause_minority)",
              lambda: [fault("link", "rabbit-2", f"rabbit-{i}") for i in (1, 3)],
              lambda: heal("rabbit-1", "rabbit-2", "rabbit-3"), [("NetqoeBrokerNodeDown", "rabbit-2")]),
        Fault("d: cql-1 unreachable", lambda: fault("cut", "cql-1"), lambda: heal("cql-1"), [("NetqoeStoreErrors", "")]),
        Fault("loss: 5 % between lb-1 and ingest-2", lambda: fault("loss", "lb-1", "ingest-2", "5"),
              lambda: heal("lb-1", "ingest-2")),
        fault_f(),
        fault_g(),
        Fault("h: full disk on aggregate-1", lambda: fault("disk", "aggregate-1"), lambda: heal("aggregate-1")),
        Fault("h': full disk on rabbit-1 (below its disk limit)", lambda: fault("disk", "rabbit-1"),
              lambda: heal("rabbit-1"), [("NetqoeBrokerResourceAlarm", "rabbit-1"), ("NetqoeBrokerUnreachable", "")]),
    ]


def suite(short=False):
    secs = 30 if short else 90
    hold = 20 if short else 60
    rate = int(os.environ.get("NETQOE_LAB_RATE", "10000"))
    batch = int(os.environ.get("NETQOE_LAB_BATCH", "500"))
    only = [x for x in os.environ.get("NETQOE_LAB_FAULTS", "").split(",") if x]
    faults = [f for f in suite_faults(short, active_aggregator()) if not only or f.name.split(":")[0] in only]
    rows = []
    for f in faults:
        out = LAB / f"suite-{len(rows)}.json"
        note_before = f.before() if f.before else ""
        log(f"suite: {f.name}: {secs} s of load at {rate} events/s, fault after 5 s for {hold} s "
            f"(and until its alerts fire: {', '.join(a for a, _ in f.alerts) or 'none expected'})")
        # each run starts in a minute of its own: the oracle compares whole 1-minute windows, and the
        # same load probes posted into the previous minutes
        time.sleep(60 - time.time() % 60 + 0.5)
        p = loadgen(secs, out, rate, batch)
        time.sleep(5)
        before = probe_row("probe-2")
        injected_at = time.time()
        f.inject()
        peak, fired, seen = 0.0, {}, set()

        def poll_alerts():
            now = alerts_now()
            for name, inst, state in now:
                if state == "firing":
                    seen.add(f"{name}{'@' + inst.split(':')[0] if inst else ''}")
                    for a, pref in f.alerts:
                        if a == name and inst.startswith(pref) and a not in fired:
                            fired[a] = time.time() - injected_at
            return now
        until = time.time() + hold
        while time.time() < until or (len(fired) < len(f.alerts) and time.time() < until + 120):
            time.sleep(2)
            try:
                peak = max(peak, spool_depth("probe-2"))
            except (RuntimeError, StopIteration):
                pass
            try:
                poll_alerts()
            except (RuntimeError, KeyError, ValueError):
                pass
        healed_at = time.time()
        f.undo()
        cleared = {}

        def all_cleared():
            now = poll_alerts()
            for a, pref in f.alerts:
                if a in fired and a not in cleared and not any(n == a and i.startswith(pref) for n, i, _ in now):
                    cleared[a] = time.time() - healed_at
            return len(cleared) == len(fired)
        try:
            wait("the fault's alerts cleared", all_cleared, 300)
        except RuntimeError:
            pass
        rc = p.wait(timeout=secs + 600)
        drained = wait("probe-2's spool drained", lambda: spool_depth("probe-2") == 0 and time.time(), 120)
        after = probe_row("probe-2")
        drain = f", drained {drained - healed_at:.0f} s after heal" if peak else ""
        note = (f"probe-2: spool peak {peak:.0f} batches{drain}, {after['events'] - before['events']} events "
                f"delivered, missing {after['missing']}, late dropped {after['late_dropped']}")
        extra_ok = True
        if note_before:
            note += f"; {note_before}"
        if f.after:
            extra, extra_ok = f.after()
            note += f"; {extra}" + ("" if extra_ok else " — NOT AS EXPECTED")
        actives = {}
        for queue, _, active in shard_consumers():
            actives[queue] = actives.get(queue, 0) + (1 if active else 0)
        if sorted(actives.values()) != [1] * SHARDS:
            note += f"; SHARDS WITHOUT ONE ACTIVE CONSUMER: {actives}"
        alerts = "; ".join(f"{a} fired {fired[a]:.0f} s after the fault, cleared {cleared[a]:.0f} s after heal"
                           if a in fired and a in cleared else
                           (f"{a} fired {fired[a]:.0f} s after the fault, NOT CLEARED" if a in fired else f"{a} NEVER FIRED")
                           for a, _ in f.alerts) or "none expected"
        others = sorted(x for x in seen if x.split("@")[0] not in {a for a, _ in f.alerts})
        if others:
            alerts += f" (also firing: {', '.join(others)})"
        rep = json.loads(out.read_text()) if out.exists() else {}
        o = rep.get("oracle") or {}
        st = rep.get("statuses", {})
        rf = rep.get("refusals", {})
        two = sum(v for k, v in st.items() if str(k).startswith("2"))
        recover = rep.get("caught_up_at_ms")
        rows.append({
            "fault": f.name, "sent": rep.get("offered_events"), "2xx_events": rep.get("accepted_events"),
            # every refused attempt, re-sent ones included (a batch's last answer is in statuses)
            "2xx": two, "503": rf.get("503", 0), "429": rf.get("429", 0), "no_answer": rf.get("0", 0),
            "windows": f"{o.get('windows', 0) - o.get('windows_differing', 0)}/{o.get('windows', 0)}" if o else None,
            "lost": o.get("missing_samples"), "duplicated": o.get("duplicated_samples"),
            "unacked_stored": o.get("stored_unacknowledged_samples"),
            # the oracle may be satisfied before the heal (a fault off the load's path): 0
            "recovered_s": max(0.0, round((recover / 1000 - healed_at), 1)) if recover else None, "clean": o.get("clean"),
            "loadgen_rc": rc, "retries": rep.get("retries"), "note": note, "alerts": alerts,
            "alerts_ok": all(a in fired and a in cleared for a, _ in f.alerts), "extra_ok": extra_ok,
            "probe_lost": after["missing"] + after["late_dropped"]})
        (LAB / "suite.json").write_text(json.dumps(rows, indent=1))
        wait("pipeline healthy again", lambda: all(ready(h, HEALTH[ROLE_OF[h]]) for h in ROLE_OF), 120)
    print(subprocess.run([sys.executable, str(HERE / "suite_table.py"), str(LAB / "suite.json")],
                         capture_output=True, text=True).stdout)
    if any(not r["clean"] or r["lost"] or r["duplicated"] or r["probe_lost"] or "WITHOUT" in r["note"]
           or not r["alerts_ok"] or not r["extra_ok"] for r in rows):
        sys.exit("lab: suite: a fault lost or duplicated events, or an alert or check failed (table above)")


def main(argv):
    if not argv:
        sys.exit(__doc__)
    cmd, rest = argv[0], argv[1:]
    if cmd == "up":
        up()
    elif cmd == "down":
        down()
    elif cmd == "status":
        status()
    elif cmd == "firewall-test":
        firewall_test()
    elif cmd == "check":
        check()
    elif cmd == "fault":
        fault(*rest)
    elif cmd == "heal":
        heal(*rest)
    elif cmd == "suite":
        suite(short=rest[:1] == ["short"])
    elif cmd == "ci":
        t0 = time.time()
        up()
        try:
            firewall_test()
            check()
            suite(short=True)
        finally:
            down()
        log(f"ci: up, firewall, check, suite short and down in {time.time() - t0:.0f} s")
    elif cmd == "exec":
        os.execvp("ip", ["ip", "netns", "exec", NS + rest[0], *rest[1:]])
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
