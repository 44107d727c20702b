"""`nimbus dev` and a cluster give the same answers.

The same bad and edge-case requests go to a `nimbus dev` process and to a cluster of
separate processes (metadata node, gateway, worker over real sockets). Both reach their
workers through the same gateway core and worker contract; this table checks that what a
client sees is identical: HTTP status, `x-amzn-ErrorType`, `X-Amz-Function-Error`, and
the shape of the body (its keys, the error type and Reason; messages with the account id
and request ids normalised)."""
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from harness import BIN, KEY_ID, ROLE, SECRET, Cluster, free_port, wait_port, zip_of

FNS = {
    "echo": ("""
def handler(event, context):
    return {"echo": event}
""", {}),
    "fails": ("""
def handler(event, context):
    raise ValueError("asked to fail")
""", {}),
    "slow": ("""
import time
def handler(event, context):
    time.sleep(5)
    return "late"
""", {"Timeout": 1}),
}

MB6 = 6 * 1024 * 1024
PATH = "/2015-03-31/functions/{}/invocations"

# name, function, query, headers, body
CASES = [
    ("ok", "echo", "", {}, b'{"a": 1}'),
    ("unknown function", "nope", "", {}, b"{}"),
    ("unknown alias", "echo", "?Qualifier=missing", {}, b"{}"),
    ("unknown version", "echo", "?Qualifier=42", {}, b"{}"),
    ("malformed name", "echo:a:b", "", {}, b"{}"),
    ("conflicting qualifiers", "echo:1", "?Qualifier=2", {}, b"{}"),
    ("oversize payload", "echo", "", {}, b'"' + b"a" * MB6 + b'"'),
    ("oversize async payload", "echo", "", {"X-Amz-Invocation-Type": "Event"}, b'"' + b"a" * (1024 * 1024 + 1) + b'"'),
    ("invalid json", "echo", "", {}, b"{not json"),
    ("bad invocation type", "echo", "", {"X-Amz-Invocation-Type": "Sometimes"}, b"{}"),
    ("bad log type", "echo", "", {"X-Amz-Log-Type": "All"}, b"{}"),
    ("bad client context", "echo", "", {"X-Amz-Client-Context": "%%%"}, b"{}"),
    ("dry run", "echo", "", {"X-Amz-Invocation-Type": "DryRun"}, b"{}"),
    ("throttled", "throttled", "", {}, b"{}"),
    ("function error", "fails", "", {}, b"{}"),
    ("timeout", "slow", "", {}, b"{}"),
]


def call(endpoint, path, headers, body, key=KEY_ID, secret=SECRET):
    req = AWSRequest(method="POST", url=endpoint + path, data=body, headers=headers)
    SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(req)
    r = urllib3.request("POST", endpoint + path, body=body, headers=dict(req.headers.items()),
                        timeout=urllib3.Timeout(connect=5, read=60), retries=False)
    return r.status, r.headers, r.data


def normalise(text):
    # Ids first: a uuid whose last group happens to be 12 decimal digits would otherwise
    # lose it to the account rule and no longer read as a uuid.
    text = re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "<uuid>", text)
    text = re.sub(r"\b\d{12}\b", "<account>", text)
    return text


def shape(status, headers, body):
    """What a client sees, minus what legitimately differs between two deployments."""
    try:
        doc = json.loads(body) if body else None
    except ValueError:
        doc = "<not json>"
    if isinstance(doc, dict):
        # Function errors carry a stack trace with paths; keep the keys and the type.
        doc = {k: (normalise(v) if isinstance(v, str) and k != "stackTrace" else type(v).__name__)
               for k, v in doc.items()}
    return {
        "status": status,
        "error_type": headers.get("x-amzn-ErrorType"),
        "function_error": headers.get("X-Amz-Function-Error"),
        "body": doc,
    }


class Dev:
    def __init__(self):
        self.data = tempfile.mkdtemp(prefix="nimbus-parity-")
        self.port = free_port()
        self.log = os.path.join(self.data, "dev.log")
        self.proc = subprocess.Popen([BIN, "dev", "--data-dir", self.data, "--listen", f"127.0.0.1:{self.port}"],
                                     stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        wait_port(self.port, self.proc, self.log)
        self.endpoint = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.data, ignore_errors=True)


def setup_functions(lam):
    role = ROLE
    for name, (code, extra) in FNS.items():
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_of({"app.py": code})}, **extra)
    lam.create_function(FunctionName="throttled", Runtime="python3.11", Role=role, Handler="app.handler",
                        Code={"ZipFile": zip_of({"app.py": FNS["echo"][0]})})
    lam.put_function_concurrency(FunctionName="throttled", ReservedConcurrentExecutions=0)
    lam.publish_version(FunctionName="echo")


def answers(endpoint, key, secret):
    out = {}
    for name, fn, query, headers, body in CASES:
        out[name] = shape(*call(endpoint, PATH.format(fn) + query, headers, body, key, secret))
    return out


