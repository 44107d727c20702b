"""Edge locations serving, as separate processes: 3 metadata nodes; a region gateway and
worker; the edge location fra1 with its own gateway and worker. What is deployed to fra1
runs on fra1's worker when called through fra1's gateway, with its code pushed there
before the first call; anything else called there runs in the home region, answered as
if called there; moving a deployed alias moves fra1 with it; cut off from the metadata
cluster, fra1 goes on serving within the budget it holds."""
import json
import os
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from harness import ACCOUNT, KEY_ID, ROLE, SECRET, Cluster, zip_of, eventually

# The worker a function ran on, told by its environment's address: each worker on this
# host hands out addresses from its own NAT pool (100.96/16 for worker 1, 100.97/16 for
# worker 2). Connecting a UDP socket sends nothing; it only picks the source address.
WHERE_FN = """
import os, socket
def handler(event, context):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("198.51.100.1", 9))
    ip = s.getsockname()[0]
    s.close()
    return {"ip": ip, "version": context.function_version, "tag": "TAG",
            "group": os.environ["AWS_LAMBDA_LOG_GROUP_NAME"]}
"""

REGION_POOL, EDGE_POOL = "100.96.", "100.97."


@pytest.fixture(scope="module")
def cluster():
    # fra1's gateway pushes code 2 s after a change at the earliest (a tenth of this), so
    # the last test can cut fra1 off between an alias move and its push.
    c = Cluster(metas=3, gateways=2, workers=2, gateway_edges=[None, "fra1"], worker_edges=[None, "fra1"],
                gateway_args=("--edge-push-interval-ms", "20000")).start()
    try:
        yield c
    finally:
        c.stop()


def run(lam, name, qualifier=None):
    q = {"Qualifier": qualifier} if qualifier else {}
    resp = lam.invoke(FunctionName=name, Payload=b"{}", **q)
    assert "FunctionError" not in resp, resp["Payload"].read()
    return json.loads(resp["Payload"].read())


def nimbus_edge(cluster, *args):
    env = {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "NIMBUS_ENDPOINT": cluster.endpoint(0)}
    return cluster.cli("edge", *args, env=env)


def package_dir(cluster, worker, sha256):
    return os.path.join(cluster.root, f"worker{worker + 1}", "code", sha256.replace("/", "_").replace("+", "-"))


