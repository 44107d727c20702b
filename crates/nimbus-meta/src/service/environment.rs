//! Functions' environment variables, sealed at rest like code and access-key secrets.
//!
//! The first node that receives a client's write seals every value (AES-256-GCM under the
//! cluster key, the variable's name as associated data), so values reach the Raft log,
//! snapshots, backups and disk only as ciphertext. Every answer that carries a function
//! or a version (reads, write results, the watch) is opened on its way out, for callers
//! the authority table lets read them (gateways, the operator, peers).
//!
//! A sealed value is `SEALED` followed by base64 of the ciphertext. A value without the
//! prefix, or one that does not open, is a value stored before sealing existed (or a
//! client's literal that merely looks sealed: clients' values are always sealed again on
//! write) and is returned as it is.

use base64::Engine;
use nimbus_types::{Change, CommandOutput, Entity, FunctionConfig, QueryOutput};

use crate::crypto::ClusterKey;

const SEALED: &str = "nimbus-sealed:v1:";

fn aad(name: &str) -> Vec<u8> {
    format!("env/{name}").into_bytes()
}

/// Seals every value of `config`'s environment.
pub fn seal(key: &ClusterKey, config: &mut FunctionConfig) {
    for (name, value) in config.environment.iter_mut() {
        let sealed = key.seal(&aad(name), value.as_bytes());
        *value = format!(
            "{SEALED}{}",
            base64::engine::general_purpose::STANDARD.encode(sealed)
        );
    }
}

/// Opens every sealed value of `config`'s environment.
pub fn open(key: &ClusterKey, config: &mut FunctionConfig) {
    for (name, value) in config.environment.iter_mut() {
        let Some(b64) = value.strip_prefix(SEALED) else {
            continue;
        };
        let opened = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .and_then(|ct| key.open(&aad(name), &ct).ok())
            .and_then(|pt| String::from_utf8(pt).ok());
        if let Some(v) = opened {
            *value = v;
        }
    }
}

fn open_entity(key: &ClusterKey, e: &mut Entity) {
    match e {
        Entity::Function(f) => open(key, &mut f.config),
        Entity::Version(v) => open(key, &mut v.config),
        _ => {}
    }
}

fn holds_config(e: &Entity) -> bool {
    matches!(e, Entity::Function(_) | Entity::Version(_))
}

pub fn open_query(key: &ClusterKey, out: &mut QueryOutput) {
    match out {
        QueryOutput::Entity(Some(e)) => open_entity(key, e),
        QueryOutput::Entities(list) => list.iter_mut().for_each(|(_, e)| open_entity(key, e)),
        _ => {}
    }
}

pub fn open_output(key: &ClusterKey, out: &mut CommandOutput) {
    match out {
        CommandOutput::Function(f) => open(key, &mut f.config),
        CommandOutput::Version(v) => open(key, &mut v.config),
        CommandOutput::FunctionAndVersion(f, v) => {
            open(key, &mut f.config);
            open(key, &mut v.config);
        }
        _ => {}
    }
}

/// The changes with every function's and version's environment opened; `None` when
/// none carries one (the batch goes out as it is, without a copy).
pub fn open_changes(key: &ClusterKey, changes: &[Change]) -> Option<Vec<Change>> {
    if !changes
        .iter()
        .any(|c| c.value.as_ref().is_some_and(holds_config))
    {
        return None;
    }
    let mut out = changes.to_vec();
    for c in &mut out {
        if let Some(e) = c.value.as_mut() {
            open_entity(key, e);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_ciphertext_until_opened_and_old_values_pass_through() {
        let key = ClusterKey::from_bytes(&[7; 32]);
        let mut c = FunctionConfig::default();
        c.environment.insert("DB_PASSWORD".into(), "hunter2".into());
        c.environment.insert("EMPTY".into(), String::new());
        seal(&key, &mut c);
        let sealed = c.environment["DB_PASSWORD"].clone();
        assert!(sealed.starts_with(SEALED) && !sealed.contains("hunter2"));
        // Bound to the name: moved to another variable, it does not open.
        let mut moved = FunctionConfig::default();
        moved.environment.insert("OTHER".into(), sealed.clone());
        open(&key, &mut moved);
        assert_eq!(moved.environment["OTHER"], sealed);
        open(&key, &mut c);
        assert_eq!(c.environment["DB_PASSWORD"], "hunter2");
        assert_eq!(c.environment["EMPTY"], "");
        // Stored before sealing: returned as it is.
        let mut old = FunctionConfig::default();
        old.environment.insert("A".into(), "plain".into());
        open(&key, &mut old);
        assert_eq!(old.environment["A"], "plain");
    }
}
