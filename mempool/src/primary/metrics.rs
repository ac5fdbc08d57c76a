//! Counters of a primary: what it did, and every rejected message by reason (DagError::reason), so that tests
//! and the node's metrics endpoint see why input was refused.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use mako_types::Round;

#[derive(Debug, Default)]
pub struct PrimaryMetrics {
    pub headers_proposed: AtomicU64,
    pub votes_sent: AtomicU64,
    pub certificates_formed: AtomicU64,
    pub certificates_accepted: AtomicU64,
    pub certificates_pending: AtomicU64,
    pub certificates_requested: AtomicU64,
    pub highest_round: AtomicU64,
    /// Certificates held in memory (accepted and pending): what garbage collection keeps flat.
    pub dag_certificates: AtomicU64,
    pub gc_round: AtomicU64,
    /// The last committed leader round, as consensus reported it.
    pub committed_round: AtomicU64,
    /// Certificates handed to consensus and not taken yet.
    pub consensus_queue: AtomicU64,
    /// Batches of our uncertified headers handed back to the proposer.
    pub batches_requeued: AtomicU64,
    /// Peers' batches given up: unreferenced, their sender over its budget (`retention`).
    pub batches_evicted: AtomicU64,
    pub storage_errors: AtomicU64,
    /// Disk syncs that released votes and headers (one per burst, DESIGN.md §9.7), and the time they took.
    pub syncs: AtomicU64,
    pub sync_micros: AtomicU64,
    /// Batch verifications of peers' certificates, and the certificates they covered (their ratio is how many
    /// one multi-pairing checks).
    pub certificate_verifications: AtomicU64,
    pub certificates_verified: AtomicU64,
    rejected: Mutex<BTreeMap<&'static str, u64>>,
    /// Batch sealed → our certificate holding it formed, in microseconds (the last `LATENCY_SAMPLES`).
    batch_to_certificate_us: Mutex<std::collections::VecDeque<u64>>,
}

/// Latency samples kept for percentiles.
const LATENCY_SAMPLES: usize = 100_000;

impl PrimaryMetrics {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reject(&self, reason: &'static str) {
        *self.rejected.lock().expect("metrics lock is never poisoned").entry(reason).or_default() += 1;
    }

    pub(crate) fn observe_round(&self, round: Round) {
        self.highest_round.fetch_max(round, Ordering::Relaxed);
    }

    pub(crate) fn observe_batch_latency(&self, latency: std::time::Duration) {
        let mut samples = self.batch_to_certificate_us.lock().expect("metrics lock is never poisoned");
        if samples.len() == LATENCY_SAMPLES {
            samples.pop_front();
        }
        samples.push_back(latency.as_micros() as u64);
    }

    /// Batch-to-certificate latencies observed so far, in microseconds.
    pub fn batch_latencies_us(&self) -> Vec<u64> {
        self.batch_to_certificate_us.lock().expect("metrics lock is never poisoned").iter().copied().collect()
    }

    /// Rejections so far, by reason.
    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected.lock().expect("metrics lock is never poisoned").clone()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
