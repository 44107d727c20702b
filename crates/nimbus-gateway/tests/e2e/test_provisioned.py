"""Provisioned concurrency through boto3: configs on an alias and a version, environments
initialised ahead of time (the function sees `provisioned-concurrency`), Lambda's status
and errors, and the ProvisionedConcurrency metrics on `/metrics`."""
import time
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import payload

INIT_TYPE = """
import os
def handler(event, context):
    return {"init": os.environ["AWS_LAMBDA_INITIALIZATION_TYPE"], "version": context.function_version}
"""


def code(err):
    return err.value.response["Error"]["Code"]


def status(err):
    return err.value.response["ResponseMetadata"]["HTTPStatusCode"]


def wait_ready(lam, name, qualifier, count, timeout=60):
    deadline = time.time() + timeout
    while True:
        c = lam.get_provisioned_concurrency_config(FunctionName=name, Qualifier=qualifier)
        if c["Status"] == "READY":
            assert c["AllocatedProvisionedConcurrentExecutions"] == count, c
            assert c["AvailableProvisionedConcurrentExecutions"] == count, c
            return c
        assert c["Status"] == "IN_PROGRESS", c
        assert time.time() < deadline, f"not READY after {timeout}s: {c}"
        time.sleep(0.3)


def scrape(endpoint):
    with urllib.request.urlopen(endpoint + "/metrics", timeout=5) as r:
        return r.read().decode()


def metric(text, name, resource):
    for line in text.splitlines():
        if line.startswith(name + "{") and f'resource="{resource}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_provisioned_concurrency_on_an_alias(lam, metrics_endpoint, make_function):
    make_function("pc-fn", code=INIT_TYPE)
    v = lam.publish_version(FunctionName="pc-fn")["Version"]
    lam.create_alias(FunctionName="pc-fn", Name="live", FunctionVersion=v)

    r = lam.put_provisioned_concurrency_config(FunctionName="pc-fn", Qualifier="live",
                                               ProvisionedConcurrentExecutions=2)
    assert r["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert r["RequestedProvisionedConcurrentExecutions"] == 2
    assert r["Status"] in ("IN_PROGRESS", "READY")
    c = wait_ready(lam, "pc-fn", "live", 2)
    assert c["LastModified"]

    configs = lam.list_provisioned_concurrency_configs(FunctionName="pc-fn")["ProvisionedConcurrencyConfigs"]
    assert [(x["FunctionArn"].rsplit(":", 1)[1], x["RequestedProvisionedConcurrentExecutions"], x["Status"])
            for x in configs] == [("live", 2, "READY")]

    # The environments were initialised ahead of time, as on Lambda.
    out = payload(lam.invoke(FunctionName="pc-fn", Qualifier="live", Payload=b"{}"))
    assert out == {"init": "provisioned-concurrency", "version": v}

    text = scrape(metrics_endpoint)
    assert metric(text, "lambda_provisioned_concurrency_utilization", "pc-fn:live") == 0.0, text
    assert metric(text, "lambda_provisioned_concurrent_executions", "pc-fn:live") == 0.0, text
    assert "nimbus_worker_environments_provisioned 2" in text, text

    lam.delete_provisioned_concurrency_config(FunctionName="pc-fn", Qualifier="live")
    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName="pc-fn", Qualifier="live")
    assert code(e) == "ProvisionedConcurrencyConfigNotFoundException" and status(e) == 404
    assert lam.list_provisioned_concurrency_configs(FunctionName="pc-fn")["ProvisionedConcurrencyConfigs"] == []
    # The workers let the environments go, and the metrics for the alias disappear.
    deadline = time.time() + 30
    while True:
        text = scrape(metrics_endpoint)
        if "nimbus_worker_environments_provisioned 0" in text \
                and metric(text, "lambda_provisioned_concurrency_utilization", "pc-fn:live") is None:
            break
        assert time.time() < deadline, text
        time.sleep(0.3)


