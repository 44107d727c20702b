"""Edge deployments with `nimbus edge` (and the API it calls): only a published version,
or an alias of one, can be deployed to an edge location of the function's region; the
association is replicated, follows an alias, keeps what is deployed from being deleted,
and is checked against the caller's IAM permissions."""
import json
import os
import subprocess

import boto3
import pytest
from botocore.exceptions import ClientError

from conftest import BIN, python_fn


def nimbus(dev, *args, key="test", secret="test"):
    env = dict(os.environ, AWS_ACCESS_KEY_ID=key, AWS_SECRET_ACCESS_KEY=secret, AWS_DEFAULT_REGION="us-east-1",
               NIMBUS_ENDPOINT=dev.url)
    env.pop("AWS_SESSION_TOKEN", None)
    return subprocess.run([BIN, *args], capture_output=True, text=True, env=env, timeout=60)


def add_location(dev, name):
    out = subprocess.run([BIN, "--tls-dir", os.path.join(dev.data, "tls"), "cluster", "add-edge-location",
                          "--meta", dev.meta_addr(), "--region", "us-east-1", "--location", name],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_versions_and_aliases_deploy_to_edge_locations(dev, lam, make_function):
    add_location(dev, "fra1")
    add_location(dev, "sfo1")
    make_function("edgy")
    v1 = lam.publish_version(FunctionName="edgy")["Version"]
    lam.create_alias(FunctionName="edgy", Name="live", FunctionVersion=v1)
    lam.create_alias(FunctionName="edgy", Name="head", FunctionVersion="$LATEST")

    out = nimbus(dev, "edge", "deploy", "edgy", "--qualifier", "live", "--locations", "fra1,sfo1")
    assert out.returncode == 0, out.stderr
    assert f"edgy:live (version {v1}) at fra1, sfo1" in out.stdout
    out = nimbus(dev, "edge", "deploy", "edgy", "--qualifier", v1, "--locations", "fra1")
    assert out.returncode == 0, out.stderr

    for qualifier, words in [("$LATEST", "cannot be deployed"), ("head", "points at $LATEST")]:
        out = nimbus(dev, "edge", "deploy", "edgy", "--qualifier", qualifier, "--locations", "fra1")
        assert out.returncode != 0 and "InvalidParameterValueException" in out.stderr and words in out.stderr, out.stderr
    out = nimbus(dev, "edge", "deploy", "edgy", "--qualifier", "live", "--locations", "mars1")
    assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr and "mars1" in out.stderr
    out = nimbus(dev, "edge", "deploy", "edgy", "--qualifier", "nope", "--locations", "fra1")
    assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr

    out = nimbus(dev, "edge", "list")
    assert out.returncode == 0 and f"edgy:live (version {v1}) at fra1, sfo1" in out.stdout, out.stdout
    assert f"edgy:{v1} (version {v1}) at fra1" in out.stdout

    # A deployed alias moves only to another published version, and takes the edge with it.
    with pytest.raises(ClientError) as e:
        lam.update_alias(FunctionName="edgy", Name="live", FunctionVersion="$LATEST")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    lam.update_function_configuration(FunctionName="edgy", Description="v2")
    v2 = lam.publish_version(FunctionName="edgy")["Version"]
    lam.update_alias(FunctionName="edgy", Name="live", FunctionVersion=v2)
    assert f"edgy:live (version {v2}) at fra1, sfo1" in nimbus(dev, "edge", "list").stdout

    # What is deployed cannot be deleted until it is removed from the edge.
    for call in (lambda: lam.delete_alias(FunctionName="edgy", Name="live"),
                 lambda: lam.delete_function(FunctionName="edgy", Qualifier=v1),
                 lambda: lam.delete_function(FunctionName="edgy")):
        with pytest.raises(ClientError) as e:
            call()
        assert e.value.response["Error"]["Code"] == "ResourceConflictException"
    out = nimbus(dev, "edge", "remove", "edgy", "--qualifier", "live", "--locations", "sfo1")
    assert out.returncode == 0, out.stderr
    assert f"edgy:live (version {v2}) at fra1\n" in nimbus(dev, "edge", "list").stdout
    for q in ("live", v1):
        assert nimbus(dev, "edge", "remove", "edgy", "--qualifier", q).returncode == 0
    out = nimbus(dev, "edge", "remove", "edgy", "--qualifier", "live")
    assert out.returncode != 0 and "ResourceNotFoundException" in out.stderr
    lam.delete_alias(FunctionName="edgy", Name="live")


def test_deploying_to_the_edge_needs_the_permission(dev, endpoint, lam, make_function):
    add_location(dev, "ams1")
    make_function("edgy-iam")
    v = lam.publish_version(FunctionName="edgy-iam")["Version"]
    iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    iam.create_user(UserName="edge-reader")
    iam.put_user_policy(UserName="edge-reader", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:List*", "Resource": "*"}]}))
    k = iam.create_access_key(UserName="edge-reader")["AccessKey"]
    creds = dict(key=k["AccessKeyId"], secret=k["SecretAccessKey"])
    out = nimbus(dev, "edge", "deploy", "edgy-iam", "--qualifier", v, "--locations", "ams1", **creds)
    assert out.returncode != 0 and "AccessDeniedException" in out.stderr and "lambda:EnableReplication" in out.stderr
    assert nimbus(dev, "edge", "list", **creds).returncode == 0
