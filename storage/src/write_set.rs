//! A set of writes committed as one atomic fjall batch: after a crash either all of them are there or none.

use fjall::{Keyspace, OwnedWriteBatch, PersistMode};
use mako_types::cpu_time::{measure, Component};
use mako_types::{AuthorityIndex, BatchDigest, Certificate, Header, Round, WorkerId};

use crate::batch_store::BatchChanges;
use crate::certificate_store::round_key;
use crate::state_store::{
    block_key, consensus_snapshot_key, last_vote_key, proposal_key, sub_dag_key, CHECKPOINT_KEY, CONSENSUS_KEY,
    EXECUTION_KEY, LAST_HEADER_KEY,
};
use crate::{BatchStore, BlockRecord, ConsensusState, ExecutionProgress, LastVote, Store, StoreError, SubDagRecord};

/// How far a commit goes before it returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// Written to the operating system: survives a crash of the process, not of the machine.
    Buffered,
    /// Synced to disk (fsync): survives a power loss too, at the cost of a disk flush.
    Synced,
}

pub struct WriteSet {
    store: Store,
    batch: OwnedWriteBatch,
    /// The keys written, where the store emulates power loss (`power_loss.rs`).
    touched: Vec<(Keyspace, Vec<u8>)>,
    /// Batches appended to segments and removed, settled in the batch store at commit (or drop).
    batches: BatchChanges,
    /// An append failed: the commit fails with it.
    failed: Option<StoreError>,
}

impl Drop for WriteSet {
    fn drop(&mut self) {
        // Dropped without a commit: its appends are dead weight, and their segments may go.
        if !self.batches.is_empty() {
            self.store.batches.settle(std::mem::take(&mut self.batches), false);
        }
    }
}

impl WriteSet {
    pub(crate) fn new(store: &Store) -> Self {
        Self {
            batch: store.db.batch(),
            store: store.clone(),
            touched: Vec::new(),
            batches: BatchChanges::default(),
            failed: None,
        }
    }

    fn insert(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>, value: &[u8]) {
        self.touch(keyspace, key.as_ref());
        measure(Component::Storage, || self.batch.insert(keyspace, key.as_ref(), value));
    }

    fn remove(&mut self, keyspace: &Keyspace, key: impl AsRef<[u8]>) {
        self.touch(keyspace, key.as_ref());
        self.batch.remove(keyspace, key.as_ref());
    }

    fn touch(&mut self, keyspace: &Keyspace, key: &[u8]) {
        if self.store.unsynced.is_some() {
            self.touched.push((keyspace.clone(), key.to_vec()));
        }
    }

    /// Appends the batch's bytes to the current segment now (once: a batch already stored is not written
    /// again) and indexes it with this write set.
    pub fn put_batch(&mut self, digest: &BatchDigest, encoded: &[u8]) {
        match self.store.batches.append(digest, encoded) {
            Ok(Some(location)) => {
                self.batches.appended(*digest, location);
                let keyspace = self.store.batches.keyspace().clone();
                self.insert(&keyspace, digest.as_bytes(), &BatchStore::index_entry(location));
            }
            Ok(None) => {}
            Err(error) => self.failed = Some(error),
        }
    }

    pub fn remove_batch(&mut self, digest: &BatchDigest) {
        if self.store.batches.located(digest).is_none() {
            return;
        }
        self.batches.removed(*digest);
        let keyspace = self.store.batches.keyspace().clone();
        self.remove(&keyspace, digest.as_bytes());
    }

    /// Stores a certificate with its (round, author) index entry.
    pub fn put_certificate(&mut self, certificate: &Certificate) {
        let digest = certificate.digest();
        let (by_digest, by_round) = self.certificate_keyspaces();
        self.insert(&by_digest, digest.as_bytes(), mako_types::encode(certificate).as_slice());
        self.insert(&by_round, round_key(certificate.round(), certificate.author()), digest.as_bytes());
    }

    /// Removes every certificate of a round in `from..below` with its index entry (what a checkpoint covers).
    pub fn remove_certificates(&mut self, from: Round, below: Round) -> Result<(), StoreError> {
        if below <= from {
            return Ok(());
        }
        let (by_digest, by_round) = self.certificate_keyspaces();
        for ((r, author), digest) in self.store.certificates.index_range(from, below - 1)? {
            self.remove(&by_digest, digest.as_bytes());
            self.remove(&by_round, round_key(r, author));
        }
        Ok(())
    }

