//! Transactions over the state machine's RocksDB.
//!
//! A [`BatchTx`] collects every write of one `apply` call (many log entries) into one atomic
//! RocksDB write batch. Each entry runs in its own [`EntryTx`] layered on top, so a command
//! that fails half-way leaves no trace: its writes are simply dropped.

use std::collections::HashMap;

use nimbus_types::{decode, encode, Change, Entity, MetaError};
use rocksdb::{Direction, IteratorMode, WriteBatch, DB};

use super::cf;

type Slot = (&'static str, Vec<u8>);

/// One write, in order.
pub(crate) struct Op {
    cf: &'static str,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

/// Writes of one `apply` call, not yet in RocksDB.
#[derive(Default)]
pub(crate) struct BatchTx {
    overlay: HashMap<Slot, Option<Vec<u8>>>,
    ops: Vec<Op>,
}

impl BatchTx {
    pub(crate) fn put(&mut self, cf: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert((cf, key.clone()), Some(value.clone()));
        self.ops.push(Op {
            cf,
            key,
            value: Some(value),
        });
    }

    pub(crate) fn delete(&mut self, cf: &'static str, key: Vec<u8>) {
        self.overlay.insert((cf, key.clone()), None);
        self.ops.push(Op {
            cf,
            key,
            value: None,
        });
    }

    fn absorb(&mut self, ops: Vec<Op>) {
        for op in ops {
            self.overlay
                .insert((op.cf, op.key.clone()), op.value.clone());
            self.ops.push(op);
        }
    }

    /// Turns the collected writes into one RocksDB batch.
    pub(crate) fn into_write_batch(self, db: &DB) -> WriteBatch {
        let mut batch = WriteBatch::default();
        for op in self.ops {
            let handle = db.cf_handle(op.cf).expect("column family exists");
            match op.value {
                Some(v) => batch.put_cf(handle, op.key, v),
                None => batch.delete_cf(handle, op.key),
            }
        }
        batch
    }

    pub(crate) fn get(
        &self,
        db: &DB,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, MetaError> {
        if let Some(v) = self.overlay.get(&(cf, key.to_vec())) {
            return Ok(v.clone());
        }
        db_get(db, cf, key)
    }
}

fn db_get(db: &DB, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, MetaError> {
    let handle = db.cf_handle(cf).expect("column family exists");
    db.get_cf(handle, key)
        .map_err(|e| MetaError::new(nimbus_types::ErrorKind::Service, e.to_string()))
}

/// The writes of one log entry, readable before they are committed to the batch.
pub(crate) struct EntryTx<'a> {
    db: &'a DB,
    outer: &'a BatchTx,
    overlay: HashMap<Slot, Option<Vec<u8>>>,
    ops: Vec<Op>,
    changes: Vec<Change>,
}

impl<'a> EntryTx<'a> {
    pub(crate) fn new(db: &'a DB, outer: &'a BatchTx) -> Self {
        Self {
            db,
            outer,
            overlay: HashMap::new(),
            ops: Vec::new(),
            changes: Vec::new(),
        }
    }

    /// Ends the entry: its writes and the changes to publish.
    pub(crate) fn finish(self) -> (Vec<Op>, Vec<Change>) {
        (self.ops, self.changes)
    }

    pub(crate) fn get_raw(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, MetaError> {
        if let Some(v) = self.overlay.get(&(cf, key.to_vec())) {
            return Ok(v.clone());
        }
        self.outer.get(self.db, cf, key)
    }

    pub(crate) fn put_raw(&mut self, cf: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.overlay.insert((cf, key.clone()), Some(value.clone()));
        self.ops.push(Op {
            cf,
            key,
            value: Some(value),
        });
    }

    pub(crate) fn delete_raw(&mut self, cf: &'static str, key: Vec<u8>) {
        self.overlay.insert((cf, key.clone()), None);
        self.ops.push(Op {
            cf,
            key,
            value: None,
        });
    }

    pub(crate) fn get(&self, key: &str) -> Result<Option<Entity>, MetaError> {
        self.get_raw(cf::KV, key.as_bytes())?
            .map(|b| decode(&b))
            .transpose()
    }

    pub(crate) fn exists(&self, key: &str) -> Result<bool, MetaError> {
        Ok(self.get_raw(cf::KV, key.as_bytes())?.is_some())
    }

    pub(crate) fn put(&mut self, key: String, entity: Entity) {
        self.put_raw(cf::KV, key.clone().into_bytes(), encode(&entity));
        self.changes.push(Change {
            key,
            value: Some(entity),
        });
    }

    pub(crate) fn delete(&mut self, key: String) {
        self.delete_raw(cf::KV, key.clone().into_bytes());
        self.changes.push(Change { key, value: None });
    }

    /// Every entity under `prefix`, in key order, as this entry currently sees them.
    pub(crate) fn scan(&self, prefix: &str) -> Result<Vec<(String, Entity)>, MetaError> {
        let mut merged: std::collections::BTreeMap<Vec<u8>, Option<Vec<u8>>> =
            scan_db(self.db, cf::KV, prefix.as_bytes())?
                .into_iter()
                .map(|(k, v)| (k, Some(v)))
                .collect();
        for layer in [&self.outer.overlay, &self.overlay] {
            for ((c, k), v) in layer {
                if *c == cf::KV && k.starts_with(prefix.as_bytes()) {
                    merged.insert(k.clone(), v.clone());
                }
            }
        }
        merged
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .map(|(k, v)| Ok((String::from_utf8_lossy(&k).into_owned(), decode(&v)?)))
            .collect()
    }
}

impl BatchTx {
    /// Adds a finished entry's writes.
    pub(crate) fn commit_entry(&mut self, ops: Vec<Op>) {
        self.absorb(ops)
    }
}

/// Raw key/value pairs, in key order.
pub(crate) type KeyValues = Vec<(Vec<u8>, Vec<u8>)>;

/// Every key/value under `prefix` in one column family.
pub(crate) fn scan_db(db: &DB, cf: &'static str, prefix: &[u8]) -> Result<KeyValues, MetaError> {
    let handle = db.cf_handle(cf).expect("column family exists");
    let mut out = Vec::new();
    for item in db.iterator_cf(handle, IteratorMode::From(prefix, Direction::Forward)) {
        let (k, v) =
            item.map_err(|e| MetaError::new(nimbus_types::ErrorKind::Service, e.to_string()))?;
        if !k.starts_with(prefix) {
            break;
        }
        out.push((k.to_vec(), v.to_vec()));
    }
    Ok(out)
}
