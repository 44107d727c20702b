"""Function logs: every invocation's lines in the log group /aws/lambda/NAME of `nimbus
dev`'s store, read with boto3's unmodified CloudWatch Logs client and `nimbus logs tail`."""
import json
import os
import re
import signal
import subprocess
import threading
import time

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from conftest import BIN, ROLE, aws_cli, free_port, payload, python_fn, zip_of

STREAM = re.compile(r"^\d{4}/\d{2}/\d{2}/\[\$LATEST\][0-9a-f]{32}$")

PRINTER = """
import logging, os
def handler(event, context):
    print("hello from", event.get("who"))
    logging.getLogger().warning("careful %s", event.get("who"))
    return {"stream": context.log_stream_name, "group": context.log_group_name,
            "format": os.environ.get("AWS_LAMBDA_LOG_FORMAT")}
"""


def logs_client(endpoint, key="test", secret="test"):
    return boto3.client(
        "logs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        config=botocore.config.Config(retries={"max_attempts": 0}, parameter_validation=False),
    )


def code(err):
    return err.value.response["Error"]["Code"]


def now_ms():
    return int(time.time() * 1000)


@pytest.fixture(scope="module")
def logs(endpoint):
    return logs_client(endpoint)


def invoke(lam, name, who):
    resp = lam.invoke(FunctionName=name, Payload=json.dumps({"who": who}))
    return resp["ResponseMetadata"]["RequestId"], payload(resp)


@pytest.fixture(scope="module")
def printer(lam):
    """A function invoked twice (a cold start, then a warm one) before the tests read."""
    name = "logs-printer"
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Code={"ZipFile": python_fn(PRINTER)})
    started = now_ms()
    first = invoke(lam, name, "alice")
    second = invoke(lam, name, "bob")
    yield {"name": name, "group": f"/aws/lambda/{name}", "started": started, "calls": [first, second]}
    lam.delete_function(FunctionName=name)


def plain(messages):
    """Messages with Lambda's logging prefix (`[LEVEL]\\t<time>\\t<request id>\\t`) cut off."""
    return [m.split("\t", 3)[3] if m.startswith("[") and m.count("\t") >= 3 else m for m in messages]


def all_events(logs, **kw):
    events, token = [], None
    while True:
        resp = logs.filter_log_events(**kw, **({"nextToken": token} if token else {}))
        events += resp["events"]
        token = resp.get("nextToken")
        if not token:
            return events


def test_invocation_lines_land_in_the_functions_group_and_stream(logs, printer):
    (rid1, out1), (rid2, out2) = printer["calls"]
    assert out1["group"] == printer["group"] and STREAM.match(out1["stream"]), out1
    assert out2["stream"] == out1["stream"], "the warm invocation ran in the same environment"
    events = all_events(logs, logGroupName=printer["group"])
    assert {e["logStreamName"] for e in events} == {out1["stream"]}
    msgs = [e["message"] for e in events]
    for rid, who in [(rid1, "alice"), (rid2, "bob")]:
        start = msgs.index(f"START RequestId: {rid} Version: $LATEST")
        line = msgs.index(f"hello from {who}")
        end = msgs.index(f"END RequestId: {rid}")
        report = next(i for i, m in enumerate(msgs) if m.startswith(f"REPORT RequestId: {rid}\t"))
        assert start < line < end < report, msgs
        # logging's records come out in Lambda's format, with the invocation's request id.
        warning = next(m for m in msgs if m.endswith("\tcareful " + who))
        level, stamp, request_id, _ = warning.split("\t")
        assert (level, request_id) == ("[WARNING]", rid), warning
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", stamp), warning
    assert "Init Duration" in next(m for m in msgs if m.startswith(f"REPORT RequestId: {rid1}"))
    assert "Init Duration" not in next(m for m in msgs if m.startswith(f"REPORT RequestId: {rid2}"))
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps)
    assert all(printer["started"] - 1000 <= e["timestamp"] <= e["ingestionTime"] <= now_ms() for e in events)
    assert len({e["eventId"] for e in events}) == len(events)

    streams = logs.describe_log_streams(logGroupName=printer["group"])["logStreams"]
    assert [s["logStreamName"] for s in streams] == [out1["stream"]]
    assert streams[0]["storedBytes"] > 0 and streams[0]["firstEventTimestamp"] <= streams[0]["lastEventTimestamp"]
    groups = logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/logs-pr")["logGroups"]
    assert [g["logGroupName"] for g in groups] == [printer["group"]]
    assert groups[0]["arn"] == "arn:aws:logs:us-east-1:000000000000:log-group:/aws/lambda/logs-printer:*"

    head = logs.get_log_events(logGroupName=printer["group"], logStreamName=out1["stream"], startFromHead=True)
    assert [e["message"] for e in head["events"]] == msgs
    # At the end, the forward token comes back unchanged.
    again = logs.get_log_events(logGroupName=printer["group"], logStreamName=out1["stream"],
                                nextToken=head["nextForwardToken"])
    assert again["events"] == [] and again["nextForwardToken"] == head["nextForwardToken"]
    tail = logs.get_log_events(logGroupName=printer["group"], logStreamName=out1["stream"], limit=2)
    assert [e["message"] for e in tail["events"]] == msgs[-2:]


