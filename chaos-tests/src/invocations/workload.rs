//! The load during an invocation scenario: sync clients on the function's `live` alias,
//! an async producer, and the control plane publishing versions and moving the alias,
//! each recording what was acknowledged so that the checks can look for losses.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use nimbus_gateway::client::Reply;

use super::api::{Api, SyncOutcome};
use super::cluster::event;
use crate::lock;

/// What the invocation clients saw.
#[derive(Debug, Default)]
pub struct InvokeObservations {
    pub ops: AtomicU64,
    pub ok: AtomicU64,
    pub throttled: AtomicU64,
    pub failed: AtomicU64,
    pub first_failure: Mutex<Option<String>>,
    /// Completion times (ns since `origin`) of successful sync invocations.
    pub successes: Mutex<Vec<u64>>,
    /// Ids of async events a gateway accepted with 202.
    pub accepted: Mutex<Vec<String>>,
    /// Versions whose PublishVersion was acknowledged (201).
    pub acked_versions: Mutex<Vec<u64>>,
    /// The version the last acknowledged UpdateAlias pointed `live` to.
    pub acked_alias: Mutex<Option<u64>>,
    /// Control-plane calls (update, publish, alias) that did not succeed.
    pub admin_failed: AtomicU64,
}

/// Sync clients and an async producer against one function, until `stop`.
pub struct InvokeWorkload {
    /// Where the sync clients and the async producer call.
    pub api: Api,
    /// Where the control plane (publish, move the alias) and the checks call.
    pub control: Api,
    pub function: String,
    pub obs: Arc<InvokeObservations>,
    pub origin: Instant,
    pub sync_sleep_s: f64,
    /// The counter's port (the functions report to it).
    pub counter_port: u16,
}

impl InvokeWorkload {
    pub fn now(&self) -> u64 {
        self.origin.elapsed().as_nanos() as u64
    }

    /// Seconds since `origin`, for the log.
    pub fn seconds(&self) -> f64 {
        self.now() as f64 / 1e9
    }

    fn payload(&self, id: &str, sleep_s: f64) -> Bytes {
        event(self.counter_port, &self.function, id, sleep_s)
    }

    /// UpdateFunctionConfiguration (a new description, so the publish makes a new
    /// version), PublishVersion, UpdateAlias `live`; records what was acknowledged.
    async fn publish_and_move_alias(&self, n: u64) -> bool {
        let f = &self.function;
        let update = serde_json::json!({"Description": format!("rev {n}")}).to_string();
        let ok = |r: &anyhow::Result<Reply>, status| matches!(r, Ok(r) if r.status == status);
        let r = self
            .control
            .call(
                "PUT",
                &format!("/2015-03-31/functions/{f}/configuration"),
                update,
            )
            .await;
        if !ok(&r, 200) {
            return false;
        }
        let r = self
            .control
            .call(
                "POST",
                &format!("/2015-03-31/functions/{f}/versions"),
                "{}".into(),
            )
            .await;
        let version = match &r {
            Ok(r) if r.status == 201 => serde_json::from_slice::<serde_json::Value>(&r.body)
                .ok()
                .and_then(|v| v["Version"].as_str().and_then(|s| s.parse::<u64>().ok())),
            _ => None,
        };
        let Some(version) = version else {
            return false;
        };
        lock(&self.obs.acked_versions).push(version);
        let body = serde_json::json!({"FunctionVersion": version.to_string()}).to_string();
        let r = self
            .control
            .call(
                "PUT",
                &format!("/2015-03-31/functions/{f}/aliases/live"),
                body,
            )
            .await;
        if !ok(&r, 200) {
            return false;
        }
        *lock(&self.obs.acked_alias) = Some(version);
        true
    }

