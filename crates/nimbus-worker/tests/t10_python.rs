//! Python functions through Nimbus's bundled bootstrap.
mod common;
use common::*;

const APP: &str = r#"
import asyncio, os, json, time

COLD = {"count": 0}

def handler(event, context):
    COLD["count"] += 1
    print("hello from python", event.get("name"))
    return {
        "echo": event,
        "calls": COLD["count"],
        "request_id": context.aws_request_id,
        "function_name": context.function_name,
        "function_version": context.function_version,
        "memory": context.memory_limit_in_mb,
        "arn": context.invoked_function_arn,
        "group": context.log_group_name,
        "stream": context.log_stream_name,
        "remaining": context.get_remaining_time_in_millis(),
        # Objects with Lambda's attributes (returning them as they are would not marshal,
        # on Lambda either).
        "client_context": context.client_context and {"custom": context.client_context.custom},
        "identity": {"cognitoIdentityId": context.identity.cognito_identity_id},
        "env": {k: os.environ.get(k) for k in [
            "_HANDLER", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR", "AWS_LAMBDA_FUNCTION_NAME",
            "AWS_LAMBDA_FUNCTION_VERSION", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_LOG_GROUP_NAME",
            "AWS_LAMBDA_LOG_STREAM_NAME", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_EXECUTION_ENV",
            "AWS_LAMBDA_INITIALIZATION_TYPE", "TZ", "_X_AMZN_TRACE_ID", "AWS_LAMBDA_RUNTIME_API", "MY_VAR"]},
        "cwd": os.getcwd(),
        "uid": os.getuid(),
    }

async def async_handler(event, context):
    await asyncio.sleep(0.01)
    return {"async": True}

def fail(event, context):
    raise ValueError("boom")

def sleepy(event, context):
    print("going to sleep")
    time.sleep(30)

def crash(event, context):
    import ctypes
    ctypes.string_at(0)

def hog(event, context):
    data = []
    while True:
        data.append(bytearray(16 * 1024 * 1024))

def big(event, context):
    return "x" * (7 * 1024 * 1024)

KEPT = []

def grow(event, context):
    # Keeps event["mb"] MiB more each call, touched, and prints numbered lines.
    KEPT.append(bytearray(b"x" * (event["mb"] * 1024 * 1024)))
    for i in range(event["lines"]):
        print(f"line {event['call']}.{i}")
    return len(KEPT)

def sized(event, context):
    # A JSON string of exactly event["n"] bytes, quotes included.
    return "x" * (event["n"] - 2)
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t10_python_cold_then_warm() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let mut s = spec("py-hello", "python3.11", "app.handler", code.path());
    s.env.insert("MY_VAR".into(), "mine".into());
    s.env
        .insert("AWS_REGION".into(), "must-not-override".into());
    let first = invoke(&t.engine, &s, r#"{"name":"nimbus"}"#).await;
    assert_ok(&first);
    let v = json(&first);
    assert_eq!(v["echo"]["name"], "nimbus");
    assert_eq!(v["calls"], 1);
    assert_eq!(v["request_id"], first.request_id.as_str());
    assert_eq!(v["function_name"], "py-hello");
    assert_eq!(v["function_version"], "$LATEST");
    assert_eq!(v["memory"], "128");
    assert_eq!(v["arn"], s.arn.as_str());
    assert_eq!(v["group"], "/aws/lambda/py-hello");
    assert!(v["stream"].as_str().unwrap().contains("/[$LATEST]"));
    let remaining = v["remaining"].as_i64().unwrap();
    assert!(remaining > 8_000 && remaining <= 10_000, "{remaining}");
    let env = &v["env"];
    assert_eq!(env["_HANDLER"], "app.handler");
    assert_eq!(env["LAMBDA_TASK_ROOT"], "/var/task");
    assert_eq!(env["LAMBDA_RUNTIME_DIR"], "/var/runtime");
    assert_eq!(env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"], "128");
    assert_eq!(env["AWS_REGION"], "us-east-1");
    assert_eq!(env["AWS_DEFAULT_REGION"], "us-east-1");
    assert_eq!(env["AWS_EXECUTION_ENV"], "AWS_Lambda_python3.11");
    assert_eq!(env["AWS_LAMBDA_INITIALIZATION_TYPE"], "on-demand");
    assert_eq!(env["TZ"], ":UTC");
    assert_eq!(env["AWS_LAMBDA_RUNTIME_API"], "127.0.0.1:9001");
    assert!(env["_X_AMZN_TRACE_ID"]
        .as_str()
        .unwrap()
        .starts_with("Root=1-"));
    assert_eq!(env["MY_VAR"], "mine");
    assert_eq!(v["cwd"], "/var/task");
    assert_eq!(v["uid"], 993);

    // Log framing: START, the function's output, END, REPORT with Init Duration.
    let lines: Vec<&str> = first.log.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("START RequestId: "))
        .unwrap();
    assert_eq!(
        lines[start],
        format!("START RequestId: {} Version: $LATEST", first.request_id)
    );
    assert_eq!(lines[start + 1], "hello from python nimbus");
    assert_eq!(
        lines[start + 2],
        format!("END RequestId: {}", first.request_id)
    );
    let report = lines[start + 3];
    assert!(
        report.starts_with(&format!(
            "REPORT RequestId: {}\tDuration: ",
            first.request_id
        )),
        "{report}"
    );
    assert!(
        report.contains("\tMemory Size: 128 MB\tMax Memory Used: "),
        "{report}"
    );
    assert!(report.contains("\tInit Duration: "), "{report}");
    assert!(first.init_duration.is_some());
    assert!(
        first.max_memory_mb > 1 && first.max_memory_mb <= 128,
        "{}",
        first.max_memory_mb
    );

    // Warm: same environment (module state kept), no Init Duration.
    let mut inv = nimbus_worker::Invocation::new(r#"{"name":"again"}"#);
    inv.client_context = Some(r#"{"custom":{"k":"v"}}"#.into());
    inv.cognito_identity = Some(r#"{"cognitoIdentityId":"id-1"}"#.into());
    inv.trace_id =
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into());
    let second = t.engine.invoke(&s, inv).await.unwrap();
    let v2 = json(&second);
    assert_eq!(v2["client_context"]["custom"]["k"], "v");
    assert_eq!(v2["identity"]["cognitoIdentityId"], "id-1");
    assert_eq!(
        v2["env"]["_X_AMZN_TRACE_ID"],
        "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
    );
    assert_ok(&second);
    assert_eq!(json(&second)["calls"], 2);
    assert!(second.init_duration.is_none());
    assert!(!second.log.contains("Init Duration"), "{}", second.log);
    assert!(second.log.contains("hello from python again"));
    assert!(!second.log.contains("hello from python nimbus"));
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.busy, m.starting, m.cold_starts), (1, 0, 0, 1));
    assert_eq!(m.reserved_mb, 128);
}

