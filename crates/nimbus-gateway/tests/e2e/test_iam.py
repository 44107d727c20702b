"""Identity and access with AWS's own clients: IAM users, keys, roles and policies, STS,
functions' resource policies (AddPermission), and execution-role credentials that let a
function call Nimbus with boto3 from inside, limited to what its role allows."""
import base64
import json
import os
import shutil
import time
import urllib.error
import urllib.request

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from conftest import ROLE, DevServer, aws_cli, client, payload, python_fn, zip_of

ACCOUNT = "000000000000"
REGION = "us-east-1"
ROOTS = os.environ.get("NIMBUS_RUNTIME_ROOTS", "/var/tmp/nimbus-rootfs")
CFG = botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60, parameter_validation=False)


def svc(endpoint, name, key="test", secret="test", token=None):
    return boto3.client(name, endpoint_url=endpoint, region_name=REGION, aws_access_key_id=key,
                        aws_secret_access_key=secret, aws_session_token=token, config=CFG)


def fn_arn(name, qualifier=None, account=ACCOUNT):
    arn = f"arn:aws:lambda:{REGION}:{account}:function:{name}"
    return f"{arn}:{qualifier}" if qualifier else arn


def code(err):
    return err.value.response["Error"]["Code"]


def eventually(check, timeout=5.0):
    """The watch delay: a change reaches every gateway within moments. (A failed
    `pytest.raises` is neither an AssertionError nor a ClientError: caught too.)"""
    deadline = time.time() + timeout
    while True:
        try:
            return check()
        except (AssertionError, ClientError, pytest.fail.Exception):
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def user_with_policy(iam, name, policy=None, attach=None):
    iam.create_user(UserName=name)
    if policy:
        iam.put_user_policy(UserName=name, PolicyName="p", PolicyDocument=json.dumps(policy))
    for arn in attach or []:
        iam.attach_user_policy(UserName=name, PolicyArn=arn)
    k = iam.create_access_key(UserName=name)["AccessKey"]
    return k["AccessKeyId"], k["SecretAccessKey"]


@pytest.fixture(scope="module")
def iam(endpoint):
    return svc(endpoint, "iam")


