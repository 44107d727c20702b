"""Identity and access across a cluster: IAM writes made at one gateway hold at every
other, a session minted by one gateway is verified by another on its own, a function's
role must exist, and a function calls the API with boto3 from inside, through its
worker's relay, limited to what its role allows."""
import json
import os
import time

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from harness import ACCOUNT, ROLE, Cluster, zip_of, eventually

ROOTS = os.environ.get("NIMBUS_RUNTIME_ROOTS", "/var/tmp/nimbus-rootfs")
CFG = botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60, connect_timeout=5)

CALLER = """
import json, boto3
from botocore.exceptions import ClientError

def handler(event, context):
    lam = boto3.client("lambda")
    out = {"me": boto3.client("sts").get_caller_identity()["Arn"]}
    for name in event["targets"]:
        try:
            out[name] = json.loads(lam.invoke(FunctionName=name, Payload=b'{"hi": 1}')["Payload"].read())
        except ClientError as e:
            out[name] = e.response["Error"]["Code"]
    return out
"""

ECHO = """
def handler(event, context):
    return {"echo": event, "name": context.function_name}
"""


@pytest.fixture(scope="module")
def cluster():
    if not os.path.isdir(ROOTS):
        pytest.fail(f"runtime roots missing at {ROOTS}: run deploy/rootfs/build.sh (.ci/test does)")
    # One worker in runtime roots, so that functions have boto3 as on Lambda.
    c = Cluster(workers=1, worker_args=["--runtime-roots", ROOTS]).start()
    try:
        yield c
    finally:
        c.stop()


def svc(cluster, i, name, key, secret, token=None):
    return boto3.client(name, endpoint_url=cluster.endpoint(i), region_name="us-east-1",
                        aws_access_key_id=key, aws_secret_access_key=secret, aws_session_token=token,
                        config=CFG)


def arn(name):
    return f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:{name}"


def test_iam_made_at_one_gateway_holds_at_the_other(cluster):
    iam1 = cluster.iam_client(0)
    iam1.create_user(UserName="dana")
    iam1.put_user_policy(UserName="dana", PolicyName="list", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"}]}))
    k = iam1.create_access_key(UserName="dana")["AccessKey"]
    dana2 = svc(cluster, 1, "lambda", k["AccessKeyId"], k["SecretAccessKey"])
    eventually(lambda: dana2.list_functions())
    with pytest.raises(ClientError) as e:
        dana2.get_account_settings()
    assert e.value.response["Error"]["Code"] == "AccessDeniedException"
    # Deactivated at gateway 1: refused at gateway 2 within the watch delay.
    iam1.update_access_key(UserName="dana", AccessKeyId=k["AccessKeyId"], Status="Inactive")

    def refused():
        with pytest.raises(ClientError) as e:
            dana2.list_functions()
        assert e.value.response["Error"]["Code"] == "UnrecognizedClientException"
    eventually(refused)


def test_a_session_from_one_gateway_is_verified_by_another(cluster):
    iam = cluster.iam_client(0)
    iam.create_role(RoleName="ops", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="ops", PolicyName="settings", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:GetAccountSettings", "Resource": "*"}]}))
    from harness import KEY_ID, SECRET
    sts1 = svc(cluster, 0, "sts", KEY_ID, SECRET)
    c = eventually(lambda: sts1.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/ops", RoleSessionName="s1"))["Credentials"]
    lam2 = svc(cluster, 1, "lambda", c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
    assert eventually(lambda: lam2.get_account_settings())["AccountLimit"]["ConcurrentExecutions"] > 0
    who = svc(cluster, 1, "sts", c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]).get_caller_identity()
    assert who["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/ops/s1"


def test_a_function_needs_a_role_lambda_can_assume(cluster):
    lam = cluster.client(0)
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName="no-role", Runtime="python3.11", Handler="app.handler",
                            Role=f"arn:aws:iam::{ACCOUNT}:role/does-not-exist",
                            Code={"ZipFile": zip_of({"app.py": ECHO})})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName="no-role", Runtime="python3.11", Handler="app.handler",
                            Role="arn:aws:iam::999999999999:role/lambda-role",
                            Code={"ZipFile": zip_of({"app.py": ECHO})})
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException", "another account's role"


def test_a_function_calls_the_api_through_its_workers_relay(cluster):
    iam, lam = cluster.iam_client(0), cluster.client(0)
    for name in ("target", "forbidden"):
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": zip_of({"app.py": ECHO})})
    iam.create_role(RoleName="relay-caller", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="relay-caller", PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn("target")}]}))
    lam.create_function(FunctionName="relay", Runtime="python3.11", Handler="app.handler", Timeout=30,
                        Role=f"arn:aws:iam::{ACCOUNT}:role/relay-caller", Code={"ZipFile": zip_of({"app.py": CALLER})})
    out = json.loads(eventually(lambda: lam.invoke(FunctionName="relay", Payload=json.dumps(
        {"targets": ["target", "forbidden"]})), timeout=30)["Payload"].read())
    assert out["me"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/relay-caller/relay", out
    assert out["target"] == {"echo": {"hi": 1}, "name": "target"}, out
    assert out["forbidden"] == "AccessDeniedException", out
