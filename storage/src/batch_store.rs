//! Batches by digest, each written to disk once (issue 16, item 3). Workers store a batch before acknowledging it
//! (DESIGN.md §3); checkpoints delete the batches their predecessor covers.
//!
//! A batch's canonical bytes are appended to the current *segment file* (`batch-segments/<id>.seg`, rolled at
//! [`SEGMENT_BYTES`]), and a 20-byte index entry `digest → (segment, offset, length)` goes into fjall with the
//! rest of its write set, so it commits (and is undone by a power cut) atomically with it. Before, the bytes
//! went through fjall's journal and again into a blob file at flush: two writes of every batch. Bytes whose
//! write set never commits are dead weight in their segment. The store keeps, in memory, where each indexed
//! batch lies and how many live bytes each segment holds; a segment with none left, other than the one being
//! appended to, goes at the next [`crate::Store::sync`], once the removals that emptied it are durable (a
//! removal a power cut undid must not find its bytes gone).
//!
//! A segment that goes is kept as a *spare* (`<id>.spare`, up to [`SPARE_SEGMENTS`]) and the next segment is
//! written over it, in place. On this VM, page-cache pages freed by a deletion are handed back to the host
//! within seconds, and a write into fresh pages faults each of them in: writing a new 400 MB file took 0.21 s
//! a few seconds after one was deleted, overwriting a cached one 0.07 s, and at 100k tx/s offered those
//! copies were 14% of all CPU. A spare's old bytes past what is written are never read: reads go by the
//! index.
//!
//! The executor takes the batches the workers stored lately from memory ([`crate::recent_batches`]), not
//! from their segments; only an older batch (after a restart, or past the memory bound) is read back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use fjall::Keyspace;
use mako_types::cpu_time::{measure, Component};
use mako_types::{Batch, BatchDigest, Digest, EncodedBatch};
use rustc_hash::FxHashMap;

use crate::direct_io::{Mode, Scratch};
use crate::recent_batches::RecentBatches;
use crate::StoreError;

/// A segment file is closed and a new one started past this many bytes.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// Emptied segments kept to be written over (the rest are deleted): about what one checkpoint frees at
/// 100k tx/s, so disk use stays bounded by this many segments beyond the live ones.
pub const SPARE_SEGMENTS: usize = 16;

/// Where a batch's bytes lie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Location {
    pub segment: u64,
    pub offset: u64,
    pub len: u32,
}

impl Location {
    fn encode(self) -> [u8; 20] {
        let mut bytes = [0u8; 20];
        bytes[..8].copy_from_slice(&self.segment.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.offset.to_le_bytes());
        bytes[16..].copy_from_slice(&self.len.to_le_bytes());
        bytes
    }

    fn decode(key: &[u8], bytes: &[u8]) -> Result<Self, StoreError> {
        let bytes: &[u8; 20] = bytes.try_into().map_err(|_| StoreError::Corrupt {
            store: "batches",
            key: key.to_vec(),
            reason: format!("an index entry of {} bytes, not 20", bytes.len()),
        })?;
        let word = |range: std::ops::Range<usize>| u64::from_le_bytes(bytes[range].try_into().expect("8 bytes"));
        Ok(Self { segment: word(0..8), offset: word(8..16), len: u32::from_le_bytes(bytes[16..].try_into().unwrap()) })
    }
}

#[derive(Default)]
struct Segments {
    /// The segment being appended to, its file and its length.
    current: Option<(u64, File, u64)>,
    next_id: u64,
    /// Every indexed batch's place (what committed write sets say).
    located: FxHashMap<BatchDigest, Location>,
    /// Live bytes per segment (indexed batches in it).
    live: BTreeMap<u64, u64>,
    /// Appends whose write set has not committed or been dropped yet, per segment: such a segment stays.
    pending: BTreeMap<u64, u64>,
    /// Segments with no live byte, deleted or kept as spares at the next sync.
    dead: BTreeSet<u64>,
    /// Emptied segment files to write the next segments over (`<id>.spare`).
    spares: Vec<PathBuf>,
    readers: BTreeMap<u64, Arc<File>>,
    /// The aligned buffer appends are copied into, in direct mode.
    scratch: Scratch,
    /// Indexed batches' bytes kept in memory for the executor ([`crate::recent_batches`]).
    recent: RecentBatches,
}

