//! `MvMemory`: multi-version memory (Block-STM, Gelashvili et al. 2022, §3 and Algorithm 2).
//!
//! For every state key, the values written by the block's transactions, each tagged with the writer's
//! index and incarnation, or an ESTIMATE marker left by an aborted incarnation. A read by transaction `j`
//! sees the entry of the highest index below `j`. Keys are full [`StateKey`]s (DESIGN.md §5, trap 2): the
//! hash of a key picks the shard whose lock guards it and its bucket there, computed once per access.
//!
//! It also keeps, per transaction, the locations its last incarnation wrote (to drop stale entries and to
//! detect writes to new locations), the reads it made (to validate them), and its receipt.

use std::hash::BuildHasher;
use std::sync::{Mutex, RwLock};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;
use smallvec::SmallVec;

use super::{unpoisoned, CachePadded, Incarnation, TxnIndex, Version};
use crate::receipt::Receipt;
use crate::state::{StateKey, Value};

const SHARDS: usize = 256;

/// One transaction's entry at one key: the value its incarnation `incarnation` wrote, or `None`, an ESTIMATE
/// (the writer was aborted: its next incarnation will probably write here again). 32 bytes, the index as a
/// `u32` ([`MAX_BLOCK`]), so that two fit inline beside their key in a 104-byte bucket: multi-version memory
/// is read at random, and its reads cost cache misses more than anything else.
#[derive(Clone, Copy, Debug)]
struct Entry {
    txn_idx: u32,
    incarnation: Incarnation,
    value: Option<Value>,
}

/// The largest block multi-version memory indexes.
pub(crate) const MAX_BLOCK: usize = u32::MAX as usize;

/// What a read found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MvRead {
    /// No lower transaction wrote the key: read the pre-block state.
    Storage,
    Data {
        version: Version,
        value: Value,
    },
    /// A lower transaction's write is an ESTIMATE: depend on it.
    Estimate {
        blocking: TxnIndex,
    },
}

/// Where a recorded read came from, the unit of validation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ReadOrigin {
    Storage,
    Version(Version),
}

#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadDescriptor {
    pub key: StateKey,
    pub origin: ReadOrigin,
}

/// One incarnation's reads. Inline up to four (a transfer reads three keys): no allocation per incarnation,
/// and nothing to free when the block ends.
pub(crate) type ReadSet = SmallVec<[ReadDescriptor; 4]>;

/// The entries at one key, sorted by transaction index. Most keys have one or two writers and transactions
/// mostly execute in order, so a sorted vector (append, binary search) beats a tree, and two entries fit
/// inline in the map's slot (no allocation per key; a hot key spills to the heap).
#[derive(Default)]
struct Versions(SmallVec<[Entry; 2]>);

impl Versions {
    /// The entry of the highest writer below `txn_idx`.
    fn below(&self, txn_idx: TxnIndex) -> Option<&Entry> {
        let end = self.0.partition_point(|entry| (entry.txn_idx as TxnIndex) < txn_idx);
        end.checked_sub(1).map(|i| &self.0[i])
    }

    fn insert(&mut self, entry: Entry) {
        // Appending is the common case: transactions mostly record in index order.
        match self.0.last() {
            Some(last) if last.txn_idx < entry.txn_idx => self.0.push(entry),
            None => self.0.push(entry),
            _ => match self.position(entry.txn_idx as TxnIndex) {
                Ok(i) => self.0[i] = entry,
                Err(i) => self.0.insert(i, entry),
            },
        }
    }

    fn position(&self, txn_idx: TxnIndex) -> Result<usize, usize> {
        self.0.binary_search_by_key(&txn_idx, |entry| entry.txn_idx as TxnIndex)
    }

    fn get_mut(&mut self, txn_idx: TxnIndex) -> Option<&mut Entry> {
        let i = self.position(txn_idx).ok()?;
        Some(&mut self.0[i])
    }

    fn remove(&mut self, txn_idx: TxnIndex) {
        if let Ok(i) = self.position(txn_idx) {
            self.0.remove(i);
        }
    }
}

/// What the last recorded incarnation of a transaction wrote, read and returned, under one lock.
#[derive(Default)]
struct TxnRecord {
    /// The locations written (to drop stale entries and to detect writes to new locations).
    written: SmallVec<[StateKey; 3]>,
    /// The reads made (to validate them).
    reads: ReadSet,
    receipt: Option<Receipt>,
}

/// The keys of one shard with their versions, found by a hash computed once by the caller ([`hash`]).
type Shard = HashTable<(StateKey, Versions)>;

fn hash(key: &StateKey) -> u64 {
    FxBuildHasher.hash_one(key)
}

pub(crate) struct MvMemory {
    shards: Box<[RwLock<Shard>]>,
    /// At least one per transaction of the block; slots past it are left over from a larger block.
    records: Vec<CachePadded<Mutex<TxnRecord>>>,
}

impl Default for MvMemory {
    fn default() -> Self {
        Self::new(0)
    }
}

