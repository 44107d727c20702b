//! Response streaming and function URLs through `nimbus dev`, against `Invoke`, in one
//! run: the time to first byte of a streamed response, and what a URL adds to a call.
//!
//! Two functions: the no-op Python function of the other invocation benchmarks, and a
//! Node function that streams a first line, works 100 ms, then streams a second. Each
//! round starts a fresh `nimbus dev`, gives both functions a public URL (the no-op's
//! `BUFFERED`, the streamer's `RESPONSE_STREAM`), warms them, and times sequential calls
//! from one keep-alive connection per way of calling.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use base64::Engine;
use bytes::Bytes;
use nimbus_gateway::client::{LambdaConnection, Reply};

use crate::invoke_tracing::{DevProcess, Endpoint};
use crate::stats::percentile;

/// The streaming function: its first bytes come 100 ms before its last.
const STREAMER: &str = "exports.handler = awslambda.streamifyResponse(async (event, stream) => {
  stream.write('first\\n');
  await new Promise((r) => setTimeout(r, 100));
  stream.end('second\\n');
});
";

/// What one round measures, in calling order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// `Invoke` of the no-op function: the baseline of a URL call.
    InvokeNoop,
    /// A `BUFFERED` URL of the no-op function.
    UrlNoop,
    /// `Invoke` of the streamer: its response collected, so it arrives at the end.
    InvokeStreamer,
    /// `InvokeWithResponseStream` of the streamer.
    StreamStreamer,
    /// A `RESPONSE_STREAM` URL of the streamer.
    UrlStreamer,
}

pub const CALLS: [Call; 5] = [
    Call::InvokeNoop,
    Call::UrlNoop,
    Call::InvokeStreamer,
    Call::StreamStreamer,
    Call::UrlStreamer,
];

impl Call {
    pub fn name(self) -> &'static str {
        match self {
            Call::InvokeNoop => "Invoke, no-op (Python)",
            Call::UrlNoop => "URL BUFFERED, no-op (Python)",
            Call::InvokeStreamer => "Invoke, streamer (Node)",
            Call::StreamStreamer => "InvokeWithResponseStream, streamer (Node)",
            Call::UrlStreamer => "URL RESPONSE_STREAM, streamer (Node)",
        }
    }
}

/// Medians of one round, per call: time to first byte and to the last, in ms.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timing {
    pub first_byte_p50_ms: f64,
    pub total_p50_ms: f64,
    pub total_p99_ms: f64,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The Node runtime the host's interpreter serves.
fn node_runtime() -> anyhow::Result<&'static str> {
    let out = std::process::Command::new("node")
        .arg("--version")
        .output()
        .context("running node --version (the streamer is a Node function)")?;
    let version = String::from_utf8_lossy(&out.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .context("reading node's version")?;
    Ok(if major >= 20 {
        "nodejs20.x"
    } else {
        "nodejs18.x"
    })
}

fn zip_of(name: &str, body: &str) -> anyhow::Result<String> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file(name, zip::write::SimpleFileOptions::default())?;
    std::io::Write::write_all(&mut zip, body.as_bytes())?;
    Ok(base64::engine::general_purpose::STANDARD.encode(zip.finish()?.into_inner()))
}

fn expect(reply: &Reply, status: u16, what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        reply.status == status,
        "{what} answered {}: {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
    Ok(())
}

/// Gives `name` a public URL in `mode`; returns the URL's host (`Host` header).
async fn public_url(c: &mut LambdaConnection, name: &str, mode: &str) -> anyhow::Result<String> {
    let body = serde_json::json!({"AuthType": "NONE", "InvokeMode": mode});
    let r = c
        .send(
            "POST",
            &format!("/2021-10-31/functions/{name}/url"),
            "",
            &[],
            Bytes::from(body.to_string()),
        )
        .await?;
    expect(&r, 201, "CreateFunctionUrlConfig")?;
    let url: serde_json::Value = serde_json::from_slice(&r.body)?;
    let url = url["FunctionUrl"].as_str().context("no FunctionUrl")?;
    let host = url
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    for (sid, action, extra) in [
        (
            "url",
            "lambda:InvokeFunctionUrl",
            Some(("FunctionUrlAuthType", "NONE")),
        ),
        ("invoke", "lambda:InvokeFunction", None),
    ] {
        let mut stmt = serde_json::json!({"StatementId": sid, "Action": action, "Principal": "*"});
        if let Some((k, v)) = extra {
            stmt[k] = v.into();
        }
        let r = c
            .send(
                "POST",
                &format!("/2015-03-31/functions/{name}/policy"),
                "",
                &[],
                Bytes::from(stmt.to_string()),
            )
            .await?;
        expect(&r, 201, "AddPermission")?;
    }
    Ok(host)
}