@pytest.fixture(scope="module")
def both():
    import boto3
    import botocore.config
    dev = Dev()
    cluster = Cluster(metas=1, gateways=1, workers=1)
    try:
        cluster.start()
        cfg = botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60, parameter_validation=False)
        dev_lam = boto3.client("lambda", endpoint_url=dev.endpoint, region_name="us-east-1",
                               aws_access_key_id="test", aws_secret_access_key="test", config=cfg)
        setup_functions(dev_lam)
        setup_functions(cluster.client(0))
        # The cluster's gateway learns of its worker by heartbeat: wait for a first run.
        deadline = time.time() + 30
        while call(cluster.endpoint(0), PATH.format("echo"), {}, b"{}")[0] != 200:
            assert time.time() < deadline, cluster.logs()
            time.sleep(0.5)
        yield (answers(dev.endpoint, "test", "test"), answers(cluster.endpoint(0), KEY_ID, SECRET), cluster)
    finally:
        dev.stop()
        cluster.stop()


@pytest.mark.parametrize("case", [c[0] for c in CASES])
def test_dev_and_cluster_answer_alike(both, case):
    dev, cluster, c = both
    assert dev[case] == cluster[case], c.logs()


def test_the_table_covers_each_kind_of_answer(both):
    """The parity above is only worth something if the answers differ from each other."""
    dev, _, _ = both
    seen = {(a["status"], a["error_type"], a["function_error"]) for a in dev.values()}
    expected = {
        (200, None, None),
        (404, "ResourceNotFoundException", None),
        (400, "ValidationException", None),
        (400, "InvalidParameterValueException", None),
        (400, "InvalidRequestContentException", None),
        (413, "RequestTooLargeException", None),
        (429, "TooManyRequestsException", None),
        (204, None, None),
        (200, None, "Unhandled"),
    }
    assert expected <= seen, seen
    assert dev["throttled"]["body"]["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    assert dev["function error"]["body"]["errorType"] == "ValueError"
    assert dev["timeout"]["function_error"] == "Unhandled"


def test_a_deleted_or_rotated_key_stops_working(both):
    """Gateways cache access-key secrets; the cache follows the metadata, so a key that
    is rotated or deleted stops working within the watch delay (here, at once: the CLI
    returns after the write is committed, and the watch delivers it in milliseconds)."""
    _, _, c = both
    meta = ",".join(c.meta_addrs)
    c.cli("account", "create", "--meta", meta, "--account-id", "123456789012", "--access-key-id", "AKIDROTATED",
          "--region", "us-east-1", env={"NIMBUS_SECRET_ACCESS_KEY": "first-secret"})
    path = PATH.format("echo")

    def status(secret, key="AKIDROTATED"):
        deadline = time.time() + 10
        while True:
            s, h, _ = call(c.endpoint(0), path, {}, b"{}", key, secret)
            if s != 403 or time.time() > deadline:
                return s, h.get("x-amzn-ErrorType")
            time.sleep(0.2)

    assert status("first-secret")[0] == 200
    # Rotated: the old secret is refused, the new one works.
    c.cli("account", "create", "--meta", meta, "--account-id", "123456789012", "--access-key-id", "AKIDROTATED",
          "--region", "us-east-1", env={"NIMBUS_SECRET_ACCESS_KEY": "second-secret"})
    deadline = time.time() + 10
    while call(c.endpoint(0), path, {}, b"{}", "AKIDROTATED", "first-secret")[0] != 403:
        assert time.time() < deadline, "the old secret still works after rotation"
        time.sleep(0.2)
    s, h, _ = call(c.endpoint(0), path, {}, b"{}", "AKIDROTATED", "first-secret")
    assert (s, h.get("x-amzn-ErrorType")) == (403, "InvalidSignatureException")
    assert status("second-secret")[0] == 200
    # Deleted: refused as an unknown key.
    c.cli("account", "delete-key", "--meta", meta, "--access-key-id", "AKIDROTATED")
    deadline = time.time() + 10
    while call(c.endpoint(0), path, {}, b"{}", "AKIDROTATED", "second-secret")[0] != 403:
        assert time.time() < deadline, "a deleted key still works"
        time.sleep(0.2)
    s, h, _ = call(c.endpoint(0), path, {}, b"{}", "AKIDROTATED", "second-secret")
    assert (s, h.get("x-amzn-ErrorType")) == (403, "UnrecognizedClientException")


def test_workers_keep_the_cluster_nodes_out_of_reach_of_functions(both):
    """Each worker tells its sandbox's firewall the cluster's node addresses (its metadata
    nodes and every registered worker), which functions can never reach, whatever
    addresses they have. Here every node listens on 127.0.0.1."""
    deadline = time.time() + 10
    while True:
        out = subprocess.run(["nft", "list", "set", "inet", "nimbus", "cluster_nodes"],
                             capture_output=True, text=True)
        if "127.0.0.1" in out.stdout or time.time() > deadline:
            break
        time.sleep(0.5)
    assert "127.0.0.1" in out.stdout, out.stdout + out.stderr
