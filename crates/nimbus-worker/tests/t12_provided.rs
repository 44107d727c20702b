//! `provided.al2023` functions: a shell bootstrap speaking the Runtime API
//! with curl, and AWS's own Runtime Interface Client (awslambdaric) unmodified.
mod common;
use common::*;

/// A custom runtime in POSIX shell + curl, as in AWS's tutorial.
const SHELL_BOOTSTRAP: &str = r#"#!/bin/sh
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
echo "init: handler=$_HANDLER"
while true; do
  HEADERS="$(mktemp)"
  EVENT=$(curl -sS -LD "$HEADERS" "$API/invocation/next")
  ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  DEADLINE=$(grep -Fi Lambda-Runtime-Deadline-Ms "$HEADERS" | tr -d '[:space:]' | cut -d: -f2)
  ARN=$(grep -Fi Lambda-Runtime-Invoked-Function-Arn "$HEADERS" | tr -d '[:space:]' | cut -d: -f2-)
  echo "got event $EVENT"
  case "$EVENT" in
    *fail*)
      curl -sS -o /dev/null -w "error:%{http_code}\n" -H "Lambda-Runtime-Function-Error-Type: Custom.Failure" \
        -d '{"errorMessage":"shell says no","errorType":"Custom.Failure"}' "$API/invocation/$ID/error" ;;
    *)
      curl -sS -o /dev/null -w "first:%{http_code}\n" -d "{\"shell\":$EVENT,\"deadline\":$DEADLINE,\"arn\":\"$ARN\"}" "$API/invocation/$ID/response"
      # The protocol allows one answer per invocation.
      curl -sS -o /dev/null -w "second:%{http_code}\n" -d '{}' "$API/invocation/$ID/response"
      curl -sS -o /dev/null -w "wrongid:%{http_code}\n" -d '{}' "$API/invocation/not-the-id/response"
      curl -sS -o /dev/null -w "initerror:%{http_code}\n" -d '{}' "$API/init/error" ;;
  esac
  rm -f "$HEADERS"
