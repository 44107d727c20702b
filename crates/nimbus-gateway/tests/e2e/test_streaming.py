"""InvokeWithResponseStream with boto3's own event-stream decoder, and the Runtime API's
streaming response mode as runtimes use it: a custom runtime that streams chunked with
an error in the trailers, and Node's `awslambda.streamifyResponse`."""
import base64
import io
import json
import re
import time
import zipfile

import pytest

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


# Writes, waits, writes: the gap shows whether the first bytes left before the end.
NODE_SLOW = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('first ');
  await new Promise((r) => setTimeout(r, 1500));
  responseStream.write('second');
  if (event.fail) throw new RangeError('late failure');
  responseStream.end();
});
"""

SLOW_BOOTSTRAP = BOOTSTRAP.replace(
    'for part in (b"one,", b"two,", b"three"):\n        s.sendall(b"%x\\r\\n%s\\r\\n" % (len(part), part))',
    'import time\n    for i, part in enumerate((b"one,", b"two,", b"three")):\n'
    '        s.sendall(b"%x\\r\\n%s\\r\\n" % (len(part), part))\n'
    '        if i == 0:\n            time.sleep(1.5)')


def timed_events(resp):
    """(arrival time, payload) of each chunk, and InvokeComplete with its arrival time."""
    chunks, complete = [], None
    for e in resp["EventStream"]:
        if "PayloadChunk" in e:
            chunks.append((time.monotonic(), e["PayloadChunk"]["Payload"]))
        elif "InvokeComplete" in e:
            complete = (time.monotonic(), e["InvokeComplete"])
    return chunks, complete


@pytest.mark.parametrize("kind", ["node", "custom"])
def test_the_first_chunk_arrives_while_the_function_still_runs(lam, kind):
    assert SLOW_BOOTSTRAP != BOOTSTRAP
    name = f"slow-stream-{kind}"
    if kind == "node":
        lam.create_function(FunctionName=name, Runtime=_node_runtime(), Role=ROLE, Handler="index.handler",
                            Code={"ZipFile": zip_with_bootstrap({"index.js": NODE_SLOW})})
    else:
        lam.create_function(FunctionName=name, Runtime="provided.al2023", Role=ROLE, Handler="x",
                            Code={"ZipFile": zip_with_bootstrap({"bootstrap": SLOW_BOOTSTRAP})})
    try:
        for attempt in ("cold", "warm"):
            resp = lam.invoke_with_response_stream(FunctionName=name, Payload=b"{}")
            chunks, (done_at, complete) = timed_events(resp)
            assert not complete.get("ErrorCode"), complete
            first_at, first = chunks[0]
            assert first in (b"first ", b"one,"), chunks
            # The function slept 1.5 s after its first write: that write was already here.
            assert done_at - first_at > 1.0, (attempt, chunks, done_at)
            assert b"".join(c for _, c in chunks) in (b"first second", b"one,two,three")
        # A failure after bytes went out is told in InvokeComplete, the bytes kept.
        resp = lam.invoke_with_response_stream(FunctionName=name, Payload=b'{"fail": true}')
        chunks, (done_at, complete) = timed_events(resp)
        assert done_at - chunks[0][0] > 1.0
        expected = ("RangeError", "late failure") if kind == "node" else ("Mid.Stream", "broke")
        assert complete["ErrorCode"] == expected[0] and expected[1] in complete["ErrorDetails"], complete
    finally:
        lam.delete_function(FunctionName=name)


def _node_runtime():
    return "nodejs20.x" if _node_major() >= 20 else "nodejs18.x"


# 50 MB in 64 KiB writes that wait for the stream to drain (Node's back-pressure), with
# the moment each 5 MB was accepted, logged.
NODE_BIG = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  const total = event.mb * 1024 * 1024, piece = Buffer.alloc(65536);
  const t0 = Date.now();
  for (let sent = 0, i = 0; sent < total; sent += piece.length, i++) {
    piece.fill(i % 251);
    if (!responseStream.write(piece)) await new Promise((r) => responseStream.once('drain', r));
    if ((sent + piece.length) % (5 * 1024 * 1024) === 0) console.log(`accepted ${(sent + piece.length) >> 20} MB at ${Date.now() - t0} ms`);
  }
  responseStream.end();
});
"""


