//! `nimbus cluster …`: administration of the metadata cluster.

use std::collections::BTreeMap;

use anyhow::Context;
use nimbus_meta::MetaClient;
use nimbus_tls::Transport;
use serde::Serialize;

use crate::cli::{ClusterCommand, Output};

#[derive(Serialize)]
struct Status {
    leader: Option<u64>,
    /// The leader, by its own answer, has heard from no quorum within check-quorum's
    /// bound: it refuses calls while the others elect a new one.
    leader_quorum_lost: bool,
    term: u64,
    members: Vec<Member>,
    /// Region → zone or edge location → its registered workers (registration written
    /// or refreshed within `REGISTRATION_TTL_MS`; gateways decide liveness themselves by
    /// probing); empty when the registry could not be read.
    regions: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// A registration older than this is a worker that died without deregistering (workers
/// refresh theirs every 5 minutes by default; gateways drop it after as long).
const REGISTRATION_TTL_MS: u64 = 900_000;

/// Registered workers by region and by zone (`zone:NAME`) or edge location (`edge:NAME`).
async fn registered_workers(
    addrs: &[String],
    t: &Transport,
) -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, BTreeMap<String, Vec<String>>> = BTreeMap::new();
    let refs: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let Ok(client) = MetaClient::new(&refs, t) else {
        return out;
    };
    let Ok((_, workers)) = client.list(nimbus_types::keys::WORKER, None, 100_000).await else {
        return out;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    for (_, e) in workers {
        let nimbus_types::Entity::Worker(w) = e else {
            continue;
        };
        if now.saturating_sub(w.last_heartbeat_ms) > REGISTRATION_TTL_MS {
            continue;
        }
        let place = match &w.placement {
            nimbus_types::Placement::Zone(z) => format!("zone:{z}"),
            nimbus_types::Placement::EdgeLocation(l) => format!("edge:{l}"),
        };
        out.entry(w.region.clone())
            .or_default()
            .entry(place)
            .or_default()
            .push(w.id.clone());
    }
    out
}

#[derive(Serialize)]
struct Member {
    id: u64,
    addr: String,
    role: String,
    /// The member's own applied index (`None` when it did not answer).
    applied: Option<u64>,
    /// The highest index the member knows to be committed; above `applied` while it
    /// catches up.
    committed: Option<u64>,
    reachable: bool,
}

pub async fn run(cmd: ClusterCommand, t: Transport) -> anyhow::Result<()> {
    match cmd {
        ClusterCommand::Status { meta, output } => status(&meta, output, &t).await,
        ClusterCommand::AddEdgeLocation {
            meta,
            region,
            location,
        } => {
            let client = MetaClient::from_list(&meta, &t)?;
            for cmd in [
                nimbus_types::Command::PutRegion {
                    name: region.clone(),
                },
                nimbus_types::Command::PutEdgeLocation {
                    region: region.clone(),
                    location: location.clone(),
                },
            ] {
                client.write(cmd).await.context("add-edge-location")?;
            }
            println!("edge location {location} added to {region}");
            Ok(())
        }
        ClusterCommand::AddMember { meta, id, addr } => {
            let client = MetaClient::from_list(&meta, &t)?;
            println!(
                "{}",
                client.add_member(id, &addr).await.context("add-member")?
            );
            Ok(())
        }
        ClusterCommand::Snapshot { meta, out } => snapshot(&meta, &out, &t).await,
        ClusterCommand::RemoveMember { meta, id } => {
            let client = MetaClient::from_list(&meta, &t)?;
            println!(
                "{}",
                client.remove_member(id).await.context("remove-member")?
            );
            Ok(())
        }
    }
}

/// The leader's address, as the first of the given nodes that knows a leader reports it.
async fn find_leader(meta: &str, t: &Transport) -> Option<String> {
    for a in meta.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if let Ok(s) = MetaClient::node_status(a, t).await {
            let addr = s
                .leader
                .and_then(|l| s.members.iter().find(|m| m.id == l))
                .map(|m| m.addr.clone());
            // The node itself is the leader: use the address the caller reached it at.
            match (s.leader == Some(s.id), addr) {
                (true, _) => return Some(a.to_string()),
                (false, Some(addr)) => return Some(addr),
                (false, None) => continue,
            }
        }
    }
    None
}

