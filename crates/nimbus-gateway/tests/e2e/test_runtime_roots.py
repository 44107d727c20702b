"""Runtimes as real root filesystems (deploy/rootfs/build.sh): `nimbus dev
--runtime-roots` runs each function in the root of its runtime, so every identifier
reports exactly its own interpreter, Python has boto3 as on Lambda, and unmodified
third-party code (AWS Lambda Powertools, from a layer) runs as it does on Lambda."""
import base64
import io
import json
import os
import shutil
import site
import zipfile

import pytest

from conftest import ROLE, DevServer, client, payload, zip_of

ROOTS = os.environ.get("NIMBUS_RUNTIME_ROOTS", "/var/tmp/nimbus-rootfs")


@pytest.fixture(scope="module")
def rooted():
    if not os.path.isdir(ROOTS):
        pytest.fail(f"runtime roots missing at {ROOTS}: run deploy/rootfs/build.sh (.ci/test does)")
    server = DevServer(extra_args=["--runtime-roots", ROOTS])
    server.start()
    yield client(server.url)
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)


def manifest(name):
    with open(os.path.join(ROOTS, name, "etc", "nimbus-runtime.json")) as f:
        return json.load(f)


PY = """
import sys, os, boto3, botocore
def handler(event, context):
    boto3.client("s3", region_name="us-east-1")  # the SDK works, offline
    return {"version": sys.version.split()[0], "boto3": boto3.__version__,
            "exec_env": os.environ["AWS_EXECUTION_ENV"],
            "debian": open("/etc/debian_version").read().strip()}
"""

NODE = """
const fs = require('fs');
exports.handler = async () => ({ version: process.version.slice(1), exec_env: process.env.AWS_EXECUTION_ENV,
  debian: fs.readFileSync('/etc/debian_version', 'utf8').trim() });
"""

PROVIDED = """#!/bin/sh
set -eu
api="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
while true; do
  headers=$(mktemp)
  curl -sS -D "$headers" -o /dev/null "$api/invocation/next"
  rid=$(grep -i '^lambda-runtime-aws-request-id:' "$headers" | tr -d '\\r' | cut -d' ' -f2)
  curl_version=$(curl --version | head -n1 | cut -d' ' -f2)
  debian=$(cat /etc/debian_version)
  curl -sS -o /dev/null -X POST "$api/invocation/$rid/response" \\
    -d "{\\"curl\\": \\"$curl_version\\", \\"debian\\": \\"$debian\\"}"
done
"""


def create(lam, name, runtime, files, handler, **kw):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, body in files.items():
            info = zipfile.ZipInfo(path)
            info.external_attr = (0o755 if path == "bootstrap" else 0o644) << 16
            z.writestr(info, body)
    lam.create_function(FunctionName=name, Runtime=runtime, Role=ROLE, Handler=handler,
                        Code={"ZipFile": buf.getvalue()}, Timeout=30, **kw)


@pytest.mark.parametrize("runtime,root", [("python3.11", "bookworm"), ("python3.13", "trixie")])
def test_python_runtimes_are_exact_and_ship_boto3(rooted, runtime, root):
    name = "root-" + runtime.replace(".", "-")
    create(rooted, name, runtime, {"app.py": PY}, "app.handler")
    out = payload(rooted.invoke(FunctionName=name))
    want = manifest(root)["interpreters"]["python3"]
    assert out["version"] == want["version"] and out["version"].startswith(runtime[len("python"):] + ".")
    assert out["boto3"] == want["packages"]["boto3"]
    assert out["exec_env"] == f"AWS_Lambda_{runtime}"
    assert out["debian"].startswith("12." if root == "bookworm" else "13."), out


