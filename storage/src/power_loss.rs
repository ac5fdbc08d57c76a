//! Power-loss emulation for the simulation (DESIGN.md §9, invariant 7: no equivocation across machine crashes).
//!
//! A process crash loses nothing a commit wrote (it is in the operating system's buffers); a power loss loses
//! every write that no sync covered yet. A store opened with [`Store::open_emulating_power_loss`] remembers,
//! for each write not synced yet, the value it replaced; [`cut_power`] marks the store's folder so that its
//! next opening first undoes those writes, newest first: what the machine finds after a power cut that came
//! before the disk flush. Validators never enable it; the simulation's machine crashes do.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use fjall::{Keyspace, PersistMode};

use crate::{Store, StoreError};

/// One write not synced yet: the keyspace, the key and the value it replaced (none: the key was new).
struct Undo {
    keyspace: String,
    key: Vec<u8>,
    previous: Option<Vec<u8>>,
}

/// The writes of one store folder that a power cut would lose.
#[derive(Default)]
pub(crate) struct UnsyncedWrites {
    undo: Mutex<Vec<Undo>>,
    power_cut: AtomicBool,
}

/// Every emulating store folder of this process (a restarted simulated host opens its folder again).
static FOLDERS: Mutex<BTreeMap<PathBuf, Arc<UnsyncedWrites>>> = Mutex::new(BTreeMap::new());

/// Cuts the power of the machine whose store is at `path`: its next opening loses every write not synced.
pub fn cut_power(path: &Path) {
    if let Some(writes) = FOLDERS.lock().expect("the power-loss registry is never poisoned").get(path) {
        writes.power_cut.store(true, Ordering::SeqCst);
    }
}

impl UnsyncedWrites {
    /// Records the current values of `keys` (about to be overwritten by a commit).
    pub(crate) fn record(&self, keys: &[(Keyspace, Vec<u8>)]) -> Result<(), StoreError> {
        let mut undo = self.undo.lock().expect("the power-loss log is never poisoned");
        for (keyspace, key) in keys {
            let previous = keyspace.get(key).map_err(StoreError::fjall("read before write"))?;
            undo.push(Undo {
                keyspace: keyspace.name().to_string(),
                key: key.clone(),
                previous: previous.map(|v| v.to_vec()),
            });
        }
        Ok(())
    }

    /// Everything written so far is on disk.
    pub(crate) fn synced(&self) {
        self.undo.lock().expect("the power-loss log is never poisoned").clear();
    }
}

impl Store {
    /// Opens the store at `path` like [`Store::open`], remembering unsynced writes so that [`cut_power`] can
    /// lose them; after a cut, the writes are undone first.
    pub fn open_emulating_power_loss(path: &Path) -> Result<Self, StoreError> {
        let mut store = Self::open(path)?;
        let writes = Arc::clone(
            FOLDERS.lock().expect("the power-loss registry is never poisoned").entry(path.to_path_buf()).or_default(),
        );
        if writes.power_cut.swap(false, Ordering::SeqCst) {
            let lost = std::mem::take(&mut *writes.undo.lock().expect("the power-loss log is never poisoned"));
            let mut batch = store.db.batch();
            for undo in lost.into_iter().rev() {
                let keyspace = store.keyspace_named(&undo.keyspace)?;
                match undo.previous {
                    Some(value) => batch.insert(keyspace, undo.key, value),
                    None => batch.remove(keyspace, undo.key),
                }
            }
            batch.durability(Some(PersistMode::SyncAll)).commit().map_err(StoreError::fjall("undo unsynced writes"))?;
        }
        // Without a cut (a process crash), the writes not synced before it stay at risk.
        store.unsynced = Some(writes);
        store.batches.reload()?; // the undo may have changed the batch index
        Ok(store)
    }
}

#[cfg(test)]
mod tests {
    use mako_types::{AuthorityIndex, Digest};

    use super::*;
    use crate::{Durability, LastVote};

    fn vote(round: u64) -> LastVote {
        LastVote { round, header_digest: mako_types::HeaderDigest(Digest([round as u8; 32])) }
    }

    #[test]
    fn a_power_cut_loses_exactly_the_unsynced_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        {
            let store = Store::open_emulating_power_loss(&path).unwrap();
            let mut writes = store.write_set();
            writes.put_last_vote(AuthorityIndex(1), &vote(1));
            writes.commit(Durability::Synced).unwrap();
            let mut writes = store.write_set();
            writes.put_last_vote(AuthorityIndex(1), &vote(2));
            writes.put_last_vote(AuthorityIndex(2), &vote(2));
            writes.commit(Durability::Buffered).unwrap();
            let mut writes = store.write_set();
            writes.put_last_vote(AuthorityIndex(3), &vote(3));
            writes.commit(Durability::Buffered).unwrap();
            store.sync().unwrap();
            let mut writes = store.write_set();
            writes.put_last_vote(AuthorityIndex(1), &vote(4));
            writes.commit(Durability::Buffered).unwrap();
        }
        {
            // A process crash loses nothing.
            let store = Store::open_emulating_power_loss(&path).unwrap();
            assert_eq!(store.state.last_vote(AuthorityIndex(1)).unwrap(), Some(vote(4)));
            let mut writes = store.write_set();
            writes.put_last_vote(AuthorityIndex(1), &vote(5));
            writes.put_last_vote(AuthorityIndex(0), &vote(5));
            writes.commit(Durability::Buffered).unwrap();
        }
        cut_power(&path);
        let store = Store::open_emulating_power_loss(&path).unwrap();
        let lost = "written after the last sync, before a process restart: lost with the power";
        assert_eq!(store.state.last_vote(AuthorityIndex(1)).unwrap(), Some(vote(2)), "{lost}");
        assert_eq!(store.state.last_vote(AuthorityIndex(0)).unwrap(), None, "a new key, not synced: lost");
        assert_eq!(store.state.last_vote(AuthorityIndex(3)).unwrap(), Some(vote(3)), "synced: kept");
        assert_eq!(store.state.last_vote(AuthorityIndex(2)).unwrap(), Some(vote(2)));
    }
}