def test_a_user_allowed_to_invoke_one_function_can_do_that_and_nothing_else(endpoint, iam, make_function):
    make_function("only-this")
    make_function("not-that")
    key, secret = user_with_policy(iam, "alice", {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": fn_arn("only-this")}]})
    alice = svc(endpoint, "lambda", key, secret)
    assert payload(eventually(lambda: alice.invoke(FunctionName="only-this", Payload=b'{"a": 1}')))["echo"] == {"a": 1}
    with pytest.raises(ClientError) as e:
        alice.invoke(FunctionName="not-that", Payload=b"{}")
    assert code(e) == "AccessDeniedException"
    msg = e.value.response["Error"]["Message"]
    assert f"arn:aws:iam::{ACCOUNT}:user/alice" in msg and "lambda:InvokeFunction" in msg and fn_arn("not-that") in msg
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    for call in (lambda: alice.get_function(FunctionName="only-this"),
                 lambda: alice.list_functions(),
                 lambda: alice.delete_function(FunctionName="only-this"),
                 lambda: alice.invoke(FunctionName="only-this", Qualifier="$LATEST", Payload=b"{}")):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDeniedException"
    # Logs and IAM are denied too: nothing but that one invocation.
    with pytest.raises(ClientError) as e:
        svc(endpoint, "logs", key, secret).describe_log_groups()
    assert code(e) == "AccessDeniedException"
    with pytest.raises(ClientError) as e:
        svc(endpoint, "iam", key, secret).list_users()
    assert code(e) == "AccessDenied"


def test_an_explicit_deny_wins_over_an_allow(endpoint, iam, make_function):
    make_function("guarded")
    key, secret = user_with_policy(
        iam, "bob",
        {"Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "Action": ["lambda:Delete*", "lambda:Update*"], "Resource": "*"}]},
        attach=["arn:aws:iam::aws:policy/AWSLambda_FullAccess"])
    bob = svc(endpoint, "lambda", key, secret)
    assert eventually(lambda: bob.get_function(FunctionName="guarded"))["Configuration"]["FunctionName"] == "guarded"
    with pytest.raises(ClientError) as e:
        bob.delete_function(FunctionName="guarded")
    assert code(e) == "AccessDeniedException" and "explicit deny" in e.value.response["Error"]["Message"]
    # NotAction: everything but GetFunction is denied for this statement's resource.
    iam.put_user_policy(UserName="bob", PolicyName="not-action", PolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [
            {"Effect": "Deny", "NotAction": "lambda:GetFunction", "Resource": fn_arn("guarded")}]}))

    def invoke_denied():
        with pytest.raises(ClientError) as e:
            bob.invoke(FunctionName="guarded", Payload=b"{}")
        assert code(e) == "AccessDeniedException"
    eventually(invoke_denied)
    assert bob.get_function(FunctionName="guarded")


def test_a_permission_lets_another_account_invoke_one_alias_and_nothing_more(dev, endpoint, lam, make_function):
    make_function("shared")
    v = lam.publish_version(FunctionName="shared")["Version"]
    lam.create_alias(FunctionName="shared", Name="live", FunctionVersion=v)
    dev.create_account("222222222222", "AKIDOTHER", "other-secret")
    other = svc(endpoint, "lambda", "AKIDOTHER", "other-secret")
    with pytest.raises(ClientError) as e:
        other.invoke(FunctionName=fn_arn("shared", "live"), Payload=b"{}")
    assert code(e) == "AccessDeniedException"

    added = lam.add_permission(FunctionName="shared", Qualifier="live", StatementId="other-invokes",
                               Action="lambda:InvokeFunction", Principal="222222222222")
    statement = json.loads(added["Statement"])
    assert statement["Principal"] == {"AWS": "arn:aws:iam::222222222222:root"}
    assert statement["Resource"] == fn_arn("shared", "live")
    got = lam.get_policy(FunctionName="shared", Qualifier="live")
    policy = json.loads(got["Policy"])
    assert [s["Sid"] for s in policy["Statement"]] == ["other-invokes"]
    assert policy["Version"] == "2012-10-17"
    with pytest.raises(ClientError) as e:
        lam.get_policy(FunctionName="shared")
    assert code(e) == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        lam.add_permission(FunctionName="shared", Qualifier="live", StatementId="other-invokes",
                           Action="lambda:InvokeFunction", Principal="222222222222")
    assert code(e) == "ResourceConflictException"
    with pytest.raises(ClientError) as e:
        lam.add_permission(FunctionName="shared", Qualifier="live", StatementId="stale",
                           Action="lambda:InvokeFunction", Principal="222222222222",
                           RevisionId="00000000-0000-4000-8000-000000000000")
    assert code(e) == "PreconditionFailedException"
    with pytest.raises(ClientError) as e:
        lam.add_permission(FunctionName="shared", StatementId="bad", Action="s3:GetObject", Principal="*")
    assert code(e) == "ValidationException"

    out = payload(eventually(lambda: other.invoke(FunctionName=fn_arn("shared", "live"), Payload=b'{"x": 2}')))
    assert out["echo"] == {"x": 2} and out["version"] == v
    # Only that alias, and only invocation.
    for call in (lambda: other.invoke(FunctionName=fn_arn("shared"), Payload=b"{}"),
                 lambda: other.invoke(FunctionName=fn_arn("shared", "$LATEST"), Payload=b"{}"),
                 lambda: other.get_function(FunctionName=fn_arn("shared", "live")),
                 lambda: other.delete_function(FunctionName=fn_arn("shared"))):
        with pytest.raises(ClientError) as e:
            call()
        assert code(e) == "AccessDeniedException"

    lam.remove_permission(FunctionName="shared", Qualifier="live", StatementId="other-invokes")
    with pytest.raises(ClientError) as e:
        lam.remove_permission(FunctionName="shared", Qualifier="live", StatementId="other-invokes")
    assert code(e) == "ResourceNotFoundException"

    def revoked():
        with pytest.raises(ClientError) as e:
            other.invoke(FunctionName=fn_arn("shared", "live"), Payload=b"{}")
        assert code(e) == "AccessDeniedException"
    eventually(revoked)


def test_aws_cli_manages_permissions(endpoint, make_function):
    make_function("cli-perm")
    rc, out, err = aws_cli(endpoint, "lambda", "add-permission", "--function-name", "cli-perm",
                           "--statement-id", "s3-invoke", "--action", "lambda:InvokeFunction",
                           "--principal", "s3.amazonaws.com", "--source-arn", "arn:aws:s3:::my-bucket",
                           "--source-account", ACCOUNT)
    assert rc == 0, err
    s = json.loads(json.loads(out)["Statement"])
    assert s["Principal"] == {"Service": "s3.amazonaws.com"}
    assert s["Condition"] == {"ArnLike": {"AWS:SourceArn": "arn:aws:s3:::my-bucket"},
                              "StringEquals": {"AWS:SourceAccount": ACCOUNT}}
    rc, out, err = aws_cli(endpoint, "lambda", "get-policy", "--function-name", "cli-perm")
    assert rc == 0 and json.loads(json.loads(out)["Policy"])["Statement"][0]["Sid"] == "s3-invoke"
    rc, out, err = aws_cli(endpoint, "lambda", "remove-permission", "--function-name", "cli-perm",
                           "--statement-id", "s3-invoke")
    assert rc == 0, err
    rc, out, err = aws_cli(endpoint, "lambda", "get-policy", "--function-name", "cli-perm")
    assert rc != 0 and "ResourceNotFoundException" in err


def test_iam_with_the_aws_cli(endpoint):
    rc, out, err = aws_cli(endpoint, "iam", "create-user", "--user-name", "cli-user", "--path", "/team/")
    assert rc == 0, err
    user = json.loads(out)["User"]
    assert user["Arn"] == f"arn:aws:iam::{ACCOUNT}:user/team/cli-user" and user["UserId"].startswith("AIDA")
    rc, out, err = aws_cli(endpoint, "iam", "create-user", "--user-name", "CLI-USER")
    assert rc != 0 and "EntityAlreadyExists" in err, "names are unique regardless of case"
    rc, out, err = aws_cli(endpoint, "iam", "list-users")
    assert "cli-user" in [u["UserName"] for u in json.loads(out)["Users"]]
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:List*", "Resource": "*"}]}
    rc, out, err = aws_cli(endpoint, "iam", "put-user-policy", "--user-name", "cli-user", "--policy-name", "list",
                           "--policy-document", json.dumps(doc))
    assert rc == 0, err
    rc, out, err = aws_cli(endpoint, "iam", "get-user-policy", "--user-name", "cli-user", "--policy-name", "list")
    assert rc == 0 and json.loads(out)["PolicyDocument"] == doc
    rc, out, err = aws_cli(endpoint, "iam", "put-user-policy", "--user-name", "cli-user", "--policy-name", "bad",
                           "--policy-document", '{"Statement": [{"Effect": "Maybe", "Action": "*"}]}')
    assert rc != 0 and "MalformedPolicyDocument" in err
    rc, out, err = aws_cli(endpoint, "iam", "get-user", "--user-name", "nobody")
    assert rc != 0 and "NoSuchEntity" in err
    rc, out, err = aws_cli(endpoint, "iam", "create-access-key", "--user-name", "cli-user")
    assert rc == 0, err
    key_id = json.loads(out)["AccessKey"]["AccessKeyId"]
    rc, out, err = aws_cli(endpoint, "iam", "delete-user", "--user-name", "cli-user")
    assert rc != 0 and "DeleteConflict" in err
    for args in (["delete-access-key", "--user-name", "cli-user", "--access-key-id", key_id],
                 ["delete-user-policy", "--user-name", "cli-user", "--policy-name", "list"],
                 ["delete-user", "--user-name", "cli-user"]):
        rc, out, err = aws_cli(endpoint, "iam", *args)
        assert rc == 0, (args, err)


def test_managed_policies_attach_and_detach(iam):
    doc = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:Get*", "Resource": "*"}]}
    arn = iam.create_policy(PolicyName="readers", PolicyDocument=json.dumps(doc))["Policy"]["Arn"]
    assert arn == f"arn:aws:iam::{ACCOUNT}:policy/readers"
    iam.create_role(RoleName="reader", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}))
    iam.attach_role_policy(RoleName="reader", PolicyArn=arn)
    iam.attach_role_policy(RoleName="reader", PolicyArn="arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole")
    attached = iam.list_attached_role_policies(RoleName="reader")["AttachedPolicies"]
    assert {p["PolicyName"] for p in attached} == {"readers", "AWSLambdaBasicExecutionRole"}
    with pytest.raises(ClientError) as e:
        iam.delete_policy(PolicyArn=arn)
    assert code(e) == "DeleteConflict"
    with pytest.raises(ClientError) as e:
        iam.attach_role_policy(RoleName="reader", PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/none")
    assert code(e) == "NoSuchEntity"
    role = iam.get_role(RoleName="reader")["Role"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Action"] == "sts:AssumeRole"
    iam.detach_role_policy(RoleName="reader", PolicyArn=arn)
    iam.delete_policy(PolicyArn=arn)


def test_sts_caller_identity_and_assume_role(endpoint, iam, make_function):
    sts = svc(endpoint, "sts")
    me = sts.get_caller_identity()
    assert me["Account"] == ACCOUNT and me["Arn"] == f"arn:aws:iam::{ACCOUNT}:root"
    make_function("via-role")
    iam.create_role(RoleName="invoker", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:root"}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="invoker", PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:Invoke*", "Resource": fn_arn("via-role") + "*"}]}))
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/invoker", RoleSessionName="tester")["Credentials"]
    assert creds["AccessKeyId"].startswith("ASIA")
    session = dict(key=creds["AccessKeyId"], secret=creds["SecretAccessKey"], token=creds["SessionToken"])
    who = svc(endpoint, "sts", **session).get_caller_identity()
    assert who["Arn"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/invoker/tester"
    lam = svc(endpoint, "lambda", **session)
    assert payload(lam.invoke(FunctionName="via-role", Payload=b"{}"))["name"] == "via-role"
    with pytest.raises(ClientError) as e:
        lam.list_functions()
    assert code(e) == "AccessDeniedException"
    assert "assumed-role/invoker/tester" in e.value.response["Error"]["Message"]
    # A session's code download link works (it has no stored secret to sign with), and
    # only as signed.
    iam.put_role_policy(RoleName="invoker", PolicyName="read", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:GetFunction", "Resource": fn_arn("via-role")}]}))
    link = eventually(lambda: lam.get_function(FunctionName="via-role"))["Code"]["Location"]
    with urllib.request.urlopen(link) as r:
        assert r.status == 200 and r.read()[:2] == b"PK"
    forged = link.replace("Account=" + ACCOUNT, "Account=111111111111")
    with pytest.raises(urllib.error.HTTPError) as bad:
        urllib.request.urlopen(forged)
    assert bad.value.code == 403
    # A token that was tampered with, or used with another key, is refused.
    bad = dict(session, token=session["token"][:-2] + ("AA" if not session["token"].endswith("AA") else "BB"))
    with pytest.raises(ClientError) as e:
        svc(endpoint, "lambda", **bad).invoke(FunctionName="via-role", Payload=b"{}")
    assert code(e) == "UnrecognizedClientException"
    with pytest.raises(ClientError) as e:
        svc(endpoint, "lambda", key=session["key"], secret=session["secret"]).invoke(FunctionName="via-role", Payload=b"{}")
    assert code(e) == "UnrecognizedClientException", "a session key without its token"
    # A role that does not trust the caller cannot be assumed.
    iam.create_role(RoleName="lambda-only", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    with pytest.raises(ClientError) as e:
        sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/lambda-only", RoleSessionName="x1")
    assert code(e) == "AccessDenied"


def test_deleted_or_deactivated_keys_stop_working(endpoint, iam):
    key, secret = user_with_policy(iam, "carol", {
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "lambda:ListFunctions", "Resource": "*"}]})
    carol = svc(endpoint, "lambda", key, secret)
    eventually(lambda: carol.list_functions())
    iam.update_access_key(UserName="carol", AccessKeyId=key, Status="Inactive")
    assert iam.list_access_keys(UserName="carol")["AccessKeyMetadata"][0]["Status"] == "Inactive"

    def refused():
        with pytest.raises(ClientError) as e:
            carol.list_functions()
        assert code(e) == "UnrecognizedClientException"
    eventually(refused)
    iam.update_access_key(UserName="carol", AccessKeyId=key, Status="Active")
    eventually(lambda: carol.list_functions())
    iam.delete_access_key(UserName="carol", AccessKeyId=key)
    eventually(refused)
    # A user has at most two keys.
    iam.create_access_key(UserName="carol")
    iam.create_access_key(UserName="carol")
    with pytest.raises(ClientError) as e:
        iam.create_access_key(UserName="carol")
    assert code(e) == "LimitExceeded"


def test_a_role_lambda_cannot_assume_is_refused(lam, iam):
    iam.create_role(RoleName="ec2-only", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName="wrong-role", Runtime="python3.11", Handler="app.handler",
                            Role=f"arn:aws:iam::{ACCOUNT}:role/ec2-only", Code={"ZipFile": python_fn("x=1")})
    assert code(e) == "InvalidParameterValueException"
    assert "cannot be assumed by Lambda" in e.value.response["Error"]["Message"]
    with pytest.raises(ClientError) as e:
        lam.create_function(FunctionName="wrong-role", Runtime="python3.11", Handler="app.handler",
                            Role="not-an-arn", Code={"ZipFile": python_fn("x=1")})
    assert code(e) == "ValidationException"


CALLER = """
import json, os, boto3
from botocore.exceptions import ClientError

def handler(event, context):
    out = {"endpoint": os.environ.get("AWS_ENDPOINT_URL"),
           "identity": boto3.client("sts").get_caller_identity()["Arn"],
           "key": os.environ["AWS_ACCESS_KEY_ID"], "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
           "token": os.environ["AWS_SESSION_TOKEN"]}
    lam = boto3.client("lambda")
    for name in event["targets"]:
        try:
            r = lam.invoke(FunctionName=name, Payload=json.dumps({"from": context.function_name}))
            out[name] = json.loads(r["Payload"].read())
        except ClientError as e:
            out[name] = e.response["Error"]["Code"]
    return out
"""


@pytest.fixture(scope="module")
def rooted():
    if not os.path.isdir(ROOTS):
        pytest.fail(f"runtime roots missing at {ROOTS}: run deploy/rootfs/build.sh (.ci/test does)")
    # Short-lived role credentials, so that their expiry can be seen (long enough for a
    # cold start with boto3 on a loaded machine).
    server = DevServer(extra_args=["--runtime-roots", ROOTS, "--role-credentials-ttl-secs", "20"])
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.data, ignore_errors=True)


