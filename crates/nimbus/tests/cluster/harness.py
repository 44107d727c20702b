"""A Nimbus cluster of separate processes on this machine: metadata nodes, gateways and
worker nodes talking over real sockets, driven by boto3."""
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import zipfile

import boto3
import botocore.config

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
BIN = os.environ.get("NIMBUS_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "nimbus"
)
ACCOUNT = "123456789012"
KEY_ID = "AKIDCLUSTERTEST"
SECRET = "cluster-secret-key"
ROLE = f"arn:aws:iam::{ACCOUNT}:role/lambda-role"


def eventually(fn, timeout=30, pause=0.3):
    """`fn()` once it stops failing (a ClientError, AssertionError or a failed
    `pytest.raises`, which is none of those), within `timeout` s."""
    import pytest
    from botocore.exceptions import ClientError
    deadline = time.time() + timeout
    while True:
        try:
            return fn()
        except (ClientError, AssertionError, pytest.fail.Exception):
            if time.time() > deadline:
                raise
            time.sleep(pause)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, log, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited:\n{open(log).read()[-4000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} not open:\n{open(log).read()[-4000:]}")


class Proc:
    def __init__(self, name, args, root):
        self.name, self.args, self.root = name, args, root
        self.log = os.path.join(root, f"{name}.log")
        self.proc = None
        self.stopping = False

    def start(self):
        self.stopping = False
        self.proc = subprocess.Popen(
            [BIN, *self.args],
            stdout=open(self.log, "ab"),
            stderr=subprocess.STDOUT,
            env=dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info")),
        )
        return self

    def kill(self, sig=signal.SIGKILL):
        # Marked first: a client may see the connection drop before the process is reaped.
        self.stopping = True
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def alive(self):
        return not self.stopping and self.proc is not None and self.proc.poll() is None


def run_nimbus(*args):
    out = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        raise RuntimeError(f"nimbus {' '.join(args)} failed: {out.stderr}")
    return out


class Certs:
    """The cluster's CA and one TLS directory per node, made with `nimbus cert`."""

    def __init__(self, root):
        self.root = os.path.join(root, "tls")
        self.ca = os.path.join(self.root, "ca")
        run_nimbus("cert", "init-ca", "--out", self.ca)

    def issue(self, role, name, sans="127.0.0.1,localhost"):
        out = os.path.join(self.root, f"{role}-{name}")
        run_nimbus("cert", "issue", "--ca", self.ca, "--role", role, "--name", name, "--san", sans, "--out", out)
        return out


class Cluster:
    def __init__(self, metas=3, gateways=2, workers=2, worker_memory_mb=2048, worker_args=(),
                 gateway_regions=None, worker_regions=None, gateway_args=(), gateway_edges=None, worker_edges=None):
        # Every node serves us-east-1 unless given a region each, and a zone of it unless
        # given an edge location (None: a zone).
        self.gateway_regions = gateway_regions or ["us-east-1"] * gateways
        self.worker_regions = worker_regions or ["us-east-1"] * workers
        self.gateway_edges = gateway_edges or [None] * gateways
        self.worker_edges = worker_edges or [None] * workers
        self.root = tempfile.mkdtemp(prefix="nimbus-cluster-")
        key = os.path.join(self.root, "cluster.key")
        with open(key, "wb") as f:
            f.write(os.urandom(32))
        # Every node and the CLI authenticate with mutual TLS, as in production.
        self.certs = Certs(self.root)
        self.admin_tls = self.certs.issue("admin", "operator")
        self.meta_ports = [free_port() for _ in range(metas)]
        self.meta_addrs = [f"127.0.0.1:{p}" for p in self.meta_ports]
        initial = ",".join(f"{i + 1}={a}" for i, a in enumerate(self.meta_addrs))
        self.metas = [
            Proc(f"meta{i + 1}", ["--tls-dir", self.certs.issue("meta", f"meta{i + 1}"),
                                  "meta", "--id", str(i + 1), "--data-dir", os.path.join(self.root, f"meta{i + 1}"),
                                  "--listen", a, "--initial-cluster", initial, "--key-file", key], self.root)
            for i, a in enumerate(self.meta_addrs)
        ]
        meta = ",".join(self.meta_addrs)
        self.gateway_ports = [free_port() for _ in range(gateways)]
        self.gateways = [
            Proc(f"gw{i + 1}", ["--tls-dir", self.certs.issue("gateway", f"gw{i + 1}"),
                                "gateway", "--listen", f"127.0.0.1:{p}", "--meta", meta, "--id", f"gw{i + 1}",
                                "--region", self.gateway_regions[i], *self._site(self.gateway_edges[i]),
                                *gateway_args], self.root)
            for i, p in enumerate(self.gateway_ports)
        ]
        self.worker_ports = [free_port() for _ in range(workers)]
        self.worker_admin_ports = [free_port() for _ in range(workers)]
        self.workers = [
            Proc(f"worker{i + 1}", ["--tls-dir", self.certs.issue("worker", f"worker{i + 1}"),
                                    "worker", "--data-dir", os.path.join(self.root, f"worker{i + 1}"),
                                    "--listen", f"127.0.0.1:{p}", "--meta", meta, "--region", self.worker_regions[i],
                                    *self._site(self.worker_edges[i], f"{self.worker_regions[i]}{'ab'[i % 2]}"),
                                    "--memory-mb", str(worker_memory_mb),
                                    "--heartbeat-ms", "1000", "--idle-timeout-secs", "120",
                                    # Workers sharing this host need their own NAT pools.
                                    "--nat-pool", f"100.{96 + i}",
                                    # Functions' SDKs reach the API through their Runtime API address.
                                    "--aws-endpoint", f"http://127.0.0.1:{self.gateway_ports[self._home_gateway(i)]}",
                                    "--admin-listen", f"127.0.0.1:{self.worker_admin_ports[i]}",
                                    *worker_args], self.root)
            for i, p in enumerate(self.worker_ports)
        ]

    @staticmethod
    def _site(edge, zone=None):
        if edge:
            return ["--edge-location", edge]
        return ["--zone", zone] if zone else []

    def _home_gateway(self, worker):
        """A gateway of the worker's region (functions call their own region's API)."""
        same = [g for g, r in enumerate(self.gateway_regions) if r == self.worker_regions[worker]]
        return same[worker % len(same)] if same else worker % len(self.gateway_regions)

    def start(self):
        for m in self.metas:
            m.start()
        for m, p in zip(self.metas, self.meta_ports):
            wait_port(p, m.proc, m.log)
        for region in sorted(set(self.gateway_regions)):
            self.cli("account", "create", "--meta", ",".join(self.meta_addrs), "--account-id", ACCOUNT,
                     "--access-key-id", KEY_ID, "--region", region, env={"NIMBUS_SECRET_ACCESS_KEY": SECRET})
        edges = {(r, e) for r, e in zip(self.gateway_regions + self.worker_regions, self.gateway_edges + self.worker_edges) if e}
        for region, location in sorted(edges):
            self.cli("cluster", "add-edge-location", "--meta", ",".join(self.meta_addrs), "--region", region,
                     "--location", location)
        for w in self.workers:
            w.start()
        for g in self.gateways:
            g.start()
        for g, p in zip(self.gateways, self.gateway_ports):
            wait_port(p, g.proc, g.log)
        for w, p in zip(self.workers, self.worker_ports):
            wait_port(p, w.proc, w.log, timeout=120)
        # Functions' execution role, made as a user makes it: with IAM, through a gateway.
        self.lambda_role(ROLE.split("/")[-1])
        return self

    def iam_client(self, i, key=KEY_ID, secret=SECRET):
        return boto3.client(
            "iam", endpoint_url=self.endpoint(i), region_name="us-east-1",
            aws_access_key_id=key, aws_secret_access_key=secret,
            config=botocore.config.Config(retries={"max_attempts": 3}, connect_timeout=5),
        )

    def lambda_role(self, name, key=KEY_ID, secret=SECRET):
        """A role Lambda may assume, in the account of `key`; returns its ARN."""
        iam = self.iam_client(0, key, secret)
        try:
            return iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                               "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        except iam.exceptions.EntityAlreadyExistsException:
            return iam.get_role(RoleName=name)["Role"]["Arn"]

    def cli(self, *args, env=None, check=True, tls_dir=None):
        out = subprocess.run([BIN, "--tls-dir", tls_dir or self.admin_tls, *args], capture_output=True, text=True, env=dict(os.environ, **(env or {})), timeout=120)
        if check and out.returncode != 0:
            raise RuntimeError(f"nimbus {' '.join(args)} failed: {out.stderr}")
        return out

    def leader_index(self):
        for _ in range(100):
            out = self.cli("cluster", "status", "--meta", ",".join(a for a, m in zip(self.meta_addrs, self.metas) if m.alive()),
                           "--output", "json", check=False)
            if out.returncode == 0:
                leader = json.loads(out.stdout).get("leader")
                if leader:
                    return int(leader) - 1
            time.sleep(0.2)
        raise RuntimeError("no leader")

    def endpoint(self, i):
        return f"http://127.0.0.1:{self.gateway_ports[i]}"

    def client(self, i, read_timeout=60, region=None):
        return boto3.client(
            "lambda", endpoint_url=self.endpoint(i), region_name=region or self.gateway_regions[i],
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
            config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=read_timeout,
                                          connect_timeout=5, parameter_validation=False),
        )

    def logs_client(self, i):
        return boto3.client(
            "logs", endpoint_url=self.endpoint(i), region_name=self.gateway_regions[i],
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
            config=botocore.config.Config(retries={"max_attempts": 0}, connect_timeout=5),
        )

    def logs(self):
        out = []
        for p in self.metas + self.gateways + self.workers:
            try:
                out.append(f"--- {p.name} ---\n" + open(p.log).read()[-3000:])
            except OSError:
                pass
        return "\n".join(out)

    def stop(self):
        for p in self.gateways + self.workers:
            p.kill(signal.SIGTERM)
        for p in self.metas:
            p.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
    return buf.getvalue()


