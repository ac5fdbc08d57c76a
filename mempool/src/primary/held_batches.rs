//! The batches our workers told us they hold: what the vote rule "every batch of the payload is stored
//! locally" (DESIGN.md §3) consults, whether the workers share our process and store or run apart.
//!
//! It is a cache, bounded in memory: a digest evicted or never heard of (after a restart) is simply missing,
//! and the primary asks the worker to synchronize it; a worker answers at once for a batch it already holds.

use mako_types::BatchDigest;
use rustc_hash::FxHashSet;

/// Digests remembered per generation; two generations are kept (32 bytes a digest: about 6 MB at most).
const GENERATION: usize = 100_000;

#[derive(Debug, Default)]
pub struct HeldBatches {
    current: FxHashSet<BatchDigest>,
    previous: FxHashSet<BatchDigest>,
}

impl HeldBatches {
    /// A worker reported `digest` stored.
    pub fn insert(&mut self, digest: BatchDigest) {
        if self.current.len() >= GENERATION {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(digest);
    }

    /// The worker deletes `digest` (`super::retention`): no longer held.
    pub fn remove(&mut self, digest: &BatchDigest) {
        self.current.remove(digest);
        self.previous.remove(digest);
    }

    /// Whether a worker reported `digest` (and it was not evicted since).
    pub fn contains(&self, digest: &BatchDigest) -> bool {
        self.current.contains(digest) || self.previous.contains(digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: usize) -> BatchDigest {
        let mut bytes = [0; 32];
        bytes[..8].copy_from_slice(&(i as u64).to_le_bytes());
        BatchDigest(mako_types::Digest(bytes))
    }

    #[test]
    fn remembers_two_generations() {
        let mut held = HeldBatches::default();
        for i in 0..2 * GENERATION {
            held.insert(digest(i));
        }
        assert!(held.contains(&digest(0)) && held.contains(&digest(2 * GENERATION - 1)));
        held.insert(digest(2 * GENERATION));
        assert!(!held.contains(&digest(0)), "the oldest generation is evicted");
        assert!(held.contains(&digest(GENERATION)) && held.contains(&digest(2 * GENERATION)));
    }
}
