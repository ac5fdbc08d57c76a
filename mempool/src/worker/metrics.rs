//! The worker's counters: plain atomics that every actor bumps and anyone can read as a snapshot (the node
//! exports them to Prometheus).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct WorkerMetrics {
    /// Client transactions forwarded to the batch maker.
    pub transactions_accepted: AtomicU64,
    /// Client transactions refused (empty or above `max_transaction_size`).
    pub transactions_rejected: AtomicU64,
    /// Batches this worker sealed.
    pub batches_sealed: AtomicU64,
    /// Our batches held by a quorum and reported to the primary.
    pub batches_quorum: AtomicU64,
    /// Our batches the primary recorded durably for proposal (the acknowledgement's promise).
    pub batches_acknowledged: AtomicU64,
    /// Peers' batches deleted on the primary's order: unreferenced, their sender over its budget.
    pub batches_deleted: AtomicU64,
    /// Peers' batches received, stored and acknowledged.
    pub batches_received: AtomicU64,
    /// Batches fetched on the primary's request, verified and stored.
    pub batches_fetched: AtomicU64,
    /// Batch requests from peers answered.
    pub batch_requests_served: AtomicU64,
    /// Batches from peers refused: above the size limits, or not one we asked for.
    pub invalid_batches: AtomicU64,
    /// Failed writes or reads of the batch store.
    pub storage_errors: AtomicU64,
    /// Deliveries to slow peers given up after a quorum held the batch (those peers fetch it if needed).
    pub deliveries_abandoned: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WorkerMetricsSnapshot {
    pub transactions_accepted: u64,
    pub transactions_rejected: u64,
    pub batches_sealed: u64,
    pub batches_quorum: u64,
    pub batches_acknowledged: u64,
    pub batches_deleted: u64,
    pub batches_received: u64,
    pub batches_fetched: u64,
    pub batch_requests_served: u64,
    pub invalid_batches: u64,
    pub storage_errors: u64,
    pub deliveries_abandoned: u64,
}

impl WorkerMetrics {
    pub fn snapshot(&self) -> WorkerMetricsSnapshot {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        WorkerMetricsSnapshot {
            transactions_accepted: read(&self.transactions_accepted),
            transactions_rejected: read(&self.transactions_rejected),
            batches_sealed: read(&self.batches_sealed),
            batches_quorum: read(&self.batches_quorum),
            batches_acknowledged: read(&self.batches_acknowledged),
            batches_deleted: read(&self.batches_deleted),
            batches_received: read(&self.batches_received),
            batches_fetched: read(&self.batches_fetched),
            batch_requests_served: read(&self.batch_requests_served),
            invalid_batches: read(&self.invalid_batches),
            storage_errors: read(&self.storage_errors),
            deliveries_abandoned: read(&self.deliveries_abandoned),
        }
    }
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}
