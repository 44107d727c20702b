"""Request integrity at the gateway, tried as an attacker would: a signed request replayed
with another body, an unsigned payload, and large bodies from callers who cannot sign."""
import hashlib
import json
import socket
import time
from urllib.parse import urlparse

import pytest
import urllib3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from conftest import ECHO

PATH = "/2015-03-31/functions/integrity/invocations"


def signed_headers(endpoint, body, declared=None, key="test", secret="test"):
    headers = {"Content-Type": "application/json"}
    if declared is not None:
        headers["X-Amz-Content-SHA256"] = declared
    req = AWSRequest(method="POST", url=endpoint + PATH, data=body, headers=headers)
    SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(req)
    return dict(req.headers.items())


def post(endpoint, headers, body):
    r = urllib3.request("POST", endpoint + PATH, body=body, headers=headers, retries=False,
                        timeout=urllib3.Timeout(connect=5, read=30))
    return r.status, r.headers.get("x-amzn-ErrorType"), r.data


def sha(body):
    return hashlib.sha256(body).hexdigest()


def test_a_body_must_be_the_one_that_was_signed(endpoint, make_function):
    make_function("integrity", code=ECHO)
    body = b'{"transfer": 1}'
    headers = signed_headers(endpoint, body, declared=sha(body))
    assert post(endpoint, headers, body)[0] == 200
    # The same signed headers (a replay) with another body.
    status, error, _ = post(endpoint, headers, b'{"transfer": 1000000}')
    assert (status, error) == (403, "InvalidSignatureException")
    # Without the header the signature covers the body's own hash: tampering fails too.
    headers = signed_headers(endpoint, body)
    assert post(endpoint, headers, body)[0] == 200
    assert post(endpoint, headers, b'{"transfer": 2}')[:2] == (403, "InvalidSignatureException")


def test_unsigned_payload_is_refused(endpoint, make_function):
    make_function("integrity", code=ECHO)
    headers = signed_headers(endpoint, b"{}", declared="UNSIGNED-PAYLOAD")
    status, error, body = post(endpoint, headers, b'{"anything": "goes"}')
    assert (status, error) == (403, "InvalidSignatureException")
    assert b"UNSIGNED-PAYLOAD" in body
    # A declared hash that is no hash at all.
    headers = signed_headers(endpoint, b"{}", declared="not-a-hash")
    assert post(endpoint, headers, b"{}")[:2] == (403, "IncompleteSignatureException")


def refused_before_the_body(endpoint, headers, declared_len):
    """Sends the headers and 1 KB of a `declared_len` body; returns the gateway's status
    line, which must come back while the rest of the body was never sent."""
    url = urlparse(endpoint)
    with socket.create_connection((url.hostname, url.port), timeout=10) as s:
        head = f"POST {PATH} HTTP/1.1\r\nHost: {url.hostname}:{url.port}\r\n"
        for k, v in headers.items():
            if k.lower() not in ("host", "content-length"):
                head += f"{k}: {v}\r\n"
        head += f"Content-Length: {declared_len}\r\n\r\n"
        s.sendall(head.encode() + b"x" * 1024)
        started = time.time()
        data = s.recv(4096)
        return data.split(b"\r\n", 1)[0].decode(), time.time() - started


def test_callers_who_cannot_sign_cost_no_body_read(endpoint):
    size = 65 * 1024 * 1024
    # An unknown key: refused from the headers alone.
    headers = signed_headers(endpoint, b"", key="AKIDNOBODY", secret="x")
    line, waited = refused_before_the_body(endpoint, headers, size)
    assert line.startswith("HTTP/1.1 403"), line
    assert waited < 5
    # A known key with a declared payload hash but a wrong signature.
    headers = signed_headers(endpoint, b"", declared=sha(b"x" * size), secret="wrong")
    line, _ = refused_before_the_body(endpoint, headers, size)
    assert line.startswith("HTTP/1.1 403"), line
    # Over the API's limit, refused by its declared length.
    line, _ = refused_before_the_body(endpoint, signed_headers(endpoint, b""), 71 * 1024 * 1024)
    assert line.startswith("HTTP/1.1 413"), line


def zip_bytes(entries):
    """A zip with (name, body) files and (name, target) symbolic links."""
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body, link in entries:
            info = zipfile.ZipInfo(name)
            if link:
                info.external_attr = (0o120777 << 16)
            z.writestr(info, body)
    return buf.getvalue()


@pytest.mark.parametrize("entries,message", [
    ([], "non-empty zip"),
    ([("../../etc/cron.d/evil", "* * * * * root sh", False)], "outside the package"),
    ([("/etc/passwd", "root::0:0::/:/bin/sh", False)], "outside the package"),
    ([("app.py", "", False), ("creds", "/etc/shadow", True)], "points outside the package"),
    ([("app.py", "", False), ("lib/up", "../../../etc", True)], "points outside the package"),
])
def test_packages_that_cannot_run_are_refused_at_upload(lam, entries, message):
    from botocore.exceptions import ClientError
    role = "arn:aws:iam::000000000000:role/lambda-role"
    with pytest.raises(ClientError) as err:
        lam.create_function(FunctionName="bad-package", Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_bytes(entries)})
    e = err.value.response
    assert e["Error"]["Code"] == "InvalidParameterValueException", e
    assert message in e["Error"]["Message"], e
    # And nothing was created.
    with pytest.raises(lam.exceptions.ResourceNotFoundException):
        lam.get_function(FunctionName="bad-package")


def test_a_package_with_links_inside_it_is_accepted(lam, make_function):
    make_function("links-inside", Code={"ZipFile": zip_bytes([
        ("app.py", ECHO, False), ("lib/app_link.py", "../app.py", True)])})
    assert lam.invoke(FunctionName="links-inside", Payload=b"{}")["StatusCode"] == 200


def signed_call(endpoint, method, path, body=b""):
    req = AWSRequest(method=method, url=endpoint + path, data=body)
    SigV4Auth(Credentials("test", "test"), "lambda", "us-east-1").add_auth(req)
    r = urllib3.request(method, endpoint + path, body=body or None, headers=dict(req.headers.items()),
                        retries=False, timeout=urllib3.Timeout(connect=5, read=30))
    return r.status, r.headers.get("x-amzn-ErrorType"), r.data


@pytest.mark.parametrize("method,path,status,error", [
    # A known path with a method it does not take.
    ("PATCH", "/2015-03-31/functions", 404, "UnknownOperationException"),
    ("DELETE", "/2015-03-31/functions/f/invocations", 404, "UnknownOperationException"),
    # Percent-encoding that is not UTF-8, in each kind of path parameter.
    ("GET", "/2015-03-31/functions/%FF%FE/configuration", 400, "ValidationException"),
    ("GET", "/2015-03-31/functions/f/aliases/%FF", 400, "ValidationException"),
    ("GET", "/2017-03-31/tags/%C3%28", 400, "ValidationException"),
])
def test_every_error_is_in_lambdas_format(endpoint, method, path, status, error):
    got_status, got_error, body = signed_call(endpoint, method, path)
    assert (got_status, got_error) == (status, error), body
    doc = json.loads(body)
    assert doc["Type"] == "User" and doc["message"], doc
