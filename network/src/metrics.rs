//! Counters of what the endpoint did and refused, shared by its tasks as atomics.
//!
//! Every input the endpoint drops is counted here rather than reported as an error to the protocol: a
//! malformed or oversized frame, a message dropped because a bounded queue was full, a handshake from a
//! key outside the committee. `snapshot()` gives plain numbers for tests and for the node's Prometheus page.
//! It also reads quinn's path statistics of the connections we dialed (the ones our frames go out on): the
//! packets they sent and lost, and the smallest path MTU among them, which is how a link that fell back to
//! 1,200-byte packets shows (`transport.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use mako_types::AuthorityIndex;

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
    paths: Mutex<Paths>,
}

/// The connections we dialed, one per peer, and what the ones they replaced had counted.
#[derive(Debug, Default)]
struct Paths {
    live: BTreeMap<AuthorityIndex, quinn::Connection>,
    replaced: PathCounts,
}

/// Packet counts of QUIC paths, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PathCounts {
    sent: u64,
    lost: u64,
    black_holes: u64,
}

impl PathCounts {
    fn of(path: &quinn::PathStats) -> Self {
        Self { sent: path.sent_packets, lost: path.lost_packets, black_holes: path.black_holes_detected }
    }

    fn add(self, other: Self) -> Self {
        Self {
            sent: self.sent + other.sent,
            lost: self.lost + other.lost,
            black_holes: self.black_holes + other.black_holes,
        }
    }
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
    /// QUIC packets sent on the connections we dialed, those since replaced included.
    pub packets_sent: u64,
    /// Of those, the packets quinn declared lost (each one resent, and a congestion signal).
    pub packets_lost: u64,
    /// Times quinn judged a path a black hole for large packets and fell back to 1,200-byte ones.
    pub black_holes: u64,
    /// The smallest path MTU (largest UDP payload) among the live connections we dialed; 0 with none.
    pub min_path_mtu: u64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl NetworkMetrics {
    /// Counts `connection` as the link we dialed to `peer`, in place of the one before it.
    pub(crate) fn track_dialed(&self, peer: AuthorityIndex, connection: &quinn::Connection) {
        let mut paths = self.paths.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(replaced) = paths.live.insert(peer, connection.clone()) {
            paths.replaced = paths.replaced.add(PathCounts::of(&replaced.stats().path));
        }
    }

    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let (paths, min_path_mtu) = {
            let paths = self.paths.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (mut counts, mut min_mtu) = (paths.replaced, None::<u16>);
            for connection in paths.live.values() {
                let path = connection.stats().path;
                counts = counts.add(PathCounts::of(&path));
                if connection.close_reason().is_none() {
                    min_mtu = Some(min_mtu.map_or(path.current_mtu, |mtu| mtu.min(path.current_mtu)));
                }
            }
            (counts, min_mtu.map_or(0, u64::from))
        };
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
            packets_sent: paths.sent,
            packets_lost: paths.lost,
            black_holes: paths.black_holes,
            min_path_mtu,
        }
    }
}
