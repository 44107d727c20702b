"""The Lambda control plane through boto3 and the AWS CLI: every operation and its errors."""
import base64
import json
import os
import tempfile

import pytest
from botocore.exceptions import ClientError

from conftest import ECHO, ROLE, aws_cli, client, payload, python_fn


def code(err):
    return err.value.response["Error"]["Code"]


def status(err):
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def test_aws_cli_create_invoke_get_list_delete(endpoint, tmp_path):
    z = tmp_path / "f.zip"
    z.write_bytes(python_fn(ECHO))
    rc, out, err = aws_cli(endpoint, "lambda", "create-function", "--function-name", "cli-fn", "--runtime", "python3.11",
                           "--role", ROLE, "--handler", "app.handler", "--zip-file", f"fileb://{z}")
    assert rc == 0, err
    created = json.loads(out)
    assert created["FunctionArn"] == "arn:aws:lambda:us-east-1:000000000000:function:cli-fn"
    assert created["MemorySize"] == 128 and created["Timeout"] == 3
    payload_file = tmp_path / "in.json"
    payload_file.write_text('{"a": 1}')
    out_file = tmp_path / "out.json"
    rc, out, err = aws_cli(endpoint, "lambda", "invoke", "--function-name", "cli-fn", "--payload", f"fileb://{payload_file}",
                           "--log-type", "Tail", str(out_file))
    assert rc == 0, err
    meta = json.loads(out)
    assert meta["StatusCode"] == 200 and meta["ExecutedVersion"] == "$LATEST"
    log = base64.b64decode(meta["LogResult"]).decode()
    assert "START RequestId:" in log and "END RequestId:" in log and "REPORT RequestId:" in log, log
    assert 'event {"a": 1}' in log
    assert json.loads(out_file.read_text())["echo"] == {"a": 1}
    rc, out, _ = aws_cli(endpoint, "lambda", "list-functions")
    assert rc == 0 and "cli-fn" in [f["FunctionName"] for f in json.loads(out)["Functions"]]
    rc, out, _ = aws_cli(endpoint, "lambda", "get-function", "--function-name", "cli-fn")
    assert rc == 0 and json.loads(out)["Configuration"]["CodeSha256"] == created["CodeSha256"]
    rc, _, err = aws_cli(endpoint, "lambda", "delete-function", "--function-name", "cli-fn")
    assert rc == 0, err
    rc, _, err = aws_cli(endpoint, "lambda", "get-function", "--function-name", "cli-fn")
    assert rc != 0 and "ResourceNotFoundException" in err


def test_create_get_update_and_revision_checks(lam, make_function):
    created = make_function("cfg-fn", MemorySize=256, Timeout=10, Environment={"Variables": {"MARK": "one"}},
                            Tags={"team": "a"}, Description="first")
    assert created["MemorySize"] == 256 and created["Environment"]["Variables"]["MARK"] == "one"
    got = lam.get_function(FunctionName="cfg-fn")
    assert got["Tags"] == {"team": "a"} and got["Configuration"]["Description"] == "first"
    # Name forms: partial ARN and full ARN reach the same function.
    assert lam.get_function_configuration(FunctionName="000000000000:function:cfg-fn")["FunctionName"] == "cfg-fn"
    arn = created["FunctionArn"]
    assert lam.get_function_configuration(FunctionName=arn)["RevisionId"] == created["RevisionId"]
    updated = lam.update_function_configuration(FunctionName="cfg-fn", Environment={"Variables": {"MARK": "two"}},
                                                RevisionId=created["RevisionId"])
    assert updated["RevisionId"] != created["RevisionId"]
    assert payload(lam.invoke(FunctionName="cfg-fn", Payload=b"{}"))["mark"] == "two"
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="cfg-fn", MemorySize=512, RevisionId=created["RevisionId"])
    assert code(e) == "PreconditionFailedException" and status(e) == 412
    # New code takes effect for the next invocation.
    lam.update_function_code(FunctionName="cfg-fn", ZipFile=python_fn("def handler(e, c):\n    return 'v2'\n"))
    assert payload(lam.invoke(FunctionName="cfg-fn", Payload=b"{}")) == "v2"