def test_aws_cli_reads_the_same_events(endpoint, logs, printer):
    rc, out, err = aws_cli(endpoint, "logs", "filter-log-events", "--log-group-name", printer["group"],
                           "--filter-pattern", "alice")
    assert rc == 0, err
    assert plain(e["message"] for e in json.loads(out)["events"]) == ["hello from alice", "careful alice"]
    rc, out, err = aws_cli(endpoint, "logs", "describe-log-groups")
    assert rc == 0 and printer["group"] in [g["logGroupName"] for g in json.loads(out)["logGroups"]], err
    rc, _, err = aws_cli(endpoint, "logs", "filter-log-events", "--log-group-name", "/aws/lambda/nope")
    assert rc != 0 and "ResourceNotFoundException" in err


def test_filter_pattern_time_range_and_paging(logs, printer):
    group = printer["group"]
    assert plain(e["message"] for e in all_events(logs, logGroupName=group, filterPattern="bob")) == [
        "hello from bob", "careful bob"]
    assert [e["message"] for e in all_events(logs, logGroupName=group, filterPattern='"hello from" -bob')] == [
        "hello from alice"]
    assert plain(e["message"] for e in all_events(logs, logGroupName=group, filterPattern="?alice ?bob")) == [
        "hello from alice", "careful alice", "hello from bob", "careful bob"]
    everything = all_events(logs, logGroupName=group)
    assert all_events(logs, logGroupName=group, startTime=now_ms() + 60_000) == []
    later = all_events(logs, logGroupName=group, startTime=everything[3]["timestamp"])
    assert later == [e for e in everything if e["timestamp"] >= everything[3]["timestamp"]]
    before = all_events(logs, logGroupName=group, endTime=everything[0]["timestamp"])
    assert before and all(e["timestamp"] == everything[0]["timestamp"] for e in before)
    # Pages of two: every event exactly once, in order.
    first = logs.filter_log_events(logGroupName=group, limit=2)
    assert len(first["events"]) == 2 and first["nextToken"]
    assert all_events(logs, logGroupName=group, limit=2) == everything
    only = all_events(logs, logGroupName=group, logStreamNames=[everything[0]["logStreamName"]])
    assert only == everything


