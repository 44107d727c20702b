//! openraft's storage conformance suite against our RocksDB log store and state machine.
//!
//! The suite is what openraft expects of any storage: log reads over ranges, purge and
//! truncate bounds, vote and committed id persistence, the applied id and membership the
//! state machine reports, the initial state Raft recovers from, and a snapshot built on
//! one store and installed on another. Every case gets its own stores in a fresh
//! temporary directory, so cases cannot see each other's data.
//!
//! The suite cannot build a normal entry (it has no way to make our `Request`), so it
//! applies only blank and membership entries; what normal entries do to the state is
//! covered by `state_machine.rs` and `event_queue.rs`.

use nimbus_meta::log_store::LogStore;
use nimbus_meta::raft_types::{StorageError, TypeConfig};
use nimbus_meta::state_machine::StateMachineStore;
use openraft::testing::{StoreBuilder, Suite};
use tempfile::TempDir;

/// Opens a log store and a state machine in a new temporary directory, laid out as a
/// node's data directory is. The directory is the guard: it is removed when the case ends.
struct RocksStores;

fn storage_error(e: impl ToString) -> StorageError {
    StorageError::from_io_error(
        openraft::ErrorSubject::Store,
        openraft::ErrorVerb::Write,
        std::io::Error::other(e.to_string()),
    )
}

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for RocksStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = tempfile::tempdir().map_err(storage_error)?;
        let log = LogStore::open(&dir.path().join("raft")).map_err(storage_error)?;
        let sm = StateMachineStore::open(&dir.path().join("sm"), &dir.path().join("snapshots"))
            .map_err(storage_error)?;
        Ok((dir, log, sm))
    }
}

/// Runs every case of the suite; the first failing one panics with openraft's assertion,
/// or with the storage error it got, naming what our storage did differently.
#[test]
fn t15_rocksdb_storage_passes_openrafts_conformance_suite() {
    if let Err(e) = Suite::test_all(RocksStores) {
        panic!("the RocksDB storage failed openraft's conformance suite: {e}");
    }
}
