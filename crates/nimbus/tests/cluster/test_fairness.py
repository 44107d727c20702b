"""Capacity is shared fairly and answered as a throttle (issue 13).

One worker with room for four 128 MB environments. Account A floods it with four times
as many concurrent invocations as fit; account B, meanwhile, invokes now and then. B's
invocations all run (A, over its fair share while B waits, yields memory to it); A's
surplus gets 429 TooManyRequestsException; nobody gets a 500."""
import json
import threading
import time

import boto3
import botocore.config
import pytest
from botocore.exceptions import ClientError

from harness import ROLE, Cluster, zip_of

B_ACCOUNT, B_KEY, B_SECRET = "210987654321", "AKIDFAIRB", "fair-secret-b"

SLEEPER = """
import time
def handler(event, context):
    time.sleep(event.get("sleep", 1))
    return {"ok": True}
"""


@pytest.fixture(scope="module")
def cluster():
    c = Cluster(metas=1, gateways=1, workers=1, worker_memory_mb=512).start()
    try:
        c.cli("account", "create", "--meta", ",".join(c.meta_addrs), "--account-id", B_ACCOUNT,
              "--access-key-id", B_KEY, "--region", "us-east-1", env={"NIMBUS_SECRET_ACCESS_KEY": B_SECRET})
        yield c
    finally:
        c.stop()


def client_b(c):
    return boto3.client("lambda", endpoint_url=c.endpoint(0), region_name="us-east-1",
                        aws_access_key_id=B_KEY, aws_secret_access_key=B_SECRET,
                        config=botocore.config.Config(retries={"max_attempts": 0}, read_timeout=60))


def create(lam, name, role):
    lam.create_function(FunctionName=name, Runtime="python3.11", Role=role, Handler="app.handler",
                        MemorySize=128, Timeout=30, Code={"ZipFile": zip_of({"app.py": SLEEPER})})


def test_a_flooding_account_cannot_keep_another_off_the_worker(cluster):
    a, b = cluster.client(0), client_b(cluster)
    create(a, "flood", ROLE)
    create(b, "quiet", cluster.lambda_role("r", B_KEY, B_SECRET))
    # Warm B once while the worker is empty.
    assert "FunctionError" not in b.invoke(FunctionName="quiet", Payload=b'{"sleep": 0.1}')

    outcomes, lock, stop = [], threading.Lock(), threading.Event()

    def flood():
        lam = cluster.client(0)
        while not stop.is_set():
            try:
                r = lam.invoke(FunctionName="flood", Payload=json.dumps({"sleep": 3}).encode())
                seen = "error" if "FunctionError" in r else 200
            except ClientError as e:
                seen = (e.response["ResponseMetadata"]["HTTPStatusCode"], e.response["Error"]["Code"])
            with lock:
                outcomes.append(seen)

    # A gateway keeps placing a refused invocation for up to 10 s before it answers 429,
    # so A's surplus is throttled only if it waits longer than that for a slot: 16 calls
    # of 3 s on 4 slots queue ~12 s each. (With 8 calls of 1.5 s, a throttle needed an
    # unlucky call, and fast cold starts made those rare.)
    threads = [threading.Thread(target=flood) for _ in range(16)]
    for t in threads:
        t.start()
    time.sleep(4)  # the flood holds the whole worker by now
    b_latencies = []
    try:
        for _ in range(5):
            start = time.time()
            r = b.invoke(FunctionName="quiet", Payload=b'{"sleep": 0.2}')
            assert "FunctionError" not in r, r["Payload"].read()
            b_latencies.append(time.time() - start)
            time.sleep(0.5)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=60)
    assert max(b_latencies) < 9, b_latencies
    assert 200 in outcomes, outcomes
    throttles = [o for o in outcomes if o == (429, "TooManyRequestsException")]
    others = [o for o in outcomes if o != 200 and o not in throttles]
    assert throttles, f"the flood was never throttled: {outcomes}"
    assert not others, f"nobody gets anything but 200 or a throttle: {others}"