def test_logs_api_errors_in_cloudwatch_format(endpoint, logs, printer):
    with pytest.raises(ClientError) as e:
        logs.filter_log_events(logGroupName="/aws/lambda/never-invoked")
    assert code(e) == "ResourceNotFoundException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.filter_log_events(logGroupName="/not/a/lambda/group")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.describe_log_streams(logGroupName="/aws/lambda/never-invoked")
    with pytest.raises(logs.exceptions.ResourceNotFoundException):
        logs.get_log_events(logGroupName=printer["group"], logStreamName="2020/01/01/[$LATEST]" + "0" * 32)
    for bad in [dict(limit=0), dict(filterPattern="[ip, user]"), dict(nextToken="garbage"),
                dict(logStreamNames=["a"], logStreamNamePrefix="b"), dict(startTime=-1)]:
        with pytest.raises(logs.exceptions.InvalidParameterException):
            logs.filter_log_events(logGroupName=printer["group"], **bad)
    with pytest.raises(logs.exceptions.InvalidParameterException):
        logs.describe_log_streams(logGroupName=printer["group"], orderBy="LastEventTime", logStreamNamePrefix="2")
    # Authentication as for every other call.
    with pytest.raises(ClientError) as e:
        logs_client(endpoint, secret="wrong").filter_log_events(logGroupName=printer["group"])
    assert code(e) == "InvalidSignatureException"
    with pytest.raises(ClientError) as e:
        logs_client(endpoint, key="nobody").describe_log_groups()
    assert code(e) == "UnrecognizedClientException"


JSON_FN = """
import logging, os
def handler(event, context):
    logging.info("json hello %s", event.get("who"))
    print("plain print")
    if event.get("fail"):
        raise ValueError("bad input")
    return {"format": os.environ.get("AWS_LAMBDA_LOG_FORMAT")}
"""


def records(events):
    out = []
    for e in events:
        try:
            out.append(json.loads(e["message"]))
        except ValueError:
            pass
    return out


def test_json_log_format(lam, logs, make_function):
    created = make_function("logs-json", code=JSON_FN, LoggingConfig={"LogFormat": "JSON"})
    assert created["LoggingConfig"]["LogFormat"] == "JSON"
    assert created["LoggingConfig"]["LogGroup"] == "/aws/lambda/logs-json"
    assert created["LoggingConfig"]["ApplicationLogLevel"] == "INFO"
    assert lam.get_function_configuration(FunctionName="logs-json")["LoggingConfig"]["LogFormat"] == "JSON"
    rid, out = invoke(lam, "logs-json", "json-user")
    assert out == {"format": "JSON"}
    events = all_events(logs, logGroupName="/aws/lambda/logs-json")
    msgs = [e["message"] for e in events]
    assert not any(m.startswith(("START", "END", "REPORT")) for m in msgs), msgs
    recs = records(events)
    by_type = {r.get("type"): r for r in recs if "type" in r}
    assert by_type["platform.initStart"]["record"]["functionName"] == "logs-json"
    assert by_type["platform.start"]["record"] == {"requestId": rid, "version": "$LATEST"}
    report = by_type["platform.report"]
    assert report["record"]["requestId"] == rid and report["record"]["status"] == "success"
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", report["time"])
    assert set(report["record"]["metrics"]) == {"durationMs", "billedDurationMs", "memorySizeMB", "maxMemoryUsedMB",
                                                "initDurationMs"}
    app = next(r for r in recs if r.get("message") == "json hello json-user")
    assert app["level"] == "INFO" and app["requestId"] == rid and app["logger"] == "root"
    assert "plain print" in msgs, "print() stays plain text, as on Lambda"
    order = [by_type["platform.start"], app, by_type["platform.report"]]
    assert [recs.index(r) for r in order] == sorted(recs.index(r) for r in order)
    # A function error in JSON: the runtime's error record and a report with status error.
    lam.invoke(FunctionName="logs-json", Payload=json.dumps({"fail": True}))
    recs = records(all_events(logs, logGroupName="/aws/lambda/logs-json"))
    err = next(r for r in recs if r.get("errorType") == "ValueError")
    assert err["errorMessage"] == "bad input" and err["log_level"] == "ERROR"
    assert any(r.get("type") == "platform.report" and r["record"]["status"] == "error" for r in recs)
    # JSON selectors in filter patterns.
    reports = all_events(logs, logGroupName="/aws/lambda/logs-json", filterPattern='{ $.type = "platform.report" }')
    assert len(reports) == 2
    # Back to text: a new environment, plain START/END/REPORT lines.
    updated = lam.update_function_configuration(FunctionName="logs-json", LoggingConfig={"LogFormat": "Text"})
    assert updated["LoggingConfig"]["LogFormat"] == "Text"
    assert lam.get_function_configuration(FunctionName="logs-json")["LoggingConfig"]["LogFormat"] == "Text"
    rid3, out = invoke(lam, "logs-json", "x")
    assert out == {"format": "Text"}
    msgs = [e["message"] for e in all_events(logs, logGroupName="/aws/lambda/logs-json")]
    assert f"START RequestId: {rid3} Version: $LATEST" in msgs
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="logs-json", LoggingConfig={"LogFormat": "XML"})
    assert code(e) == "ValidationException"