/// Both functions with their URLs; returns the URL hosts (no-op, streamer).
async fn set_up(endpoint: &Endpoint) -> anyhow::Result<(String, String)> {
    endpoint.create_function("noop").await?;
    let mut c = endpoint.connect().await?;
    let r = c
        .create_function(&serde_json::json!({
            "FunctionName": "streamer",
            "Runtime": node_runtime()?,
            "Role": "arn:aws:iam::000000000000:role/bench",
            "Handler": "index.handler",
            "MemorySize": 1769,
            "Code": {"ZipFile": zip_of("index.js", STREAMER)?},
        }))
        .await?;
    expect(&r, 201, "CreateFunction")?;
    let noop = public_url(&mut c, "noop", "BUFFERED").await?;
    let streamer = public_url(&mut c, "streamer", "RESPONSE_STREAM").await?;
    Ok((noop, streamer))
}

async fn call(
    c: &mut LambdaConnection,
    which: Call,
    hosts: &(String, String),
) -> anyhow::Result<Reply> {
    let r = match which {
        Call::InvokeNoop => c.invoke("noop", b"{}", &[]).await?,
        Call::InvokeStreamer => c.invoke("streamer", b"{}", &[]).await?,
        Call::StreamStreamer => {
            c.send(
                "POST",
                "/2021-11-15/functions/streamer/response-streaming-invocations",
                "",
                &[],
                Bytes::from_static(b"{}"),
            )
            .await?
        }
        Call::UrlNoop => c.send_unsigned("GET", &hosts.0, "/", Bytes::new()).await?,
        Call::UrlStreamer => c.send_unsigned("GET", &hosts.1, "/", Bytes::new()).await?,
    };
    expect(&r, 200, which.name())?;
    anyhow::ensure!(
        r.header("x-amz-function-error").is_none(),
        "{} failed: {}",
        which.name(),
        String::from_utf8_lossy(&r.body)
    );
    if matches!(which, Call::InvokeStreamer | Call::UrlStreamer) {
        anyhow::ensure!(
            r.body.as_ref() == b"first\nsecond\n",
            "{}: {:?}",
            which.name(),
            r.body
        );
    }
    Ok(r)
}

/// One round: a fresh `nimbus dev`, `calls` timed calls of each kind (after warming).
pub async fn round(
    nimbus_bin: &Path,
    work_dir: &Path,
    calls: usize,
) -> anyhow::Result<Vec<(Call, Timing)>> {
    let mut dev = DevProcess::start(nimbus_bin, work_dir, &[]).await?;
    let endpoint = dev.endpoint();
    let hosts = set_up(&endpoint).await?;
    let mut out = Vec::new();
    for which in CALLS {
        let mut c = endpoint.connect().await?;
        for _ in 0..3 {
            call(&mut c, which, &hosts).await?;
        }
        let (mut first, mut total) = (Vec::with_capacity(calls), Vec::with_capacity(calls));
        for _ in 0..calls {
            let started = std::time::Instant::now();
            let r = call(&mut c, which, &hosts).await?;
            total.push(started.elapsed());
            first.push(r.first_byte);
        }
        first.sort_unstable();
        total.sort_unstable();
        out.push((
            which,
            Timing {
                first_byte_p50_ms: ms(percentile(&first, 50.0)),
                total_p50_ms: ms(percentile(&total, 50.0)),
                total_p99_ms: ms(percentile(&total, 99.0)),
            },
        ));
    }
    dev.check_alive()?;
    dev.stop().await;
    Ok(out)
}