#[tokio::test(flavor = "multi_thread")]
async fn t11_python_async_handler_and_errors() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let o = invoke(
        &t.engine,
        &spec("py-async", "python3.11", "app.async_handler", code.path()),
        "{}",
    )
    .await;
    assert_ok(&o);
    assert_eq!(json(&o)["async"], true);

    let o = invoke(
        &t.engine,
        &spec("py-fail", "python3.11", "app.fail", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "ValueError");
    assert_eq!(o.function_error_header(), Some("Unhandled"));
    let v = json(&o);
    assert_eq!(v["errorMessage"], "boom");
    assert_eq!(v["errorType"], "ValueError");
    assert!(
        v["stackTrace"][0].as_str().unwrap().contains("app.py"),
        "{v}"
    );
    assert!(o.log.contains("[ERROR] ValueError: boom"), "{}", o.log);
    // A handled error leaves the environment warm.
    assert_eq!(t.engine.metrics().warm, 2);

    let o = invoke(
        &t.engine,
        &spec("py-missing", "python3.11", "nope.handler", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "Runtime.ImportModuleError");
    let o = invoke(
        &t.engine,
        &spec("py-nohandler", "python3.11", "app.nothing", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "Runtime.HandlerNotFound");
    assert!(o.init_duration.is_some() && o.log.contains("Init Duration"));
}

#[tokio::test(flavor = "multi_thread")]
async fn t12_python_timeout_kills_and_replaces_the_environment() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let mut s = spec("py-sleepy", "python3.11", "app.sleepy", code.path());
    s.timeout = std::time::Duration::from_secs(1);
    let started = std::time::Instant::now();
    let o = invoke(&t.engine, &s, "{}").await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_error(&o, "Sandbox.Timedout");
    let v = json(&o);
    assert_eq!(
        v["errorMessage"],
        format!(
            "RequestId: {} Error: Task timed out after 1.00 seconds",
            o.request_id
        )
    );
    assert!(o.log.contains("going to sleep"), "{}", o.log);
    assert!(
        o.log.contains(&format!(
            "{} Task timed out after 1.00 seconds",
            o.request_id
        )),
        "{}",
        o.log
    );
    let m = t.engine.metrics();
    assert_eq!((m.warm, m.busy, m.reserved_mb), (0, 0, 0), "{m:?}");
    // Next invocation is a fresh cold start.
    let o = invoke(&t.engine, &s, "{}").await;
    assert!(o.init_duration.is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn t13_python_crash_and_out_of_memory() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let o = invoke(
        &t.engine,
        &spec("py-crash", "python3.11", "app.crash", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "Runtime.ExitError");
    assert_eq!(
        json(&o)["errorMessage"],
        format!(
            "RequestId: {} Error: Runtime exited with error: signal: segmentation fault",
            o.request_id
        )
    );
    // At 128 MB's CPU share on a busy host, reaching the limit can take seconds: the
    // timeout must not win the race against the OOM killer.
    let mut hog = spec("py-hog", "python3.11", "app.hog", code.path());
    hog.timeout = std::time::Duration::from_secs(60);
    let o = invoke(&t.engine, &hog, "{}").await;
    assert_error(&o, "Runtime.OutOfMemory");
    assert_eq!(
        json(&o)["errorMessage"],
        format!(
            "RequestId: {} Error: Runtime exited with error: signal: killed",
            o.request_id
        )
    );
    assert!(o.max_memory_mb >= 120, "{}", o.max_memory_mb);
    assert_eq!(t.engine.metrics().reserved_mb, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn t14_response_over_6mb_is_rejected() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let mut s = spec("py-big", "python3.11", "app.big", code.path());
    s.memory_mb = 512;
    let o = invoke(&t.engine, &s, "{}").await;
    assert_error(&o, "Function.ResponseSizeTooLarge");
}

/// Max Memory Used follows the environment's growth from one warm invocation to the
/// next (the worker keeps the cgroup's high-water mark file open and re-reads it), and
/// each invocation's log holds its own lines, all of them, in the order written (the
/// invoking task drains the output pipe itself).
#[tokio::test(flavor = "multi_thread")]
async fn t14a_warm_reports_follow_memory_growth_and_logs_stay_in_order() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let mut s = spec("py-grow", "python3.11", "app.grow", code.path());
    s.memory_mb = 256;
    let mut peaks = Vec::new();
    for call in 0..3 {
        let o = invoke(
            &t.engine,
            &s,
            &format!(r#"{{"mb": 40, "lines": 200, "call": {call}}}"#),
        )
        .await;
        assert_ok(&o);
        assert_eq!(json(&o), serde_json::json!(call + 1));
        let printed: Vec<&str> = o.log.lines().filter(|l| l.starts_with("line ")).collect();
        let expected: Vec<String> = (0..200).map(|i| format!("line {call}.{i}")).collect();
        assert_eq!(printed, expected, "log of call {call}:\n{}", o.log);
        let report = o.log.lines().find(|l| l.starts_with("REPORT")).unwrap();
        assert!(
            report.contains(&format!("Max Memory Used: {} MB", o.max_memory_mb)),
            "{report}"
        );
        peaks.push(o.max_memory_mb);
    }
    // 40 MiB more per call; allow for the allocator and the interpreter.
    assert!(peaks[1] >= peaks[0] + 30, "{peaks:?}");
    assert!(peaks[2] >= peaks[1] + 30, "{peaks:?}");
    assert!(peaks[2] <= 256, "{peaks:?}");
}

/// Lambda's synchronous response limit is exactly 6,291,556 bytes: a response of that
/// size is returned whole; one byte more is `Function.ResponseSizeTooLarge`.
#[tokio::test(flavor = "multi_thread")]
async fn t14b_the_response_limit_is_exactly_lambdas() {
    let t = engine();
    let code = code(&[("app.py", APP)]);
    let mut s = spec("py-sized", "python3.11", "app.sized", code.path());
    s.memory_mb = 512;
    let o = invoke(&t.engine, &s, r#"{"n": 6291556}"#).await;
    assert_eq!(o.status, nimbus_worker::InvokeStatus::Ok, "{}", o.log);
    assert_eq!(o.payload.len(), 6_291_556);
    let o = invoke(&t.engine, &s, r#"{"n": 6291557}"#).await;
    assert_error(&o, "Function.ResponseSizeTooLarge");
}

const LAMBDA_LIKE: &str = r#"
import decimal, logging

def unmarshallable(event, context):
    return {"tags": {"a", "b"}}

def quiet(event, context):
    logging.info("not shown: the root logger is at WARNING, as on Lambda")
    logging.getLogger("app").warning("careful")
    return {"ok": True}

def chatty(event, context):
    logging.getLogger().setLevel(logging.INFO)
    logging.info("hello %s", "world")
    cc = context.client_context
    return {
        "price": decimal.Decimal("1.5"),
        "count": decimal.Decimal("10"),
        "name": "caf\u00e9",
        "custom": cc.custom if cc else None,
        "app": cc.client.app_title if cc else None,
        "identity": context.identity.cognito_identity_id,
    }
"#;

/// Lambda's Python runtime, as functions see it: the root logger's format and level,
/// `Decimal` and non-ASCII text in the response, `client_context` and `identity` as
/// objects.
#[tokio::test(flavor = "multi_thread")]
async fn t15_python_behaves_as_lambdas_runtime() {
    let t = engine();
    let code = code(&[("app.py", LAMBDA_LIKE)]);
    let o = invoke(
        &t.engine,
        &spec("py-quiet", "python3.11", "app.quiet", code.path()),
        "{}",
    )
    .await;
    assert!(!o.log.contains("not shown"), "{}", o.log);
    let warning = o
        .log
        .lines()
        .find(|l| l.ends_with("careful"))
        .unwrap_or_else(|| panic!("no warning line:\n{}", o.log));
    let fields: Vec<&str> = warning.split('\t').collect();
    assert_eq!(fields.len(), 4, "{warning:?}");
    assert_eq!(fields[0], "[WARNING]");
    assert!(
        fields[1].len() == 24 && fields[1].ends_with('Z') && fields[1].as_bytes()[19] == b'.',
        "{warning:?}"
    );
    assert_eq!(fields[2], o.request_id);

    let chatty = spec("py-chatty", "python3.11", "app.chatty", code.path());
    let mut inv = nimbus_worker::Invocation::new("{}");
    inv.client_context =
        Some(r#"{"client": {"app_title": "shop"}, "custom": {"tenant": "a"}, "env": {}}"#.into());
    let o = t.engine.invoke(&chatty, inv).await.expect("invoke");
    assert!(
        o.log.lines().any(|l| l.starts_with("[INFO]\t")
            && l.ends_with(&format!("\t{}\thello world", o.request_id))),
        "{}",
        o.log
    );
    let text = String::from_utf8_lossy(&o.payload).to_string();
    assert!(
        text.contains("\"price\": 1.5") && text.contains("\"count\": 10"),
        "{text}"
    );
    assert!(text.contains("café"), "{text}");
    let v = json(&o);
    assert_eq!(v["custom"], serde_json::json!({"tenant": "a"}));
    assert_eq!(v["app"], "shop");
    assert_eq!(v["identity"], serde_json::Value::Null);

    // A response that is not JSON: Lambda's Runtime.MarshalError, with no frames.
    let bad = spec(
        "py-unmarshallable",
        "python3.11",
        "app.unmarshallable",
        code.path(),
    );
    let o = invoke(&t.engine, &bad, "{}").await;
    assert_error(&o, "Runtime.MarshalError");
    assert_eq!(
        json(&o),
        serde_json::json!({
            "errorMessage": "Unable to marshal response: Object of type set is not JSON serializable",
            "errorType": "Runtime.MarshalError",
            "requestId": o.request_id,
            "stackTrace": [],
        })
    );
}

/// What a handler can see of how its interpreter was started.
const STARTED: &str = r#"
import gc, os, sys, locale
MODULE_LEVEL = [object()]
def handler(event, context):
    import __main__
    return {
        # The runtime's own objects are frozen before the function loads; the
        # function's are not (frozen objects are not in gc.get_objects()).
        "runtime_frozen": gc.get_freeze_count() > 5000,
        "function_collectable": any(o is MODULE_LEVEL for o in gc.get_objects()),
        "cmdline": open("/proc/self/cmdline", "rb").read().split(b"\0")[1].decode(),
        "argv": sys.argv,
        "orig_argv": sys.orig_argv,
        "cwd": os.getcwd(),
        "path": sys.path[:4],
        "main": getattr(__main__, "__file__", None),
        "env": sorted(k for k in os.environ if not k.startswith("_X_AMZN")),
        "encoding": [sys.stdout.encoding, sys.getfilesystemencoding(), locale.getpreferredencoding()],
        "tz": os.environ.get("TZ"),
        "fds": sorted(int(f) for f in os.listdir("/proc/self/fd"))[:3],
        "mine": os.environ.get("MINE"),
        "extra": os.environ.get("PYTHONPATH"),
        "extra_on_path": "/var/task/extra" in sys.path,
    }
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t16_a_zygote_started_function_sees_what_a_fresh_start_shows() {
    let code = code(&[("app.py", STARTED)]);
    let mut s = spec("started", "python3.11", "app.handler", code.path());
    s.env.insert("MINE".into(), "value".into());
    same_from_a_zygote_as_fresh(&s, "-c", "/var/runtime/bootstrap.py").await;

    // A start-up variable of the function's own: no zygote could honour it, so the
    // function gets a fresh interpreter that does.
    s.env.insert("PYTHONPATH".into(), "/var/task/extra".into());
    let t = engine_with(|c| c.zygotes = true);
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["cmdline"], "/var/runtime/bootstrap.py", "{v}");
    assert_eq!(v["extra_on_path"], true, "{v}");
    assert_eq!(v["runtime_frozen"], true, "{v}");
    assert_eq!(v["function_collectable"], true, "{v}");
}
