//! Node.js functions through Nimbus's bundled bootstrap.
mod common;
use common::*;

const INDEX: &str = r#"
let calls = 0;
exports.handler = async (event, context) => {
  calls += 1;
  console.log('hello from node', event.name);
  return {
    echo: event, calls,
    requestId: context.awsRequestId,
    functionName: context.functionName,
    functionVersion: context.functionVersion,
    memory: context.memoryLimitInMB,
    arn: context.invokedFunctionArn,
    group: context.logGroupName,
    remaining: context.getRemainingTimeInMillis(),
    trace: process.env._X_AMZN_TRACE_ID,
    execEnv: process.env.AWS_EXECUTION_ENV,
    uid: process.getuid(),
  };
};
exports.callback = (event, context, cb) => { setTimeout(() => cb(null, { cb: true }), 5); };
// Answers at once but leaves a timer behind: Lambda sends the answer when the loop is
// empty, unless the function cleared callbackWaitsForEmptyEventLoop.
exports.pending = (event, context, cb) => {
  context.callbackWaitsForEmptyEventLoop = event.wait;
  setTimeout(() => console.log('pending timer fired'), 400);
  cb(null, { waited: event.wait });
};
exports.fail = async () => { throw new TypeError('bad type'); };
exports.throwString = async () => { throw 'just a string'; };
exports.sleepy = () => new Promise((resolve) => setTimeout(resolve, 30000));
exports.hog = async () => { const a = []; for (;;) a.push(Buffer.alloc(16 * 1024 * 1024, 1)); };
"#;

const ESM: &str = "export const handler = async (e) => ({ esm: true, got: e });\n\
                   export const fail = async () => { throw new RangeError('esm bad'); };\n";

