//! Code packages: sealed chunks first, then the package record that commits them.

use nimbus_types::command::{Command, CommandOutput};
use nimbus_types::limits::CODE_CHUNK_BYTES;
use nimbus_types::{keys, CodePackage, Entity, ErrorKind, MetaError};

use super::misrouted;
use crate::state_machine::cf;
use crate::state_machine::tx::EntryTx;

/// What sealing adds to a chunk (nonce and tag), with room to spare.
const SEALING_OVERHEAD: usize = 64;

/// Key of one sealed code chunk in the `code` column family.
pub fn chunk_key(sha256: &str, index: u32) -> Vec<u8> {
    format!("{}/{index:05}", keys::code(sha256)).into_bytes()
}

/// The committed package with this hash; a function may only point at one.
pub(super) fn require_code(tx: &EntryTx<'_>, sha256: &str) -> Result<CodePackage, MetaError> {
    match tx.get(&keys::code(sha256))? {
        Some(Entity::CodePackage(p)) => Ok(p),
        _ => Err(MetaError::invalid(format!(
            "Code package {sha256} was not uploaded completely"
        ))),
    }
}

pub(super) fn apply(tx: &mut EntryTx<'_>, cmd: &Command) -> Result<CommandOutput, MetaError> {
    match cmd {
        Command::PutCodeChunk {
            sha256,
            index,
            ciphertext,
        } => {
            if ciphertext.len() > CODE_CHUNK_BYTES + SEALING_OVERHEAD {
                return Err(MetaError::new(
                    ErrorKind::RequestTooLarge,
                    "code chunk exceeds 1 MiB",
                ));
            }
            tx.put_raw(cf::CODE, chunk_key(sha256, *index), ciphertext.clone());
        }
        Command::CommitCode { package } => {
            if package.chunks as usize != package.chunk_sha256.len() {
                return Err(MetaError::invalid(
                    "chunk count does not match the chunk hashes",
                ));
            }
            for i in 0..package.chunks {
                if tx
                    .get_raw(cf::CODE, &chunk_key(&package.sha256, i))?
                    .is_none()
                {
                    return Err(MetaError::invalid(format!(
                        "code chunk {i} of {} is missing",
                        package.sha256
                    )));
                }
            }
            tx.put(
                keys::code(&package.sha256),
                Entity::CodePackage(package.clone()),
            );
        }
        _ => return Err(misrouted("a code")),
    }
    Ok(CommandOutput::Done)
}
