"""Two regions on one metadata cluster: each gateway serves its own region and refuses
requests signed for another, functions, limits and async events stay in their region,
and a region's invocations run on that region's workers only."""
import json
import time

import pytest
from botocore.exceptions import ClientError

from harness import ACCOUNT, ROLE, Cluster, zip_of, eventually

US, EU = "us-east-1", "eu-west-1"

REGION_FN = """
import os
def handler(event, context):
    print("RAN-IN", os.environ["AWS_REGION"], event.get("tag", ""))
    return {"region": os.environ["AWS_REGION"], "arn": context.invoked_function_arn}
"""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(metas=1, gateways=2, workers=2, gateway_regions=[US, EU], worker_regions=[US, EU]).start()
    try:
        yield c
    finally:
        c.stop()


def test_each_region_keeps_its_functions_and_runs_them_on_its_own_workers(cluster):
    us, eu = cluster.client(0), cluster.client(1)
    role_eu = ROLE  # IAM is global: the same role serves both regions
    for lam, role in ((us, ROLE), (eu, role_eu)):
        lam.create_function(FunctionName="where", Runtime="python3.11", Role=role, Handler="app.handler",
                            Code={"ZipFile": zip_of({"app.py": REGION_FN})})
    out_us = json.loads(eventually(lambda: us.invoke(FunctionName="where", Payload=b"{}"))["Payload"].read())
    out_eu = json.loads(eventually(lambda: eu.invoke(FunctionName="where", Payload=b"{}"))["Payload"].read())
    assert out_us == {"region": US, "arn": f"arn:aws:lambda:{US}:{ACCOUNT}:function:where"}
    assert out_eu == {"region": EU, "arn": f"arn:aws:lambda:{EU}:{ACCOUNT}:function:where"}
    # A function of one region is unknown in the other.
    eu.create_function(FunctionName="eu-only", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                       Code={"ZipFile": zip_of({"app.py": REGION_FN})})
    assert "eu-only" not in [f["FunctionName"] for f in us.list_functions()["Functions"]]
    with pytest.raises(ClientError) as e:
        us.get_function(FunctionName="eu-only")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    with pytest.raises(ClientError) as e:
        us.invoke(FunctionName=f"arn:aws:lambda:{EU}:{ACCOUNT}:function:eu-only", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"


def test_a_request_signed_for_another_region_is_refused(cluster):
    wrong = cluster.client(1, region=US)  # the eu-west-1 gateway, signed for us-east-1
    with pytest.raises(ClientError) as e:
        wrong.list_functions()
    assert e.value.response["Error"]["Code"] == "InvalidSignatureException"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_async_events_run_in_their_own_region(cluster):
    eu, logs = cluster.client(1), cluster.logs_client(1)
    eu.create_function(FunctionName="eu-async", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                       Code={"ZipFile": zip_of({"app.py": REGION_FN})})
    eventually(lambda: eu.invoke(FunctionName="eu-async", Payload=b"{}"))
    tag = str(time.time())
    for _ in range(4):
        assert eu.invoke(FunctionName="eu-async", InvocationType="Event",
                         Payload=json.dumps({"tag": tag}).encode())["StatusCode"] == 202

    def all_ran_in_eu():
        found = logs.filter_log_events(logGroupName="/aws/lambda/eu-async", filterPattern=f'"{tag}"')["events"]
        lines = [e["message"] for e in found if "RAN-IN" in e["message"]]
        assert len(lines) == 4 and all(f"RAN-IN {EU} {tag}" in l for l in lines), lines
    eventually(all_ran_in_eu, timeout=60)


def test_limits_are_set_per_region(cluster):
    cluster.cli("account", "set-limits", "--meta", ",".join(cluster.meta_addrs), "--account-id", ACCOUNT,
                "--region", EU, "--concurrent-executions", "50", "--unreserved-minimum", "10")

    def eu_limit():
        s = cluster.client(1).get_account_settings()
        assert s["AccountLimit"]["ConcurrentExecutions"] == 50, s
        assert s["AccountLimit"]["UnreservedConcurrentExecutions"] == 50
    eventually(eu_limit)
    assert cluster.client(0).get_account_settings()["AccountLimit"]["ConcurrentExecutions"] == 1000
    # The limit holds in eu-west-1: reserving more than it leaves is refused there only.
    eu = cluster.client(1)
    with pytest.raises(ClientError) as e:
        eu.put_function_concurrency(FunctionName="where", ReservedConcurrentExecutions=45)
    assert e.value.response["Error"]["Code"] == "InvalidParameterValueException"
    assert cluster.client(0).put_function_concurrency(FunctionName="where", ReservedConcurrentExecutions=45)
    out = cluster.cli("account", "set-limits", "--meta", ",".join(cluster.meta_addrs), "--account-id", ACCOUNT,
                      "--region", EU, "--concurrent-executions", "5", check=False)
    assert out.returncode != 0 and "unreserved minimum" in out.stderr


WHERE_AM_I = """
import socket, time
def handler(event, context):
    # The environment's own address: each worker's environments come from its NAT pool.
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect(("1.1.1.1", 53))
    ip = s.getsockname()[0]
    s.close()
    time.sleep(event.get("sleep", 0))
    return {"pool": ".".join(ip.split(".")[:2])}
"""

POOL = {"us-east-1a": "100.96", "us-east-1b": "100.97"}  # worker1 is in zone a, worker2 in b


@pytest.fixture(scope="module")
def zoned():
    c = Cluster(metas=1, gateways=1, workers=2, gateway_args=["--zone", "us-east-1b"]).start()
    try:
        yield c
    finally:
        c.stop()


def test_placement_prefers_the_gateways_zone_spreads_cold_starts_and_survives_a_zone(zoned):
    lam = zoned.client(0)
    lam.create_function(FunctionName="zones", Runtime="python3.11", Role=ROLE, Handler="app.handler",
                        Timeout=30, Code={"ZipFile": zip_of({"app.py": WHERE_AM_I})})

    def run(sleep=0):
        return json.loads(lam.invoke(FunctionName="zones", Payload=json.dumps({"sleep": sleep}).encode())["Payload"].read())["pool"]
    # Both workers heartbeat every second: let the gateway know them both.
    time.sleep(3)
    # Nothing warm anywhere: the first environment starts in the gateway's zone, and stays
    # the choice while it is idle.
    first = run()
    assert first == POOL["us-east-1b"], first
    assert run() == POOL["us-east-1b"]
    # Two at once: the warm one serves one, the cold start goes to the other zone.
    import threading
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(run(sleep=1.5))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == sorted(POOL.values()), seen
    # The gateway's zone loses its worker: invocations go on in the other zone.
    zoned.workers[1].kill()
    assert eventually(lambda: _must(run(), POOL["us-east-1a"]), timeout=30) == POOL["us-east-1a"]


def _must(got, want):
    assert got == want, got
    return got


def test_cluster_status_lists_regions_zones_and_their_live_workers(cluster):
    def listed():
        out = cluster.cli("cluster", "status", "--meta", ",".join(cluster.meta_addrs), "--output", "json")
        regions = json.loads(out.stdout)["regions"]
        assert set(regions) == {US, EU}, regions
        assert [len(v) for v in regions[US].values()] == [1] and f"zone:{US}a" in regions[US], regions
        assert f"zone:{EU}b" in regions[EU], regions
        return regions
    eventually(listed)
    text = cluster.cli("cluster", "status", "--meta", ",".join(cluster.meta_addrs)).stdout
    assert f"region {EU}" in text and "1 registered" in text