@pytest.mark.parametrize("runtime,root", [("nodejs18.x", "bookworm"), ("nodejs20.x", "trixie")])
def test_node_runtimes_are_exact(rooted, runtime, root):
    name = "root-" + runtime.replace(".", "-")
    create(rooted, name, runtime, {"index.js": NODE}, "index.handler")
    out = payload(rooted.invoke(FunctionName=name))
    assert out["version"] == manifest(root)["interpreters"]["node"]["version"]
    assert out["version"].split(".")[0] == runtime[len("nodejs"):-2]
    assert out["exec_env"] == f"AWS_Lambda_{runtime}"


def test_provided_root_has_a_shell_and_curl(rooted):
    create(rooted, "root-provided", "provided.al2023", {"bootstrap": PROVIDED}, "unused")
    out = payload(rooted.invoke(FunctionName="root-provided"))
    assert out["curl"] and out["debian"].startswith("12."), out


def test_powertools_from_a_layer_runs_unchanged(rooted):
    # The real package, copied from the test venv into a layer as a user would.
    files = {}
    sp = next(p for p in site.getsitepackages() if p.endswith("site-packages"))
    for pkg in ("aws_lambda_powertools", "jmespath", "typing_extensions.py"):
        src = os.path.join(sp, pkg)
        if os.path.isfile(src):
            files[f"python/{pkg}"] = open(src, "rb").read()
            continue
        for dirpath, _, names in os.walk(src):
            if "__pycache__" in dirpath:
                continue
            for n in names:
                full = os.path.join(dirpath, n)
                files["python/" + os.path.relpath(full, sp)] = open(full, "rb").read()
    layer = rooted.publish_layer_version(LayerName="powertools", Content={"ZipFile": zip_of(files)},
                                         CompatibleRuntimes=["python3.13"])
    app = """
import boto3
from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.event_handler import APIGatewayRestResolver

logger = Logger(service="orders")
metrics = Metrics(namespace="Shop", service="orders")
app = APIGatewayRestResolver()

@app.get("/orders/<order_id>")
def get_order(order_id):
    metrics.add_metric(name="OrdersRead", unit=MetricUnit.Count, value=1)
    logger.info("reading order", extra={"order_id": order_id})
    return {"order": order_id, "boto3": boto3.__version__}

@logger.inject_lambda_context
@metrics.log_metrics
def handler(event, context):
    return app.resolve(event, context)
"""
    create(rooted, "powertools-fn", "python3.13", {"app.py": app}, "app.handler", Layers=[layer["LayerVersionArn"]],
           Environment={"Variables": {"POWERTOOLS_DEV": "false"}})
    event = {"resource": "/orders/{order_id}", "path": "/orders/42", "httpMethod": "GET", "headers": {},
             "queryStringParameters": None, "pathParameters": {"order_id": "42"}, "body": None,
             "isBase64Encoded": False, "requestContext": {"stage": "prod", "requestId": "r", "path": "/prod/orders/42",
                                                           "httpMethod": "GET", "resourcePath": "/orders/{order_id}"}}
    resp = rooted.invoke(FunctionName="powertools-fn", Payload=json.dumps(event), LogType="Tail")
    out = payload(resp)
    assert out["statusCode"] == 200, out
    body = json.loads(out["body"])
    assert body["order"] == "42" and body["boto3"] == manifest("trixie")["interpreters"]["python3"]["packages"]["boto3"]
    log = base64.b64decode(resp["LogResult"]).decode()
    records = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
    info = [r for r in records if r.get("message") == "reading order"]
    assert info and info[0]["level"] == "INFO" and info[0]["order_id"] == "42", log
    assert info[0]["function_request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    emf = [r for r in records if "_aws" in r]
    assert emf and emf[0]["OrdersRead"] in (1, 1.0, [1], [1.0]), log
    assert emf[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Shop"


RUBY = """
def handler(event:, context:)
  raise ArgumentError, "asked to fail" if event["fail"]
  { version: RUBY_VERSION, name: event["name"], function: context.function_name,
    request_id: context.aws_request_id, remaining: context.get_remaining_time_in_millis > 0 }
end
"""


def test_ruby_runtime_with_context_and_lambdas_errors(rooted):
    create(rooted, "root-ruby", "ruby3.3", {"hello.rb": RUBY}, "hello.handler")
    resp = rooted.invoke(FunctionName="root-ruby", Payload=json.dumps({"name": "Nim"}))
    out = payload(resp)
    assert out["version"] == manifest("trixie")["interpreters"]["ruby"]["version"]
    assert out["version"].startswith("3.3.")
    assert out == dict(out, name="Nim", function="root-ruby", remaining=True)
    assert out["request_id"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    failed = rooted.invoke(FunctionName="root-ruby", Payload=json.dumps({"fail": True}))
    assert failed["FunctionError"] == "Unhandled"
    err = payload(failed)
    assert err["errorType"] == "Function<ArgumentError>" and err["errorMessage"] == "asked to fail"
    assert any("/var/task/hello.rb" in line for line in err["stackTrace"]), err


JAVA_HELLO = """
package example;

import com.amazonaws.services.lambda.runtime.Context;
import com.amazonaws.services.lambda.runtime.RequestHandler;
import java.util.HashMap;
import java.util.Map;

public class Hello implements RequestHandler<Map<String, Object>, Map<String, Object>> {
    @Override
    public Map<String, Object> handleRequest(Map<String, Object> event, Context context) {
        if (event.containsKey("fail")) {
            throw new IllegalStateException("asked to fail");
        }
        Map<String, Object> out = new HashMap<>();
        out.put("version", System.getProperty("java.version"));
        out.put("name", event.get("name"));
        out.put("function", context.getFunctionName());
        out.put("memory", context.getMemoryLimitInMB());
        out.put("requestId", context.getAwsRequestId());
        return out;
    }
}
"""


def compile_java(root, tmp_path):
    """Compiles the handler with the root's own JDK (the CI host has none), in a private
    mount namespace so the cached root is not written to."""
    import subprocess
    src = tmp_path / "src" / "example"
    src.mkdir(parents=True)
    (src / "Hello.java").write_text(JAVA_HELLO)
    out = tmp_path / "out"
    out.mkdir()
    root_dir = os.path.join(ROOTS, root)
    script = (
        f"mount --bind {tmp_path} {root_dir}/mnt && mount -t proc proc {root_dir}/proc && "
        f"chroot {root_dir} /usr/bin/javac --release 17 -cp /usr/lib/nimbus/java/nimbus-lambda-core.jar "
        f"-d /mnt/out /mnt/src/example/Hello.java"
    )
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return {"example/Hello.class": (out / "example" / "Hello.class").read_bytes()}


@pytest.mark.parametrize("runtime,root", [("java17", "bookworm"), ("java21", "trixie")])
def test_java_runtimes_with_context_and_lambdas_errors(rooted, runtime, root, tmp_path):
    files = compile_java(root, tmp_path)
    name = "root-" + runtime
    create(rooted, name, runtime, files, "example.Hello::handleRequest", MemorySize=512)
    resp = rooted.invoke(FunctionName=name, Payload=json.dumps({"name": "Nim"}))
    out = payload(resp)
    assert out["version"] == manifest(root)["interpreters"]["java"]["version"], out
    assert out["version"].split(".")[0] == runtime[len("java"):]
    assert (out["name"], out["function"], out["memory"]) == ("Nim", name, 512)
    assert out["requestId"] == resp["ResponseMetadata"]["HTTPHeaders"]["x-amzn-requestid"]
    failed = rooted.invoke(FunctionName=name, Payload=json.dumps({"fail": 1}))
    err = payload(failed)
    assert failed["FunctionError"] == "Unhandled"
    assert err["errorType"] == "java.lang.IllegalStateException" and err["errorMessage"] == "asked to fail"
    assert err["stackTrace"][0].startswith("example.Hello.handleRequest(Hello.java:"), err
