"""The cluster's trust boundaries with real clients (issue 13).

The harness runs every node with mutual TLS from `nimbus cert`. Here: the CLI is refused
by the metadata cluster without a certificate, with another CA's, and with a node's
certificate of another role; a gateway serves the Lambda API over HTTPS to boto3 and the
AWS CLI; and a function cannot open a connection to any node of the cluster."""
import json
import os
import socket
import ssl
import subprocess
import time

import boto3
import botocore.config
import pytest

from harness import BIN, KEY_ID, ROLE, ROOT, SECRET, Certs, Cluster, Proc, free_port, wait_port, zip_of

AWS = os.path.join(ROOT, ".venv", "bin", "aws")

PROBE = """
import socket

def handler(event, context):
    seen = {}
    for name, host, port in event["targets"]:
        try:
            socket.create_connection((host, port), timeout=2).close()
            seen[name] = "connected"
        except OSError as e:
            seen[name] = "refused: %s" % e
    return seen
"""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(metas=1, gateways=1, workers=1)
    # One more gateway, serving the Lambda API over HTTPS (a certificate for 127.0.0.1).
    c.https_port = free_port()
    web = c.certs.issue("gateway", "web", sans="127.0.0.1,localhost")
    c.https_ca = os.path.join(web, "ca.pem")
    c.https = Proc("gw-https", ["--tls-dir", c.certs.issue("gateway", "gw-https"), "gateway",
                                "--listen", f"127.0.0.1:{c.https_port}", "--meta", ",".join(c.meta_addrs),
                                "--tls-cert", os.path.join(web, "cert.pem"),
                                "--tls-key", os.path.join(web, "key.pem")], c.root)
    # And one with a small budget for bodies read before their signature is verified.
    c.budget_port = free_port()
    c.budget = Proc("gw-budget", ["--tls-dir", c.certs.issue("gateway", "gw-budget"), "gateway",
                                  "--listen", f"127.0.0.1:{c.budget_port}", "--meta", ",".join(c.meta_addrs),
                                  "--unverified-body-budget-mb", "8"], c.root)
    c.start()
    c.https.start()
    c.budget.start()
    wait_port(c.https_port, c.https.proc, c.https.log)
    wait_port(c.budget_port, c.budget.proc, c.budget.log)
    try:
        yield c
    finally:
        c.https.kill()
        c.budget.kill()
        c.stop()


def create_account(c, tls_args, account="222222222222"):
    return subprocess.run([BIN, *tls_args, "account", "create", "--meta", ",".join(c.meta_addrs),
                           "--account-id", account, "--access-key-id", "AKIDTRUST", "--region", "us-east-1"],
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, NIMBUS_SECRET_ACCESS_KEY="s"))


