"""Asynchronous (`Event`) invocations through boto3 and the AWS CLI: the 202, at-least-once
execution, retries counted exactly, throttles that wait without using up attempts,
destinations with Lambda's invocation record, limits and errors, and no accepted event
lost when `nimbus dev` is killed with SIGKILL right after accepting.

Functions report through their own log lines, which `nimbus dev` writes to its log
(target `nimbus::function_log`): the sandbox has no way to the host's addresses by design."""
import json
import time
import uuid

import pytest
from botocore.exceptions import ClientError

from conftest import aws_cli, client

WORKER = """
import json, os, time
def handler(event, context):
    print("ASYNC-RUN " + json.dumps({"tag": event.get("tag"), "n": event.get("n"), "id": context.aws_request_id,
                                     "trace": os.environ.get("_X_AMZN_TRACE_ID", "")}))
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": event.get("n")}
"""

RECORDER = """
import json, os
def handler(event, context):
    print("ASYNC-RECORD " + json.dumps({"record": event, "trace": os.environ.get("_X_AMZN_TRACE_ID", "")}))
"""


def code(err):
    return err.value.response["Error"]["Code"]


def status(err):
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def entries(dev, marker):
    """Every JSON object the functions printed after `marker`, in log order."""
    out = []
    decoder = json.JSONDecoder()
    for line in dev.log().splitlines():
        i = line.find(marker + " ")
        if i >= 0:
            try:
                out.append(decoder.raw_decode(line[i + len(marker) + 1:])[0])
            except ValueError:
                pass
    return out


def runs(dev, tag):
    return [e for e in entries(dev, "ASYNC-RUN") if e["tag"] == tag]


def records(dev, request_id):
    return [e for e in entries(dev, "ASYNC-RECORD") if e["record"]["requestContext"]["requestId"] == request_id]


