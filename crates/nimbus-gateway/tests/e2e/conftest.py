"""Starts a real `nimbus dev` (metadata node + gateway + worker in one process) and gives
tests the real AWS CLI and boto3 pointed at it."""
import io
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import zipfile

import boto3
import botocore.config
import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
BIN = os.environ.get("NIMBUS_BIN") or os.path.join(
    os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")), "debug", "nimbus"
)
AWS = os.path.join(ROOT, ".venv", "bin", "aws")
ROLE = "arn:aws:iam::000000000000:role/lambda-role"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DevServer:
    """One `nimbus dev` process on a fixed data dir and port, which a test may kill -9 and
    start again. Its log (with the functions' own output, `nimbus::function_log`) is
    appended to one file across restarts."""

    def __init__(self, extra_args=()):
        self.extra_args = list(extra_args)
        self.data = tempfile.mkdtemp(prefix="nimbus-e2e-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # /metrics is served on its own admin address, never on the API port.
        self.admin_port = free_port()
        self.metrics_url = f"http://127.0.0.1:{self.admin_port}"
        self.log_path = os.path.join(self.data, "nimbus.log")
        self.proc = None
        self._log = None

    def start(self):
        if self._log:
            self._log.close()
        log = self._log = open(self.log_path, "ab")
        env = dict(os.environ, NO_COLOR="1",
                   RUST_LOG=os.environ.get("RUST_LOG", "info,openraft=warn,nimbus::function_log=debug"))
        self.proc = subprocess.Popen(
            [BIN, "dev", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}", "--idle-timeout-secs", "60",
             "--admin-listen", f"127.0.0.1:{self.admin_port}",
             # Async retries after a function error wait 0.3 s instead of Lambda's minute.
             "--async-retry-delay-ms", "300", *self.extra_args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("nimbus dev exited:\n" + self.log())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("nimbus dev did not start:\n" + self.log())

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

    def log(self):
        with open(self.log_path, errors="replace") as f:
            return f.read()

    def meta_addr(self):
        """The embedded metadata node's address, as the start log names it. (Its port is
        chosen at each start: a fixed one could still be held, after a kill -9, by the
        killed process's pre-created sandbox shells until the next start reclaims them.)"""
        found = re.findall(r"metadata node (\S+) \(nimbus --tls-dir", self.log())
        assert found, "no metadata address in the dev log"
        return found[-1]

    def create_account(self, account_id, key, secret):
        """Another tenant, made as an operator makes one: `nimbus account create`."""
        out = subprocess.run(
            [BIN, "--tls-dir", os.path.join(self.data, "tls"), "account", "create", "--meta",
             self.meta_addr(), "--account-id", account_id, "--access-key-id", key,
             "--region", "us-east-1"],
            capture_output=True, text=True, env=dict(os.environ, NIMBUS_SECRET_ACCESS_KEY=secret), timeout=60)
        assert out.returncode == 0, out.stderr


@pytest.fixture(scope="session")
def dev():
    server = DevServer()
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)


@pytest.fixture(scope="session")
def endpoint(dev):
    return dev.url


@pytest.fixture(scope="session")
def metrics_endpoint(dev):
    return dev.metrics_url


@pytest.fixture(scope="session")
def lam(endpoint):
    return client(endpoint)


def client(endpoint, key="test", secret="test"):
    return boto3.client(
        "lambda",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60, parameter_validation=False),
    )


def zip_of(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in files.items():
            z.writestr(name, body)
    return buf.getvalue()


def python_fn(body):
    return zip_of({"app.py": body})


ECHO = """
import os, json, time
def handler(event, context):
    print("event", json.dumps(event))
    if isinstance(event, dict) and event.get("sleep"):
        time.sleep(event["sleep"])
    if isinstance(event, dict) and event.get("fail"):
        raise ValueError("asked to fail")
    return {"echo": event, "name": context.function_name, "version": context.function_version,
            "mark": os.environ.get("MARK", "")}
"""


def aws_cli(endpoint, *args):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    out = subprocess.run([AWS, "--endpoint-url", endpoint, "--output", "json", *args], capture_output=True, text=True, env=env)
    return out.returncode, out.stdout, out.stderr


@pytest.fixture
def make_function(lam):
    created = []

    def make(name, code=ECHO, **kw):
        params = dict(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                      Code={"ZipFile": python_fn(code)})
        params.update(kw)
        resp = lam.create_function(**params)
        created.append(name)
        return resp

    yield make
    for name in created:
        try:
            lam.delete_function(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            pass


def payload(resp):
    return json.loads(resp["Payload"].read())
