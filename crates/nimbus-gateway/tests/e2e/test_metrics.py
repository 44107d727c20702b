"""Prometheus metrics of `nimbus dev`, scraped by Debian's real Prometheus server (installed
by .ci/test) after a known workload, and read back through Prometheus's query API."""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

import pytest
from botocore.exceptions import ClientError

from conftest import free_port


def http_get(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.status, r.headers, r.read().decode()


@pytest.fixture
def prometheus(metrics_endpoint):
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus package is missing (.ci/test installs it)"
    target = urllib.parse.urlparse(metrics_endpoint).netloc
    data = tempfile.mkdtemp(prefix="nimbus-prom-")
    cfg = os.path.join(data, "prometheus.yml")
    with open(cfg, "w") as f:
        f.write(f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: nimbus-dev
    static_configs:
      - targets: ["{target}"]
""")
    port = free_port()
    log = open(os.path.join(data, "prometheus.log"), "wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={cfg}", f"--storage.tsdb.path={data}/tsdb",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 60
    while True:
        assert proc.poll() is None, "prometheus exited:\n" + open(log.name).read()
        try:
            if http_get(url + "/-/ready")[0] == 200:
                break
        except OSError:
            pass
        assert time.time() < deadline, "prometheus did not become ready:\n" + open(log.name).read()
        time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    shutil.rmtree(data, ignore_errors=True)


def query(prom, promql):
    """The single value of an instant query, or None when there is no series."""
    _, _, body = http_get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": promql}))
    result = json.loads(body)["data"]["result"]
    assert len(result) <= 1, result
    return float(result[0]["value"][1]) if result else None


def wait_value(prom, promql, want, timeout=30):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = query(prom, promql)
        if got == want:
            return
        time.sleep(0.5)
    raise AssertionError(f"{promql}: wanted {want}, Prometheus has {got}")


def test_metrics_endpoint_is_openmetrics_and_unauthenticated(metrics_endpoint):
    status, headers, body = http_get(metrics_endpoint + "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.endswith("# EOF\n")
    # Lambda's families appear with their first sample (see the Prometheus test below).
    for family in ["nimbus_raft_term", "nimbus_worker_environments_warm",
                   "nimbus_otel_spans_dropped"]:
        assert f"# TYPE {family} " in body, family


def test_other_paths_still_need_a_signature(endpoint):
    with pytest.raises(urllib.error.HTTPError) as e:
        http_get(endpoint + "/2015-03-31/functions")
    assert e.value.code == 403


def test_the_api_port_does_not_serve_metrics(endpoint):
    """Function names are tenants' data: /metrics is on the admin address only, and the
    API port answers it like any unsigned request."""
    with pytest.raises(urllib.error.HTTPError) as e:
        http_get(endpoint + "/metrics")
    assert e.value.code == 403
    assert e.value.headers["x-amzn-ErrorType"].startswith("MissingAuthenticationTokenException"), \
        dict(e.value.headers)


def test_prometheus_scrapes_lambda_metrics_after_a_known_workload(endpoint, lam, make_function, prometheus):
    make_function("metrics-fn")
    for event in [{"a": 1}, {"a": 2}, {"fail": True}]:
        lam.invoke(FunctionName="metrics-fn", Payload=json.dumps(event).encode())
    make_function("metrics-throttled")
    lam.put_function_concurrency(FunctionName="metrics-throttled", ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as e:
        lam.invoke(FunctionName="metrics-throttled", Payload=b"{}")
    assert e.value.response["Error"]["Code"] == "TooManyRequestsException"

    labels = 'function="metrics-fn",resource="metrics-fn",region="us-east-1",account="000000000000"'
    wait_value(prometheus, f"lambda_invocations_total{{{labels}}}", 3.0)
    wait_value(prometheus, f"lambda_errors_total{{{labels}}}", 1.0)
    wait_value(prometheus, f"lambda_duration_seconds_count{{{labels}}}", 3.0)
    wait_value(prometheus, f"lambda_concurrent_executions{{{labels}}}", 0.0)
    wait_value(prometheus, 'lambda_throttles_total{function="metrics-throttled"}', 1.0)
    assert query(prometheus, 'lambda_invocations_total{function="metrics-throttled"}') is None
    # The worker started an environment for the function, and the Raft node leads.
    assert query(prometheus, "nimbus_worker_cold_starts_total") >= 1
    assert query(prometheus, "nimbus_worker_environments_warm") >= 1
    assert query(prometheus, "nimbus_raft_is_leader") == 1.0
    assert query(prometheus, "nimbus_raft_applied_index") > 0
    assert query(prometheus, "nimbus_raft_apply_lag") >= 0


def test_async_event_metrics_after_a_known_workload(lam, make_function, prometheus):
    """AsyncEventsReceived, AsyncEventAge, AsyncEventsDropped and DestinationDeliveryFailures
    after two events: one that succeeds, one that fails with no retries left and whose
    on-failure destination was deleted after it was configured."""
    make_function("metrics-async")
    make_function("metrics-async-dest")
    lam.put_function_event_invoke_config(
        FunctionName="metrics-async", MaximumRetryAttempts=0,
        DestinationConfig={"OnFailure": {"Destination":
                                         "arn:aws:lambda:us-east-1:000000000000:function:metrics-async-dest"}})
    lam.delete_function(FunctionName="metrics-async-dest")
    for event in [{"a": 1}, {"fail": True}]:
        r = lam.invoke(FunctionName="metrics-async", InvocationType="Event", Payload=json.dumps(event).encode())
        assert r["StatusCode"] == 202
    f = 'function="metrics-async"'
    wait_value(prometheus, f"lambda_async_events_received_total{{{f}}}", 2.0)
    wait_value(prometheus, f"lambda_async_event_age_seconds_count{{{f}}}", 2.0)
    wait_value(prometheus, f"lambda_invocations_total{{{f}}}", 2.0)
    wait_value(prometheus, f"lambda_errors_total{{{f}}}", 1.0)
    wait_value(prometheus, f"lambda_async_events_dropped_total{{{f}}}", 1.0)
    wait_value(prometheus, f"lambda_destination_delivery_failures_total{{{f}}}", 1.0)
    assert query(prometheus, f"lambda_dead_letter_errors_total{{{f}}}") in (None, 0.0)
