//! The attack that opened issue 13, replayed against the Compose cluster (workers and
//! metadata nodes in their own containers, on their own addresses).
//!
//! From inside a function: open TCP connections to every metadata node, both gateways
//! and the other worker. Every one must fail, while the function still reaches the
//! counter on the Docker host (allowed with `--egress-allow`): the function has a
//! network, just not to the cluster. From the runner's host, as a process on the
//! cluster's network: without a certificate, and with a worker's certificate, creating
//! an account and reading an access-key secret must be refused; with the operator's
//! (admin) certificate, creating one works.

use nimbus_meta::{ClientError, MetaClient};
use nimbus_tls::{Role, Tls, Transport};
use nimbus_types::Command;

use super::api::expect_status;
use super::{InvocationCluster, ACCOUNT, GATEWAYS, HOST_IP, WORKERS};
use crate::scenario::MetaCluster;
use crate::summary::Summary;

/// Tries each target and returns what happened, per target name.
const PROBE: &str = r#"import socket

def handler(event, context):
    seen = {}
    for name, host, port in event["targets"]:
        try:
            socket.create_connection((host, port), timeout=3).close()
            seen[name] = "connected"
        except OSError as e:
            seen[name] = "refused: %s" % e
    return seen
"#;

pub async fn run(
    meta: &MetaCluster,
    inv: &InvocationCluster,
    seed: u64,
) -> anyhow::Result<Summary> {
    let mut notes = Vec::new();

    // 1. From inside a function on worker-a1.
    let name = "chaos-attack";
    create_probe(inv, name).await?;
    let mut targets: Vec<(String, String, u16)> = meta
        .nodes
        .iter()
        .map(|(svc, _, ip)| (svc.clone(), ip.clone(), 17001))
        .collect();
    for (svc, addr) in GATEWAYS {
        let (ip, port) = addr.split_once(':').unwrap_or((addr, "9000"));
        targets.push((svc.into(), ip.into(), port.parse().unwrap_or(9000)));
    }
    for (svc, ip, _) in WORKERS {
        targets.push((svc.into(), ip.into(), 18001));
    }
    targets.push(("counter".into(), HOST_IP.into(), inv.counter.port));
    let event = serde_json::json!({ "targets": targets }).to_string();
    let path = format!("/2015-03-31/functions/{name}/invocations");
    let reply = inv.api().call("POST", &path, event).await?;
    expect_status(&reply, &[200], "invoking the probe")?;
    let seen: std::collections::BTreeMap<String, String> = serde_json::from_slice(&reply.body)
        .map_err(|e| {
            anyhow::anyhow!(
                "probe answered {:?}: {e}",
                String::from_utf8_lossy(&reply.body)
            )
        })?;
    for (target, outcome) in &seen {
        let reachable = outcome == "connected";
        match (target.as_str(), reachable) {
            ("counter", false) => {
                notes.push(format!("the allowed host was not reached: {outcome}"))
            }
            ("counter", true) => {}
            (t, true) => notes.push(format!("a function reached {t}")),
            _ => {}
        }
    }
    if seen.len() != targets.len() {
        notes.push(format!(
            "the probe answered for {} of {} targets",
            seen.len(),
            targets.len()
        ));
    }

    // Gateways do not register, but each one that called a worker is in that worker's
    // deny set by its own address (on `control`, where it calls from): gateway1 just
    // placed the probe on one of the workers.
    let network = format!("{}_control", inv.compose.project);
    let format = format!("{{{{(index .NetworkSettings.Networks \"{network}\").IPAddress}}}}");
    let gateway1 = inv.compose.container(GATEWAYS[0].0);
    let ip = crate::docker::run("docker", &["inspect", "-f", &format, &gateway1], &[]).await?;
    let mut sets = String::new();
    for i in 0..WORKERS.len() {
        let nft = [
            "exec",
            &inv.worker_container(i),
            "nft",
            "list",
            "set",
            "inet",
            "nimbus",
            "cluster_nodes",
        ];
        sets += &crate::docker::run("docker", &nft, &[]).await?;
    }
    let listed = sets
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|a| !a.is_empty() && a == ip.trim());
    if !listed {
        notes.push(format!(
            "gateway1 ({}) is in no worker's deny set",
            ip.trim()
        ));
    }

    // 2. From the network, with and without certificates.
    let addrs = meta.addrs();
    let create = |id: &str| Command::PutAccount {
        account_id: id.into(),
    };
    let mut plain = MetaClient::new(&addrs, &Transport::Plaintext)?;
    plain.deadline = std::time::Duration::from_secs(3);
    if plain.write(create("999999999991")).await.is_ok() {
        notes.push("a process without a certificate created an account".into());
    }
    let worker_tls = Transport::Tls(Tls::load(meta.tls.join(WORKERS[0].0), Role::Worker)?);
    let as_worker = MetaClient::new(&addrs, &worker_tls)?;
    match as_worker.write(create("999999999992")).await {
        Err(ClientError::Denied(_)) => {}
        other => notes.push(format!(
            "a worker's certificate creating an account got {other:?}"
        )),
    }
    match as_worker.access_key_secret(super::ACCESS_KEY_ID).await {
        Err(ClientError::Denied(_)) => {}
        other => notes.push(format!(
            "a worker's certificate reading a secret got {}",
            if other.is_ok() {
                "the secret".to_string()
            } else {
                format!("{other:?}")
            }
        )),
    }
    if let Err(e) = meta.client()?.write(create(ACCOUNT)).await {
        notes.push(format!(
            "the admin certificate could not write an account: {e}"
        ));
    }

    Ok(Summary {
        scenario: "attack-from-function-and-network".into(),
        seed,
        ops: targets.len() as u64 + 4,
        faults: 0,
        acked_writes_lost: 0,
        events_lost: 0,
        max_concurrency: (0, 0),
        longest_unavailable_ms: 0,
        linearizable: true,
        recovered: notes.is_empty(),
        notes: notes.join("; "),
    })
}

async fn create_probe(inv: &InvocationCluster, name: &str) -> anyhow::Result<()> {
    use base64::Engine;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("app.py", zip::write::SimpleFileOptions::default())?;
    std::io::Write::write_all(&mut zip, PROBE.as_bytes())?;
    let code = base64::engine::general_purpose::STANDARD.encode(zip.finish()?.into_inner());
    let body = serde_json::json!({
        "FunctionName": name, "Runtime": "python3.11", "Handler": "app.handler",
        "Role": format!("arn:aws:iam::{ACCOUNT}:role/chaos"), "Timeout": 30,
        "MemorySize": 128, "Code": {"ZipFile": code},
    });
    let r = inv
        .api()
        .call("POST", "/2015-03-31/functions", body.to_string())
        .await?;
    expect_status(&r, &[201, 409], "CreateFunction (attack probe)")
}
