//! How long our workers keep a peer's batch that no certificate carries yet (issue 15, finding 7).
//!
//! A worker must store a peer's batch before it acknowledges it, so without a bound a Byzantine worker could
//! fill every honest worker's disk with batches that no header will ever name. The primary keeps the ledger
//! (it sees both sides: the worker's [`WorkerToPrimary::PeerBatch`] reports and the certificates it accepts).
//! A batch a peer pushed is *unreferenced* until we accept a certificate that carries it; each peer may have at
//! most `max_unreferenced_bytes_per_peer` of unreferenced batches with us, and past that its oldest
//! unreferenced batch is forgotten (no longer counted as held by the vote rule) and deleted by the worker
//! ([`PrimaryToWorker::Delete`]). An honest peer's batch is referenced within a round or two, far below the
//! budget; one deleted all the same (its author fell far behind) is fetched again when a certificate needs it,
//! from its author, which keeps its own batches. The ledger lives in memory: after a restart the batches of
//! the last life count as referenced.
//!
//! [`WorkerToPrimary::PeerBatch`]: crate::messages::WorkerToPrimary::PeerBatch
//! [`PrimaryToWorker::Delete`]: crate::messages::PrimaryToWorker::Delete

use std::collections::{BTreeMap, VecDeque};

use mako_types::{AuthorityIndex, BatchDigest};
use rustc_hash::FxHashMap;

use super::held_batches::HeldBatches;

/// Unreferenced batches one peer may have here at most, whatever their size (bounds the ledger's memory).
pub const MAX_UNREFERENCED_BATCHES: usize = 100_000;

#[derive(Debug, Default)]
struct PeerLedger {
    /// Unreferenced batches in arrival order; referenced ones stay until they reach the front, marked by
    /// their absence from `unreferenced` (which holds the sizes).
    order: VecDeque<BatchDigest>,
    bytes: usize,
}

/// The per-peer ledger of unreferenced batches.
#[derive(Debug)]
pub struct Retention {
    max_unreferenced_bytes: usize,
    peers: BTreeMap<AuthorityIndex, PeerLedger>,
    /// Every unreferenced batch: its sender and size.
    unreferenced: FxHashMap<BatchDigest, (AuthorityIndex, usize)>,
    /// Batches certificates carried before they reached us (a slow push): admitted as referenced.
    carried_early: HeldBatches,
}

impl Retention {
    pub fn new(max_unreferenced_bytes: usize) -> Self {
        Self {
            max_unreferenced_bytes,
            peers: BTreeMap::new(),
            unreferenced: FxHashMap::default(),
            carried_early: HeldBatches::default(),
        }
    }

    /// `from` pushed us the batch `digest` of `size` bytes, now stored. Returns the batches of `from` to delete
    /// (its oldest unreferenced ones) so that it stays within its budget; never the new one itself unless it
    /// alone is over the budget.
    pub fn admit(&mut self, from: AuthorityIndex, digest: BatchDigest, size: usize) -> Vec<BatchDigest> {
        if self.unreferenced.contains_key(&digest) || self.carried_early.contains(&digest) {
            return Vec::new();
        }
        self.unreferenced.insert(digest, (from, size));
        let ledger = self.peers.entry(from).or_default();
        ledger.order.push_back(digest);
        ledger.bytes += size;
        let mut evicted = Vec::new();
        while ledger.bytes > self.max_unreferenced_bytes || ledger.order.len() > MAX_UNREFERENCED_BATCHES {
            let Some(oldest) = ledger.order.pop_front() else { break };
            // Entries referenced meanwhile were already taken out of `unreferenced` and the byte count.
            if let Some((_, size)) = self.unreferenced.remove(&oldest) {
                ledger.bytes -= size;
                evicted.push(oldest);
            }
        }
        evicted
    }

    /// A certificate we accepted carries these batches: they are kept (and so are those of them that reach us
    /// only later).
    pub fn referenced(&mut self, digests: &[BatchDigest]) {
        for digest in digests {
            let Some((from, size)) = self.unreferenced.remove(digest) else {
                self.carried_early.insert(*digest);
                continue;
            };
            let Some(ledger) = self.peers.get_mut(&from) else { continue };
            ledger.bytes -= size;
            // Compact the queue once mostly referenced entries wait in it.
            if ledger.order.len() > 2 * self.unreferenced.len() + 1_024 {
                let unreferenced = &self.unreferenced;
                ledger.order.retain(|d| unreferenced.contains_key(d));
            }
        }
    }

    /// Bytes of unreferenced batches `from` has here.
    pub fn unreferenced_bytes(&self, from: AuthorityIndex) -> usize {
        self.peers.get(&from).map_or(0, |l| l.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(i: u8) -> BatchDigest {
        BatchDigest(mako_types::Digest([i; 32]))
    }

    #[test]
    fn a_flooding_peer_loses_its_oldest_unreferenced_batches_and_nobody_else_does() {
        let mut retention = Retention::new(300);
        let (flooder, honest) = (AuthorityIndex(3), AuthorityIndex(1));
        assert!(retention.admit(honest, digest(100), 100).is_empty());
        assert!(retention.admit(flooder, digest(1), 100).is_empty());
        assert!(retention.admit(flooder, digest(2), 100).is_empty());
        assert!(retention.admit(flooder, digest(3), 100).is_empty());
        assert_eq!(retention.admit(flooder, digest(4), 100), vec![digest(1)]);
        // A referenced batch is kept: the next eviction skips it.
        retention.referenced(&[digest(2)]);
        assert_eq!(retention.unreferenced_bytes(flooder), 200);
        assert!(retention.admit(flooder, digest(5), 100).is_empty());
        assert_eq!(retention.admit(flooder, digest(6), 150), vec![digest(3), digest(4)]);
        assert_eq!(retention.unreferenced_bytes(flooder), 250);
        assert_eq!(retention.unreferenced_bytes(honest), 100, "another peer's budget is its own");
        // The same batch twice counts once.
        assert!(retention.admit(flooder, digest(6), 150).is_empty());
        assert_eq!(retention.unreferenced_bytes(flooder), 250);
        // A batch a certificate carried before it reached us is referenced when it comes.
        retention.referenced(&[digest(7)]);
        assert!(retention.admit(honest, digest(7), 100).is_empty());
        assert_eq!(retention.unreferenced_bytes(honest), 100);
    }
}