PAUSE = 12


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_50_mb_stream_through_a_slow_client_keeps_the_gateway_flat(dev, lam):
    """Lambda's limits and back-pressure end to end: the first 6 MB uncapped, then
    2 MB/s; a client that stops reading for 12 s holds the function's writes back, and
    the `nimbus dev` process (gateway and worker) never holds the response in memory."""
    import threading
    lam.create_function(FunctionName="big-stream", Runtime=_node_runtime(), Role=ROLE, Handler="index.handler",
                        MemorySize=256, Timeout=120, Code={"ZipFile": zip_with_bootstrap({"index.js": NODE_BIG})})
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(rss_kb(dev.proc.pid))
            time.sleep(0.1)

    try:
        lam.invoke_with_response_stream(FunctionName="big-stream", Payload=b'{"mb": 1}')  # warm it
        base = rss_kb(dev.proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        resp = lam.invoke_with_response_stream(FunctionName="big-stream", Payload=b'{"mb": 50}', LogType="Tail")
        received, complete, paused = 0, None, False
        for e in resp["EventStream"]:
            if "PayloadChunk" in e:
                data = e["PayloadChunk"]["Payload"]
                # Byte i of the stream is (i // 65536) % 251: order and content intact.
                for off in [*range((-received) % 65536, len(data), 65536), len(data) - 1]:
                    assert data[off] == ((received + off) // 65536) % 251, received + off
                received += len(data)
                if not paused and received >= 1024 * 1024:
                    paused = True
                    time.sleep(PAUSE)  # the slow client: nothing read for a while
            elif "InvokeComplete" in e:
                complete = e["InvokeComplete"]
        elapsed = time.monotonic() - started
        stop.set()
        sampler.join()
        assert complete is not None and not complete.get("ErrorCode"), complete
        assert received == 50 * 1024 * 1024
        # 44 MB past the uncapped 6 MB at 2 MB/s take 22 s at least.
        assert elapsed > 21, elapsed
        # Without back-pressure the function would have had 6 + 2 × 12 = 30 MB accepted
        # by the end of the pause. With it, it stalls once the buffers on the way (the
        # kernel's socket buffers, the worker's and gateway's small queues) are full, and
        # goes on at 2 MB/s only when the client reads again.
        log = base64.b64decode(complete["LogResult"]).decode()
        accepted = {int(m): int(t) for m, t in re.findall(r"accepted (\d+) MB at (\d+) ms", log)}
        assert 30 in accepted, log
        assert accepted[30] > (PAUSE + 3) * 1000, accepted
        growth_mb = (max(samples) - base) / 1024
        # The process holds a few MB of it in flight, never the 50 MB (nor the 30 MB a
        # buffering gateway would have piled up during the pause).
        assert growth_mb < 20, (growth_mb, base, max(samples))
        print(f"50 MB stream: {elapsed:.1f} s, RSS growth {growth_mb:.1f} MB, accepted {accepted}")
    finally:
        stop.set()
        lam.delete_function(FunctionName="big-stream")


NODE_HTTP_SLOW = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream = awslambda.HttpResponseStream.from(responseStream, {
    statusCode: 200, headers: {'content-type': 'text/plain', 'x-kind': 'slow'} });
  responseStream.write('early ');
  await new Promise((r) => setTimeout(r, 1500));
  if (event.rawQueryString === 'fail') throw new Error('failed mid-stream');
  responseStream.end('late');
});
"""


def test_a_response_stream_url_sends_bytes_as_they_are_written(lam):
    import http.client
    from urllib.parse import urlparse
    from test_urls import public
    lam.create_function(FunctionName="node-url-slow", Runtime=_node_runtime(), Role=ROLE, Handler="index.handler",
                        Code={"ZipFile": zip_with_bootstrap({"index.js": NODE_HTTP_SLOW})})
    try:
        url = lam.create_function_url_config(FunctionName="node-url-slow", AuthType="NONE",
                                             InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
        public(lam, "node-url-slow")
        u = urlparse(url)

        def get(path):
            conn = http.client.HTTPConnection("127.0.0.1", u.port, timeout=60)
            conn.request("GET", path, headers={"Host": u.netloc})
            return conn.getresponse()

        for attempt in ("cold", "warm"):
            r = get("/")
            assert r.status == 200 and r.getheader("x-kind") == "slow", attempt
            assert r.getheader("transfer-encoding") == "chunked"
            first = r.read1()
            first_at = time.monotonic()
            rest = r.read()
            assert first + rest == b"early late", (first, rest)
            assert first == b"early " and time.monotonic() - first_at > 1.0, attempt
        # Failing after the head went out cuts the body off: never a clean end.
        r = get("/?fail")
        assert r.status == 200 and r.read1() == b"early "
        with pytest.raises(http.client.IncompleteRead):
            r.read()
    finally:
        lam.delete_function(FunctionName="node-url-slow")


NODE_TIMEOUT = """
exports.handler = awslambda.streamifyResponse(async (event, responseStream) => {
  responseStream.write('started ');
  await new Promise((r) => setTimeout(r, 10000));
  responseStream.end('never');
});
"""


def test_a_stream_that_outlives_its_timeout_ends_with_the_timeout(lam):
    lam.create_function(FunctionName="stream-timeout", Runtime=_node_runtime(), Role=ROLE, Handler="index.handler",
                        Timeout=2, Code={"ZipFile": zip_with_bootstrap({"index.js": NODE_TIMEOUT})})
    try:
        started = time.monotonic()
        body, complete = events(lam.invoke_with_response_stream(FunctionName="stream-timeout", Payload=b"{}"))
        assert body == b"started "
        assert complete["ErrorCode"] == "Sandbox.Timedout" and "timed out" in complete["ErrorDetails"], complete
        assert time.monotonic() - started < 9
    finally:
        lam.delete_function(FunctionName="stream-timeout")


def test_refusals_before_the_first_byte_are_ordinary_errors(lam, make_function):
    from botocore.exceptions import ClientError
    from test_urls import public, request
    with pytest.raises(ClientError) as e:
        lam.invoke_with_response_stream(FunctionName="no-such-function", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    make_function("stream-throttled")
    url = lam.create_function_url_config(FunctionName="stream-throttled", AuthType="NONE",
                                         InvokeMode="RESPONSE_STREAM")["FunctionUrl"]
    public(lam, "stream-throttled")
    lam.put_function_concurrency(FunctionName="stream-throttled", ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as e:
        lam.invoke_with_response_stream(FunctionName="stream-throttled", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert request(url)[0] == 429
    lam.delete_function_concurrency(FunctionName="stream-throttled")
    # A buffered function behind a RESPONSE_STREAM URL: its result is the body.
    status, _, body, _ = request(url, path="/x")
    assert status == 200 and json.loads(body)["echo"]["rawPath"] == "/x", body