#[derive(Clone)]
pub struct BatchStore {
    index: Keyspace,
    dir: PathBuf,
    segments: Arc<Mutex<Segments>>,
    /// Direct I/O where the file system allows it ([`crate::direct_io`]).
    mode: Mode,
    /// Aligned buffers for reads, reused ([`READ_BUFFERS`] at most are kept).
    read_buffers: Arc<Mutex<Vec<Scratch>>>,
}

/// Read buffers kept for reuse: a few readers at a time (the executor, the workers serving peers).
const READ_BUFFERS: usize = 4;

/// What one write set did to the batch store, applied to the in-memory places when it commits.
#[derive(Default)]
pub(crate) struct BatchChanges {
    /// In order: a batch appended at a place (`Some`), or removed (`None`).
    changes: Vec<(BatchDigest, Option<Location>)>,
}

impl BatchStore {
    pub(crate) fn open(index: Keyspace, path: &Path) -> Result<Self, StoreError> {
        Self::open_in_mode(index, path, None)
    }

    /// [`Self::open`], in `mode` if given, else in the mode the folder's file system allows.
    fn open_in_mode(index: Keyspace, path: &Path, mode: Option<Mode>) -> Result<Self, StoreError> {
        let dir = path.join("batch-segments");
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::io("create the batch segment folder", e))?;
        let mode = mode.unwrap_or_else(|| Mode::probe(&dir));
        let store = Self { index, dir, segments: Arc::default(), mode, read_buffers: Arc::default() };
        store.reload()?;
        Ok(store)
    }

    pub(crate) fn keyspace(&self) -> &Keyspace {
        &self.index
    }

    /// Rebuilds the in-memory places from the index (at open, and after a power cut's undo changed it).
    pub(crate) fn reload(&self) -> Result<(), StoreError> {
        let mut located = FxHashMap::default();
        let mut live: BTreeMap<u64, u64> = BTreeMap::new();
        for guard in self.index.iter() {
            let (key, value) = guard.into_inner().map_err(StoreError::fjall("scan the batch index"))?;
            let digest: [u8; 32] = (*key).try_into().map_err(|_| StoreError::Corrupt {
                store: "batches",
                key: key.to_vec(),
                reason: "an index key that is not a 32-byte digest".into(),
            })?;
            let location = Location::decode(&key, &value)?;
            *live.entry(location.segment).or_default() += u64::from(location.len);
            located.insert(BatchDigest(Digest(digest)), location);
        }
        let mut on_disk = BTreeSet::new();
        let mut spares = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(|e| StoreError::io("list batch segments", e))? {
            let entry = entry.map_err(|e| StoreError::io("list batch segments", e))?;
            let name = entry.file_name();
            let id = |suffix| name.to_str().and_then(|n| n.strip_suffix(suffix)).and_then(|n| n.parse::<u64>().ok());
            if let Some(id) = id(".seg") {
                on_disk.insert(id);
            } else if let Some(id) = id(".spare") {
                spares.push((id, entry.path()));
            }
        }
        let dead = on_disk.iter().copied().filter(|id| !live.contains_key(id)).collect();
        // Above every name in the folder: a segment that goes is renamed to a spare of its own id.
        let next_id =
            on_disk.iter().chain(live.keys()).chain(spares.iter().map(|(id, _)| id)).max().map_or(0, |id| id + 1);
        let spares = spares.into_iter().map(|(_, path)| path).collect();
        *self.lock() = Segments { next_id, located, live, dead, spares, ..Segments::default() };
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Segments> {
        self.segments.lock().expect("the batch segments are never poisoned")
    }

    fn path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment:016}.seg"))
    }

    fn spare_path(&self, segment: u64) -> PathBuf {
        self.dir.join(format!("{segment:016}.spare"))
    }

    pub fn put(&self, digest: &BatchDigest, batch: &Batch) -> Result<(), StoreError> {
        self.put_encoded(digest, &EncodedBatch::new(batch).0)
    }

    /// Stores a batch already in canonical bytes (as received), without decoding and encoding it again, on its
    /// own (validators store batches through a [`crate::WriteSet`], which a power cut can undo as a whole).
    pub fn put_encoded(&self, digest: &BatchDigest, bytes: &[u8]) -> Result<(), StoreError> {
        let Some(location) = self.append(digest, bytes)? else { return Ok(()) };
        let mut changes = BatchChanges::default();
        changes.appended(*digest, location);
        let indexed = self.index.insert(digest.as_bytes(), location.encode()).map_err(StoreError::fjall("index batch"));
        self.settle(changes, indexed.is_ok());
        indexed
    }

    /// Appends `bytes` to the current segment (rolling it when full) and returns where they lie; the segment
    /// stays until the caller's write set [`Self::settle`]s. None if the batch is indexed already: written once.
    pub(crate) fn append(&self, digest: &BatchDigest, bytes: &[u8]) -> Result<Option<Location>, StoreError> {
        let mut segments = self.lock();
        if segments.located.contains_key(digest) {
            return Ok(None);
        }
        let full = segments.current.as_ref().is_none_or(|(_, _, len)| *len + bytes.len() as u64 > SEGMENT_BYTES);
        if full {
            let id = segments.next_id;
            let file = self.start_segment(id, segments.spares.pop())?;
            segments.next_id += 1;
            if let Some((previous, _, _)) = segments.current.replace((id, file, 0)) {
                if !segments.live.contains_key(&previous) && !segments.pending.contains_key(&previous) {
                    segments.dead.insert(previous);
                }
            }
        }
        let Segments { current, scratch, pending, .. } = &mut *segments;
        let (segment, file, len) = current.as_mut().expect("opened above");
        let taken = measure(Component::Storage, || self.mode.write_at(file, scratch, bytes, *len))
            .map_err(|e| StoreError::io("append a batch", e))?;
        let location = Location { segment: *segment, offset: *len, len: bytes.len() as u32 };
        *len += taken;
        *pending.entry(location.segment).or_default() += 1;
        Ok(Some(location))
    }

    /// Opens segment `id` for writing: a spare renamed to it (its old bytes are written over), or a new file.
    /// The folder is synced, so that the segment's name is durable before any index entry that points into it.
    fn start_segment(&self, id: u64, spare: Option<PathBuf>) -> Result<File, StoreError> {
        let path = self.path(id);
        if let Some(spare) = spare {
            std::fs::rename(&spare, &path).map_err(|e| StoreError::io("reuse a spare batch segment", e))?;
        }
        let file = (self.mode.options().create(true).write(true).truncate(false).open(&path))
            .map_err(|e| StoreError::io("create a batch segment", e))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| StoreError::io("sync the batch segment folder", e))?;
        Ok(file)
    }

    /// The index entry of an appended batch.
    pub(crate) fn index_entry(location: Location) -> [u8; 20] {
        location.encode()
    }

    /// Where an indexed batch lies, for a removal.
    pub(crate) fn located(&self, digest: &BatchDigest) -> Option<Location> {
        self.lock().located.get(digest).copied()
    }

    /// Applies a write set's batch changes once it committed (or only releases its appends if it did not).
    pub(crate) fn settle(&self, changes: BatchChanges, committed: bool) {
        let mut segments = self.lock();
        let segments = &mut *segments;
        for (digest, location) in changes.changes {
            if let Some(appended) = location {
                if let Some(count) = segments.pending.get_mut(&appended.segment) {
                    *count -= 1;
                    if *count == 0 {
                        segments.pending.remove(&appended.segment);
                    }
                }
            }
            if !committed {
                continue;
            }
            if location.is_none() {
                segments.recent.drop_bytes(&digest);
            }
            if let Some(old) = segments.located.remove(&digest) {
                if let Some(live) = segments.live.get_mut(&old.segment) {
                    *live -= u64::from(old.len);
                }
            }
            if let Some(new) = location {
                segments.located.insert(digest, new);
                *segments.live.entry(new.segment).or_default() += u64::from(new.len);
            }
        }
        let current = segments.current.as_ref().map(|(id, _, _)| *id);
        let emptied: Vec<u64> = segments
            .live
            .iter()
            .filter(|(id, live)| **live == 0 && Some(**id) != current && !segments.pending.contains_key(id))
            .map(|(id, _)| *id)
            .collect();
        for id in emptied {
            segments.live.remove(&id);
            segments.dead.insert(id);
        }
    }

    /// Keeps as spares, or deletes, the segments left with no live byte; call once the removals that emptied
    /// them are durable. A segment a reader still holds open (a read that began before its last batch was
    /// removed) is deleted, never written over: the read finds the bytes it asked for.
    pub(crate) fn retire_dead_segments(&self) -> Result<(), StoreError> {
        let mut segments = self.lock();
        for id in std::mem::take(&mut segments.dead) {
            let unread = segments.readers.remove(&id).is_none_or(|reader| Arc::strong_count(&reader) == 1);
            let path = self.path(id);
            let outcome = if unread && segments.spares.len() < SPARE_SEGMENTS {
                let spare = self.spare_path(id);
                std::fs::rename(&path, &spare).map(|()| segments.spares.push(spare))
            } else {
                std::fs::remove_file(&path)
            };
            match outcome {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(StoreError::io("delete a batch segment", error)),
            }
        }
        Ok(())
    }

    /// Bytes the segments hold: the live batches' and the whole segment being appended to.
    pub fn segment_bytes(&self) -> u64 {
        let segments = self.lock();
        let current = segments.current.as_ref().map_or(0, |(_, _, len)| *len);
        segments.live.values().sum::<u64>() + current
    }

    pub fn get(&self, digest: &BatchDigest) -> Result<Option<Batch>, StoreError> {
        match self.get_encoded(digest)? {
            Some(bytes) => EncodedBatch(bytes).decode().map(Some).map_err(|e| StoreError::Corrupt {
                store: "batches",
                key: digest.as_bytes().to_vec(),
                reason: e.to_string(),
            }),
            None => Ok(None),
        }
    }

    /// The stored canonical bytes, e.g. to serve a peer without decoding.
    pub fn get_encoded(&self, digest: &BatchDigest) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(digest, |recent| recent.get(digest))
    }

    /// The stored canonical bytes, to execute them: taken from memory if the worker that stored them lately
    /// still keeps them there ([`Self::keep_recent`]), else read. A later read finds them in their segment.
    pub fn take_encoded(&self, digest: &BatchDigest) -> Result<Option<Vec<u8>>, StoreError> {
        self.read(digest, |recent| recent.take(digest))
    }

    /// Keeps the bytes of a batch just stored in memory, for [`Self::take_encoded`]; nothing if the batch is
    /// not indexed (its write set failed, or it was removed since).
    pub fn keep_recent(&self, digest: BatchDigest, bytes: Vec<u8>) {
        let mut segments = self.lock();
        if segments.located.contains_key(&digest) {
            segments.recent.keep(digest, bytes);
        }
    }

    /// An indexed batch's bytes, from memory (`recent`) if there, else from its segment.
    fn read(
        &self,
        digest: &BatchDigest,
        recent: impl FnOnce(&mut RecentBatches) -> Option<Vec<u8>>,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (location, reader) = {
            let mut segments = self.lock();
            let Some(location) = segments.located.get(digest).copied() else { return Ok(None) };
            if let Some(bytes) = recent(&mut segments.recent) {
                return Ok(Some(bytes));
            }
            let reader = match segments.readers.get(&location.segment) {
                Some(reader) => Arc::clone(reader),
                None => {
                    let opened = self.mode.options().read(true).open(self.path(location.segment));
                    let file = opened.map_err(|e| StoreError::Corrupt {
                        store: "batches",
                        key: digest.as_bytes().to_vec(),
                        reason: format!("segment {} of an indexed batch cannot be opened: {e}", location.segment),
                    })?;
                    let reader = Arc::new(file);
                    segments.readers.insert(location.segment, Arc::clone(&reader));
                    reader
                }
            };
            (location, reader)
        };
        let mut scratch = self.read_buffers.lock().expect("never poisoned").pop().unwrap_or_default();
        let read = measure(Component::Storage, || {
            self.mode.read_at(&reader, &mut scratch, location.len as usize, location.offset)
        });
        let mut buffers = self.read_buffers.lock().expect("never poisoned");
        if buffers.len() < READ_BUFFERS {
            buffers.push(scratch);
        }
        let bytes = read.map_err(|e| StoreError::Corrupt {
            store: "batches",
            key: digest.as_bytes().to_vec(),
            reason: format!("segment {} is shorter than its index says: {e}", location.segment),
        })?;
        Ok(Some(bytes))
    }

    pub fn contains(&self, digest: &BatchDigest) -> Result<bool, StoreError> {
        Ok(self.lock().located.contains_key(digest))
    }

    /// Syncs the segment being appended to (before the index entries that point into it are synced).
    pub(crate) fn sync_segment(&self) -> Result<(), StoreError> {
        if let Some((_, file, _)) = self.lock().current.as_ref() {
            file.sync_data().map_err(|e| StoreError::io("sync a batch segment", e))?;
        }
        Ok(())
    }
}