def test_only_the_admin_certificate_creates_accounts(cluster):
    # No certificate: the metadata nodes complete no handshake.
    out = create_account(cluster, ["--insecure-plaintext"])
    assert out.returncode != 0
    assert "error: creating the account" in out.stderr, out.stderr
    # An admin certificate from another CA.
    rogue = Certs(os.path.join(cluster.root, "rogue"))
    out = create_account(cluster, ["--tls-dir", rogue.issue("admin", "operator")])
    assert out.returncode != 0
    # A node's certificate: the CLI will not even present it as the operator's.
    out = create_account(cluster, ["--tls-dir", os.path.join(cluster.certs.root, "worker-worker1")])
    assert out.returncode != 0
    assert "role worker, not admin" in out.stderr, out.stderr
    # The operator's certificate.
    out = create_account(cluster, ["--tls-dir", cluster.admin_tls])
    assert out.returncode == 0, out.stderr
    # Status is open to every role (a node's health check uses its own certificate).
    out = subprocess.run([BIN, "--tls-dir", os.path.join(cluster.certs.root, "meta-meta1"), "cluster", "status",
                          "--meta", cluster.meta_addrs[0], "--output", "json"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["leader"] == 1


def test_a_gateway_serves_the_api_over_https(cluster):
    endpoint = f"https://127.0.0.1:{cluster.https_port}"
    lam = boto3.client("lambda", endpoint_url=endpoint, region_name="us-east-1", verify=cluster.https_ca,
                       aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                       config=botocore.config.Config(retries={"max_attempts": 0}))
    lam.create_function(FunctionName="over-https", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of({"app.py": "def handler(e, c):\n    return {'tls': True}\n"})})
    r = lam.invoke(FunctionName="over-https", Payload=b"{}")
    assert json.loads(r["Payload"].read()) == {"tls": True}
    # The AWS CLI too, verifying the certificate against its CA.
    out = subprocess.run([AWS, "--endpoint-url", endpoint, "--ca-bundle", cluster.https_ca, "--output", "json",
                          "lambda", "get-function", "--function-name", "over-https"], capture_output=True, text=True,
                         env=dict(os.environ, AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                                  AWS_DEFAULT_REGION="us-east-1"))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["Configuration"]["FunctionName"] == "over-https"
    # A client that does not trust the certificate is refused by its own TLS check, and
    # plain HTTP to the HTTPS port gets no Lambda answer.
    with pytest.raises(ssl.SSLCertVerificationError):
        ctx = ssl.create_default_context()
        with socket.create_connection(("127.0.0.1", cluster.https_port), timeout=5) as s:
            ctx.wrap_socket(s, server_hostname="127.0.0.1")
    with socket.create_connection(("127.0.0.1", cluster.https_port), timeout=5) as s:
        s.sendall(b"GET /2015-03-31/functions HTTP/1.1\r\nHost: x\r\n\r\n")
        s.settimeout(5)
        try:
            answer = s.recv(100)
        except (ConnectionResetError, socket.timeout):
            answer = b""
        assert not answer.startswith(b"HTTP/1.1"), answer


def test_a_function_reaches_no_node_of_the_cluster(cluster):
    lam = cluster.client(0)
    lam.create_function(FunctionName="probe", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of({"app.py": PROBE})}, Timeout=30)
    targets = [["meta1", "127.0.0.1", int(cluster.meta_addrs[0].rsplit(":", 1)[1])],
               ["gateway", "127.0.0.1", cluster.gateway_ports[0]],
               ["gateway-https", "127.0.0.1", cluster.https_port],
               ["worker", "127.0.0.1", cluster.worker_ports[0]],
               ["instance-metadata", "169.254.169.254", 80]]
    r = lam.invoke(FunctionName="probe", Payload=json.dumps({"targets": targets}).encode())
    assert "FunctionError" not in r, r["Payload"].read()
    seen = json.loads(r["Payload"].read())
    assert set(seen) == {t[0] for t in targets}, seen
    for name, outcome in seen.items():
        assert outcome != "connected", f"a function reached {name}"


def stalled_upload(port, mb):
    """A request with a known key id, a bogus signature, no x-amz-content-sha256 and a
    declared body of `mb` MB of which only the first MB is sent: the gateway must read
    the body to check the signature, and holds its budget while waiting for the rest."""
    now = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    auth = (f"AWS4-HMAC-SHA256 Credential={KEY_ID}/{now[:8]}/us-east-1/lambda/aws4_request, "
            f"SignedHeaders=host;x-amz-date, Signature={'0' * 64}")
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall((f"POST /2015-03-31/functions HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Amz-Date: {now}\r\n"
               f"Authorization: {auth}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {mb << 20}\r\n\r\n").encode())
    s.sendall(b"x" * (1 << 20))
    return s


def answer(s):
    s.settimeout(15)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def test_bodies_awaiting_verification_share_a_bounded_budget(cluster):
    port = cluster.budget_port
    first = stalled_upload(port, 6)          # holds 6 of the 8 MB
    time.sleep(0.5)
    second = stalled_upload(port, 6)         # does not fit: a throttle after a short wait
    reply = answer(second)
    assert reply.startswith("HTTP/1.1 429"), reply
    assert "x-amzn-errortype: TooManyRequestsException" in reply.lower() or \
        "TooManyRequestsException" in reply, reply
    second.close()
    # Requests that declare nothing to read are not held up, nor is a signed call.
    lam = boto3.client("lambda", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                       aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET,
                       config=botocore.config.Config(retries={"max_attempts": 0}))
    assert "Functions" in lam.list_functions()
    # Once the first is gone, its share is free again: a bad signature is now refused
    # for what it is (after the body was read).
    first.close()
    time.sleep(0.5)
    third = stalled_upload(port, 1)
    reply = answer(third)
    third.close()
    assert reply.startswith("HTTP/1.1 403"), reply