    pub fn put_last_vote(&mut self, author: AuthorityIndex, vote: &LastVote) {
        self.put_state(last_vote_key(author), mako_types::encode(vote).as_slice());
    }

    /// Records one of our batches that a quorum holds, to be proposed (again, after a restart) until a
    /// certificate of ours carries it.
    pub fn put_pending_proposal(&mut self, digest: &BatchDigest, worker: WorkerId) {
        self.put_state(proposal_key(digest), &worker.to_le_bytes());
    }

    /// A certificate of ours carries the batch now.
    pub fn remove_pending_proposal(&mut self, digest: &BatchDigest) {
        let keyspace = self.store.state.keyspace().clone();
        self.remove(&keyspace, proposal_key(digest));
    }

    pub fn put_last_header(&mut self, header: &Header) {
        self.put_state(LAST_HEADER_KEY, mako_types::encode(header).as_slice());
    }

    pub fn put_consensus_state(&mut self, state: &ConsensusState) {
        self.put_state(CONSENSUS_KEY, mako_types::encode(state).as_slice());
    }

    pub fn put_sub_dag(&mut self, record: &SubDagRecord) {
        self.put_state(sub_dag_key(record.index), mako_types::encode(record).as_slice());
    }

    pub fn put_block(&mut self, block: &BlockRecord) {
        self.put_state(block_key(block.index), mako_types::encode(block).as_slice());
    }

    /// Replaces the checkpoint (only the latest is kept) with one already encoded: by execution, which takes
    /// its digest from these bytes, or fetched by state sync and checked against the digest f+1 validators
    /// vouch for.
    pub fn put_checkpoint_bytes(&mut self, encoded: &[u8]) {
        self.put_state(CHECKPOINT_KEY, encoded);
    }

    /// The consensus state right after checkpoint index `index`, for the checkpoint that execution takes.
    pub fn put_consensus_snapshot(&mut self, index: u64, state: &ConsensusState) {
        self.put_state(consensus_snapshot_key(index), mako_types::encode(state).as_slice());
    }

    pub fn remove_consensus_snapshot(&mut self, index: u64) {
        let keyspace = self.store.state.keyspace().clone();
        self.remove(&keyspace, consensus_snapshot_key(index));
    }

    pub fn put_execution_progress(&mut self, progress: &ExecutionProgress) {
        self.put_state(EXECUTION_KEY, mako_types::encode(progress).as_slice());
    }

    fn put_state(&mut self, key: impl AsRef<[u8]>, value: &[u8]) {
        let keyspace = self.store.state.keyspace().clone();
        self.insert(&keyspace, key, value);
    }

    fn certificate_keyspaces(&self) -> (Keyspace, Keyspace) {
        let (by_digest, by_round) = self.store.certificates.keyspaces();
        (by_digest.clone(), by_round.clone())
    }

    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Commits every write at once.
    pub fn commit(mut self, durability: Durability) -> Result<(), StoreError> {
        if let Some(error) = self.failed.take() {
            return Err(error);
        }
        // A store emulating power loss never syncs the real disk (see `Store::sync`).
        let mode = match (durability, &self.store.unsynced) {
            (Durability::Synced, None) => PersistMode::SyncData,
            _ => PersistMode::Buffer,
        };
        if let Some(unsynced) = &self.store.unsynced {
            unsynced.record(&self.touched)?;
        }
        if mode == PersistMode::SyncData && !self.batches.is_empty() {
            self.store.batches.sync_segment()?; // the bytes before the index entries that point at them
        }
        let store = self.store.clone();
        let batches = std::mem::take(&mut self.batches);
        let batch = std::mem::replace(&mut self.batch, store.db.batch()).durability(Some(mode));
        let committed = measure(Component::Storage, || batch.commit()).map_err(StoreError::fjall("commit write set"));
        store.batches.settle(batches, committed.is_ok());
        committed?;
        if let (Durability::Synced, Some(unsynced)) = (durability, &store.unsynced) {
            unsynced.synced();
        }
        if durability == Durability::Synced {
            store.batches.retire_dead_segments()?;
        }
        Ok(())
    }
}