COUNTER_SERVER = r"""
import json, socketserver, sys, threading
lock = threading.Lock()
st = {"running": 0, "max_running": 0, "starts": 0, "seen": []}
class H(socketserver.StreamRequestHandler):
    # One connection per running invocation: it is counted while open, so a function
    # that is killed stops counting when the kernel closes its socket.
    def handle(self):
        first = self.rfile.readline().strip().decode()
        if first == "stats":
            with lock:
                self.wfile.write(json.dumps(st).encode())
            return
        with lock:
            st["running"] += 1
            st["starts"] += 1
            st["max_running"] = max(st["max_running"], st["running"])
        try:
            self.wfile.write(b"k")
            self.wfile.flush()
            if self.rfile.readline().strip() == b"end":
                with lock:
                    st["seen"].append(first)
                self.wfile.write(b"k")
                self.wfile.flush()
            self.rfile.read()
        finally:
            with lock:
                st["running"] -= 1
class S(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("0.0.0.0", int(sys.argv[1])), H).serve_forever()
"""

# The function side of the counter (Python runtime).
COUNTING_FUNCTION = """
import os, socket, time
def handler(event, context):
    host, port = os.environ["COUNTER"].split(":")
    s = socket.create_connection((host, int(port)), timeout=5)
    s.sendall((event.get("tag") or context.aws_request_id).encode() + b"\\n")
    s.recv(1)
    time.sleep(event.get("sleep", 0.3))
    s.sendall(b"end\\n")
    s.recv(1)
    s.close()
    return {"id": event.get("id"), "request": context.aws_request_id}
"""


