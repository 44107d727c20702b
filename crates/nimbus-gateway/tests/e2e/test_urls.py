"""Function URLs with the AWS CLI and boto3: the config API, and the URL itself answered
by host name (`<id>.lambda-url.us-east-1.localhost:<port>`) in Lambda's payload format
2.0, with CORS, auth types and Lambda's errors."""
import base64
import http.client
import json
import time
from urllib.parse import urlparse

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from conftest import aws_cli, python_fn

ACCOUNT = "000000000000"

HTTP_FN = """
import base64, json
def handler(event, context):
    if event.get("rawPath") == "/fail":
        raise RuntimeError("boom")
    if event.get("rawPath") == "/plain":
        return {"just": "json"}
    if event.get("rawPath") == "/binary":
        return {"statusCode": 200, "headers": {"content-type": "application/octet-stream"},
                "body": base64.b64encode(bytes(range(8))).decode(), "isBase64Encoded": True}
    if event.get("rawPath") == "/bad":
        return {"statusCode": "nope"}
    return {"statusCode": 201, "headers": {"x-seen": "yes", "content-type": "application/json"},
            "cookies": ["a=1; Path=/", "b=2"], "body": json.dumps(event)}
"""


def request(url, method="GET", path="/", body=b"", headers=None):
    """Calls a function URL on 127.0.0.1 with its host name in `Host` (no DNS needed)."""
    u = urlparse(url)
    conn = http.client.HTTPConnection("127.0.0.1", u.port, timeout=60)
    h = {"Host": u.netloc, **(headers or {})}
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    out = (r.status, {k.lower(): v for k, v in r.getheaders()}, r.read(), r.headers.get_all("set-cookie") or [])
    conn.close()
    return out


def public(lam, name, qualifier=None):
    """The two statements Lambda needs for a public (AuthType NONE) URL."""
    q = {"Qualifier": qualifier} if qualifier else {}
    lam.add_permission(FunctionName=name, StatementId="url", Action="lambda:InvokeFunctionUrl",
                       Principal="*", FunctionUrlAuthType="NONE", **q)
    lam.add_permission(FunctionName=name, StatementId="invoke", Action="lambda:InvokeFunction",
                       Principal="*", **q)


def test_a_public_url_serves_payload_format_2(lam, make_function):
    make_function("web", code=HTTP_FN)
    cfg = lam.create_function_url_config(FunctionName="web", AuthType="NONE")
    url = cfg["FunctionUrl"]
    assert ".lambda-url.us-east-1.localhost:" in url and url.endswith("/")
    assert cfg["FunctionArn"].endswith(":function:web") and cfg["InvokeMode"] == "BUFFERED"
    # Without the resource policy Lambda requires, nobody gets in.
    status, _, body, _ = request(url)
    assert status == 403 and json.loads(body)["Message"] == "Forbidden"
    public(lam, "web")

    def ok():
        s, h, b, cookies = request(url, "POST", "/items/a%20b?x=1&x=2&y=z", b'{"n": 1}',
                                   {"content-type": "application/json", "cookie": "c1=v1; c2=v2",
                                    "user-agent": "tester", "x-multi": "a"})
        assert s == 201, (s, b)
        return h, json.loads(b), cookies
    h, event, cookies = eventually(ok)
    assert h["x-seen"] == "yes"
    assert cookies == ["a=1; Path=/", "b=2"]
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/items/a%20b" and event["rawQueryString"] == "x=1&x=2&y=z"
    assert event["queryStringParameters"] == {"x": "1,2", "y": "z"}
    assert event["cookies"] == ["c1=v1", "c2=v2"]
    assert event["headers"]["x-multi"] == "a" and "cookie" not in event["headers"]
    assert event["body"] == '{"n": 1}' and event["isBase64Encoded"] is False
    ctx = event["requestContext"]
    assert ctx["http"]["method"] == "POST" and ctx["http"]["path"] == "/items/a b"
    assert ctx["http"]["userAgent"] == "tester" and ctx["http"]["sourceIp"] == "127.0.0.1"
    assert ctx["accountId"] == ACCOUNT and ctx["apiId"] == urlparse(url).hostname.split(".")[0]
    assert ctx["domainName"] == urlparse(url).hostname and ctx["requestId"]

    # A binary request body arrives base64-encoded; a binary response is decoded.
    s, _, b, _ = request(url, "POST", "/", bytes([0, 255, 1]), {"content-type": "application/octet-stream"})
    assert json.loads(b)["isBase64Encoded"] is True and base64.b64decode(json.loads(b)["body"]) == bytes([0, 255, 1])
    s, h, b, _ = request(url, path="/binary")
    assert s == 200 and b == bytes(range(8)) and h["content-type"] == "application/octet-stream"
    # Any JSON without statusCode is the body of a 200.
    s, h, b, _ = request(url, path="/plain")
    assert s == 200 and json.loads(b) == {"just": "json"} and h["content-type"].startswith("application/json")
    # A function error and an unusable result are 502s, as on Lambda.
    assert request(url, path="/fail")[0] == 502
    assert request(url, path="/bad")[0] == 502
    # Over 6 MB: 413.
    assert request(url, "POST", "/", b"x" * (6 * 1024 * 1024 + 10))[0] == 413
    # An unknown URL id: 404.
    other = url.replace(urlparse(url).hostname.split(".")[0], "0" * 32)
    assert request(other)[0] == 404