done
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t10_shell_bootstrap_with_curl() {
    let t = engine();
    let code = code(&[("bootstrap", SHELL_BOOTSTRAP)]);
    let s = spec("shell", "provided.al2023", "function.handler", code.path());
    let o = invoke(&t.engine, &s, r#"{"n":1}"#).await;
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["shell"]["n"], 1);
    assert_eq!(v["arn"], s.arn.as_str());
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let deadline = v["deadline"].as_i64().unwrap();
    assert!(
        deadline > now_ms + 5_000 && deadline <= now_ms + 10_000,
        "{deadline} vs {now_ms}"
    );
    assert!(
        o.log.contains("init: handler=function.handler"),
        "{}",
        o.log
    );
    assert!(o.log.contains(r#"got event {"n":1}"#), "{}", o.log);

    // curl prints a status code after the answer is in, so it may land in
    // this or the next invocation's log: look at all of them together.
    let mut all = o.log.clone();
    let o = invoke(&t.engine, &s, r#"{"fail":true}"#).await;
    all.push_str(&o.log);
    assert_error(&o, "Custom.Failure");
    assert_eq!(json(&o)["errorMessage"], "shell says no");
    let o3 = invoke(&t.engine, &s, r#"{"n":3}"#).await;
    assert_ok(&o3);
    all.push_str(&o3.log);
    for expected in [
        "first:202",
        "second:403",
        "wrongid:400",
        "initerror:403",
        "error:202",
    ] {
        assert!(all.contains(expected), "{expected} missing in\n{all}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn t11_missing_bootstrap_is_an_init_error() {
    let t = engine();
    let code = code(&[("README", "no bootstrap here")]);
    let o = invoke(
        &t.engine,
        &spec("nobootstrap", "provided.al2", "x", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "Runtime.InvalidEntrypoint");
}

#[tokio::test(flavor = "multi_thread")]
async fn t12_init_error_and_init_timeout() {
    let t = engine_with(|c| c.init_timeout = std::time::Duration::from_secs(2));
    let failing = code(&[(
        "bootstrap",
        "#!/bin/sh\necho starting\ncurl -sS -H 'Lambda-Runtime-Function-Error-Type: Runtime.Custom' \
         -d '{\"errorMessage\":\"cannot init\",\"errorType\":\"Runtime.Custom\"}' \
         http://$AWS_LAMBDA_RUNTIME_API/2018-06-01/runtime/init/error\nsleep 5\n",
    )]);
    let o = invoke(
        &t.engine,
        &spec("initerr", "provided.al2023", "x", failing.path()),
        "{}",
    )
    .await;
    assert_error(&o, "Runtime.Custom");
    assert_eq!(json(&o)["errorMessage"], "cannot init");
    assert!(o.log.contains("starting"), "{}", o.log);

    let slow = code(&[("bootstrap", "#!/bin/sh\nsleep 30\n")]);
    let started = std::time::Instant::now();
    let o = invoke(
        &t.engine,
        &spec("initslow", "provided.al2023", "x", slow.path()),
        "{}",
    )
    .await;
    assert_error(&o, "Sandbox.Timedout");
    assert!(started.elapsed() < std::time::Duration::from_secs(6));
    assert_eq!(t.engine.metrics().reserved_mb, 0);
}

/// AWS's Runtime Interface Client, unmodified, as the function's bootstrap.
/// Needs `crates/nimbus-worker/tests/setup-python.sh` to have created .venv.
#[tokio::test(flavor = "multi_thread")]
async fn t13_awslambdaric_unmodified() {
    let venv = repo_root().join(".venv");
    let site = std::fs::read_dir(venv.join("lib"))
        .expect("run crates/nimbus-worker/tests/setup-python.sh first (.venv missing)")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.join("site-packages/awslambdaric").exists())
        .expect("awslambdaric not installed in .venv; run tests/setup-python.sh");
    let code = code(&[
        (
            "bootstrap",
            "#!/bin/sh\nexport PYTHONPATH=/opt/site-packages:/var/task\nexec /usr/bin/python3 -m awslambdaric \"$_HANDLER\"\n",
        ),
        (
            "ric_app.py",
            "import os\n\ndef handler(event, context):\n    print('ric says hi')\n    return {'ric': True, 'event': event, 'rid': context.aws_request_id, 'remaining': context.get_remaining_time_in_millis()}\n\ndef fail(event, context):\n    raise KeyError('nope')\n",
        ),
    ]);
    let t = engine();
    let mut s = spec("ric", "provided.al2023", "ric_app.handler", code.path());
    s.layers = vec![site]; // .venv/lib/python3.11 → /opt (site-packages inside)
    let o = invoke(&t.engine, &s, r#"{"k":"v"}"#).await;
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["ric"], true);
    assert_eq!(v["event"]["k"], "v");
    assert_eq!(v["rid"], o.request_id.as_str());
    assert!(v["remaining"].as_i64().unwrap() > 5_000);
    assert!(o.log.contains("ric says hi"), "{}", o.log);
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    assert!(o.init_duration.is_none());

    s.function_name = "ric-fail".into();
    s.handler = "ric_app.fail".into();
    let o = invoke(&t.engine, &s, "{}").await;
    assert_error(&o, "KeyError");
    assert!(json(&o)["errorMessage"].as_str().unwrap().contains("nope"));
}

/// A custom runtime that streams `pieces` 64 KiB pieces (chunked, Lambda's streaming
/// mode), pausing `pause` seconds after the first.
const STREAM_BOOTSTRAP: &str = r#"#!/usr/bin/python3
import http.client, json, os, socket, time
host, port = os.environ["AWS_LAMBDA_RUNTIME_API"].split(":")
while True:
    c = http.client.HTTPConnection(host, int(port))
    c.request("GET", "/2018-06-01/runtime/invocation/next")
    r = c.getresponse()
    rid = r.getheader("Lambda-Runtime-Aws-Request-Id")
    event = json.loads(r.read())
    s = socket.create_connection((host, int(port)))
    s.sendall((f"POST /2018-06-01/runtime/invocation/{rid}/response HTTP/1.1\r\nHost: x\r\n"
               "Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n\r\n").encode())
    piece = b"x" * 65536
    try:
        for i in range(event["pieces"]):
            s.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            if i == 0:
                time.sleep(event.get("pause", 0))
        s.sendall(b"0\r\n\r\n")
        print("answer", s.recv(4096).split(b"\r\n")[0].decode(), flush=True)
    except OSError as e:
        print("answer failed:", e, flush=True)
    s.close()
"#;

/// Runs one streamed invocation: the outcome, the bytes streamed, and how long after the
/// first byte the last came.
async fn stream_invoke(
    engine: &nimbus_worker::Engine,
    spec: &nimbus_worker::FunctionSpec,
    payload: &str,
) -> (nimbus_worker::InvokeOutcome, usize, std::time::Duration) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let mut inv = nimbus_worker::Invocation::new(payload.to_owned());
    inv.stream = Some(tx);
    let (engine, spec) = (engine.clone(), spec.clone());
    let run = tokio::spawn(async move { engine.invoke(&spec, inv).await });
    let (mut got, mut first, mut last) = (0, None, None);
    while let Some(chunk) = rx.recv().await {
        let now = std::time::Instant::now();
        first.get_or_insert(now);
        last = Some(now);
        got += chunk.len();
    }
    let out = run.await.unwrap().expect("invoke");
    let span = match (first, last) {
        (Some(f), Some(l)) => l - f,
        _ => std::time::Duration::ZERO,
    };
    (out, got, span)
}

#[tokio::test(flavor = "multi_thread")]
async fn t14_streamed_responses_flow_paced_and_bounded() {
    use nimbus_worker::stream_limit::StreamLimits;
    const KIB: usize = 1024;
    let t = engine_with(|c| {
        c.stream_limits = StreamLimits {
            max_bytes: 1024 * 1024,
            full_speed_bytes: 256 * 1024,
            bytes_per_sec: 1024 * 1024,
        }
    });
    let code = code(&[("bootstrap", STREAM_BOOTSTRAP)]);
    let s = spec("streamer", "provided.al2023", "x", code.path());

    // 768 KiB: the first piece goes out at once, 1 s before the rest; past the first
    // 256 KiB the cap (1 MiB/s) adds half a second.
    let (o, got, span) = stream_invoke(&t.engine, &s, r#"{"pieces": 12, "pause": 1.0}"#).await;
    assert_ok(&o);
    assert!(o.payload.is_empty(), "streamed, not collected");
    assert_eq!(got, 768 * KIB);
    assert!(span >= std::time::Duration::from_millis(1400), "{span:?}");

    // Past the total: the stream ends with Lambda's error, having sent no more than it.
    let (o, got, _) = stream_invoke(&t.engine, &s, r#"{"pieces": 20}"#).await;
    assert_error(&o, "Function.ResponseSizeTooLarge");
    assert!(json(&o)["errorMessage"]
        .as_str()
        .unwrap()
        .contains("(1048576 bytes)"));
    assert!(got <= 1024 * KIB, "{got}");

    // A caller that wants the response in one piece gets the streamed bytes collected.
    let o = invoke(&t.engine, &s, r#"{"pieces": 4}"#).await;
    assert_ok(&o);
    assert_eq!(o.payload.len(), 256 * KIB);
}
