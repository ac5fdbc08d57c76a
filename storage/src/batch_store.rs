//! Batches by digest. Workers store a batch durably before acknowledging it (DESIGN.md §3); GC removes them.

use fjall::Keyspace;
use mako_types::cpu_time::{measure, Component};
use mako_types::{Batch, BatchDigest};

use crate::{decode_value, StoreError};

#[derive(Clone)]
pub struct BatchStore {
    keyspace: Keyspace,
}

impl BatchStore {
    pub(crate) fn new(keyspace: Keyspace) -> Self {
        Self { keyspace }
    }

    pub(crate) fn keyspace(&self) -> &Keyspace {
        &self.keyspace
    }

    pub fn put(&self, digest: &BatchDigest, batch: &Batch) -> Result<(), StoreError> {
        self.put_encoded(digest, &mako_types::encode(batch))
    }

    /// Stores a batch already in canonical bytes (as received), without decoding and encoding it again.
    pub fn put_encoded(&self, digest: &BatchDigest, bytes: &[u8]) -> Result<(), StoreError> {
        measure(Component::Storage, || self.keyspace.insert(digest.as_bytes(), bytes))
            .map_err(StoreError::fjall("write batch"))
    }

    pub fn get(&self, digest: &BatchDigest) -> Result<Option<Batch>, StoreError> {
        match self.get_encoded(digest)? {
            Some(bytes) => decode_value("batches", digest.as_bytes(), &bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The stored canonical bytes, e.g. to serve a peer without decoding.
    pub fn get_encoded(&self, digest: &BatchDigest) -> Result<Option<Vec<u8>>, StoreError> {
        let value = measure(Component::Storage, || self.keyspace.get(digest.as_bytes()).map(|v| v.map(|v| v.to_vec())));
        value.map_err(StoreError::fjall("read batch"))
    }

    pub fn contains(&self, digest: &BatchDigest) -> Result<bool, StoreError> {
        self.keyspace.contains_key(digest.as_bytes()).map_err(StoreError::fjall("read batch"))
    }
}

#[cfg(test)]
mod tests {
    use mako_types::Transaction;

    use crate::Store;

    use super::*;

    #[test]
    fn survives_reopen_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let batch = Batch::new((0..100u32).map(|i| Transaction(vec![i as u8; 512])).collect());
        let digest = batch.digest();
        {
            let store = Store::open(dir.path()).unwrap();
            store.batches.put(&digest, &batch).unwrap();
            store.batches.put_encoded(&BatchDigest::default(), b"not a batch at all").unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.batches.get(&digest).unwrap(), Some(batch));
        assert!(store.batches.contains(&digest).unwrap());
        let err = store.batches.get(&BatchDigest::default()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { store: "batches", .. }), "{err}");
        let mut gc = store.write_set();
        gc.remove_batch(&digest);
        gc.commit(crate::Durability::Buffered).unwrap();
        assert_eq!(store.batches.get(&digest).unwrap(), None);
    }
}
