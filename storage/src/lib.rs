//! mako-storage: the fjall-backed stores of a validator.
//!
//! One fjall database per validator holds four keyspaces: the batch index (a batch's bytes are in append-only
//! segment files beside it, written once: `batch_store`), certificates with their (round, author) index, and
//! small state records (last vote per author, consensus state, execution progress, checkpoints). Values are
//! canonical rkyv bytes; reading one validates it first, so a corrupt or undecodable value is a
//! [`StoreError::Corrupt`], never a panic. Writes that belong together go through one [`WriteSet`], committed as one atomic fjall batch — this is
//! what lets a restarted node find its votes and commits exactly as they were (DESIGN.md §9, items 5 and 7).

mod batch_store;
mod certificate_store;
mod direct_io;
mod error;
mod power_loss;
mod recent_batches;
mod state_store;
mod write_set;

use std::path::Path;
use std::sync::Arc;

use fjall::{Database, KeyspaceCreateOptions, KvSeparationOptions};

pub use batch_store::BatchStore;
pub use certificate_store::CertificateStore;
pub use error::StoreError;
pub use power_loss::cut_power;
pub use recent_batches::RECENT_BATCH_BYTES;
pub use state_store::{BlockRecord, Checkpoint, ConsensusState, ExecutionProgress, LastVote, StateStore, SubDagRecord};
pub use write_set::{Durability, WriteSet};

/// A validator's database: cheap to clone, every clone sees the same data.
#[derive(Clone)]
pub struct Store {
    db: Database,
    pub batches: BatchStore,
    pub certificates: CertificateStore,
    pub state: StateStore,
    /// Writes a power cut would lose (the simulation's machine crashes only).
    unsynced: Option<Arc<power_loss::UnsyncedWrites>>,
}

impl Store {
    /// Opens (creating if needed) the store under `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::builder(path).open().map_err(StoreError::fjall("open database"))?;
        let keyspace = |name: &'static str, options: fn() -> KeyspaceCreateOptions| {
            db.keyspace(name, options).map_err(StoreError::fjall("open keyspace"))
        };
        // Measured (DESIGN.md §3): kv separation without compression halves the CPU per MB written. Values
        // over 1 KiB go to blob files, written once more at flush and never rewritten by compaction: batches,
        // and in the state keyspace each block's write set (megabytes under load, which inline were compressed
        // at flush and again at every compaction: lz4 was 2% of a loaded testnet's CPU).
        let separated = || {
            KeyspaceCreateOptions::default()
                .with_kv_separation(Some(KvSeparationOptions::default().compression(fjall::CompressionType::None)))
        };
        // The batch index (digest → place in a segment file): the bytes are in the segments (`batch_store`).
        let batches = keyspace("batches", KeyspaceCreateOptions::default)?;
        let certificates = keyspace("certificates", KeyspaceCreateOptions::default)?;
        let certificate_index = keyspace("certificate_index", KeyspaceCreateOptions::default)?;
        let state = keyspace("state", separated)?;
        Ok(Self {
            batches: BatchStore::open(batches, path)?,
            certificates: CertificateStore::new(certificates, certificate_index),
            state: StateStore::new(state),
            db,
            unsynced: None,
        })
    }

    /// Starts a set of writes that commit atomically.
    pub fn write_set(&self) -> WriteSet {
        WriteSet::new(self)
    }

    /// Flushes the journal to the operating system and syncs it to disk: every write committed so far survives
    /// a power loss. A store emulating power loss only flushes: its power cuts are emulated, so the disk sync
    /// would cost the simulation time and protect nothing.
    pub fn sync(&self) -> Result<(), StoreError> {
        if self.unsynced.is_none() {
            self.batches.sync_segment()?; // the bytes before the index entries that point at them
        }
        match &self.unsynced {
            Some(unsynced) => {
                self.db.persist(fjall::PersistMode::Buffer).map_err(StoreError::fjall("sync"))?;
                unsynced.synced();
            }
            None => mako_types::cpu_time::measure(mako_types::cpu_time::Component::Storage, || {
                self.db.persist(fjall::PersistMode::SyncAll)
            })
            .map_err(StoreError::fjall("sync"))?,
        }
        // Every removal is durable now: segments they emptied can go.
        self.batches.retire_dead_segments()
    }

    /// The keyspace called `name`.
    fn keyspace_named(&self, name: &str) -> Result<&fjall::Keyspace, StoreError> {
        let (certificates, index) = self.certificates.keyspaces();
        [self.batches.keyspace(), certificates, index, self.state.keyspace()]
            .into_iter()
            .find(|k| &**k.name() == name)
            .ok_or_else(|| StoreError::Corrupt {
                store: "database",
                key: name.as_bytes().to_vec(),
                reason: "no such keyspace".into(),
            })
    }
}

/// Reads a value's canonical rkyv bytes, validating them; a bad value names its store and key.
fn decode_value<T>(store: &'static str, key: &[u8], bytes: &[u8]) -> Result<T, StoreError>
where
    T: rkyv::Archive,
    T::Archived: for<'a> rkyv::bytecheck::CheckBytes<rkyv::api::high::HighValidator<'a, rkyv::rancor::Error>>
        + rkyv::Deserialize<T, rkyv::api::high::HighDeserializer<rkyv::rancor::Error>>,
{
    mako_types::decode(bytes).map_err(|e| StoreError::Corrupt { store, key: key.to_vec(), reason: e.to_string() })
}

#[cfg(test)]
pub(crate) mod test_fixtures {
    use mako_types::{AuthorityIndex, Certificate, Committee, Header, ValidatorKeys, Vote};

    pub fn committee() -> (Committee, Vec<ValidatorKeys>) {
        let keys: Vec<_> = (0..4).map(ValidatorKeys::from_seed).collect();
        (Committee::local(&keys, 9000, 1).unwrap(), keys)
    }

    /// A certified header of `author` at `round` with the given parents.
    pub fn certificate(
        committee: &Committee,
        keys: &[ValidatorKeys],
        author: u16,
        round: u64,
        parents: Vec<mako_types::CertificateDigest>,
    ) -> Certificate {
        let header = Header::new(AuthorityIndex(author), round, vec![], parents);
        let votes: Vec<_> = (0..3).map(|v| Vote::new(&header, AuthorityIndex(v), &keys[v as usize].bls)).collect();
        Certificate::from_votes(header, &votes, committee).unwrap()
    }
}