def test_validation_and_conflict_errors(lam, make_function):
    make_function("err-fn")
    with pytest.raises(ClientError) as e:
        make_function("err-fn")
    assert code(e) == "ResourceConflictException" and status(e) == 409
    with pytest.raises(ClientError) as e:
        lam.get_function(FunctionName="does-not-exist")
    assert code(e) == "ResourceNotFoundException" and status(e) == 404
    for bad in [dict(MemorySize=64), dict(Timeout=901), dict(EphemeralStorage={"Size": 100})]:
        with pytest.raises(ClientError) as e:
            make_function("bad-fn", **bad)
        assert code(e) == "ValidationException" and status(e) == 400, bad
    with pytest.raises(ClientError) as e:
        make_function("bad-fn", Runtime="cobol85")
    assert code(e) == "InvalidParameterValueException"
    # An identifier names one language version: those Nimbus cannot run exactly are
    # refused with the supported set, never mapped to another version.
    for runtime in ["python3.12", "python3.9", "nodejs22.x"]:
        with pytest.raises(ClientError) as e:
            make_function("bad-fn", Runtime=runtime)
        assert code(e) == "InvalidParameterValueException", runtime
        assert "python3.11" in str(e.value) and "nodejs20.x" in str(e.value), str(e.value)
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName="bad-zip", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": b"this is not a zip"})
    assert code(e) == "InvalidParameterValueException" and "unzip" in str(e.value)
    with pytest.raises(ClientError) as e:
        make_function("bad-env", Environment={"Variables": {"AWS_REGION": "x"}})
    assert code(e) == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        make_function("big-env", Environment={"Variables": {"KEY": "x" * 5000}})
    assert code(e) == "InvalidParameterValueException"
    # Dead-letter queues (SQS/SNS) do not exist here: refused, never silently ignored.
    dlq = {"TargetArn": "arn:aws:sqs:us-east-1:000000000000:dlq"}
    with pytest.raises(ClientError) as e:
        make_function("dlq-fn", DeadLetterConfig=dlq)
    assert code(e) == "InvalidParameterValueException" and "OnFailure" in str(e.value)
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="err-fn", DeadLetterConfig=dlq)
    assert code(e) == "InvalidParameterValueException"
    # An empty TargetArn is how Lambda removes a queue: nothing to refuse.
    lam.update_function_configuration(FunctionName="err-fn", DeadLetterConfig={"TargetArn": ""})


def test_list_functions_pages(lam, make_function):
    for i in range(3):
        make_function(f"page-fn-{i}")
    first = lam.list_functions(MaxItems=2)
    assert len(first["Functions"]) == 2 and "NextMarker" in first
    rest = lam.list_functions(MaxItems=50, Marker=first["NextMarker"])
    names = [f["FunctionName"] for f in first["Functions"] + rest["Functions"]]
    assert sorted(n for n in names if n.startswith("page-fn-")) == ["page-fn-0", "page-fn-1", "page-fn-2"]
    assert len(names) == len(set(names))


def test_versions_and_aliases(lam, make_function):
    make_function("ver-fn", Environment={"Variables": {"MARK": "v1"}})
    v1 = lam.publish_version(FunctionName="ver-fn")
    assert v1["Version"] == "1"
    assert lam.publish_version(FunctionName="ver-fn")["Version"] == "1", "no change: same version"
    lam.update_function_configuration(FunctionName="ver-fn", Environment={"Variables": {"MARK": "v2"}})
    assert lam.publish_version(FunctionName="ver-fn", Description="second")["Version"] == "2"
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="ver-fn")["Versions"]]
    assert versions == ["$LATEST", "1", "2"]
    assert payload(lam.invoke(FunctionName="ver-fn", Qualifier="1", Payload=b"{}"))["mark"] == "v1"
    assert payload(lam.invoke(FunctionName="ver-fn:2", Payload=b"{}"))["mark"] == "v2"

    alias = lam.create_alias(FunctionName="ver-fn", Name="live", FunctionVersion="1")
    assert alias["AliasArn"].endswith(":ver-fn:live")
    with pytest.raises(ClientError) as e:
        lam.create_alias(FunctionName="ver-fn", Name="live", FunctionVersion="1")
    assert code(e) == "ResourceConflictException"
    resp = lam.invoke(FunctionName="ver-fn", Qualifier="live", Payload=b"{}")
    assert resp["ExecutedVersion"] == "1"
    # Weighted routing: 30% to version 2, within statistical bounds.
    lam.update_alias(FunctionName="ver-fn", Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 0.3}})
    n = 300
    hits = sum(lam.invoke(FunctionName="ver-fn", Qualifier="live", Payload=b"{}")["ExecutedVersion"] == "2" for _ in range(n))
    assert 0.3 * n - 4 * (n * 0.3 * 0.7) ** 0.5 < hits < 0.3 * n + 4 * (n * 0.3 * 0.7) ** 0.5, hits
    with pytest.raises(ClientError) as e:
        lam.update_alias(FunctionName="ver-fn", Name="live", RoutingConfig={"AdditionalVersionWeights": {"2": 1.5}})
    assert code(e) == "ValidationException"
    with pytest.raises(ClientError) as e:
        lam.delete_function(FunctionName="ver-fn", Qualifier="1")
    assert code(e) == "ResourceConflictException", "an alias still points at version 1"
    assert [a["Name"] for a in lam.list_aliases(FunctionName="ver-fn")["Aliases"]] == ["live"]
    assert lam.get_alias(FunctionName="ver-fn", Name="live")["RoutingConfig"]["AdditionalVersionWeights"] == {"2": 0.3}
    lam.delete_alias(FunctionName="ver-fn", Name="live")
    with pytest.raises(ClientError) as e:
        lam.get_alias(FunctionName="ver-fn", Name="live")
    assert code(e) == "ResourceNotFoundException"
    lam.delete_function(FunctionName="ver-fn", Qualifier="1")
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="ver-fn", Qualifier="1", Payload=b"{}")
    assert code(e) == "ResourceNotFoundException"


