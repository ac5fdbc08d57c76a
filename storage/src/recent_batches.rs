//! The batches stored lately, kept in memory so that the executor takes each one without reading it back.
//!
//! A batch is executed about half a second after a worker stored it (the commit latency), and the executor
//! reads it exactly once; read back from its segment, each batch cost a disk read and a copy, 3-4% of a
//! loaded validator's CPU. The workers hand the bytes they stored to [`RecentBatches::keep`], and the
//! executor [`RecentBatches::take`]s them. The memory is bounded by [`RECENT_BATCH_BYTES`]: past it the
//! oldest go (a Byzantine peer that floods us with batches never committed only pushes ours out sooner), and
//! what is not here is read from its segment as before. This is a cache only: the batch store answers from
//! it only for a batch its index holds.

use std::collections::VecDeque;

use mako_types::BatchDigest;
use rustc_hash::FxHashMap;

/// The bytes of recent batches kept in memory: at 100k tx/s, each validator stores about 50 MB of batches a
/// second, and executes them 0.5-1 s later.
pub const RECENT_BATCH_BYTES: usize = 64 << 20;

pub(crate) struct RecentBatches {
    bytes: FxHashMap<BatchDigest, Vec<u8>>,
    /// Digests in the order they were kept, oldest first; may name batches taken since (skipped when popped).
    order: VecDeque<BatchDigest>,
    held: usize,
    limit: usize,
}

impl Default for RecentBatches {
    fn default() -> Self {
        Self::with_limit(RECENT_BATCH_BYTES)
    }
}

impl RecentBatches {
    pub(crate) fn with_limit(limit: usize) -> Self {
        Self { bytes: FxHashMap::default(), order: VecDeque::new(), held: 0, limit }
    }

    /// Keeps a batch's bytes, dropping the oldest kept ones past the limit.
    pub(crate) fn keep(&mut self, digest: BatchDigest, bytes: Vec<u8>) {
        if bytes.len() > self.limit {
            return;
        }
        self.held += bytes.len();
        match self.bytes.insert(digest, bytes) {
            Some(old) => self.held -= old.len(),
            None => self.order.push_back(digest),
        }
        while self.held > self.limit {
            let Some(oldest) = self.order.pop_front() else { break };
            self.drop_bytes(&oldest);
        }
        // Taken batches leave their digest in `order`; a batch never taken ahead of them (never committed)
        // would let those accumulate without bound, so they are swept once they outnumber the kept ones.
        if self.order.len() > 2 * self.bytes.len() + 64 {
            self.order.retain(|digest| self.bytes.contains_key(digest));
        }
    }

    /// Removes and returns a batch's bytes, if kept.
    pub(crate) fn take(&mut self, digest: &BatchDigest) -> Option<Vec<u8>> {
        let bytes = self.bytes.remove(digest)?;
        self.held -= bytes.len();
        Some(bytes)
    }

    /// A copy of a batch's bytes, if kept.
    pub(crate) fn get(&self, digest: &BatchDigest) -> Option<Vec<u8>> {
        self.bytes.get(digest).cloned()
    }

    /// Forgets a batch (removed from the store).
    pub(crate) fn drop_bytes(&mut self, digest: &BatchDigest) {
        if let Some(bytes) = self.bytes.remove(digest) {
            self.held -= bytes.len();
        }
    }

    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use mako_types::Digest;

    use super::*;

    fn digest(i: u8) -> BatchDigest {
        BatchDigest(Digest([i; 32]))
    }

    #[test]
    fn the_oldest_go_past_the_limit_and_a_taken_batch_is_gone() {
        let mut recent = RecentBatches::with_limit(300);
        for i in 0..3 {
            recent.keep(digest(i), vec![i; 100]);
        }
        assert_eq!(recent.take(&digest(1)), Some(vec![1; 100]));
        assert_eq!(recent.take(&digest(1)), None);
        recent.keep(digest(3), vec![3; 150]);
        recent.keep(digest(4), vec![4; 100]);
        // 0 went to make room for 3, then 2 for 4 (1's digest, taken, was skipped).
        assert_eq!(recent.get(&digest(0)), None);
        assert_eq!(recent.get(&digest(2)), None);
        assert_eq!(recent.get(&digest(3)), Some(vec![3; 150]));
        assert_eq!(recent.get(&digest(4)), Some(vec![4; 100]));
        assert_eq!(recent.held(), 250);
        // Larger than the whole limit: not kept, nothing pushed out.
        recent.keep(digest(5), vec![5; 301]);
        assert_eq!(recent.get(&digest(5)), None);
        assert_eq!(recent.held(), 250);
    }

    /// Adversary: one batch that is never taken (never committed) ahead of a long stream of batches that are
    /// each taken at once. Memory stays bounded by the limit and the order of digests stays short.
    #[test]
    fn a_batch_never_taken_does_not_let_the_order_grow() {
        let mut recent = RecentBatches::with_limit(1 << 20);
        recent.keep(digest(255), vec![0; 10]);
        for i in 0..100_000u32 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            let d = BatchDigest(Digest(bytes));
            recent.keep(d, vec![1; 100]);
            assert!(recent.take(&d).is_some());
        }
        assert!(recent.order.len() <= 2 * recent.bytes.len() + 65, "order of {} digests", recent.order.len());
        assert_eq!(recent.held(), 10);
        assert_eq!(recent.get(&digest(255)), Some(vec![0; 10]));
    }
}