def test_a_version_config_goes_with_its_version_and_alias(lam, make_function):
    make_function("pc-ver", code=INIT_TYPE)
    v = lam.publish_version(FunctionName="pc-ver")["Version"]
    lam.put_provisioned_concurrency_config(FunctionName="pc-ver", Qualifier=v, ProvisionedConcurrentExecutions=1)
    wait_ready(lam, "pc-ver", v, 1)
    lam.create_alias(FunctionName="pc-ver", Name="blue", FunctionVersion=v)
    lam.put_provisioned_concurrency_config(FunctionName="pc-ver", Qualifier="blue", ProvisionedConcurrentExecutions=1)
    # Two configs on one version share its environments: both are served.
    wait_ready(lam, "pc-ver", "blue", 1)
    wait_ready(lam, "pc-ver", v, 1)
    lam.delete_alias(FunctionName="pc-ver", Name="blue")
    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName="pc-ver", Qualifier="blue")
    assert code(e) in ("ProvisionedConcurrencyConfigNotFoundException", "ResourceNotFoundException")
    # A version with a config cannot be deleted behind its back: the config goes with it.
    lam.delete_function(FunctionName="pc-ver", Qualifier=v)
    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName="pc-ver", Qualifier=v)
    assert code(e) in ("ProvisionedConcurrencyConfigNotFoundException", "ResourceNotFoundException")


def test_provisioned_concurrency_errors(lam, make_function):
    make_function("pc-err", code=INIT_TYPE)
    v = lam.publish_version(FunctionName="pc-err")["Version"]
    cases = [
        (dict(FunctionName="pc-err", Qualifier="$LATEST", ProvisionedConcurrentExecutions=1),
         "InvalidParameterValueException", 400, "unpublished"),
        (dict(FunctionName="pc-err", Qualifier=v, ProvisionedConcurrentExecutions=0),
         "ValidationException", 400, "greater than or equal to 1"),
        (dict(FunctionName="pc-err", Qualifier="42", ProvisionedConcurrentExecutions=1),
         "ResourceNotFoundException", 404, "pc-err:42"),
        (dict(FunctionName="pc-err", Qualifier="nope", ProvisionedConcurrentExecutions=1),
         "ResourceNotFoundException", 404, "nope"),
        (dict(FunctionName="pc-missing", Qualifier="1", ProvisionedConcurrentExecutions=1),
         "ResourceNotFoundException", 404, "pc-missing"),
        (dict(FunctionName="pc-err", ProvisionedConcurrentExecutions=1),
         "ValidationException", 400, "qualifier"),
    ]
    lam.create_alias(FunctionName="pc-err", Name="head", FunctionVersion="$LATEST")
    cases.append((dict(FunctionName="pc-err", Qualifier="head", ProvisionedConcurrentExecutions=1),
                  "InvalidParameterValueException", 400, "unpublished"))
    for params, want, http, words in cases:
        with pytest.raises(ClientError) as e:
            lam.put_provisioned_concurrency_config(**params)
        assert (code(e), status(e)) == (want, http), params
        assert words in e.value.response["Error"]["Message"], (params, e.value.response["Error"]["Message"])

    # Within the function's reserved concurrency.
    lam.put_function_concurrency(FunctionName="pc-err", ReservedConcurrentExecutions=1)
    with pytest.raises(ClientError) as e:
        lam.put_provisioned_concurrency_config(FunctionName="pc-err", Qualifier=v, ProvisionedConcurrentExecutions=2)
    assert code(e) == "InvalidParameterValueException"
    assert "reservedConcurrentExecution" in e.value.response["Error"]["Message"]
    lam.delete_function_concurrency(FunctionName="pc-err")
    # A reservation cannot shrink below the function's provisioned concurrency.
    lam.put_provisioned_concurrency_config(FunctionName="pc-err", Qualifier=v, ProvisionedConcurrentExecutions=2)
    with pytest.raises(ClientError) as e:
        lam.put_function_concurrency(FunctionName="pc-err", ReservedConcurrentExecutions=1)
    assert code(e) == "InvalidParameterValueException"
    assert "provisioned concurrency (2)" in e.value.response["Error"]["Message"]
    lam.put_function_concurrency(FunctionName="pc-err", ReservedConcurrentExecutions=2)
    lam.delete_function_concurrency(FunctionName="pc-err")
    lam.delete_provisioned_concurrency_config(FunctionName="pc-err", Qualifier=v)
    # Out of the account's unreserved pool, which keeps its minimum of 100.
    with pytest.raises(ClientError) as e:
        lam.put_provisioned_concurrency_config(FunctionName="pc-err", Qualifier=v, ProvisionedConcurrentExecutions=100000)
    assert code(e) == "InvalidParameterValueException"
    assert "UnreservedConcurrentExecution" in e.value.response["Error"]["Message"]

    with pytest.raises(ClientError) as e:
        lam.get_provisioned_concurrency_config(FunctionName="pc-err", Qualifier=v)
    assert code(e) == "ProvisionedConcurrencyConfigNotFoundException"
    with pytest.raises(ClientError) as e:
        lam.delete_provisioned_concurrency_config(FunctionName="pc-err", Qualifier=v)
    assert code(e) == "ResourceNotFoundException" and status(e) == 404