def test_concurrency_settings_and_throttling(lam, make_function):
    make_function("conc-fn")
    assert lam.put_function_concurrency(FunctionName="conc-fn", ReservedConcurrentExecutions=0)["ReservedConcurrentExecutions"] == 0
    assert lam.get_function_concurrency(FunctionName="conc-fn")["ReservedConcurrentExecutions"] == 0
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="conc-fn", Payload=b"{}")
    assert code(e) == "TooManyRequestsException" and status(e) == 429
    assert e.value.response["Reason"] == "ReservedFunctionConcurrentInvocationLimitExceeded"
    with pytest.raises(ClientError) as e:
        lam.put_function_concurrency(FunctionName="conc-fn", ReservedConcurrentExecutions=901)
    assert code(e) == "InvalidParameterValueException", "must leave 100 unreserved of 1000"
    settings = lam.get_account_settings()
    assert settings["AccountLimit"]["ConcurrentExecutions"] == 1000
    lam.delete_function_concurrency(FunctionName="conc-fn")
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName="conc-fn")
    assert payload(lam.invoke(FunctionName="conc-fn", Payload=b"{}"))["name"] == "conc-fn"


def test_event_invoke_config_and_tags(lam, make_function):
    arn = make_function("cfg2-fn")["FunctionArn"]
    put = lam.put_function_event_invoke_config(FunctionName="cfg2-fn", MaximumRetryAttempts=1, MaximumEventAgeInSeconds=120)
    assert put["MaximumRetryAttempts"] == 1
    upd = lam.update_function_event_invoke_config(FunctionName="cfg2-fn",
                                                  DestinationConfig={"OnFailure": {"Destination": arn}})
    assert upd["MaximumEventAgeInSeconds"] == 120 and upd["DestinationConfig"]["OnFailure"]["Destination"] == arn
    assert lam.get_function_event_invoke_config(FunctionName="cfg2-fn")["MaximumRetryAttempts"] == 1
    with pytest.raises(ClientError) as e:
        lam.put_function_event_invoke_config(FunctionName="cfg2-fn", MaximumEventAgeInSeconds=30)
    assert code(e) == "ValidationException"
    lam.delete_function_event_invoke_config(FunctionName="cfg2-fn")
    with pytest.raises(ClientError) as e:
        lam.get_function_event_invoke_config(FunctionName="cfg2-fn")
    assert code(e) == "ResourceNotFoundException"

    lam.tag_resource(Resource=arn, Tags={"a": "1", "b": "2"})
    assert lam.list_tags(Resource=arn)["Tags"] == {"a": "1", "b": "2"}
    lam.untag_resource(Resource=arn, TagKeys=["a"])
    assert lam.list_tags(Resource=arn)["Tags"] == {"b": "2"}


