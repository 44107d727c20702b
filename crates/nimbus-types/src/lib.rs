//! Nimbus's domain model: what the metadata cluster stores and how it is validated.
//!
//! Layout:
//! - [`error`]: [`MetaError`], typed after the Lambda API's own error names, so every edge
//!   (gRPC, the Lambda REST API) maps it in one place.
//! - [`limits`]: Lambda's published limits and defaults, as constants.
//! - [`model`]: accounts, regions, functions, versions, aliases, code packages, workers.
//! - [`validate`]: checks applied to user input before anything is written.
//! - [`command`]: the writes the replicated state machine applies, and the reads it answers.
//! - [`vocabulary`]: Lambda's small enums (invocation type, log type and format, pools).
//! - [`keys`]: the key layout of the state machine (shared by the store and its readers).
//! - [`qualifier`]: [`Qualifier`], `$LATEST` / version / alias as a type.
//! - [`arn`]: ARNs and the function-name forms Lambda accepts.
//! - [`iam`]: IAM users, roles and managed policies (global, per account).
#![forbid(unsafe_code)]

pub mod arn;
pub mod command;
pub mod error;
pub mod iam;
pub mod keys;
pub mod limits;
pub mod model;
pub mod qualifier;
pub mod validate;
pub mod vocabulary;

pub use command::{
    BatchedOutput, BatchedWrite, Change, Command, CommandOutput, Query, QueryOutput, QueuedEvent,
};
pub use error::{ErrorKind, MetaError};
pub use model::*;
pub use qualifier::Qualifier;

/// Encodes a value in the compact binary form used on the wire and at rest (postcard).
pub fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    // postcard only fails to serialize on types serde cannot represent
    // (e.g. maps with unknown length from iterators); our types are all plain data.
    postcard::to_stdvec(value).expect("model types always serialize")
}

/// The length of [`encode`]'s output, counted without building it (a command can carry
/// a 1 MiB code chunk).
pub fn encoded_len<T: serde::Serialize>(value: &T) -> usize {
    postcard::serialize_with_flavor(value, postcard::ser_flavors::Size::default())
        .expect("model types always serialize")
}

/// Decodes a value written by [`encode`].
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MetaError> {
    postcard::from_bytes(bytes)
        .map_err(|e| MetaError::new(ErrorKind::Service, format!("corrupt record: {e}")))
}

#[cfg(test)]
mod encoding_tests {
    use super::*;

    #[test]
    fn encoded_len_is_the_length_of_the_encoding() {
        let commands = [
            Command::DeleteAccessKey {
                access_key_id: "AKID".into(),
            },
            Command::PutCodeChunk {
                sha256: "a".repeat(64),
                index: 7,
                ciphertext: vec![0xA5; 1 << 20],
            },
            Command::Batch {
                writes: vec![BatchedWrite {
                    request_id: "r-1".into(),
                    command: Command::DeleteAccessKey {
                        access_key_id: "k".repeat(300),
                    },
                }],
            },
        ];
        for c in &commands {
            assert_eq!(encoded_len(c), encode(c).len());
        }
    }
}