LEVELS_FN = """
import logging
def handler(event, context):
    logging.debug("debug line")
    logging.info("info line")
    logging.warning("warning line")
    return "ok"
"""


def test_application_and_system_log_levels(lam, logs, make_function):
    group = "/aws/lambda/logs-levels"
    created = make_function("logs-levels", code=LEVELS_FN, LoggingConfig={
        "LogFormat": "JSON", "ApplicationLogLevel": "WARN", "SystemLogLevel": "WARN"})
    assert created["LoggingConfig"]["ApplicationLogLevel"] == "WARN"
    assert created["LoggingConfig"]["SystemLogLevel"] == "WARN"
    invoke(lam, "logs-levels", "a")
    recs = records(all_events(logs, logGroupName=group))
    assert [r["message"] for r in recs if "message" in r] == ["warning line"], recs
    assert not any(r.get("type", "").startswith("platform.") for r in recs), "platform records are INFO"
    # DEBUG lets everything through, and the platform's records come back with INFO.
    lam.update_function_configuration(FunctionName="logs-levels", LoggingConfig={
        "ApplicationLogLevel": "DEBUG", "SystemLogLevel": "INFO"})
    rid, _ = invoke(lam, "logs-levels", "b")
    recs = records(all_events(logs, logGroupName=group))
    assert {"debug line", "info line", "warning line"} <= {r.get("message") for r in recs}
    assert any(r.get("type") == "platform.report" and r["record"]["requestId"] == rid for r in recs)
    # Levels belong to JSON; bad values are refused.
    for config, expected in [
        ({"LogFormat": "Text", "ApplicationLogLevel": "WARN"}, "InvalidParameterValueException"),
        ({"ApplicationLogLevel": "LOUD"}, "ValidationException"),
        ({"SystemLogLevel": "ERROR"}, "ValidationException"),
    ]:
        with pytest.raises(ClientError) as e:
            lam.update_function_configuration(FunctionName="logs-levels", LoggingConfig=config)
        assert code(e) == expected, config
    text = lam.update_function_configuration(FunctionName="logs-levels", LoggingConfig={"LogFormat": "Text"})
    assert "ApplicationLogLevel" not in text["LoggingConfig"], "switching to Text drops the levels"


NODE_JSON = "exports.handler = async (event) => { console.log('node says', event.who); return 'ok'; };"


def test_node_json_records(lam, logs, make_function):
    make_function("logs-node-json", Runtime="nodejs20.x", Handler="index.handler",
                  Code={"ZipFile": zip_of({"index.js": NODE_JSON})}, LoggingConfig={"LogFormat": "JSON"})
    rid, _ = invoke(lam, "logs-node-json", "n1")
    recs = records(all_events(logs, logGroupName="/aws/lambda/logs-node-json"))
    rec = next(r for r in recs if r.get("message") == "node says n1")
    assert rec["level"] == "INFO" and rec["requestId"] == rid and rec["timestamp"].endswith("Z")


