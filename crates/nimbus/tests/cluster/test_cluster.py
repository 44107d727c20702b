"""The cluster as separate processes: 3 metadata nodes, 2 gateways, 2 workers.

Invocations run under load while the metadata leader and one gateway are killed: nothing
acknowledged is lost, and the concurrency limit, counted from inside the functions, is
never exceeded."""
import json
import random
import threading
import time

import pytest
from botocore.exceptions import ClientError

from harness import COUNTING_FUNCTION, ROLE, Cluster, Counter, zip_of

ECHO = """
def handler(event, context):
    return {"echo": event, "version": context.function_version}
"""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster().start()
    try:
        yield c
    finally:
        c.stop()


def eventually(fn, timeout=15):
    deadline = time.time() + timeout
    while True:
        try:
            return fn()
        except Exception:
            if time.time() > deadline:
                raise
            time.sleep(0.2)


def test_invoke_through_either_gateway(cluster):
    gw1, gw2 = cluster.client(0), cluster.client(1)
    gw1.create_function(FunctionName="echo", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of({"app.py": ECHO})})
    for gw in (gw1, gw2):
        resp = eventually(lambda: gw.invoke(FunctionName="echo", Payload=b'{"x": 1}'))
        assert resp["StatusCode"] == 200, cluster.logs()
        assert "FunctionError" not in resp, resp["Payload"].read()
        assert json.loads(resp["Payload"].read()) == {"echo": {"x": 1}, "version": "$LATEST"}
    # The workers' own metrics count the invocations they ran.
    import urllib.request
    total = 0
    for port in cluster.worker_admin_ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith("nimbus_worker_invocations"):
                total += int(float(line.split()[-1]))
    assert total >= 2, total
    # An unknown function is a 404 on every gateway.
    with pytest.raises(ClientError) as e:
        gw2.invoke(FunctionName="missing", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def worker_metric(cluster, name):
    import urllib.request
    values = []
    for port in cluster.worker_admin_ports:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        values.append(next(float(l.split()[-1]) for l in text.splitlines() if l.startswith(name + " ")))
    return values


def test_provisioned_concurrency_is_spread_over_the_workers(cluster):
    """Both gateways renew the config; the workers hold one environment each (shares are
    computed the same way everywhere), invocations use them, and deleting the config
    through the other gateway lets them go."""
    gw1, gw2 = cluster.client(0), cluster.client(1)
    gw1.create_function(FunctionName="pc", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of({"app.py": "import os\ndef handler(e, c):\n"
                                                           "    return os.environ['AWS_LAMBDA_INITIALIZATION_TYPE']\n"})})
    v = gw1.publish_version(FunctionName="pc")["Version"]
    gw1.put_provisioned_concurrency_config(FunctionName="pc", Qualifier=v, ProvisionedConcurrentExecutions=2)

    def ready(gw):
        c = gw.get_provisioned_concurrency_config(FunctionName="pc", Qualifier=v)
        assert c["Status"] == "READY" and c["AllocatedProvisionedConcurrentExecutions"] == 2, c
    eventually(lambda: ready(gw1), timeout=60)
    eventually(lambda: ready(gw2), timeout=60)
    assert worker_metric(cluster, "nimbus_worker_environments_provisioned") == [1.0, 1.0]
    out = gw2.invoke(FunctionName="pc", Qualifier=v, Payload=b"{}")["Payload"].read()
    assert json.loads(out) == "provisioned-concurrency"

    gw2.delete_provisioned_concurrency_config(FunctionName="pc", Qualifier=v)

    def released():
        assert worker_metric(cluster, "nimbus_worker_environments_provisioned") == [0.0, 0.0]
    eventually(released, timeout=30)


SLEEPER = """
import time
def handler(event, context):
    print("ran", event["n"])
    time.sleep(1.5)
    return context.log_stream_name
"""


