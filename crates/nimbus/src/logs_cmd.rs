//! `nimbus logs tail FUNCTION`: prints a function's log events through a gateway's
//! CloudWatch Logs API (FilterLogEvents, signed for service `logs`), oldest first;
//! `--follow` polls for new ones until Ctrl-C.
//!
//! An invocation's lines reach the log store when the invocation ends, stamped with the
//! times they were written, so a poll looks back [`FOLLOW_LOOKBACK`] (Lambda's longest
//! invocation plus Init) and prints only events whose id it has not printed yet.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::bail;
use serde_json::{json, Value};

use crate::api_client::{AwsError, Gateway};
use crate::aws_config::AwsSources;
use crate::cli::{LogsCommand, TailArgs};

/// How often `--follow` asks for new events.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// How far back each poll looks for events that were stored late.
const FOLLOW_LOOKBACK: Duration = Duration::from_secs(15 * 60 + 10);

pub async fn run(cmd: LogsCommand) -> anyhow::Result<()> {
    match cmd {
        LogsCommand::Tail(args) => tail(args).await,
    }
}

impl Gateway {
    async fn logs(
        &self,
        operation: &str,
        request: Value,
    ) -> anyhow::Result<Result<Value, AwsError>> {
        let target = format!("Logs_20140328.{operation}");
        self.send(
            "logs",
            "POST",
            "/",
            Some(&target),
            request.to_string().into_bytes(),
        )
        .await
    }

    /// Whether the function exists (Lambda's GetFunction).
    async fn function_exists(&self, name: &str) -> anyhow::Result<Result<bool, AwsError>> {
        let path = format!("/2015-03-31/functions/{name}");
        Ok(
            match self.send("lambda", "GET", &path, None, vec![]).await? {
                Ok(_) => Ok(true),
                Err(e) if e.error_type == "ResourceNotFoundException" => Ok(false),
                Err(e) => Err(e),
            },
        )
    }
}

/// `arn:aws:lambda:REGION:ACCOUNT:function:NAME[:QUALIFIER]` → `NAME`; names pass through.
fn function_name(f: &str) -> &str {
    match f.split_once(":function:") {
        Some((_, rest)) => rest.split(':').next().unwrap_or(rest),
        None => f,
    }
}

/// A refusal of the credentials gets a hint; anything else is shown as the gateway said.
fn explain(e: AwsError) -> anyhow::Error {
    match e.error_type.as_str() {
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "MissingAuthenticationTokenException" => anyhow::anyhow!(
            "the gateway refused the credentials ({}: {}); check AWS_ACCESS_KEY_ID / \
             AWS_SECRET_ACCESS_KEY, --profile and --region",
            e.error_type,
            e.message
        ),
        _ => anyhow::anyhow!("{e} (HTTP {})", e.status),
    }
}

/// Every event from `start_ms` on (all pages), oldest first.
async fn fetch(
    gw: &Gateway,
    group: &str,
    start_ms: u64,
    filter: Option<&str>,
) -> anyhow::Result<Result<Vec<Value>, AwsError>> {
    let mut events = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = json!({ "logGroupName": group, "startTime": start_ms, "interleaved": true });
        if let Some(f) = filter {
            req["filterPattern"] = f.into();
        }
        if let Some(t) = &token {
            req["nextToken"] = t.clone().into();
        }
        let page = match gw.logs("FilterLogEvents", req).await? {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        events.extend(page["events"].as_array().cloned().unwrap_or_default());
        token = page["nextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            return Ok(Ok(events));
        }
    }
}

fn print(e: &Value) {
    let ts = e["timestamp"].as_u64().unwrap_or(0);
    println!(
        "{} {} {}",
        nimbus_worker::logs::iso8601(ts),
        e["logStreamName"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or("")
    );
}

async fn tail(args: TailArgs) -> anyhow::Result<()> {
    let sources = AwsSources::from_env();
    let credentials = sources.credentials(args.api.profile.as_deref())?;
    let region = sources.region(args.api.region.as_deref(), args.api.profile.as_deref())?;
    let gw = Gateway::new(&args.api.endpoint, credentials, region)?;
    let function = function_name(&args.function).to_owned();
    let group = format!("/aws/lambda/{function}");
    let now_ms = nimbus_worker::logs::now_ms();
    let start = now_ms.saturating_sub(args.since.as_millis() as u64);
    // Event id → timestamp of what was printed (pruned to the look-back window).
    let mut printed: HashMap<String, u64> = HashMap::new();
    let mut newest = start;
    let mut function_checked = false;
    let follow = async {
        loop {
            let from = start.max(newest.saturating_sub(FOLLOW_LOOKBACK.as_millis() as u64));
            match fetch(&gw, &group, from, args.filter.as_deref()).await? {
                Ok(mut events) => {
                    events.sort_by_key(|e| {
                        (
                            e["timestamp"].as_u64(),
                            e["eventId"].as_str().map(str::to_owned),
                        )
                    });
                    for e in &events {
                        let id = e["eventId"].as_str().unwrap_or_default().to_owned();
                        let ts = e["timestamp"].as_u64().unwrap_or(0);
                        if printed.insert(id, ts).is_none() {
                            print(e);
                        }
                        newest = newest.max(ts);
                    }
                }
                // No log group yet: fine for a function that exists but has not run here.
                Err(e) if e.error_type == "ResourceNotFoundException" => {
                    if !function_checked {
                        match gw.function_exists(&function).await? {
                            Ok(true) => function_checked = true,
                            Ok(false) => bail!("function {function} not found"),
                            Err(e) => return Err(explain(e)),
                        }
                    }
                    if !args.follow {
                        eprintln!("no log events for {function} yet");
                    }
                }
                Err(e) => return Err(explain(e)),
            }
            if !args.follow {
                return anyhow::Ok(());
            }
            let keep_from = newest.saturating_sub(FOLLOW_LOOKBACK.as_millis() as u64 + 1000);
            printed.retain(|_, ts| *ts >= keep_from);
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    };
    tokio::select! {
        r = follow => r,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_arns() {
        assert_eq!(function_name("f"), "f");
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:000000000000:function:f"),
            "f"
        );
        assert_eq!(
            function_name("arn:aws:lambda:us-east-1:000000000000:function:f:live"),
            "f"
        );
    }
}