def nimbus_tail(endpoint, *args, env=None, timeout=60):
    env = env or dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
                      AWS_DEFAULT_REGION="us-east-1", NO_COLOR="1")
    return subprocess.run([BIN, "logs", "tail", *args, "--endpoint", endpoint], capture_output=True, text=True,
                          env=env, timeout=timeout)


def test_nimbus_logs_tail(endpoint, printer, tmp_path):
    r = nimbus_tail(endpoint, printer["name"])
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    stream = printer["calls"][0][1]["stream"]
    assert f" {stream} hello from alice" in r.stdout
    assert all(re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z " + re.escape(stream) + " ", l) for l in lines), lines
    assert sum(l.endswith(" hello from bob") for l in lines) == 1
    r = nimbus_tail(endpoint, printer["name"], "--filter", "alice")
    assert plain(l.split(" ", 2)[2] for l in r.stdout.splitlines()) == ["hello from alice", "careful alice"]
    # A function ARN works as well; --since excludes what is older.
    time.sleep(1.5)
    r = nimbus_tail(endpoint, f"arn:aws:lambda:us-east-1:000000000000:function:{printer['name']}", "--since", "1s")
    assert r.returncode == 0 and r.stdout == "", r.stdout
    # Credentials from a profile, as the AWS CLI finds them.
    (tmp_path / ".aws").mkdir()
    (tmp_path / ".aws" / "credentials").write_text("[nimbus]\naws_access_key_id = test\naws_secret_access_key = test\n")
    (tmp_path / ".aws" / "config").write_text("[profile nimbus]\nregion = us-east-1\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = str(tmp_path)
    r = nimbus_tail(endpoint, printer["name"], "--profile", "nimbus", env=env)
    assert r.returncode == 0 and "hello from alice" in r.stdout, r.stderr


def test_nimbus_logs_tail_errors(endpoint, make_function):
    r = nimbus_tail(endpoint, "no-such-function")
    assert r.returncode == 1 and "function no-such-function not found" in r.stderr, r.stderr
    make_function("logs-never-run")
    r = nimbus_tail(endpoint, "logs-never-run")
    assert r.returncode == 0 and r.stdout == "" and "no log events" in r.stderr, r.stderr
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="wrong", AWS_DEFAULT_REGION="us-east-1")
    r = nimbus_tail(endpoint, "logs-never-run", env=env)
    assert r.returncode == 1 and "refused the credentials" in r.stderr and "InvalidSignatureException" in r.stderr
    r = nimbus_tail(f"http://127.0.0.1:{free_port()}", "f")
    assert r.returncode == 1 and "cannot reach the gateway" in r.stderr, r.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["HOME"] = "/nonexistent"
    r = nimbus_tail(endpoint, "f", env=env)
    assert r.returncode == 1 and "unable to locate credentials" in r.stderr, r.stderr


def test_nimbus_logs_tail_follow_picks_up_new_invocations(endpoint, lam, printer):
    env = dict(os.environ, AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    proc = subprocess.Popen([BIN, "logs", "tail", printer["name"], "--follow", "--since", "1h", "--endpoint", endpoint],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    def read():
        for line in iter(proc.stdout.readline, ""):
            lines.append(line.rstrip("\n"))
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        def wait_for(text, timeout=20):
            deadline = time.time() + timeout
            while time.time() < deadline:
                if any(text in l for l in list(lines)):
                    return
                time.sleep(0.1)
            raise AssertionError(f"{text!r} not printed: {lines}")

        wait_for("hello from alice")
        rid, _ = invoke(lam, printer["name"], "dave")
        wait_for(f"REPORT RequestId: {rid}")
        time.sleep(2.5)  # a few more polls: nothing is printed twice
        printed = [l.split(" ", 2)[2] for l in list(lines)]
        assert printed.count("hello from dave") == 1 and printed.count("hello from alice") == 1, printed
        assert printed.count(f"START RequestId: {rid} Version: $LATEST") == 1
    finally:
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=10)
    assert rc == 0, proc.stderr.read()