class Counter:
    """A server that functions report to from inside their sandboxes, counting how many
    run at once (the concurrency limit, counted from inside). It runs in its own network
    namespace behind a veth pair, like a host on the internet (198.18.0.2, from the
    benchmarking range, which the egress policy treats as public): sandboxes may reach
    the internet through NAT but never the worker's own host or any private address."""

    def __init__(self, port=8080):
        tag = format(os.getpid() % 4096, "x")
        self.ns = f"nimbus-ctr-{tag}"
        self.veth = f"nctr{tag}"
        # Only one counter at a time may own the address: remove any a crashed run left.
        for ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n"):
            if ns.startswith("nimbus-ctr-"):
                subprocess.run(["ip", "netns", "del", ns.split()[0]], capture_output=True)
        for line in subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.split("\n"):
            parts = line.split(": ")
            if len(parts) > 1 and parts[1].startswith("nctr"):
                subprocess.run(["ip", "link", "del", parts[1].split("@")[0]], capture_output=True)
        sh = (f"ip netns add {self.ns} && ip link add {self.veth} type veth peer name eth0 netns {self.ns} && "
              f"ip addr add 198.18.0.1/30 dev {self.veth} && ip link set {self.veth} up && "
              f"ip -n {self.ns} addr add 198.18.0.2/30 dev eth0 && ip -n {self.ns} link set eth0 up && "
              f"ip -n {self.ns} link set lo up && ip -n {self.ns} route add default via 198.18.0.1")
        subprocess.run(["sh", "-c", sh], check=True)
        self.proc = subprocess.Popen(["ip", "netns", "exec", self.ns, "python3", "-c", COUNTER_SERVER, str(port)])
        self.addr = f"198.18.0.2:{port}"
        deadline = time.time() + 10
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.1)

    def stats(self):
        with socket.create_connection(("198.18.0.2", int(self.addr.split(":")[1])), timeout=5) as s:
            s.sendall(b"stats\n")
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        return json.loads(data)

    def close(self):
        self.proc.kill()
        self.proc.wait()
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
        subprocess.run(["ip", "link", "del", self.veth], capture_output=True)
