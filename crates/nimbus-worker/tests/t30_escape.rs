//! Escape attempts from inside a function, through the whole engine. Each
//! must fail, whether the function's Python was started for it or was a zygote started
//! ahead and handed the function. (The sandbox crate's own tests cover each mechanism
//! alone.)
mod common;
use common::*;

const ESCAPE: &str = r#"
import ctypes, errno, os, socket

def try_(f):
    try:
        return f()
    except Exception as e:
        return f"denied: {type(e).__name__}: {e}"

def connect(port):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(("127.0.0.1", port))
        return "connected"
    except OSError as e:
        return f"denied: {e}"
    finally:
        s.close()

def handler(event, context):
    libc = ctypes.CDLL(None, use_errno=True)
    out = {}
    out["shadow"] = try_(lambda: open("/etc/shadow").read())
    out["root_home"] = os.path.exists("/root")
    out["procs"] = sorted(int(p) for p in os.listdir("/proc") if p.isdigit())
    r = libc.syscall(101, 16, 1, 0, 0)  # ptrace(PTRACE_ATTACH, 1)
    out["ptrace"] = [r, errno.errorcode.get(ctypes.get_errno())]
    out["write_task"] = try_(lambda: open("/var/task/x", "w").write("x"))
    out["other_tmp"] = sorted(os.listdir("/tmp"))
    open("/tmp/" + context.function_name, "w").write("mine")
    out["host_port"] = connect(event["host_port"])
    out["runtime_api"] = connect(9001)
    out["setuid"] = try_(lambda: os.setuid(0))
    out["cmdline"] = open("/proc/self/cmdline", "rb").read().split(b"\0")[1].decode()
    out["zygote_fd"] = os.environ.get("NIMBUS_ZYGOTE_FD")
    return out
"#;

#[tokio::test(flavor = "multi_thread")]
async fn t30_function_cannot_escape() {
    // A service on the host's loopback, e.g. a node control port.
    let host = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = host.local_addr().unwrap().port();
    for zygotes in [true, false] {
        let t = engine_with(|c| c.zygotes = zygotes);
        cannot_escape(&t, port, zygotes).await;
    }
}

async fn cannot_escape(t: &TestEngine, port: u16, zygote: bool) {
    let code = code(&[("app.py", ESCAPE)]);
    let payload = format!(r#"{{"host_port":{port}}}"#);
    let a = spec("escape-a", "python3.11", "app.handler", code.path());
    let b = spec("escape-b", "python3.11", "app.handler", code.path());
    let oa = invoke(&t.engine, &a, &payload).await;
    assert_ok(&oa);
    let ob = invoke(&t.engine, &b, &payload).await;
    assert_ok(&ob);
    for o in [&oa, &ob] {
        let v = json(o);
        // Which path ran it: a zygote is `python3 -c <zygote>`, else the bootstrap.
        let want = if zygote {
            "-c"
        } else {
            "/var/runtime/bootstrap.py"
        };
        assert_eq!(v["cmdline"], want, "{v}");
        assert_eq!(v["zygote_fd"], serde_json::Value::Null, "{v}");
        assert!(
            v["shadow"].as_str().unwrap_or("").is_empty()
                || v["shadow"].as_str().unwrap().starts_with("denied"),
            "{v}"
        );
        assert_eq!(v["root_home"], false, "{v}");
        let procs = v["procs"].as_array().unwrap();
        assert!(
            procs.len() <= 3 && procs.contains(&serde_json::json!(1)),
            "host processes visible: {v}"
        );
        assert_eq!(v["ptrace"], serde_json::json!([-1, "EPERM"]), "{v}");
        assert!(
            v["write_task"]
                .as_str()
                .unwrap()
                .starts_with("denied: OSError"),
            "{v}"
        );
        assert!(
            v["host_port"].as_str().unwrap().starts_with("denied"),
            "reached the host: {v}"
        );
        assert_eq!(v["runtime_api"], "connected", "{v}");
        assert!(
            v["setuid"]
                .as_str()
                .unwrap()
                .starts_with("denied: PermissionError"),
            "{v}"
        );
    }
    // b does not see a's /tmp file (and vice versa).
    assert_eq!(json(&ob)["other_tmp"], serde_json::json!(["lost+found"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn t31_tmp_is_disk_backed_and_bounded() {
    let t = engine();
    let code = code(&[(
        "app.py",
        r#"
import os
def handler(event, context):
    st = os.statvfs("/tmp")
    total_mb = st.f_blocks * st.f_frsize // (1024 * 1024)
    written = 0
    err = None
    try:
        with open("/tmp/fill", "wb") as f:
            chunk = b"\0" * (8 * 1024 * 1024)
            while True:
                f.write(chunk); f.flush(); written += len(chunk)
    except OSError as e:
        err = e.strerror
    os.unlink("/tmp/fill")
    return {"total_mb": total_mb, "written_mb": written // (1024 * 1024), "err": err}
"#,
    )]);
    let mut s = spec("filltmp", "python3.11", "app.handler", code.path());
    s.timeout = std::time::Duration::from_secs(60);
    let o = invoke(&t.engine, &s, "{}").await;
    assert_ok(&o);
    let v = json(&o);
    assert_eq!(v["err"], "No space left on device", "{v}");
    let total = v["total_mb"].as_u64().unwrap();
    assert!((490..=512).contains(&total), "{v}");
    // 512 MB written to /tmp did not count against the 128 MB memory limit.
    assert!(v["written_mb"].as_u64().unwrap() >= 480, "{v}");
    assert!(o.max_memory_mb <= 128);
}