const POISONED: &str = "MvMemory lock poisoned: a worker panicked";

impl MvMemory {
    pub(crate) fn new(block_size: usize) -> Self {
        let mut memory =
            Self { shards: (0..SHARDS).map(|_| RwLock::new(HashTable::new())).collect(), records: Vec::new() };
        memory.reset(block_size);
        memory
    }

    /// Empties the memory for a block of `block_size` transactions, keeping what it allocated: the shards'
    /// capacity and the per-transaction records (warm memory costs microseconds to clear, fresh memory about
    /// a millisecond per 10k transactions to fault in).
    pub(crate) fn reset(&mut self, block_size: usize) {
        // Sized for about two written keys per transaction, so that shards rarely grow while the block runs.
        let per_shard = (block_size * 2).div_ceil(SHARDS);
        for shard in self.shards.iter_mut() {
            let shard = shard.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner());
            shard.clear();
            shard.reserve(per_shard, |(key, _)| hash(key));
        }
        for shard in self.shards.iter() {
            shard.clear_poison();
        }
        let reused = self.records.len().min(block_size);
        for record in &mut self.records[..reused] {
            let inner = unpoisoned(&mut record.0);
            inner.written.clear();
            inner.reads.clear();
            inner.receipt = None;
        }
        self.records.resize_with(block_size.max(self.records.len()), CachePadded::default);
    }

    fn shard(&self, hash: u64) -> &RwLock<Shard> {
        // Bits 40..48: the shard's table uses the low bits (bucket) and the top 7 (tag) of the same hash, so
        // picking the shard with either would crowd every key of a shard into one bucket or one tag.
        &self.shards[(hash >> 40) as usize % SHARDS]
    }

    /// The versions at `key`, in the shard its `hash` picks, inserted empty if absent.
    fn versions_mut<'s>(shard: &'s mut Shard, hash: u64, key: &StateKey) -> &'s mut Versions {
        let entry = shard.entry(hash, |(k, _)| k == key, |(k, _)| self::hash(k));
        &mut entry.or_insert_with(|| (*key, Versions::default())).into_mut().1
    }

    /// The value transaction `txn_idx` reads at `key` (Algorithm 2, `read`).
    pub(crate) fn read(&self, key: &StateKey, txn_idx: TxnIndex) -> MvRead {
        let hash = hash(key);
        let shard = self.shard(hash).read().expect(POISONED);
        let Some((_, versions)) = shard.find(hash, |(k, _)| k == key) else {
            return MvRead::Storage;
        };
        match versions.below(txn_idx) {
            None => MvRead::Storage,
            Some(&Entry { txn_idx, incarnation, value }) => {
                let txn_idx = txn_idx as TxnIndex;
                match value {
                    None => MvRead::Estimate { blocking: txn_idx },
                    Some(value) => MvRead::Data { version: Version { txn_idx, incarnation }, value },
                }
            }
        }
    }

    /// Records a finished incarnation's reads, writes and receipt (Algorithm 2, `record`). Returns whether it
    /// wrote a location the previous incarnation did not, which makes higher transactions' validations stale.
    pub(crate) fn record(
        &self,
        version: Version,
        reads: ReadSet,
        writes: &[(StateKey, Value)],
        receipt: Receipt,
    ) -> bool {
        let Version { txn_idx, incarnation } = version;
        debug_assert!(txn_idx <= MAX_BLOCK);
        for (key, value) in writes {
            let hash = hash(key);
            let mut shard = self.shard(hash).write().expect(POISONED);
            let entry = Entry { txn_idx: txn_idx as u32, incarnation, value: Some(*value) };
            Self::versions_mut(&mut shard, hash, key).insert(entry);
        }
        let mut record = self.records[txn_idx].lock().expect(POISONED);
        for stale in record.written.iter().filter(|k| !writes.iter().any(|(w, _)| w == *k)) {
            let hash = hash(stale);
            if let Some((_, versions)) = self.shard(hash).write().expect(POISONED).find_mut(hash, |(k, _)| k == stale) {
                versions.remove(txn_idx);
            }
        }
        let wrote_new_location = writes.iter().any(|(k, _)| !record.written.contains(k));
        record.written.clear();
        record.written.extend(writes.iter().map(|(k, _)| *k));
        record.reads = reads;
        record.receipt = Some(receipt);
        wrote_new_location
    }

    /// The receipt of each of the first `block_size` transactions' last incarnation, once the block is done.
    pub(crate) fn receipts(&self, block_size: usize) -> Vec<Receipt> {
        self.records[..block_size]
            .iter()
            .map(|record| {
                record
                    .lock()
                    .expect(POISONED)
                    .receipt
                    .expect("Block-STM invariant: the scheduler is done only once every transaction executed")
            })
            .collect()
    }

    /// Marks every write of an aborted incarnation as an ESTIMATE (Algorithm 2,
    /// `convert_writes_to_estimates`).
    pub(crate) fn convert_writes_to_estimates(&self, txn_idx: TxnIndex) {
        let record = self.records[txn_idx].lock().expect(POISONED);
        for key in record.written.iter() {
            let hash = hash(key);
            let mut shard = self.shard(hash).write().expect(POISONED);
            if let Some(entry) =
                shard.find_mut(hash, |(k, _)| k == key).and_then(|(_, versions)| versions.get_mut(txn_idx))
            {
                entry.value = None;
            }
        }
    }

    /// Whether every read of the last incarnation of `txn_idx` would still see the same version
    /// (Algorithm 2, `validate_read_set`). An ESTIMATE where data was read fails.
    pub(crate) fn validate_read_set(&self, txn_idx: TxnIndex) -> bool {
        let record = self.records[txn_idx].lock().expect(POISONED);
        record.reads.iter().all(|read| match (self.read(&read.key, txn_idx), read.origin) {
            (MvRead::Storage, ReadOrigin::Storage) => true,
            (MvRead::Data { version, .. }, ReadOrigin::Version(seen)) => version == seen,
            _ => false,
        })
    }

    /// Once the block is done: empties shards `part`, `part + parts`, ... and returns, sorted by key, every
    /// key they hold with the value of its highest writer, which is the block's final value there. Each of
    /// `parts` threads drains its share, so building the write set and freeing the memory run in parallel.
    pub(crate) fn drain_final_writes(&self, part: usize, parts: usize) -> Vec<(StateKey, Value)> {
        let mut writes = Vec::new();
        for shard in self.shards.iter().skip(part).step_by(parts) {
            // Drained in place: the map keeps its capacity for the next block.
            let mut entries = shard.write().expect(POISONED);
            writes.reserve(entries.len());
            for (key, versions) in entries.drain() {
                match versions.0.last() {
                    // Every writer of this key moved its writes elsewhere in a later incarnation.
                    None => {}
                    Some(&Entry { value: Some(value), .. }) => writes.push((key, value)),
                    Some(&Entry { txn_idx: idx, value: None, .. }) => {
                        panic!("Block-STM invariant: transaction {idx} left an ESTIMATE at {key:?} in a done block")
                    }
                }
            }
        }
        writes.sort_unstable_by_key(|(key, _)| *key);
        writes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Address;

    fn key(i: u64) -> StateKey {
        StateKey::Balance(Address::from_index(i))
    }

    fn record(mv: &MvMemory, version: Version, reads: ReadSet, writes: &[(StateKey, Value)]) -> bool {
        mv.record(version, reads, writes, Receipt { status: crate::receipt::Status::Success, gas_used: 1 })
    }

    fn v(txn_idx: TxnIndex, incarnation: Incarnation) -> Version {
        Version { txn_idx, incarnation }
    }

    #[test]
    fn reads_see_the_highest_lower_writer() {
        let mv = MvMemory::new(4);
        assert_eq!(mv.read(&key(1), 3), MvRead::Storage);
        record(&mv, v(0, 0), ReadSet::new(), &[(key(1), Value::Amount(10))]);
        record(&mv, v(2, 0), ReadSet::new(), &[(key(1), Value::Amount(20))]);
        assert_eq!(mv.read(&key(1), 0), MvRead::Storage);
        assert_eq!(mv.read(&key(1), 2), MvRead::Data { version: v(0, 0), value: Value::Amount(10) });
        assert_eq!(mv.read(&key(1), 3), MvRead::Data { version: v(2, 0), value: Value::Amount(20) });
        mv.convert_writes_to_estimates(2);
        assert_eq!(mv.read(&key(1), 3), MvRead::Estimate { blocking: 2 });
    }

    #[test]
    fn record_drops_stale_writes_and_reports_new_locations() {
        let mv = MvMemory::new(2);
        assert!(record(&mv, v(0, 0), ReadSet::new(), &[(key(1), Value::Amount(1)), (key(2), Value::Amount(2))]));
        assert!(!record(&mv, v(0, 1), ReadSet::new(), &[(key(1), Value::Amount(3))]));
        assert_eq!(mv.read(&key(2), 1), MvRead::Storage);
        assert!(record(&mv, v(0, 2), ReadSet::new(), &[(key(3), Value::Amount(3))]));
    }

    #[test]
    fn validation_compares_versions() {
        let mv = MvMemory::new(2);
        record(&mv, v(0, 0), ReadSet::new(), &[(key(1), Value::Amount(1))]);
        let seen = ReadDescriptor { key: key(1), origin: ReadOrigin::Version(v(0, 0)) };
        record(&mv, v(1, 0), [seen].into_iter().collect(), &[]);
        assert!(mv.validate_read_set(1));
        record(&mv, v(0, 1), ReadSet::new(), &[(key(1), Value::Amount(1))]);
        assert!(!mv.validate_read_set(1), "same value, new incarnation: the read is stale");
        mv.convert_writes_to_estimates(0);
        assert!(!mv.validate_read_set(1));
    }
}