    /// Acknowledged control-plane writes missing after the faults: versions that are not
    /// listed, plus one if `live` points below the last acknowledged UpdateAlias (a later
    /// update whose answer was lost may have moved it further; that is not a loss).
    pub async fn lost_writes(&self) -> anyhow::Result<(usize, String)> {
        let f = &self.function;
        let mut listed = std::collections::HashSet::new();
        let mut marker = String::new();
        loop {
            let path = format!("/2015-03-31/functions/{f}/versions");
            let query = if marker.is_empty() {
                "MaxItems=50".to_string()
            } else {
                format!("Marker={marker}&MaxItems=50")
            };
            let reply = self.control.get(&path, &query).await?;
            anyhow::ensure!(
                reply.status == 200,
                "ListVersionsByFunction: {}",
                reply.status
            );
            let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
            for e in v["Versions"].as_array().into_iter().flatten() {
                if let Some(n) = e["Version"].as_str().and_then(|s| s.parse::<u64>().ok()) {
                    listed.insert(n);
                }
            }
            match v["NextMarker"].as_str() {
                Some(m) if !m.is_empty() => marker = m.to_string(),
                _ => break,
            }
        }
        let acked = lock(&self.obs.acked_versions).clone();
        let missing: Vec<u64> = acked
            .iter()
            .copied()
            .filter(|v| !listed.contains(v))
            .collect();
        let mut lost = missing.len();
        let mut notes = if missing.is_empty() {
            String::new()
        } else {
            format!("acknowledged versions missing: {missing:?}")
        };
        let acked_alias = *lock(&self.obs.acked_alias);
        if let Some(want) = acked_alias {
            let reply = self
                .control
                .get(&format!("/2015-03-31/functions/{f}/aliases/live"), "")
                .await?;
            let v: serde_json::Value = serde_json::from_slice(&reply.body)?;
            let now = v["FunctionVersion"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok());
            if now.is_none_or(|n| n < want) {
                lost += 1;
                notes = format!("{notes} alias live is at {now:?}, acknowledged {want}");
            }
        }
        Ok((lost, notes))
    }

    pub async fn run(
        self: Arc<Self>,
        sync_clients: usize,
        async_every: Option<Duration>,
        stop: Arc<AtomicBool>,
    ) {
        let mut tasks = Vec::new();
        for client in 0..sync_clients {
            let (w, stop) = (self.clone(), stop.clone());
            let mut n = 0u64;
            tasks.push(tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let payload = w.payload(&format!("s{client}-{n}"), w.sync_sleep_s);
                    w.obs.ops.fetch_add(1, Ordering::Relaxed);
                    let live = format!("{}:live", w.function);
                    match w.api.invoke_sync(client, &live, &payload).await {
                        SyncOutcome::Ok => {
                            w.obs.ok.fetch_add(1, Ordering::Relaxed);
                            let t = w.now();
                            lock(&w.obs.successes).push(t);
                        }
                        SyncOutcome::Throttled => {
                            w.obs.throttled.fetch_add(1, Ordering::Relaxed);
                            eprintln!(
                                "  [{:.1}s] a sync invocation is still throttled after retries",
                                w.seconds()
                            );
                        }
                        SyncOutcome::Failed(e) => {
                            w.obs.failed.fetch_add(1, Ordering::Relaxed);
                            lock(&w.obs.first_failure).get_or_insert(e);
                        }
                    }
                }
            }));
        }
        // The control plane at the same time: a configuration update, a publish and the
        // `live` alias moved to the new version, every second.
        {
            let (w, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    w.obs.ops.fetch_add(1, Ordering::Relaxed);
                    if !w.publish_and_move_alias(n).await {
                        w.obs.admin_failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
        }
        if let Some(every) = async_every {
            let (w, stop) = (self.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    let id = format!("ev-{n}");
                    let payload = w.payload(&id, 0.1);
                    w.obs.ops.fetch_add(1, Ordering::Relaxed);
                    if w.api.invoke_async(n as usize, &w.function, &payload).await {
                        lock(&w.obs.accepted).push(id);
                    }
                    tokio::time::sleep(every).await;
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}