def wait_until(probe, timeout=60, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def event(lam, name, body, **kw):
    resp = lam.invoke(FunctionName=name, InvocationType="Event", Payload=json.dumps(body), **kw)
    assert resp["StatusCode"] == 202, resp
    assert resp["Payload"].read() == b""
    return resp["ResponseMetadata"]["RequestId"]


def with_trace_header(lam, trace):
    def add(request, **_):
        request.headers["X-Amzn-Trace-Id"] = trace
    lam.meta.events.register("before-sign.lambda.Invoke", add)


@pytest.fixture
def recorder(make_function):
    return make_function("async-recorder", code=RECORDER)["FunctionArn"]


def test_event_returns_202_and_runs_once(lam, dev, make_function, tmp_path):
    make_function("async-once", code=WORKER)
    tag = uuid.uuid4().hex
    request_id = event(lam, "async-once", {"tag": tag, "n": 1})
    run = wait_until(lambda: runs(dev, tag), what="the event to run")
    assert run[0]["id"] == request_id, "the function sees the request id of the 202"
    # The AWS CLI says 202 too.
    body = tmp_path / "in.json"
    body.write_text(json.dumps({"tag": tag, "n": 2}))
    rc, out, err = aws_cli(dev.url, "lambda", "invoke", "--function-name", "async-once", "--invocation-type", "Event",
                           "--payload", f"fileb://{body}", str(tmp_path / "out.json"))
    assert rc == 0, err
    assert json.loads(out)["StatusCode"] == 202
    wait_until(lambda: len(runs(dev, tag)) == 2, what="the CLI's event to run")
    time.sleep(2)
    assert sorted(r["n"] for r in runs(dev, tag)) == [1, 2], "each event ran exactly once"
    assert lam.invoke(FunctionName="async-once", InvocationType="DryRun")["StatusCode"] == 204


def test_retries_are_counted_exactly_and_on_failure_gets_the_record(lam, dev, make_function, recorder):
    make_function("async-fails", code=WORKER)
    lam.put_function_event_invoke_config(FunctionName="async-fails", MaximumRetryAttempts=1,
                                         DestinationConfig={"OnFailure": {"Destination": recorder}})
    tag = uuid.uuid4().hex
    body = {"tag": tag, "fail": True}
    request_id = event(lam, "async-fails", body)
    rec = wait_until(lambda: records(dev, request_id), what="the OnFailure record")[0]["record"]
    attempts = runs(dev, tag)
    assert len(attempts) == 2, "MaximumRetryAttempts=1: the first try and one retry"
    assert all(a["id"] == request_id for a in attempts), "a retry keeps the request id"
    assert rec["version"] == "1.0" and rec["timestamp"].endswith("Z")
    ctx = rec["requestContext"]
    assert ctx["condition"] == "RetriesExhausted" and ctx["approximateInvokeCount"] == 2
    assert ctx["functionArn"].endswith(":function:async-fails:$LATEST")
    assert rec["requestPayload"] == body
    assert rec["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert rec["responsePayload"]["errorType"] == "ValueError"
    time.sleep(1.5)
    assert len(runs(dev, tag)) == 2 and len(records(dev, request_id)) == 1, "nothing runs after the record"


def test_on_success_record_and_trace_id_travel_with_the_event(lam, dev, make_function, recorder):
    make_function("async-ok", code=WORKER)
    lam.put_function_event_invoke_config(FunctionName="async-ok",
                                         DestinationConfig={"OnSuccess": {"Destination": recorder}})
    trace = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    traced = client(dev.url)
    with_trace_header(traced, trace)
    tag = uuid.uuid4().hex
    request_id = event(traced, "async-ok", {"tag": tag, "n": 7})
    got = wait_until(lambda: records(dev, request_id), what="the OnSuccess record")[0]
    rec = got["record"]
    assert rec["requestContext"]["condition"] == "Success"
    assert rec["requestContext"]["approximateInvokeCount"] == 1
    assert rec["responsePayload"] == {"ok": 7}
    assert "functionError" not in rec["responseContext"]
    assert runs(dev, tag)[0]["trace"].startswith("Root=1-5759e988-bd862e3fe1be46a994272793")
    assert got["trace"].startswith("Root=1-5759e988-bd862e3fe1be46a994272793"), "the destination continues the trace"


def test_throttled_events_wait_without_using_attempts(lam, dev, make_function, recorder):
    make_function("async-throttled", code=WORKER)
    lam.put_function_concurrency(FunctionName="async-throttled", ReservedConcurrentExecutions=0)
    lam.put_function_event_invoke_config(FunctionName="async-throttled", MaximumRetryAttempts=0,
                                         DestinationConfig={"OnFailure": {"Destination": recorder}})
    tag = uuid.uuid4().hex
    request_id = event(lam, "async-throttled", {"tag": tag, "fail": True})
    time.sleep(3)
    assert runs(dev, tag) == [], "reserved concurrency 0 throttles the event"
    lam.delete_function_concurrency(FunctionName="async-throttled")
    rec = wait_until(lambda: records(dev, request_id), what="the record after the throttle lifts")[0]["record"]
    assert rec["requestContext"]["approximateInvokeCount"] == 1, "throttles used up no attempt"
    assert len(runs(dev, tag)) == 1


def test_payload_limit_is_1_mb(lam, make_function):
    make_function("async-big", code=WORKER)
    limit = 1024 * 1024
    fits = json.dumps({"pad": "x" * (limit - 11)}).encode()
    assert len(fits) == limit
    assert lam.invoke(FunctionName="async-big", InvocationType="Event", Payload=fits)["StatusCode"] == 202
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="async-big", InvocationType="Event", Payload=fits[:-1] + b" }")
    assert code(e) == "RequestTooLargeException" and status(e) == 413
    # Synchronous calls keep their 6 MB.
    assert lam.invoke(FunctionName="async-big", Payload=fits[:-1] + b" }")["StatusCode"] == 200


def test_event_and_destination_errors(lam, make_function):
    make_function("async-errors", code=WORKER)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="async-missing", InvocationType="Event", Payload=b"{}")
    assert code(e) == "ResourceNotFoundException" and status(e) == 404
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="async-errors", InvocationType="Event", Qualifier="nope", Payload=b"{}")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="async-errors", InvocationType="Event", Payload=b"{not json")
    assert code(e) == "InvalidRequestContentException"
    for arn, words in [
        ("not-an-arn", "is invalid"),
        ("arn:aws:sqs:us-east-1:000000000000:queue", "not supported"),
        ("arn:aws:sns:us-east-1:000000000000:topic", "not supported"),
        ("arn:aws:events:us-east-1:000000000000:event-bus/default", "not supported"),
        ("arn:aws:lambda:us-east-1:111111111111:function:elsewhere", "must be in account"),
        ("arn:aws:lambda:eu-west-1:000000000000:function:elsewhere", "must be in account"),
    ]:
        with pytest.raises(ClientError) as e:
            lam.put_function_event_invoke_config(FunctionName="async-errors",
                                                 DestinationConfig={"OnFailure": {"Destination": arn}})
        assert code(e) == "InvalidParameterValueException" and status(e) == 400, arn
        assert words in e.value.response["Error"]["Message"], (arn, e.value.response["Error"]["Message"])
    with pytest.raises(ClientError) as e:
        lam.put_function_event_invoke_config(FunctionName="async-errors", MaximumRetryAttempts=3)
    assert code(e) == "ValidationException"


def test_events_accepted_before_a_sigkill_all_run(lam, dev, make_function):
    make_function("async-crash", code=WORKER)
    tag = uuid.uuid4().hex
    n = 20
    for i in range(n):
        event(lam, "async-crash", {"tag": tag, "n": i, "sleep": 0.2})
    dev.kill9()
    dev.start()
    done = lambda: {r["n"] for r in runs(dev, tag)} == set(range(n))
    wait_until(done, timeout=90, what="every accepted event to run after the restart")