def test_logs_from_both_workers_through_either_gateway(cluster):
    """At most two 768 MB environments fit on a 2 GB worker, so four concurrent
    invocations run on both workers; each gateway's CloudWatch Logs API returns the lines
    of all of them."""
    gw1, gw2 = cluster.client(0), cluster.client(1)
    gw1.create_function(FunctionName="logged", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        MemorySize=768, Code={"ZipFile": zip_of({"app.py": SLEEPER})})
    streams, errors = [], []

    def call(gw, n):
        try:
            resp = eventually(lambda: gw.invoke(FunctionName="logged", Payload=json.dumps({"n": n}).encode()))
            streams.append(json.loads(resp["Payload"].read()))
        except Exception as e:  # reported below
            errors.append(e)
    threads = [threading.Thread(target=call, args=((gw1, gw2)[n % 2], n)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, (errors, cluster.logs())
    import os
    on_worker = []
    for i in range(len(cluster.workers)):
        group = os.path.join(cluster.root, f"worker{i + 1}", "engine", "logs", "123456789012", "logged")
        on_worker.append(sum(len(files) for _, _, files in os.walk(group)))
    assert all(n > 0 for n in on_worker), on_worker
    for i in range(2):
        logs = cluster.logs_client(i)
        events = logs.filter_log_events(logGroupName="/aws/lambda/logged")["events"]
        assert {e["logStreamName"] for e in events} == set(streams)
        assert sorted(e["message"] for e in events if e["message"].startswith("ran ")) == [f"ran {n}" for n in range(4)]
        assert sum(e["message"].startswith("REPORT RequestId: ") for e in events) == 4
        page = logs.filter_log_events(logGroupName="/aws/lambda/logged", limit=3)
        assert len(page["events"]) == 3 and page["nextToken"]
        described = logs.describe_log_streams(logGroupName="/aws/lambda/logged")["logStreams"]
        assert {s["logStreamName"] for s in described} == set(streams)


def test_update_is_seen_by_the_other_gateway(cluster):
    gw1, gw2 = cluster.client(0), cluster.client(1)
    gw1.create_function(FunctionName="upd", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": zip_of({"app.py": "def handler(e, c):\n    return 'v1'\n"})})
    assert eventually(lambda: gw2.invoke(FunctionName="upd")["Payload"].read()) == b'"v1"'
    gw1.update_function_code(FunctionName="upd", ZipFile=zip_of({"app.py": "def handler(e, c):\n    return 'v2'\n"}))

    def v2():
        body = gw2.invoke(FunctionName="upd")["Payload"].read()
        assert body == b'"v2"', body
    eventually(v2, timeout=10)


def test_updates_under_load_fail_no_invocation(cluster):
    """Zero-downtime updates: while invocations run through both gateways, the code is
    updated again and again. No invocation fails, each runs one complete version, and once
    an update is acknowledged new invocations (after the gateways have seen it) use it."""
    gw1 = cluster.client(0)

    def code(v):
        return zip_of({"app.py": f"import time\ndef handler(e, c):\n    time.sleep(0.05)\n    return {v}\n"})
    gw1.create_function(FunctionName="rolling", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": code(0)})
    eventually(lambda: cluster.client(1).invoke(FunctionName="rolling"))
    stop = threading.Event()
    seen, failures, lock = [], [], threading.Lock()
    clients = [cluster.client(0), cluster.client(1)]

    def load(n):
        while not stop.is_set():
            try:
                r = clients[n % 2].invoke(FunctionName="rolling")
                body = r["Payload"].read()
                with lock:
                    if "FunctionError" in r:
                        failures.append(body)
                    else:
                        seen.append(int(body))
            except ClientError as e:
                with lock:
                    failures.append(e.response["Error"])

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for v in range(1, 6):
        time.sleep(1.0)
        gw1.update_function_code(FunctionName="rolling", ZipFile=code(v))
    time.sleep(1.5)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not failures, failures[:5]
    assert len(seen) > 50, len(seen)
    assert set(seen) <= set(range(6)), set(seen)
    assert len(set(seen)) >= 4, f"updates were not picked up: {sorted(set(seen))}"
    # After the last update is acknowledged and propagated, only the new code runs.
    for gw in clients:
        assert json.loads(gw.invoke(FunctionName="rolling")["Payload"].read()) == 5


STREAMING_BOOTSTRAP = r"""#!/usr/bin/python3
import http.client, json, os, socket, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
while True:
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read())
    s = socket.create_connection((host, int(port)))
    s.sendall((f"POST /2018-06-01/runtime/invocation/{rid}/response HTTP/1.1\r\nHost: x\r\n"
               "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    piece = b"z" * 65536
    for i in range(event["pieces"]):
        s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        if i == 0:
            time.sleep(1.5)
    s.sendall(b"0\r\n\r\n")
    s.recv(4096)
    s.close()
"""


def executable_zip(name, body):
    import io
    import zipfile
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        info = zipfile.ZipInfo(name)
        info.external_attr = 0o755 << 16
        z.writestr(info, body)
    return buf.getvalue()


def test_a_streamed_response_crosses_the_cluster_as_it_is_written(cluster):
    """InvokeWithResponseStream through a cluster gateway: the worker's InvokeStream (gRPC
    server streaming) carries the first bytes while the function still runs, and a 10 MB
    response whole and in order."""
    gw = cluster.client(0)
    gw.create_function(FunctionName="streamer", Runtime="provided.al2023", Role=ROLE, Handler="x", Timeout=30,
                       Code={"ZipFile": executable_zip("bootstrap", STREAMING_BOOTSTRAP)})
    for pieces in (2, 160):
        resp = gw.invoke_with_response_stream(FunctionName="streamer", Payload=json.dumps({"pieces": pieces}))
        first_at, received, complete = None, 0, None
        for e in resp["EventStream"]:
            if "PayloadChunk" in e:
                first_at = first_at or time.monotonic()
                data = e["PayloadChunk"]["Payload"]
                assert set(data) == {ord("z")}
                received += len(data)
            elif "InvokeComplete" in e:
                complete = (time.monotonic(), e["InvokeComplete"])
        assert received == pieces * 65536
        assert not complete[1].get("ErrorCode"), complete
        # The function slept 1.5 s after its first piece, which had arrived by then.
        assert complete[0] - first_at > 1.0, (complete[0], first_at)


@pytest.fixture
def counter():
    c = Counter()
    yield c
    c.close()


def test_limit_holds_and_nothing_is_lost_while_leader_and_gateway_die(cluster, counter):
    # Runs last: it kills the metadata leader and gateway 2 of the shared cluster.
    limit = 3
    gw1 = cluster.client(0)
    gw1.create_function(FunctionName="counted", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Timeout=10, Environment={"Variables": {"COUNTER": counter.addr}},
                        Code={"ZipFile": zip_of({"app.py": COUNTING_FUNCTION})})
    gw1.put_function_concurrency(FunctionName="counted", ReservedConcurrentExecutions=limit)
    # Acknowledged metadata writes before the faults: they must survive them.
    for i in range(5):
        gw1.create_function(FunctionName=f"keep-{i}", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": zip_of({"app.py": ECHO})})
    eventually(lambda: cluster.client(1).invoke(FunctionName="counted", Payload=b'{"sleep": 0}'))

    stop = threading.Event()
    results = {"ok": [], "throttled": 0, "gateway_gone": 0, "other": []}
    lock = threading.Lock()
    clients = [cluster.client(0, read_timeout=30), cluster.client(1, read_timeout=30)]

    def load(n):
        i = 0
        while not stop.is_set():
            i += 1
            gw = n % 2
            if not cluster.gateways[gw].alive():
                gw = 0
            try:
                r = clients[gw].invoke(FunctionName="counted", Payload=json.dumps({"id": f"{n}-{i}"}).encode())
                body = json.loads(r["Payload"].read())
                with lock:
                    if "FunctionError" in r:
                        results["other"].append(body)
                    else:
                        results["ok"].append(body["request"])
            except ClientError as e:
                with lock:
                    if e.response["Error"]["Code"] == "TooManyRequestsException":
                        results["throttled"] += 1
                    else:
                        results["other"].append(e.response["Error"])
                time.sleep(0.02)
            except Exception as e:  # connection-level: only acceptable from the killed gateway
                with lock:
                    if not cluster.gateways[gw].alive():
                        results["gateway_gone"] += 1
                    else:
                        results["other"].append(f"gateway {gw}: {e!r}")
                time.sleep(0.05)

    threads = [threading.Thread(target=load, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    time.sleep(4)
    leader = cluster.leader_index()
    print("kill leader", time.time())
    cluster.metas[leader].kill()
    time.sleep(5)
    # Async events accepted (202) by gateway 2 right before it dies must all still run.
    accepted = []
    for i in range(10):
        r = clients[1].invoke(FunctionName="counted", InvocationType="Event",
                              Payload=json.dumps({"tag": f"event-{i}", "sleep": 0}).encode())
        assert r["StatusCode"] == 202
        accepted.append(f"event-{i}")
    print("kill gateway", time.time())
    cluster.gateways[1].kill()
    time.sleep(6)
    ok_before_end = len(results["ok"])
    time.sleep(3)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    stats = counter.stats()
    counter_max = stats["max_running"]
    print(f"ok={len(results['ok'])} throttled={results['throttled']} gone={results['gateway_gone']} "
          f"other={len(results['other'])} max_concurrency={counter_max}/{limit}")
    assert counter_max <= limit, f"limit exceeded: {counter_max} > {limit} {results['other']}"
    assert counter_max == limit, "the load should have reached the limit"
    assert results["throttled"] > 0, "over the limit must throttle"
    assert len(results["ok"]) > 20, (results, cluster.logs())
    assert len(results["ok"]) > ok_before_end, "invocations must go on after the faults"
    # Every acknowledged invocation really ran to its end inside a function.
    missing = set(results["ok"]) - set(stats["seen"])
    assert not missing, f"{len(missing)} acknowledged invocations never ran"
    assert not results["other"], (results["other"][:5], cluster.logs())
    # Every accepted event ran, through the surviving gateway if need be (claims of the
    # dead gateway expire, then are taken over).
    deadline = time.time() + 90
    while time.time() < deadline and not set(accepted) <= set(counter.stats()["seen"]):
        time.sleep(1)
    lost = set(accepted) - set(counter.stats()["seen"])
    assert not lost, f"accepted async events never ran: {sorted(lost)}"
    # Metadata acknowledged before the leader died is all there.
    names = {f["FunctionName"] for f in cluster.client(0).list_functions()["Functions"]}
    assert {f"keep-{i}" for i in range(5)} <= names