#[tokio::test(flavor = "multi_thread")]
async fn t10_node_async_handler_context_and_logs() {
    let t = engine();
    let code = code(&[("index.js", INDEX)]);
    let s = spec("node-hello", "nodejs20.x", "index.handler", code.path());
    let o = invoke(&t.engine, &s, r#"{"name":"nimbus"}"#).await;
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["echo"]["name"], "nimbus");
    assert_eq!(v["requestId"], o.request_id.as_str());
    assert_eq!(v["functionName"], "node-hello");
    assert_eq!(v["functionVersion"], "$LATEST");
    assert_eq!(v["memory"], "128");
    assert_eq!(v["arn"], s.arn.as_str());
    assert_eq!(v["group"], "/aws/lambda/node-hello");
    assert_eq!(v["execEnv"], "AWS_Lambda_nodejs20.x");
    assert_eq!(v["uid"], 993);
    assert!(v["remaining"].as_i64().unwrap() > 5_000);
    assert!(v["trace"].as_str().unwrap().starts_with("Root=1-"));
    assert!(
        o.log
            .contains(&format!("\t{}\tINFO\thello from node nimbus", o.request_id)),
        "{}",
        o.log
    );
    assert!(o.log.contains("Init Duration"));
    let o2 = invoke(&t.engine, &s, r#"{"name":"warm"}"#).await;
    assert_eq!(json(&o2)["calls"], 2);
    assert!(!o2.log.contains("Init Duration"));
}

#[tokio::test(flavor = "multi_thread")]
async fn t11_node_callback_esm_and_errors() {
    let t = engine();
    let code = code(&[("index.js", INDEX), ("esm.mjs", ESM)]);
    let o = invoke(
        &t.engine,
        &spec("node-cb", "nodejs20.x", "index.callback", code.path()),
        "{}",
    )
    .await;
    assert_ok(&o);
    assert_eq!(json(&o)["cb"], true);
    // callbackWaitsForEmptyEventLoop: true (the default) waits for the pending timer,
    // whose output lands in this invocation's log; false answers at once.
    let pending = spec("node-pending", "nodejs20.x", "index.pending", code.path());
    let o = invoke(&t.engine, &pending, r#"{"wait": true}"#).await;
    assert_ok(&o);
    assert!(
        o.duration >= std::time::Duration::from_millis(400),
        "{:?}",
        o.duration
    );
    assert!(o.log.contains("pending timer fired"), "{}", o.log);
    let o = invoke(&t.engine, &pending, r#"{"wait": false}"#).await;
    assert_ok(&o);
    assert!(
        o.duration < std::time::Duration::from_millis(300),
        "{:?}",
        o.duration
    );
    assert!(!o.log.contains("pending timer fired"), "{}", o.log);
    let o = invoke(
        &t.engine,
        &spec("node-esm", "nodejs20.x", "esm.handler", code.path()),
        "[1,2]",
    )
    .await;
    assert_ok(&o);
    assert_eq!(json(&o)["got"], serde_json::json!([1, 2]));
    // An ES module's error has the same shape as CommonJS's.
    let o = invoke(
        &t.engine,
        &spec("node-esm-fail", "nodejs20.x", "esm.fail", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "RangeError");
    let v = json(&o);
    assert_eq!(v["errorMessage"], "esm bad", "{v}");
    let trace = v["trace"]
        .as_array()
        .unwrap_or_else(|| panic!("no trace: {v}"));
    assert_eq!(trace[0], "RangeError: esm bad", "{v}");
    assert!(
        trace
            .iter()
            .any(|l| l.as_str().unwrap().contains("file:///var/task/esm.mjs")),
        "{v}"
    );
    let o = invoke(
        &t.engine,
        &spec("node-fail", "nodejs20.x", "index.fail", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "TypeError");
    let v = json(&o);
    assert_eq!(v["errorMessage"], "bad type");
    // Lambda's Node shape: `trace` is the stack's lines, the first "TypeError: bad type".
    let trace = v["trace"]
        .as_array()
        .unwrap_or_else(|| panic!("no trace: {v}"));
    assert_eq!(trace[0], "TypeError: bad type", "{v}");
    assert!(
        trace
            .iter()
            .any(|l| l.as_str().unwrap().contains("/var/task/index.js")),
        "{v}"
    );
    assert!(v.get("stackTrace").is_none(), "{v}");
    // A thrown string is reported as Lambda does: its typeof, the string, no trace.
    let o = invoke(
        &t.engine,
        &spec(
            "node-throw-string",
            "nodejs20.x",
            "index.throwString",
            code.path(),
        ),
        "{}",
    )
    .await;
    assert_error(&o, "string");
    assert_eq!(
        json(&o),
        serde_json::json!({"errorType": "string", "errorMessage": "just a string", "trace": []})
    );
    let o = invoke(
        &t.engine,
        &spec("node-missing", "nodejs20.x", "index.nothing", code.path()),
        "{}",
    )
    .await;
    assert_error(&o, "Runtime.HandlerNotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn t12_node_timeout_and_out_of_memory() {
    let t = engine();
    let code = code(&[("index.js", INDEX)]);
    let mut s = spec("node-sleepy", "nodejs20.x", "index.sleepy", code.path());
    s.timeout = std::time::Duration::from_millis(1500);
    let o = invoke(&t.engine, &s, "{}").await;
    assert_error(&o, "Sandbox.Timedout");
    assert!(
        o.log.contains("Task timed out after 1.50 seconds"),
        "{}",
        o.log
    );
    // At 128 MB's CPU share, filling 16 MB buffers up to the limit can take seconds on
    // a busy host: the timeout must not win the race against the OOM killer.
    let mut hog = spec("node-hog", "nodejs20.x", "index.hog", code.path());
    hog.timeout = std::time::Duration::from_secs(60);
    let o = invoke(&t.engine, &hog, "{}").await;
    // Node either dies by the cgroup OOM killer or aborts on its own heap limit.
    match &o.status {
        nimbus_worker::InvokeStatus::FunctionError { error_type } => {
            assert!(
                error_type == "Runtime.OutOfMemory" || error_type == "Runtime.ExitError",
                "{error_type}: {}",
                o.log
            )
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(t.engine.metrics().reserved_mb, 0);
}

/// What a handler can see of how its interpreter was started.
const STARTED: &str = r#"
const fs = require('fs');
exports.handler = async () => ({
  cmdline: fs.readFileSync('/proc/self/cmdline', 'utf8').split('\0')[1],
  argv: process.argv,
  execArgv: process.execArgv,
  main: require.main && require.main.filename,
  cwd: process.cwd(),
  env: Object.keys(process.env).filter((k) => !k.startsWith('_X_AMZN')).sort(),
  paths: module.paths.slice(0, 3),
  mine: process.env.MINE,
  fds: fs.readdirSync('/proc/self/fd').map(Number).sort((a, b) => a - b).slice(0, 3),
});
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t13_a_zygote_started_function_sees_what_a_fresh_start_shows() {
    let code = code(&[("index.js", STARTED)]);
    let mut s = spec("started", "nodejs20.x", "index.handler", code.path());
    s.env.insert("MINE".into(), "value".into());
    same_from_a_zygote_as_fresh(&s, "-e", "/var/runtime/bootstrap.js").await;

    // NODE_OPTIONS of the function's own: a fresh interpreter that honours it.
    s.env
        .insert("NODE_OPTIONS".into(), "--max-old-space-size=100".into());
    let t = engine_with(|c| c.zygotes = true);
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    assert_eq!(json(&o)["cmdline"], "/var/runtime/bootstrap.js");
}
