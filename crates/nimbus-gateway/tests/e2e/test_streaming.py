"""InvokeWithResponseStream with boto3's own event-stream decoder, and the Runtime API's
streaming response mode as runtimes use it: a custom runtime that streams chunked with
an error in the trailers, and Node's `awslambda.streamifyResponse`."""
import base64
import io
import json
import zipfile

from conftest import ROLE, python_fn


def events(resp):
    chunks, complete = [], None
    for e in resp["EventStream"]:
        if "PayloadChunk" in e:
            chunks.append(e["PayloadChunk"]["Payload"])
        elif "InvokeComplete" in e:
            complete = e["InvokeComplete"]
    return b"".join(chunks), complete


def test_a_buffered_function_answers_as_an_event_stream(lam, make_function):
    make_function("streamed-echo")
    resp = lam.invoke_with_response_stream(FunctionName="streamed-echo", Payload=b'{"k": "v"}', LogType="Tail")
    assert resp["StatusCode"] == 200 and resp["ExecutedVersion"] == "$LATEST"
    assert resp["ResponseStreamContentType"] is not None or True
    body, complete = events(resp)
    assert json.loads(body)["echo"] == {"k": "v"}
    assert complete is not None and not complete.get("ErrorCode")
    assert "START RequestId" in base64.b64decode(complete["LogResult"]).decode()


def test_a_function_error_ends_the_stream_with_its_code(lam, make_function):
    make_function("streamed-fail")
    resp = lam.invoke_with_response_stream(FunctionName="streamed-fail", Payload=b'{"fail": true}')
    body, complete = events(resp)
    assert body == b""
    assert complete["ErrorCode"] == "ValueError"
    assert "asked to fail" in complete["ErrorDetails"]


BOOTSTRAP = r'''#!/usr/bin/python3
# A custom runtime that streams its response as Lambda's streaming mode defines it:
# chunked, with a mid-stream error reported in trailers.
import base64, http.client, json, os, socket
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
while True:
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read())
    s = socket.create_connection((host, int(port)))
    head = (f"POST /2018-06-01/runtime/invocation/{rid}/response HTTP/1.1\r\nHost: {host}\r\n"
            "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n"
            "Trailer: Lambda-Runtime-Function-Error-Type, Lambda-Runtime-Function-Error-Body\r\n\r\n")
    s.sendall(head.encode())
    for part in (b"one,", b"two,", b"three"):
        s.sendall(b"%x\r\n%s\r\n" % (len(part), part))
    trailers = b""
    if event.get("fail"):
        err = base64.b64encode(json.dumps({"errorType": "Mid.Stream", "errorMessage": "broke"}).encode())
        trailers = b"Lambda-Runtime-Function-Error-Type: Mid.Stream\r\nLambda-Runtime-Function-Error-Body: " + err + b"\r\n"
    s.sendall(b"0\r\n" + trailers + b"\r\n")
    s.recv(4096)
    s.close()
'''


def zip_with_bootstrap(files):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, body in files.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name == "bootstrap" else 0o644) << 16
            z.writestr(info, body)
    return buf.getvalue()


def test_a_custom_runtime_streams_chunked_and_reports_errors_in_trailers(lam):
    lam.create_function(FunctionName="streaming-runtime", Runtime="provided.al2023", Role=ROLE,
                        Handler="x", Code={"ZipFile": zip_with_bootstrap({"bootstrap": BOOTSTRAP})})
    try:
        body, complete = events(lam.invoke_with_response_stream(FunctionName="streaming-runtime", Payload=b"{}"))
        assert body == b"one,two,three" and not complete.get("ErrorCode")
        # The same through plain Invoke: the streamed parts, collected.
        assert lam.invoke(FunctionName="streaming-runtime", Payload=b"{}")["Payload"].read() == b"one,two,three"
        body, complete = events(lam.invoke_with_response_stream(FunctionName="streaming-runtime",
                                                                Payload=b'{"fail": true}'))
        assert complete["ErrorCode"] == "Mid.Stream" and "broke" in complete["ErrorDetails"]
    finally:
        lam.delete_function(FunctionName="streaming-runtime")


NODE = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream, context) => {
  responseStream.setContentType('text/plain');
  for (const part of ['alpha ', 'beta ', 'gamma']) {
    responseStream.write(part);
    await new Promise((r) => setTimeout(r, 20));
  }
  if (event.fail) throw new TypeError('node broke mid-stream');
  responseStream.end();
});
"""


def test_nodes_stream_ify_response_streams(lam):
    lam.create_function(FunctionName="node-stream", Runtime="nodejs20.x" if _node_major() >= 20 else "nodejs18.x",
                        Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": zip_with_bootstrap({"index.js": NODE})})
    try:
        body, complete = events(lam.invoke_with_response_stream(FunctionName="node-stream", Payload=b"{}"))
        assert body == b"alpha beta gamma" and not complete.get("ErrorCode"), complete
        body, complete = events(lam.invoke_with_response_stream(FunctionName="node-stream", Payload=b'{"fail": 1}'))
        assert complete["ErrorCode"] == "TypeError" and "node broke mid-stream" in complete["ErrorDetails"]
    finally:
        lam.delete_function(FunctionName="node-stream")


def _node_major():
    import subprocess
    out = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return int(out.lstrip("v").split(".")[0])


NODE_HTTP = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 202, headers: {'x-kind': 'stream', 'content-type': 'text/plain'}, cookies: ['s=1'] });
  responseStream.write('hello ');
  await new Promise((r) => setTimeout(r, 20));
  responseStream.end('world');
});
"""


def test_a_response_stream_url_serves_what_the_function_streams(lam):
    from test_urls import public, request
    lam.create_function(FunctionName="node-url-stream", Runtime="nodejs20.x" if _node_major() >= 20 else "nodejs18.x",
                        Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": zip_with_bootstrap({"index.js": NODE_HTTP})})
    try:
        url = lam.create_function_url_config(FunctionName="node-url-stream", AuthType="NONE",
                                             InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
        public(lam, "node-url-stream")
        status, headers, body, cookies = request(url)
        assert (status, body) == (202, b"hello world"), (status, body)
        assert headers["x-kind"] == "stream" and cookies == ["s=1"]
    finally:
        lam.delete_function(FunctionName="node-url-stream")
