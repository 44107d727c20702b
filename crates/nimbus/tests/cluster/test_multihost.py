"""The attack of issue 13 in a multi-host layout, with network namespaces.

The metadata node runs in a network namespace of its own (another "host", on the
private address 198.18.77.2), reached by the gateway and the worker over a veth pair,
like a metadata node on another machine of the data centre. In the same namespace a
second address (198.18.77.3) is an ordinary private service, a database say. The worker
allows environments to reach that whole /24 (`--egress-allow`): a function then reaches
the database, but never the metadata node, because cluster nodes are denied before any
allow-list entry. Without a certificate, the node also refuses the CLI."""
import json
import os
import shutil
import signal
import socket
import subprocess
import time

import pytest

from harness import BIN, ROLE, Certs, Cluster, Proc, free_port, zip_of

NS = "nimbus-mh"
HOST_IP, META_IP, DB_IP = "198.18.77.1", "198.18.77.2", "198.18.77.3"

PROBE = """
import socket

def handler(event, context):
    seen = {}
    for name, host, port in event["targets"]:
        try:
            s = socket.create_connection((host, port), timeout=3)
            seen[name] = s.recv(64).decode() or "connected"
            s.close()
        except OSError as e:
            seen[name] = "refused: %s" % e
    return seen
"""


def sh(*cmd, check=True):
    return subprocess.run(cmd, capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def layout():
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("needs root and iproute2 for network namespaces")
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", "nmh0", check=False)
    sh("ip", "netns", "add", NS)
    sh("ip", "link", "add", "nmh0", "type", "veth", "peer", "name", "nmh1")
    sh("ip", "link", "set", "nmh1", "netns", NS)
    sh("ip", "addr", "add", f"{HOST_IP}/24", "dev", "nmh0")
    sh("ip", "link", "set", "nmh0", "up")
    for cmd in (["ip", "addr", "add", f"{META_IP}/24", "dev", "nmh1"],
                ["ip", "addr", "add", f"{DB_IP}/24", "dev", "nmh1"],
                ["ip", "link", "set", "nmh1", "up"], ["ip", "link", "set", "lo", "up"]):
        sh("ip", "netns", "exec", NS, *cmd)
    # The "database": answers "db" to every connection, in the other namespace.
    db = subprocess.Popen(["ip", "netns", "exec", NS, "python3", "-c", f"""
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("{DB_IP}", 5432)); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b"db"); c.close()
"""])
    c = Cluster(metas=1, gateways=1, workers=1)
    meta_port = free_port()
    meta_addr = f"{META_IP}:{meta_port}"
    c.meta_addrs = [meta_addr]
    meta_tls = c.certs.issue("meta", "meta-far")
    c.metas = [Proc("meta-far", ["--tls-dir", meta_tls, "meta", "--id", "1",
                                 "--data-dir", os.path.join(c.root, "meta-far"), "--listen", meta_addr,
                                 "--initial-cluster", f"1={meta_addr}"], c.root)]
    c.metas[0].args = ["netns", "exec", NS, BIN, *c.metas[0].args]
    # Gateway and worker on this host, pointed at the far metadata node; the worker lets
    # environments reach the whole /24 the metadata node sits in.
    for p in c.gateways + c.workers:
        i = p.args.index("--meta")
        p.args[i + 1] = meta_addr
    c.workers[0].args += ["--egress-allow", "198.18.77.0/24"]
    start_far(c)
    yield c
    c.stop()
    db.kill()
    sh("ip", "netns", "del", NS, check=False)
    sh("ip", "link", "del", "nmh0", check=False)


def start_far(c):
    """Cluster.start, with the metadata node started through `ip netns exec`."""
    m = c.metas[0]
    m.stopping = False
    m.proc = subprocess.Popen(["ip", *m.args], stdout=open(m.log, "ab"), stderr=subprocess.STDOUT,
                              env=dict(os.environ, RUST_LOG="info"))
    deadline = time.time() + 60
    port = int(c.meta_addrs[0].rsplit(":", 1)[1])
    while True:
        assert m.proc.poll() is None, open(m.log).read()[-3000:]
        try:
            socket.create_connection((META_IP, port), timeout=0.5).close()
            break
        except OSError:
            assert time.time() < deadline, open(m.log).read()[-3000:]
            time.sleep(0.2)
    c.metas = []  # started here: Cluster.start must not start it again
    c.start()
    c.metas = [m]


def test_a_function_reaches_the_allowed_host_but_never_the_far_metadata_node(layout):
    c = layout
    lam = c.client(0)
    lam.create_function(FunctionName="far-probe", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of({"app.py": PROBE})}, Timeout=30)
    port = int(c.meta_addrs[0].rsplit(":", 1)[1])
    targets = [["database", DB_IP, 5432], ["metadata", META_IP, port]]
    deadline = time.time() + 30
    while True:
        r = lam.invoke(FunctionName="far-probe", Payload=json.dumps({"targets": targets}).encode())
        seen = json.loads(r["Payload"].read())
        if seen.get("database") == "db" or time.time() > deadline:
            break
        time.sleep(1)
    assert seen["database"] == "db", seen           # the allow-list works ...
    assert seen["metadata"].startswith("refused"), seen  # ... and never opens a cluster node


def test_a_process_without_a_certificate_gets_nothing_from_the_far_node(layout):
    c = layout
    out = subprocess.run([BIN, "--insecure-plaintext", "cluster", "status", "--meta", c.meta_addrs[0],
                          "--output", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 or json.loads(out.stdout).get("leader") is None, out.stdout
    out = subprocess.run([BIN, "--tls-dir", c.admin_tls, "cluster", "status", "--meta", c.meta_addrs[0],
                          "--output", "json"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["leader"] == 1
