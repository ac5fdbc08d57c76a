//! Client acknowledgements (issue 17, item 1): a worker tells each client connection how many of its
//! transactions a batch carries once that batch is *acknowledged*, that is stored by a quorum of workers and
//! durably recorded by our primary for proposal, so that it will be proposed until a certificate of ours
//! carries it, whatever crashes (DESIGN.md §9.3). That is the promise an acknowledgement makes to a client.
//!
//! The batch maker tags each batch with where its transactions came from, run-length by connection; the
//! quorum waiter files those origins under the batch's digest; the primary's `Acknowledged` reaches the
//! synchronizer, which routes one [`Ack`] to each connection. Everything here is bounded: a connection's
//! queue of acks drops what a client does not read, and batches that are never acknowledged (a failed store)
//! are forgotten oldest first; a dropped ack only makes a client under-count what was promised to it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use mako_types::BatchDigest;
use tokio::sync::mpsc;

/// A client connection of this worker, numbered from 0 since the worker started.
pub type ConnectionId = u64;

/// "`count` of your transactions are in batch `digest`, which is now acknowledged."
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    pub digest: BatchDigest,
    pub count: u32,
}

/// Acks waiting to be written to one connection.
const ACKS_PER_CONNECTION: usize = 1_024;
/// Sealed batches whose acknowledgement is awaited (far more than the batches a worker has in flight).
const WAITING_BATCHES: usize = 4_096;

/// Shared by a worker's client port, quorum waiter and synchronizer; cheap to clone.
#[derive(Clone, Default)]
pub struct ClientAcks(Arc<Mutex<Routes>>);

#[derive(Default)]
struct Routes {
    next: ConnectionId,
    connections: HashMap<ConnectionId, mpsc::Sender<Ack>>,
    batches: HashMap<BatchDigest, Vec<(ConnectionId, u32)>>,
    oldest_first: VecDeque<BatchDigest>,
}

/// A registered connection; dropping it unregisters the connection.
pub struct Connection {
    pub id: ConnectionId,
    pub acks: mpsc::Receiver<Ack>,
    routes: ClientAcks,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.routes.lock().connections.remove(&self.id);
    }
}

impl ClientAcks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        // A panic while holding the lock leaves plain maps behind: still usable.
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers a new client connection.
    pub fn connect(&self) -> Connection {
        let (sender, acks) = mpsc::channel(ACKS_PER_CONNECTION);
        let mut routes = self.lock();
        let id = routes.next;
        routes.next += 1;
        routes.connections.insert(id, sender);
        Connection { id, acks, routes: self.clone() }
    }

    /// A batch of ours was sealed from these connections' transactions (run-length, in order).
    pub fn sealed(&self, digest: BatchDigest, origins: Vec<(ConnectionId, u32)>) {
        let mut routes = self.lock();
        if routes.batches.insert(digest, origins).is_none() {
            routes.oldest_first.push_back(digest);
        }
        while routes.oldest_first.len() > WAITING_BATCHES {
            if let Some(oldest) = routes.oldest_first.pop_front() {
                routes.batches.remove(&oldest);
            }
        }
    }

    /// Our primary acknowledged the batch: each connection it came from hears how many of its transactions
    /// it carries. A batch we did not seal (or sealed before a restart) has nobody to tell.
    pub fn acknowledged(&self, digest: &BatchDigest) {
        let mut routes = self.lock();
        let Some(origins) = routes.batches.remove(digest) else { return };
        routes.oldest_first.retain(|d| d != digest);
        let mut counts: Vec<(ConnectionId, u32)> = Vec::new();
        for (connection, count) in origins {
            match counts.iter_mut().find(|(c, _)| *c == connection) {
                Some((_, total)) => *total += count,
                None => counts.push((connection, count)),
            }
        }
        for (connection, count) in counts {
            if let Some(sender) = routes.connections.get(&connection) {
                // A client that does not read its acks loses them, not the worker's memory.
                let _ = sender.try_send(Ack { digest: *digest, count });
            }
        }
    }
}

/// The run-length origins of a batch being filled: one entry per run of transactions from one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Origins(Vec<(ConnectionId, u32)>);

impl Origins {
    pub fn push(&mut self, connection: ConnectionId) {
        match self.0.last_mut() {
            Some((last, count)) if *last == connection => *count += 1,
            _ => self.0.push((connection, 1)),
        }
    }

    pub fn take(&mut self) -> Vec<(ConnectionId, u32)> {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use mako_types::Digest;

    use super::*;

    fn digest(byte: u8) -> BatchDigest {
        BatchDigest(Digest([byte; 32]))
    }

    #[test]
    fn each_connection_hears_its_own_count_once_the_batch_is_acknowledged() {
        let acks = ClientAcks::default();
        let mut a = acks.connect();
        let mut b = acks.connect();
        let mut origins = Origins::default();
        for connection in [a.id, a.id, b.id, a.id] {
            origins.push(connection);
        }
        assert_eq!(origins, Origins(vec![(a.id, 2), (b.id, 1), (a.id, 1)]));
        acks.sealed(digest(1), origins.take());
        assert!(a.acks.try_recv().is_err(), "nothing before the acknowledgement");
        acks.acknowledged(&digest(1));
        assert_eq!(a.acks.try_recv(), Ok(Ack { digest: digest(1), count: 3 }));
        assert_eq!(b.acks.try_recv(), Ok(Ack { digest: digest(1), count: 1 }));
        acks.acknowledged(&digest(1));
        assert!(a.acks.try_recv().is_err(), "a batch is acknowledged to its clients once");
    }

    #[test]
    fn gone_connections_and_unknown_batches_are_ignored_and_memory_is_bounded() {
        let acks = ClientAcks::default();
        let gone = acks.connect();
        let id = gone.id;
        drop(gone);
        acks.sealed(digest(2), vec![(id, 5)]);
        acks.acknowledged(&digest(2));
        acks.acknowledged(&digest(3));
        for i in 0..(WAITING_BATCHES + 10) as u32 {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_le_bytes());
            acks.sealed(BatchDigest(Digest(bytes)), vec![(0, 1)]);
        }
        let routes = acks.lock();
        assert_eq!(routes.batches.len(), WAITING_BATCHES);
        assert!(routes.connections.is_empty());
    }
}
