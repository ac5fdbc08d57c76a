//! Serving peers that state-sync (DESIGN.md §5). Our latest checkpoint: its id comes from execution (the one we
//! publish in our headers), its bytes from the store, read once per checkpoint and then served in parts. And
//! which of the syncing peer's batches our committed sub-DAGs carry, so that it proposes again only those
//! that were never committed. A peer gets only what it asks for, and one request costs us at most one copy of
//! [`CHECKPOINT_PART_BYTES`], or [`SUB_DAGS_PER_QUERY`] sub-DAG records read.

use std::collections::BTreeSet;
use std::sync::Arc;

use mako_storage::{Store, StoreError};
use mako_types::{BatchDigest, CheckpointId, ExecutedState};
use tokio::sync::watch;

use crate::messages::{PrimaryMessage, BATCHES_PER_QUERY, CHECKPOINT_PART_BYTES, SUB_DAGS_PER_QUERY};

pub struct StateSyncServer {
    store: Store,
    /// Our execution's latest state, with the id of its latest checkpoint (none without execution).
    executed: Option<watch::Receiver<ExecutedState>>,
    cached: Option<(CheckpointId, Arc<Vec<u8>>)>,
}

impl StateSyncServer {
    pub fn new(store: Store, executed: Option<watch::Receiver<ExecutedState>>) -> Self {
        Self { store, executed, cached: None }
    }

    /// The answer to `CheckpointRequest { index, offset }`.
    pub fn answer(&mut self, index: u64, offset: u64) -> Result<PrimaryMessage, StoreError> {
        let latest = self.executed.as_ref().map(|e| e.borrow().checkpoint).unwrap_or_default();
        if latest.index == 0 {
            return Ok(PrimaryMessage::CheckpointPart { latest, total: 0, offset, bytes: Vec::new() });
        }
        if self.cached.as_ref().is_none_or(|(id, _)| *id != latest) {
            // Execution publishes an id only once the checkpoint's write is committed: the store has it (or a
            // newer one, whose id is published next; the peer then asks again).
            let bytes = self.store.state.checkpoint_bytes()?.unwrap_or_default();
            self.cached = Some((latest, Arc::new(bytes)));
        }
        let (_, bytes) = self.cached.as_ref().expect("cached above");
        let total = bytes.len() as u64;
        let part = if index == latest.index && offset < total {
            let end = (offset as usize).saturating_add(CHECKPOINT_PART_BYTES).min(bytes.len());
            bytes[offset as usize..end].to_vec()
        } else {
            Vec::new()
        };
        Ok(PrimaryMessage::CheckpointPart { latest, total, offset, bytes: part })
    }

    /// The answer to `CommittedRequest { from, through, batches }`: the records of sub-DAGs `from..=through`
    /// that we executed and hold, read in order up to the first we lack, and which of `batches` they carry.
    /// A validator that state-synced holds no record below its checkpoint: it says so by reading fewer.
    pub fn committed_among(
        &self,
        from: u64,
        through: u64,
        batches: &[BatchDigest],
    ) -> Result<PrimaryMessage, StoreError> {
        let executed = self.executed.as_ref().map_or(0, |e| e.borrow().index);
        let asked: BTreeSet<&BatchDigest> = batches.iter().take(BATCHES_PER_QUERY).collect();
        let last = through.min(executed).min(from.saturating_add(SUB_DAGS_PER_QUERY - 1));
        let mut read = from.saturating_sub(1);
        let mut committed = BTreeSet::new();
        for index in from.max(1)..=last {
            let Some(record) = self.store.state.sub_dag(index)? else { break };
            committed.extend(record.batches.iter().map(|(digest, _, _)| *digest).filter(|d| asked.contains(d)));
            read = index;
        }
        Ok(PrimaryMessage::CommittedBatches { from, through: read, batches: committed.into_iter().collect() })
    }
}

#[cfg(test)]
mod tests {
    use mako_storage::{Durability, SubDagRecord};
    use mako_types::{AuthorityIndex, CertificateDigest, Digest};

    use super::*;

    fn batch(byte: u8) -> BatchDigest {
        BatchDigest(Digest([byte; 32]))
    }

    /// Sub-DAG `index` commits batch `index`. A peer that asks about sub-DAGs we have not executed, or whose
    /// records we lack (we state-synced past them), learns how far we read: it must not take "not among
    /// them" for "never committed".
    #[test]
    fn committed_batches_are_answered_only_for_the_sub_dags_we_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut writes = store.write_set();
        for index in (3..=8).filter(|i| *i != 6) {
            let batches = vec![(batch(index as u8), 0, AuthorityIndex(1))];
            writes.put_sub_dag(&SubDagRecord {
                index,
                leader: CertificateDigest::default(),
                certificates: vec![],
                batches,
            });
        }
        writes.commit(Durability::Synced).unwrap();
        let executed = ExecutedState { index: 7, ..Default::default() };
        let (_keep, executed) = watch::channel(executed);
        let server = StateSyncServer::new(store, Some(executed));
        let asked = [batch(4), batch(5), batch(7), batch(9)];
        let answer = |from, through| server.committed_among(from, through, &asked).unwrap();

        assert_eq!(
            answer(4, 5),
            PrimaryMessage::CommittedBatches { from: 4, through: 5, batches: vec![batch(4), batch(5)] }
        );
        // Record 6 is missing: reading stops before it.
        assert_eq!(
            answer(4, 8),
            PrimaryMessage::CommittedBatches { from: 4, through: 5, batches: vec![batch(4), batch(5)] }
        );
        // Records 1 and 2 are missing (below our checkpoint): nothing read.
        assert_eq!(answer(1, 5), PrimaryMessage::CommittedBatches { from: 1, through: 0, batches: vec![] });
        // Record 8 is stored but not executed yet: read up to 7.
        assert_eq!(answer(7, 8), PrimaryMessage::CommittedBatches { from: 7, through: 7, batches: vec![batch(7)] });
    }
}
