//! Counters of what the endpoint did and refused, shared by its tasks as atomics.
//!
//! Every input the endpoint drops is counted here rather than reported as an error to the protocol: a
//! malformed or oversized frame, a message dropped because a bounded queue was full, a handshake from a
//! key outside the committee. `snapshot()` gives plain numbers for tests and for the node's Prometheus page.

use std::sync::atomic::{AtomicU64, Ordering};

/// The live counters.
#[derive(Debug, Default)]
pub struct NetworkMetrics {
    pub(crate) received: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) refused_connections: AtomicU64,
    pub(crate) accepted_connections: AtomicU64,
    pub(crate) dial_failures: AtomicU64,
    pub(crate) sent: AtomicU64,
    pub(crate) send_failures: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) acked: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    /// Well-formed messages handed to the application.
    pub received: u64,
    /// Frames that failed bytecheck (or answers with an unknown tag).
    pub malformed: u64,
    /// Frames longer than `max_frame_size`.
    pub oversized: u64,
    /// Messages dropped because a bounded queue was full (best-effort only).
    pub dropped_queue_full: u64,
    /// Incoming connections whose handshake failed, e.g. a key outside the peer list.
    pub refused_connections: u64,
    /// Incoming connections from a peer in the list.
    pub accepted_connections: u64,
    /// Outgoing connection attempts that failed.
    pub dial_failures: u64,
    /// Frames written to a stream (a write is not a delivery).
    pub sent: u64,
    /// Stream attempts that failed after the connection was up.
    pub send_failures: u64,
    /// Reliable attempts repeated after a failure.
    pub retries: u64,
    /// Answers (ack or reply) received for bidirectional sends.
    pub acked: u64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl NetworkMetrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            received: get(&self.received),
            malformed: get(&self.malformed),
            oversized: get(&self.oversized),
            dropped_queue_full: get(&self.dropped_queue_full),
            refused_connections: get(&self.refused_connections),
            accepted_connections: get(&self.accepted_connections),
            dial_failures: get(&self.dial_failures),
            sent: get(&self.sent),
            send_failures: get(&self.send_failures),
            retries: get(&self.retries),
            acked: get(&self.acked),
        }
    }
}