def test_invoke_variants_and_errors(lam, make_function):
    make_function("inv-fn")
    assert lam.invoke(FunctionName="inv-fn", InvocationType="DryRun")["StatusCode"] == 204
    failed = lam.invoke(FunctionName="inv-fn", Payload=json.dumps({"fail": True}))
    assert failed["StatusCode"] == 200 and failed["FunctionError"] == "Unhandled"
    body = payload(failed)
    assert body["errorType"] == "ValueError" and body["errorMessage"] == "asked to fail"
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="inv-fn", Payload=b"not json")
    assert code(e) == "InvalidRequestContentException"
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="inv-fn", Payload=b'"' + b"x" * (6 * 1024 * 1024) + b'"')
    assert code(e) == "RequestTooLargeException" and status(e) == 413
    ctx = base64.b64encode(json.dumps({"custom": {"k": "v"}}).encode()).decode()
    assert lam.invoke(FunctionName="inv-fn", ClientContext=ctx, Payload=b"{}")["StatusCode"] == 200
    timed_out = lam.invoke(FunctionName="inv-fn", Payload=json.dumps({"sleep": 5}), LogType="Tail")
    assert timed_out["FunctionError"] == "Unhandled"
    assert "Task timed out after 3.00 seconds" in base64.b64decode(timed_out["LogResult"]).decode()


def test_authentication_failures(endpoint):
    bad_secret = client(endpoint, secret="wrong")
    with pytest.raises(ClientError) as e:
        bad_secret.list_functions()
    assert code(e) == "InvalidSignatureException" and status(e) == 403
    unknown = client(endpoint, key="AKIDNOBODY")
    with pytest.raises(ClientError) as e:
        unknown.list_functions()
    assert code(e) == "UnrecognizedClientException" and status(e) == 403
    import urllib.request, urllib.error
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(endpoint + "/2015-03-31/functions/")
    assert e.value.code == 403


def test_a_runtime_the_worker_lacks_exactly_is_refused_not_run_on_another_version(lam, make_function):
    """python3.13 is a runtime Nimbus offers (Debian trixie's), but a worker whose python3
    is another version does not offer it, and is never asked to run it under a false name."""
    import subprocess
    have = subprocess.run(["/usr/bin/python3", "--version"], capture_output=True, text=True).stdout.split()[1]
    if have.startswith("3.13."):
        pytest.skip("this machine's python3 is 3.13")
    make_function("py313", Runtime="python3.13")
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="py313", Payload=b"{}")
    assert code(e) == "InvalidParameterValueException" and status(e) == 400
    assert "No worker in region us-east-1 offers runtime python3.13." in str(e.value), str(e.value)


def test_settings_nimbus_does_not_honour_are_refused_not_dropped(lam, make_function):
    refused = [
        (dict(VpcConfig={"SubnetIds": ["subnet-1"], "SecurityGroupIds": ["sg-1"]}), "VpcConfig"),
        (dict(KMSKeyArn="arn:aws:kms:us-east-1:000000000000:key/1"), "KMSKeyArn"),
        (dict(Architectures=["arm64"]), "x86_64"),
        (dict(SnapStart={"ApplyOn": "PublishedVersions"}), "SnapStart"),
        (dict(ImageConfig={"Command": ["app.handler"]}), "ImageConfig"),
    ]
    for extra, says in refused:
        with pytest.raises(ClientError) as e:
            make_function("unhonoured", **extra)
        assert code(e) == "InvalidParameterValueException" and status(e) == 400, extra
        assert says in str(e.value), str(e.value)
    # The "none" forms tools send, and x86_64, are fine; and the same on an update.
    make_function("honoured", Architectures=["x86_64"], VpcConfig={"SubnetIds": [], "SecurityGroupIds": []},
                  SnapStart={"ApplyOn": "None"})
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="honoured", KMSKeyArn="arn:aws:kms:us-east-1:000000000000:key/2")
    assert code(e) == "InvalidParameterValueException"


def test_unknown_layers_are_refused_at_create_not_at_first_invoke(lam, make_function):
    arn = "arn:aws:lambda:us-east-1:000000000000:layer:my-deps:1"
    with pytest.raises(ClientError) as e:
        make_function("with-layer", Layers=[arn])
    assert code(e) == "InvalidParameterValueException" and status(e) == 400
    assert str(e.value).endswith(f"Layer version {arn} does not exist.")
    with pytest.raises(ClientError) as e:
        make_function("with-layer", Layers=["not-an-arn"])
    assert code(e) == "ValidationException"
    make_function("no-layers", Layers=[])
    with pytest.raises(ClientError) as e:
        lam.update_function_configuration(FunctionName="no-layers", Layers=[arn])
    assert code(e) == "InvalidParameterValueException"