def test_deployed_versions_run_at_the_edge_and_the_rest_in_the_region(cluster):
    region, edge = cluster.client(0), cluster.client(1)
    region.create_function(FunctionName="near", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                           Code={"ZipFile": zip_of({"app.py": WHERE_FN.replace("TAG", "v1")})})
    v1 = region.publish_version(FunctionName="near")
    region.create_alias(FunctionName="near", Name="live", FunctionVersion=v1["Version"])
    nimbus_edge(cluster, "deploy", "near", "--qualifier", "live", "--locations", "fra1")

    # Pushed ahead: fra1's worker holds the code before anyone calls it there.
    pushed = package_dir(cluster, 1, v1["CodeSha256"])
    eventually(lambda: os.path.isdir(pushed) or (_ for _ in ()).throw(AssertionError(pushed)), timeout=20)
    assert not os.path.isdir(package_dir(cluster, 0, v1["CodeSha256"])), "the region's worker never ran it"

    out = eventually(lambda: _at(run(edge, "near", "live"), EDGE_POOL))
    assert (out["version"], out["tag"]) == (v1["Version"], "v1")
    # Not deployed at fra1 ($LATEST, the bare version): the home region runs it.
    assert run(edge, "near")["ip"].startswith(REGION_POOL)
    assert run(edge, "near", v1["Version"])["ip"].startswith(REGION_POOL)
    # The region's own gateway never places work at the edge.
    assert run(region, "near", "live")["ip"].startswith(REGION_POOL)

    # What ran at the edge logs as Lambda@Edge does, to /aws/lambda/<home region>.<name>,
    # readable through any gateway; what ran in the region to the function's own group.
    assert out["group"] == "/aws/lambda/us-east-1.near"
    assert run(edge, "near")["group"] == "/aws/lambda/near"
    logs = cluster.logs_client(0)

    def logged(group, at_least):
        events = logs.filter_log_events(logGroupName=group)["events"]
        starts = [e for e in events if e["message"].startswith("START RequestId")]
        assert len(starts) >= at_least, (group, events)
    eventually(lambda: logged("/aws/lambda/us-east-1.near", 1))
    eventually(lambda: logged("/aws/lambda/near", 3))
    groups = [g["logGroupName"] for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/")["logGroups"]]
    assert {"/aws/lambda/near", "/aws/lambda/us-east-1.near"} <= set(groups), groups

    # Moving the alias moves fra1 with it, within the watch delay.
    region.update_function_code(FunctionName="near", ZipFile=zip_of({"app.py": WHERE_FN.replace("TAG", "v2")}))
    eventually(lambda: region.get_function(FunctionName="near")["Configuration"]["LastUpdateStatus"] == "Successful")
    v2 = region.publish_version(FunctionName="near")
    region.update_alias(FunctionName="near", Name="live", FunctionVersion=v2["Version"])
    moved = time.monotonic()
    out = eventually(lambda: _tagged(run(edge, "near", "live"), "v2"), timeout=10)
    assert out["ip"].startswith(EDGE_POOL) and out["version"] == v2["Version"]
    assert time.monotonic() - moved < 5
    eventually(lambda: os.path.isdir(package_dir(cluster, 1, v2["CodeSha256"])) or
               (_ for _ in ()).throw(AssertionError("v2 not pushed")), timeout=20)

    # Removing the deployment sends fra1's calls of live to the region again.
    nimbus_edge(cluster, "remove", "near", "--qualifier", "live", "--locations", "fra1")
    eventually(lambda: _at(run(edge, "near", "live"), REGION_POOL))


def _at(out, pool):
    assert out["ip"].startswith(pool), out
    return out


def _tagged(out, tag):
    assert out["tag"] == tag, out
    return out


def test_cluster_status_lists_the_edge_location_and_its_worker(cluster):
    def listed():
        out = cluster.cli("cluster", "status", "--meta", ",".join(cluster.meta_addrs), "--output", "json")
        regions = json.loads(out.stdout)["regions"]
        assert "edge:fra1" in regions["us-east-1"], regions
        assert len(regions["us-east-1"]["edge:fra1"]) == 1, regions
        return regions
    eventually(listed)


def test_an_edge_workers_metrics_name_its_location(cluster):
    import urllib.request

    def scrape(i):
        with urllib.request.urlopen(f"http://127.0.0.1:{cluster.worker_admin_ports[i]}/metrics", timeout=10) as r:
            return r.read().decode()
    edge, region = scrape(1), scrape(0)
    series = [l for l in edge.splitlines() if l and not l.startswith("#")]
    assert series and all('edge_location="fra1"' in l for l in series if l.startswith("nimbus_worker")), edge[:2000]
    assert any('edge_location="fra1"' in l for l in series), edge[:2000]
    assert "edge_location" not in region


def test_an_edge_gateway_for_an_unknown_location_refuses_to_start(cluster):
    out = cluster.cli("gateway", "--listen", "127.0.0.1:1", "--meta", ",".join(cluster.meta_addrs),
                      "--region", "us-east-1", "--edge-location", "mars1",
                      tls_dir=cluster.certs.issue("gateway", "gw-mars"), check=False)
    assert out.returncode != 0 and "edge location mars1 is not in region us-east-1" in out.stderr, out.stderr


SLOW_FN = """
import time
def handler(event, context):
    time.sleep(3)
    return "done"
"""


def test_cut_off_from_the_core_fra1_serves_within_its_budget_refuses_writes_and_converges_after(cluster):
    """Runs last: it kills every metadata node of the module's cluster, then restarts
    them. fra1 holds a budget of 2 of the account's concurrency (its gateway gw2 holds
    it all); the region leases only the rest."""
    region, edge = cluster.client(0), cluster.client(1, read_timeout=120)
    before = region.get_account_settings()["AccountLimit"]
    meta = ",".join(cluster.meta_addrs)
    budget = ["account", "set-edge-budget", "--meta", meta, "--account-id", ACCOUNT,
              "--region", "us-east-1", "--location", "fra1"]
    # Refused with a reason: a location the region lacks, more than the account can spare.
    out = cluster.cli(*budget[:-1], "nowhere", "--concurrency", "2", "--gateways", "gw2", check=False)
    assert out.returncode != 0 and "not found" in out.stderr, out.stderr
    too_much = str(before["ConcurrentExecutions"])
    out = cluster.cli(*budget, "--concurrency", too_much, "--gateways", "gw2", check=False)
    assert out.returncode != 0 and "UnreservedConcurrentExecution" in out.stderr, out.stderr
    cluster.cli(*budget, "--concurrency", "2", "--gateways", "gw2")
    after = eventually(lambda: _lowered(region, before["UnreservedConcurrentExecutions"] - 2))
    assert after["ConcurrentExecutions"] == before["ConcurrentExecutions"]

    region.create_function(FunctionName="slow", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                           Code={"ZipFile": zip_of({"app.py": SLOW_FN})}, Timeout=30)
    eventually(lambda: region.publish_version(FunctionName="slow"))
    region.create_alias(FunctionName="slow", Name="live", FunctionVersion="1")
    nimbus_edge(cluster, "deploy", "slow", "--qualifier", "live", "--locations", "fra1")
    # Warm once through fra1 (its first call there signs in and mints role credentials).
    assert eventually(lambda: edge.invoke(FunctionName="slow", Qualifier="live")["Payload"].read()) == b'"done"'
    nimbus_edge(cluster, "deploy", "near", "--qualifier", "live", "--locations", "fra1")
    eventually(lambda: _at(run(edge, "near", "live"), EDGE_POOL))
    # A caller fra1 has never seen: its gateway holds the secrets of the deploying
    # account's keys ahead of time, so it is verified while cut off too.
    iam = cluster.iam_client(0)
    iam.create_user(UserName="edge-caller")
    iam.put_user_policy(UserName="edge-caller", PolicyName="invoke", PolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"}]}))
    key = iam.create_access_key(UserName="edge-caller")["AccessKey"]
    stranger = boto3.client("lambda", endpoint_url=cluster.endpoint(1), region_name="us-east-1",
                            aws_access_key_id=key["AccessKeyId"], aws_secret_access_key=key["SecretAccessKey"],
                            config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60))
    # v3 published and, once fra1 has pushed what is deployed, live moved to it: fra1's
    # gateway sees the move at once, but the cut comes before it pushes v3's code.
    region.update_function_code(FunctionName="near", ZipFile=zip_of({"app.py": WHERE_FN.replace("TAG", "v3")}))
    eventually(lambda: region.get_function_configuration(FunctionName="near")["LastUpdateStatus"] == "Successful"
               or (_ for _ in ()).throw(AssertionError("not updated")))
    v3 = region.publish_version(FunctionName="near")["Version"]
    time.sleep(3)  # fra1's gateway pushes (the key's secret, the session key) after a change
    region.update_alias(FunctionName="near", Name="live", FunctionVersion=v3)
    eventually(lambda: edge.get_alias(FunctionName="near", Name="live")["FunctionVersion"] == v3
               or (_ for _ in ()).throw(AssertionError("fra1 has not seen the move")), timeout=1.5, pause=0.01)

    code = {"ZipFile": zip_of({"app.py": WHERE_FN.replace("TAG", "later")})}
    for m in cluster.metas:
        m.kill()
    # Past every lease (5 s) and every heartbeat's freshness (10 s).
    time.sleep(13)
    # fra1 serves its deployed versions on its own worker, cut off from the core: the
    # alias points at v3 there, but fra1 holds only v2's code, which it goes on running.
    assert edge.get_alias(FunctionName="near", Name="live")["FunctionVersion"] == v3
    for _ in range(5):
        out = run(edge, "near", "live")
        assert out["ip"].startswith(EDGE_POOL) and out["tag"] == "v2", out
    assert _at(run(stranger, "near", "live"), EDGE_POOL)["tag"] == "v2"
    # Within its budget of 2 and no more: nothing else can be leased while cut off.
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: _try(edge, "slow", "live"), range(4)))
    assert sorted(results) == ["TooManyRequestsException"] * 2 + ["done"] * 2, results
    # The region's gateway cannot lease, so it throttles rather than risk the limit.
    assert _try(region, "near", "1") == "TooManyRequestsException"
    started = time.monotonic()
    with pytest.raises(ClientError) as e:
        edge.create_function(FunctionName="during", Runtime="python3.11", Role=ROLE, Handler="app.handler", Code=code)
    err = e.value.response["Error"]
    assert err["Code"] == "ServiceException" and "cannot be reached" in err["Message"], err
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert time.monotonic() - started < 30
    # What the gateway already knows it still answers.
    assert edge.get_function_configuration(FunctionName="near")["FunctionName"] == "near"

    for m in cluster.metas:
        m.start()
    eventually(lambda: edge.create_function(FunctionName="after", Runtime="python3.11", Role=ROLE,
                                            Handler="app.handler", Code=code), timeout=90)
    region = cluster.client(0)
    assert eventually(lambda: region.get_function(FunctionName="after"))["Configuration"]["FunctionName"] == "after"
    assert eventually(lambda: run(edge, "after"), timeout=60)["tag"] == "later"
    with pytest.raises(ClientError) as e:
        region.get_function(FunctionName="during")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    # The region leases again, and fra1 follows the core again.
    assert eventually(lambda: run(region, "near", "1"), timeout=60)["ip"].startswith(REGION_POOL)
    region.update_alias(FunctionName="near", Name="live", FunctionVersion="1")
    assert eventually(lambda: _version_at(edge, "near", "live", "1"), timeout=30)


def _lowered(lam, unreserved):
    limit = lam.get_account_settings()["AccountLimit"]
    assert limit["UnreservedConcurrentExecutions"] == unreserved, limit
    return limit


def _version_at(lam, name, qualifier, version):
    out = run(lam, name, qualifier)
    assert out["version"] == version and out["ip"].startswith(EDGE_POOL), out
    return out


def _try(lam, name, qualifier):
    """The function's result, or the error code the call failed with."""
    try:
        return json.loads(lam.invoke(FunctionName=name, Qualifier=qualifier)["Payload"].read())
    except ClientError as e:
        return e.response["Error"]["Code"]