/// Finds the leader among the given nodes (or the members they know) and backs it up.
async fn snapshot(meta: &str, out: &std::path::Path, t: &Transport) -> anyhow::Result<()> {
    // A node may not know the leader for a moment (just started, or an election is
    // under way): ask again for a few seconds before giving up.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut leader_addr = None;
    while leader_addr.is_none() && std::time::Instant::now() < deadline {
        leader_addr = find_leader(meta, t).await;
        if leader_addr.is_none() {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }
    let leader = leader_addr.with_context(|| format!("no metadata leader found via {meta}"))?;
    let applied = MetaClient::backup(&leader, out, t)
        .await
        .with_context(|| format!("backup from {leader}"))?;
    let size = std::fs::metadata(out).map(|m| m.len()).unwrap_or(0);
    println!(
        "wrote {} ({size} bytes, state up to log index {applied})",
        out.display()
    );
    Ok(())
}

async fn status(meta: &str, output: Output, t: &Transport) -> anyhow::Result<()> {
    let addrs: Vec<String> = meta
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    // Ask every given node; the membership comes from the highest-term answer.
    let mut answers = Vec::new();
    for a in &addrs {
        if let Ok(s) = MetaClient::node_status(a, t).await {
            answers.push(s);
        }
    }
    let best = answers
        .iter()
        .max_by_key(|s| (s.term, s.leader.is_some(), s.applied))
        .with_context(|| format!("no metadata node answered at {meta}"))?
        .clone();
    let mut members = Vec::new();
    let mut leader_quorum_lost = false;
    for m in &best.members {
        // Each member's own view of its indexes; ask it if we did not already.
        let own = match answers.iter().find(|s| s.id == m.id) {
            Some(s) => Some(s.clone()),
            None => MetaClient::node_status(&m.addr, t).await.ok(),
        };
        if Some(m.id) == best.leader {
            leader_quorum_lost = own.as_ref().is_some_and(|s| s.quorum_lost);
        }
        members.push(Member {
            id: m.id,
            addr: m.addr.clone(),
            role: m.role.clone(),
            applied: own.as_ref().map(|s| s.applied),
            committed: own.as_ref().map(|s| s.committed),
            reachable: own.is_some(),
        });
    }
    let status = Status {
        leader: best.leader,
        leader_quorum_lost,
        term: best.term,
        members,
        regions: registered_workers(&addrs, t).await,
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&status)?),
        Output::Text => {
            let leader = status
                .leader
                .map(|l| l.to_string())
                .unwrap_or_else(|| "none".into());
            let silent = if status.leader_quorum_lost {
                "  (hears no quorum: refusing calls)"
            } else {
                ""
            };
            println!("leader: {leader}  term: {}{silent}", status.term);
            println!(
                "{:<4} {:<22} {:<9} {:>8} {:>9}",
                "ID", "ADDRESS", "ROLE", "APPLIED", "COMMITTED"
            );
            let index = |i: Option<u64>| i.map_or_else(|| "down".into(), |i| i.to_string());
            for m in &status.members {
                println!(
                    "{:<4} {:<22} {:<9} {:>8} {:>9}",
                    m.id,
                    m.addr,
                    m.role,
                    index(m.applied),
                    index(m.committed)
                );
            }
            for (region, places) in &status.regions {
                println!("region {region}");
                for (place, workers) in places {
                    println!(
                        "  {place:<24} {} registered: {}",
                        workers.len(),
                        workers.join(", ")
                    );
                }
            }
        }
    }
    Ok(())
}