def test_a_function_calls_what_its_role_allows_with_boto3_from_inside(rooted):
    lam, iam = client(rooted.url), svc(rooted.url, "iam")
    from conftest import ECHO
    for name in ("second", "third"):
        lam.create_function(FunctionName=name, Runtime="python3.11", Role=ROLE, Handler="app.handler",
                            Code={"ZipFile": python_fn(ECHO)})
    iam.create_role(RoleName="caller-role", AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}))
    iam.put_role_policy(RoleName="caller-role", PolicyName="invoke-second", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": fn_arn("second")}]}))
    lam.create_function(FunctionName="first", Runtime="python3.11", Handler="app.handler", Timeout=30,
                        Role=f"arn:aws:iam::{ACCOUNT}:role/caller-role", Code={"ZipFile": python_fn(CALLER)})
    out = payload(lam.invoke(FunctionName="first", Payload=json.dumps({"targets": ["second", "third"]})))
    assert out["endpoint"].startswith("http://127.0.0.1:")
    assert out["identity"] == f"arn:aws:sts::{ACCOUNT}:assumed-role/caller-role/first"
    assert out["second"]["echo"] == {"from": "first"}
    assert out["third"] == "AccessDeniedException"

    # The credentials expire (20 s here): used after that, they are refused; the function
    # itself keeps working, since its environments are replaced with fresh ones.
    time.sleep(21)
    with pytest.raises(ClientError) as e:
        svc(rooted.url, "lambda", out["key"], out["secret"], out["token"]).invoke(FunctionName="second", Payload=b"{}")
    assert code(e) == "ExpiredTokenException"
    again = payload(lam.invoke(FunctionName="first", Payload=json.dumps({"targets": ["second"]})))
    assert again["second"]["echo"] == {"from": "first"} and again["token"] != out["token"]


ATTACKER = """
import boto3, json
from botocore.exceptions import ClientError

def handler(event, context):
    out = {}
    attempts = {
        "list_functions": lambda: boto3.client("lambda").list_functions(),
        "create_user": lambda: boto3.client("iam").create_user(UserName="backdoor"),
        "put_role_policy": lambda: boto3.client("iam").put_role_policy(
            RoleName="powerless", PolicyName="escalate",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
                {"Effect": "Allow", "Action": "*", "Resource": "*"}]})),
        "assume_admin": lambda: boto3.client("sts").assume_role(
            RoleArn="arn:aws:iam::000000000000:role/admin", RoleSessionName="x1"),
        "logs": lambda: boto3.client("logs").describe_log_groups(),
        "root_key_guess": lambda: boto3.client("lambda", aws_access_key_id="test",
            aws_secret_access_key="guess", aws_session_token=None).list_functions(),
    }
    for name, call in attempts.items():
        try:
            call()
            out[name] = "ALLOWED"
        except ClientError as e:
            out[name] = e.response["Error"]["Code"]
    return out
"""


def test_a_function_with_a_powerless_role_can_do_nothing_through_the_api(rooted):
    """The attacker's side: tenant code with the SDK and its own credentials tries to
    read, escalate, assume another role and guess a key."""
    lam, iam = client(rooted.url), svc(rooted.url, "iam")
    trust = json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]})
    iam.create_role(RoleName="powerless", AssumeRolePolicyDocument=trust)
    iam.create_role(RoleName="admin", AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": ACCOUNT}, "Action": "sts:AssumeRole"}]}))
    lam.create_function(FunctionName="attacker", Runtime="python3.11", Handler="app.handler", Timeout=30,
                        Role=f"arn:aws:iam::{ACCOUNT}:role/powerless", Code={"ZipFile": python_fn(ATTACKER)})
    out = payload(lam.invoke(FunctionName="attacker", Payload=b"{}"))
    assert out == {"list_functions": "AccessDeniedException", "create_user": "AccessDenied",
                   "put_role_policy": "AccessDenied", "assume_admin": "AccessDenied",
                   "logs": "AccessDeniedException", "root_key_guess": "InvalidSignatureException"}, out
    assert iam.list_role_policies(RoleName="powerless")["PolicyNames"] == []
    assert "backdoor" not in [u["UserName"] for u in iam.list_users()["Users"]]