impl BatchChanges {
    pub(crate) fn appended(&mut self, digest: BatchDigest, location: Location) {
        self.changes.push((digest, Some(location)));
    }

    pub(crate) fn removed(&mut self, digest: BatchDigest) {
        self.changes.push((digest, None));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use mako_types::Transaction;

    use crate::Store;

    use super::*;

    fn batch(seed: u8, transactions: usize) -> Batch {
        Batch::new((0..transactions).map(|i| Transaction(vec![seed.wrapping_add(i as u8); 512])).collect())
    }

    #[test]
    fn survives_reopen_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let batch = batch(0, 100);
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

    /// The store reads back what it wrote, after a reopen too, whether the file system takes direct I/O (the
    /// probe's answer here) or not (tmpfs): the two modes lay batches out differently (padded to a boundary or
    /// not), and a store only ever reads what it wrote in its own mode.
    #[test]
    fn batches_read_back_in_either_mode() {
        for mode in [Mode::probe(tempfile::tempdir().unwrap().path()), Mode::Buffered] {
            let dir = tempfile::tempdir().unwrap();
            let batches: Vec<Batch> = (0..5).map(|i| batch(i, 1 + 3 * i as usize)).collect();
            {
                let store = Store::open(dir.path()).unwrap();
                let batches_apart = BatchStore::open_in_mode(store.batches.keyspace().clone(), dir.path(), Some(mode));
                let batches_apart = batches_apart.unwrap();
                for batch in &batches {
                    batches_apart.put(&batch.digest(), batch).unwrap();
                }
                for batch in &batches {
                    assert_eq!(batches_apart.get(&batch.digest()).unwrap().as_ref(), Some(batch), "{mode:?}");
                }
                store.sync().unwrap();
            }
            let store = Store::open(dir.path()).unwrap();
            let reopened = BatchStore::open_in_mode(store.batches.keyspace().clone(), dir.path(), Some(mode)).unwrap();
            for batch in &batches {
                assert_eq!(reopened.get(&batch.digest()).unwrap().as_ref(), Some(batch), "{mode:?}, reopened");
            }
        }
    }

    /// A segment cut short under its index (a lost tail, a truncation by hand): the read is refused as corrupt,
    /// whole, and the batch before the cut still reads back exactly.
    #[test]
    fn a_batch_cut_short_in_its_segment_is_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (first, second) = (batch(1, 10), batch(2, 10));
        store.batches.put(&first.digest(), &first).unwrap();
        store.batches.put(&second.digest(), &second).unwrap();
        let segment = store.batches.path(0);
        let length = std::fs::metadata(&segment).unwrap().len();
        std::fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(length - 1).unwrap();
        let err = store.batches.get_encoded(&second.digest()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { store: "batches", .. }), "{err}");
        assert_eq!(store.batches.get_encoded(&first.digest()).unwrap(), Some(EncodedBatch::new(&first).0));
    }

    /// A batch the worker keeps in memory is taken from there once (its segment is cut to nothing here, so a
    /// read from disk would fail), then read from its segment. Memory never answers for a batch the index does
    /// not hold: one kept before it was stored, or one removed since (whose bytes go from memory at once).
    #[test]
    fn a_kept_batch_is_taken_from_memory_once_and_only_while_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (kept, never_stored, removed) = (batch(1, 10), batch(2, 10), batch(3, 10));
        store.batches.put(&kept.digest(), &kept).unwrap();
        store.batches.keep_recent(kept.digest(), EncodedBatch::new(&kept).0);
        std::fs::OpenOptions::new().write(true).open(store.batches.path(0)).unwrap().set_len(0).unwrap();
        let bytes = Some(EncodedBatch::new(&kept).0);
        assert_eq!(store.batches.get_encoded(&kept.digest()).unwrap(), bytes, "a copy, from memory");
        assert_eq!(store.batches.take_encoded(&kept.digest()).unwrap(), bytes, "taken from memory");
        let err = store.batches.take_encoded(&kept.digest()).unwrap_err();
        assert!(matches!(err, StoreError::Corrupt { store: "batches", .. }), "then read from the segment: {err}");

        store.batches.keep_recent(never_stored.digest(), EncodedBatch::new(&never_stored).0);
        assert_eq!(store.batches.take_encoded(&never_stored.digest()).unwrap(), None);
        assert_eq!(store.batches.lock().recent.held(), 0, "not kept");

        store.batches.put(&removed.digest(), &removed).unwrap();
        store.batches.keep_recent(removed.digest(), EncodedBatch::new(&removed).0);
        let mut writes = store.write_set();
        writes.remove_batch(&removed.digest());
        writes.commit(crate::Durability::Buffered).unwrap();
        assert_eq!(store.batches.get_encoded(&removed.digest()).unwrap(), None);
        assert_eq!(store.batches.lock().recent.held(), 0, "the removed batch's bytes left memory");
    }

    /// Each batch is written once (the same digest again appends nothing), and disk use follows deletion: a
    /// segment whose batches are all removed becomes a spare at the next sync and the next segment is written
    /// over it, one that still holds a live batch stays, and what stays reads back after a reopen. The
    /// adversary is a removal that a power cut undoes: the segment must still be there when the batch comes
    /// back.
    #[test]
    fn batches_are_written_once_and_emptied_segments_reused_after_a_sync() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_emulating_power_loss(dir.path()).unwrap();
        let files = |suffix: &str| {
            let names = std::fs::read_dir(dir.path().join("batch-segments")).unwrap();
            names.filter(|e| e.as_ref().unwrap().file_name().to_str().unwrap().ends_with(suffix)).count()
        };
        let segment_files = || files(".seg");
        // 2 MB batches: 40 of them fill a 64 MB segment and start a second.
        let batches: Vec<Batch> = (0..40u8).map(|i| batch(i, 4_000)).collect();
        for b in &batches {
            store.batches.put(&b.digest(), b).unwrap();
        }
        let written = store.batches.segment_bytes();
        store.batches.put(&batches[0].digest(), &batches[0]).unwrap();
        assert_eq!(store.batches.segment_bytes(), written, "a batch stored twice is written once");
        assert_eq!(segment_files(), 2);
        // Remove every batch of the first segment but the last; the segment stays.
        let first = store.batches.located(&batches[0].digest()).unwrap().segment;
        let in_first: Vec<&Batch> =
            batches.iter().filter(|b| store.batches.located(&b.digest()).unwrap().segment == first).collect();
        let mut writes = store.write_set();
        for b in &in_first[..in_first.len() - 1] {
            writes.remove_batch(&b.digest());
        }
        writes.commit(crate::Durability::Buffered).unwrap();
        store.sync().unwrap();
        assert_eq!(segment_files(), 2, "a segment with a live batch stays");
        // The last one goes, but no sync follows: a power cut brings it back, and its bytes are still there.
        let last = in_first.last().unwrap();
        let mut writes = store.write_set();
        writes.remove_batch(&last.digest());
        writes.commit(crate::Durability::Buffered).unwrap();
        assert_eq!(segment_files(), 2, "not deleted before the removal is durable");
        drop(store);
        crate::cut_power(dir.path());
        let store = Store::open_emulating_power_loss(dir.path()).unwrap();
        assert_eq!(store.batches.get(&last.digest()).unwrap().as_ref(), Some(*last), "undone removal, bytes kept");
        // Removed and synced: the first segment is deleted; the rest reads back.
        let mut writes = store.write_set();
        writes.remove_batch(&last.digest());
        writes.commit(crate::Durability::Buffered).unwrap();
        store.sync().unwrap();
        assert_eq!((segment_files(), files(".spare")), (1, 1), "the emptied segment is kept as a spare");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        for b in batches.iter().filter(|b| !in_first.contains(b)) {
            assert_eq!(store.batches.get(&b.digest()).unwrap().as_ref(), Some(b));
        }
        // New batches roll a new segment over the spare: the spare's old bytes are written over or never read,
        // and every batch reads back as it was stored.
        let fresh: Vec<Batch> = (100..140u8).map(|i| batch(i, 4_000)).collect();
        for b in &fresh {
            store.batches.put(&b.digest(), b).unwrap();
        }
        store.sync().unwrap();
        assert_eq!(files(".spare"), 0, "the spare was written over");
        drop(store);
        let store = Store::open(dir.path()).unwrap();
        for b in batches.iter().filter(|b| !in_first.contains(b)).chain(&fresh) {
            assert_eq!(store.batches.get(&b.digest()).unwrap().as_ref(), Some(b));
        }
        for b in &in_first {
            assert_eq!(store.batches.get(&b.digest()).unwrap(), None);
        }
    }

    /// The adversary: a spare named by a higher id than any segment (the newest segment emptied before a
    /// restart). Reopened, the store must number new segments above it, or the segment of that number would,
    /// once emptied in turn, be renamed over the spare still listed.
    #[test]
    fn new_segments_are_numbered_above_every_spare() {
        let dir = tempfile::tempdir().unwrap();
        drop(Store::open(dir.path()).unwrap());
        std::fs::write(dir.path().join("batch-segments").join(format!("{:016}.spare", 5)), b"old bytes").unwrap();
        let store = Store::open(dir.path()).unwrap();
        let b = batch(1, 10);
        store.batches.put(&b.digest(), &b).unwrap();
        assert!(store.batches.located(&b.digest()).unwrap().segment > 5);
        assert_eq!(store.batches.get(&b.digest()).unwrap(), Some(b), "written over the spare, read back whole");
    }
}