def eventually(fn, timeout=5):
    deadline = time.time() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def test_a_throttled_url_answers_429(lam, make_function):
    make_function("web-throttled", code=HTTP_FN)
    url = lam.create_function_url_config(FunctionName="web-throttled", AuthType="NONE")["FunctionUrl"]
    public(lam, "web-throttled")
    lam.put_function_concurrency(FunctionName="web-throttled", ReservedConcurrentExecutions=0)
    eventually(lambda: _status_is(url, 429))


def _status_is(url, code):
    s, _, b, _ = request(url)
    assert s == code, (s, b)


def test_cors_preflight_is_answered_without_invoking(lam, make_function):
    make_function("web-cors", code=HTTP_FN)
    url = lam.create_function_url_config(
        FunctionName="web-cors", AuthType="NONE",
        Cors={"AllowOrigins": ["https://app.example"], "AllowMethods": ["POST"], "AllowHeaders": ["content-type"],
              "ExposeHeaders": ["x-seen"], "MaxAge": 600})["FunctionUrl"]
    # No permission yet: the preflight is still answered from the config alone.
    s, h, _, _ = request(url, "OPTIONS", "/", headers={"origin": "https://app.example",
                                                       "access-control-request-method": "POST"})
    assert s == 200 and h["access-control-allow-origin"] == "https://app.example"
    assert "POST" in h["access-control-allow-methods"] and h["access-control-max-age"] == "600"
    s, h, _, _ = request(url, "OPTIONS", "/", headers={"origin": "https://evil.example",
                                                       "access-control-request-method": "POST"})
    assert "access-control-allow-origin" not in h
    public(lam, "web-cors")
    s, h, _, _ = eventually(lambda: _ok(request(url, "POST", "/", b"{}", {"origin": "https://app.example"})))
    assert h["access-control-allow-origin"] == "https://app.example" and "x-seen" in h["access-control-expose-headers"]


def _ok(r):
    assert r[0] < 300, r
    return r


def test_an_aws_iam_url_needs_a_signature_and_the_permission(lam, endpoint, make_function):
    make_function("web-iam", code=HTTP_FN)
    url = lam.create_function_url_config(FunctionName="web-iam", AuthType="AWS_IAM")["FunctionUrl"]
    assert request(url)[0] == 403, "unsigned"

    def signed(key, secret, path="/"):
        req = AWSRequest(method="GET", url=url.rstrip("/") + path, headers={"Host": urlparse(url).netloc})
        SigV4Auth(Credentials(key, secret), "lambda", "us-east-1").add_auth(req)
        return request(url, "GET", path, headers=dict(req.headers.items()))
    s, _, b, _ = signed("test", "test")
    assert s == 201, b  # the account's root may
    assert signed("test", "wrong")[0] == 403, "a bad signature"


def test_url_config_api_and_errors(lam, endpoint, make_function):
    make_function("web-api", code=HTTP_FN)
    v = lam.publish_version(FunctionName="web-api")["Version"]
    lam.create_alias(FunctionName="web-api", Name="live", FunctionVersion=v)
    a = lam.create_function_url_config(FunctionName="web-api", AuthType="NONE")
    b = lam.create_function_url_config(FunctionName="web-api", Qualifier="live", AuthType="AWS_IAM")
    assert a["FunctionUrl"] != b["FunctionUrl"] and b["FunctionArn"].endswith(":web-api:live")
    with pytest.raises(ClientError) as e:
        lam.create_function_url_config(FunctionName="web-api", AuthType="NONE")
    assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    with pytest.raises(ClientError) as e:
        lam.create_function_url_config(FunctionName="web-api", AuthType="MAYBE")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as e:
        lam.create_function_url_config(FunctionName="web-api", Qualifier=v, AuthType="NONE")
    assert e.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as e:
        lam.create_function_url_config(FunctionName="web-api", Qualifier="nope", AuthType="NONE")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        lam.update_function_url_config(FunctionName="web-api", Cors={"MaxAge": 100000})
    assert e.value.response["Error"]["Code"] == "ValidationException"
    got = lam.get_function_url_config(FunctionName="web-api", Qualifier="live")
    assert got["FunctionUrl"] == b["FunctionUrl"] and got["AuthType"] == "AWS_IAM" and "LastModifiedTime" in got
    up = lam.update_function_url_config(FunctionName="web-api", Qualifier="live", AuthType="NONE",
                                        Cors={"AllowOrigins": ["*"]})
    assert up["AuthType"] == "NONE" and up["Cors"]["AllowOrigins"] == ["*"] and up["FunctionUrl"] == b["FunctionUrl"]
    listed = lam.list_function_url_configs(FunctionName="web-api")["FunctionUrlConfigs"]
    assert sorted(c["FunctionUrl"] for c in listed) == sorted([a["FunctionUrl"], b["FunctionUrl"]])
    rc, out, err = aws_cli(endpoint, "lambda", "get-function-url-config", "--function-name", "web-api")
    assert rc == 0 and json.loads(out)["FunctionUrl"] == a["FunctionUrl"], err
    # Deleting the alias takes its URL with it; deleting the config frees the function's.
    lam.delete_alias(FunctionName="web-api", Name="live")
    assert request(b["FunctionUrl"])[0] == 404
    lam.delete_function_url_config(FunctionName="web-api")
    with pytest.raises(ClientError) as e:
        lam.get_function_url_config(FunctionName="web-api")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert request(a["FunctionUrl"])[0] == 404
    with pytest.raises(ClientError) as e:
        lam.create_function_url_config(FunctionName="web-api", AuthType="NONE", InvokeMode="SOMETIMES")
    assert e.value.response["Error"]["Code"] == "ValidationException"
