//! The batch synchronizer (DESIGN.md §3, worker step 5): fetches the batches our primary needs (to vote on
//! a header, or to execute) and does not hold.
//!
//! On [`PrimaryToWorker::Synchronize`] each missing digest is asked first of `target` (the header's author,
//! who certainly has it), then of the other peers in turn on failure, timeout or an answer without it; once
//! every peer has been tried, the digest waits `retry_delay` and the rounds start again, until the batch
//! arrives or a request naming another target replaces this one. Peer input is hostile: a received
//! batch is kept only if its digest is one we asked that peer for. Fetched batches are stored, then
//! reported as [`WorkerToPrimary::OthersBatch`]. Bounded: at most [`MAX_PENDING_FETCHES`] digests wait
//! (the oldest is dropped beyond that) and at most [`MAX_REQUESTS_IN_FLIGHT`] requests run at once. A
//! committed batch is never lost to that bound or to a crash: the executor asks again while it waits for
//! one (DESIGN.md §9.8).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use mako_network::{Endpoint, NetworkError};
use mako_storage::Store;
use mako_types::{AuthorityIndex, BatchDigest, EncodedBatch, WorkerId};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::{Instant, MissedTickBehavior};
use tracing::{debug, warn};

use super::client_acks::ClientAcks;
use super::handler::MAX_DIGESTS_PER_REQUEST;
use super::metrics::{bump, WorkerMetrics};
use super::store_batch;
use crate::admission::Progress;
use crate::messages::{PrimaryToWorker, WorkerMessage, WorkerToPrimary};

/// Digests being fetched at most; beyond this the oldest request is dropped.
pub const MAX_PENDING_FETCHES: usize = 10_000;
/// Batch requests to peers running at once.
pub const MAX_REQUESTS_IN_FLIGHT: usize = 8;

/// One digest being fetched.
#[derive(Debug)]
struct Fetch {
    target: AuthorityIndex,
    /// Peers asked so far without success; picks the next peer to ask.
    attempts: usize,
    in_flight: bool,
    /// Not to be asked again before this (after every peer failed once).
    retry_at: Option<Instant>,
    /// Position in `by_age`.
    age: u64,
}

/// What one batch request brought back.
type RequestOutcome = (AuthorityIndex, Vec<BatchDigest>, Result<WorkerMessage, NetworkError>);

pub struct Synchronizer {
    id: WorkerId,
    retry_delay: Duration,
    store: Store,
    endpoint: Endpoint<WorkerMessage>,
    from_primary: mpsc::Receiver<PrimaryToWorker>,
    to_primary: mpsc::Sender<WorkerToPrimary>,
    /// The executor's progress, as the primary reports it, for the batch maker's admission.
    progress: watch::Sender<Progress>,
    /// Our primary's acknowledgements go on to the clients whose transactions the batch carries.
    acks: ClientAcks,
    metrics: Arc<WorkerMetrics>,
    /// Every peer but us, in index order.
    others: Vec<AuthorityIndex>,
    pending: BTreeMap<BatchDigest, Fetch>,
    by_age: BTreeMap<u64, BatchDigest>,
    next_age: u64,
    requests: JoinSet<RequestOutcome>,
}

impl Synchronizer {
    /// `retry_delay` is both the wait before asking every peer again and the timeout of one request.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        id: WorkerId,
        retry_delay: Duration,
        store: Store,
        endpoint: Endpoint<WorkerMessage>,
        from_primary: mpsc::Receiver<PrimaryToWorker>,
        to_primary: mpsc::Sender<WorkerToPrimary>,
        progress: watch::Sender<Progress>,
        acks: ClientAcks,
        metrics: Arc<WorkerMetrics>,
    ) -> JoinHandle<()> {
        let me = endpoint.me();
        let others = endpoint.peers().iter().map(|peer| peer.index).filter(|&index| index != me).collect();
        let synchronizer = Self {
            id,
            retry_delay,
            store,
            endpoint,
            from_primary,
            to_primary,
            progress,
            acks,
            metrics,
            others,
            pending: BTreeMap::new(),
            by_age: BTreeMap::new(),
            next_age: 0,
            requests: JoinSet::new(),
        };
        tokio::spawn(synchronizer.run())
    }

    async fn run(mut self) {
        let mut retry = tokio::time::interval(self.retry_delay.max(Duration::from_millis(1)));
        retry.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            let step = tokio::select! {
                biased;
                Some(joined) = self.requests.join_next() => match joined {
                    Ok(outcome) => self.conclude(outcome).await,
                    Err(error) => {
                        warn!(%error, "a batch request task failed");
                        Ok(())
                    }
                },
                request = self.from_primary.recv() => match request {
                    Some(PrimaryToWorker::Synchronize { digests, target }) => self.synchronize(digests, target).await,
                    Some(PrimaryToWorker::Acknowledged { digest }) => {
                        bump(&self.metrics.batches_acknowledged);
                        self.acks.acknowledged(&digest);
                        Ok(())
                    }
                    Some(PrimaryToWorker::Delete { digests }) => {
                        self.delete(&digests);
                        Ok(())
                    }
                    Some(PrimaryToWorker::Progress(progress)) => {
                        self.progress.send_if_modified(|known| {
                            let newer = known.merge(progress);
                            std::mem::replace(known, newer) != newer
                        });
                        Ok(())
                    }
                    None => return,
                },
                _ = retry.tick() => Ok(()),
            };
            if step.is_err() {
                // Our primary is gone: the validator is shutting down.
                return;
            }
            if self.dispatch().await.is_err() {
                return;
            }
        }
    }

    /// Starts fetching what we miss of `digests`; what we already hold is reported at once.
    /// Deletes peers' batches our primary gave up on (unreferenced, over their sender's budget).
    fn delete(&mut self, digests: &[BatchDigest]) {
        let mut writes = self.store.write_set();
        for digest in digests {
            writes.remove_batch(digest);
        }
        match writes.commit(mako_storage::Durability::Buffered) {
            Ok(()) => {
                self.metrics.batches_deleted.fetch_add(digests.len() as u64, std::sync::atomic::Ordering::Relaxed);
            }
            Err(error) => {
                bump(&self.metrics.storage_errors);
                warn!(%error, "cannot delete batches; they stay");
            }
        }
    }

    async fn synchronize(
        &mut self,
        digests: Vec<BatchDigest>,
        target: AuthorityIndex,
    ) -> Result<(), mpsc::error::SendError<WorkerToPrimary>> {
        for digest in digests {
            if self.is_stored(&digest) {
                self.forget(&digest);
                self.report(digest).await?;
                continue;
            }
            if let Some(fetch) = self.pending.get_mut(&digest) {
                // A request naming another target supersedes the old one: start over from it. The same request
                // again (the executor asks while it waits) keeps the rotation over the peers going.
                if fetch.target != target {
                    fetch.target = target;
                    fetch.attempts = 0;
                    fetch.retry_at = None;
                }
                continue;
            }
            let age = self.next_age;
            self.next_age += 1;
            self.pending.insert(digest, Fetch { target, attempts: 0, in_flight: false, retry_at: None, age });
            self.by_age.insert(age, digest);
            if self.pending.len() > MAX_PENDING_FETCHES {
                if let Some((_, oldest)) = self.by_age.pop_first() {
                    debug!(digest = %oldest, "too many batches to fetch; giving up the oldest");
                    self.pending.remove(&oldest);
                }
            }
        }
        Ok(())
    }

    /// Sends a request for every digest due, grouped by the peer to ask, within the bound on requests.
    async fn dispatch(&mut self) -> Result<(), mpsc::error::SendError<WorkerToPrimary>> {
        if self.others.is_empty() || self.requests.len() >= MAX_REQUESTS_IN_FLIGHT {
            return Ok(());
        }
        let now = Instant::now();
        let due: Vec<BatchDigest> = self
            .pending
            .iter()
            .filter(|(_, fetch)| !fetch.in_flight && fetch.retry_at.is_none_or(|at| at <= now))
            .map(|(digest, _)| *digest)
            .collect();
        let mut by_peer: BTreeMap<AuthorityIndex, Vec<BatchDigest>> = BTreeMap::new();
        for digest in due {
            // It may have arrived meanwhile, broadcast by its author.
            if self.is_stored(&digest) {
                self.forget(&digest);
                self.report(digest).await?;
                continue;
            }
            if let Some(fetch) = self.pending.get(&digest) {
                by_peer.entry(self.peer_to_ask(fetch)).or_default().push(digest);
            }
        }
        for (peer, digests) in by_peer {
            for chunk in digests.chunks(MAX_DIGESTS_PER_REQUEST) {
                if self.requests.len() >= MAX_REQUESTS_IN_FLIGHT {
                    return Ok(());
                }
                for digest in chunk {
                    if let Some(fetch) = self.pending.get_mut(digest) {
                        fetch.in_flight = true;
                        fetch.retry_at = None;
                    }
                }
                let (endpoint, timeout, chunk) = (self.endpoint.clone(), self.retry_delay, chunk.to_vec());
                self.requests.spawn(async move {
                    let reply = endpoint.request(peer, &WorkerMessage::BatchRequest(chunk.clone()), timeout).await;
                    (peer, chunk, reply)
                });
            }
        }
        Ok(())
    }

    /// Keeps the batches of a reply that we asked this peer for; the rest of the request goes on.
    async fn conclude(&mut self, outcome: RequestOutcome) -> Result<(), mpsc::error::SendError<WorkerToPrimary>> {
        let (peer, asked, reply) = outcome;
        let batches = match reply {
            Ok(WorkerMessage::Batches(batches)) => batches,
            Ok(_) => {
                debug!(%peer, "answered a batch request with something else");
                Vec::new()
            }
            Err(error) => {
                debug!(%peer, %error, "batch request failed");
                Vec::new()
            }
        };
        let asked_set: BTreeSet<BatchDigest> = asked.iter().copied().collect();
        let (verified, invalid) = verify(batches, &asked_set);
        for _ in 0..invalid {
            bump(&self.metrics.invalid_batches);
        }
        if invalid > 0 {
            warn!(%peer, invalid, "peer answered with batches we did not ask for");
        }
        let mut delivered = false;
        for (digest, encoded) in verified {
            if !self.pending.contains_key(&digest) {
                continue;
            }
            if let Err(error) = store_batch(&self.store, &digest, &encoded) {
                bump(&self.metrics.storage_errors);
                warn!(%digest, %error, "cannot store a fetched batch; will fetch it again");
                continue;
            }
            self.store.batches.keep_recent(digest, encoded);
            delivered = true;
            bump(&self.metrics.batches_fetched);
            self.forget(&digest);
            self.report(digest).await?;
        }
        let now = Instant::now();
        let peers = self.others.len().max(1);
        for digest in asked {
            let Some(fetch) = self.pending.get_mut(&digest) else { continue };
            fetch.in_flight = false;
            // A peer that delivered part of a request is asked again for the rest (its answer may have been
            // cut to fit a frame); otherwise the next peer is asked, and after every peer, a pause.
            if !delivered {
                fetch.attempts += 1;
                if fetch.attempts % peers == 0 {
                    fetch.retry_at = Some(now + self.retry_delay);
                }
            }
        }
        Ok(())
    }

    /// The peer to ask next for `fetch`: its target first, then the others in index order after it.
    fn peer_to_ask(&self, fetch: &Fetch) -> AuthorityIndex {
        let start = self.others.iter().position(|&peer| peer == fetch.target).unwrap_or_else(|| {
            // A target that is not a peer (ourselves, or unknown): start after its place in the order.
            self.others.iter().position(|&peer| peer > fetch.target).unwrap_or(0)
        });
        self.others[(start + fetch.attempts) % self.others.len()]
    }

    fn is_stored(&self, digest: &BatchDigest) -> bool {
        self.store.batches.contains(digest).unwrap_or_else(|error| {
            bump(&self.metrics.storage_errors);
            warn!(%digest, %error, "cannot read the batch store");
            false
        })
    }

    fn forget(&mut self, digest: &BatchDigest) {
        if let Some(fetch) = self.pending.remove(digest) {
            self.by_age.remove(&fetch.age);
        }
    }

    async fn report(&self, digest: BatchDigest) -> Result<(), mpsc::error::SendError<WorkerToPrimary>> {
        self.to_primary.send(WorkerToPrimary::OthersBatch { digest, worker: self.id }).await
    }
}

/// The batches of a reply whose digests we asked for and whose bytes are a batch, with those bytes, and how
/// many others came.
pub(crate) fn verify(
    batches: Vec<EncodedBatch>,
    asked: &BTreeSet<BatchDigest>,
) -> (Vec<(BatchDigest, Vec<u8>)>, usize) {
    let mut verified = Vec::new();
    let mut invalid = 0;
    let mut seen = BTreeSet::new();
    for batch in batches {
        let digest = batch.digest();
        if asked.contains(&digest) && batch.transaction_sizes().is_ok() && seen.insert(digest) {
            verified.push((digest, batch.0));
        } else {
            invalid += 1;
        }
    }
    (verified, invalid)
}

#[cfg(test)]
mod tests {
    use mako_types::{Batch, Transaction};

    use super::*;

    #[test]
    fn only_batches_asked_for_are_kept() {
        let wanted = Batch::new(vec![Transaction(b"wanted".to_vec())]);
        let other = Batch::new(vec![Transaction(b"not asked".to_vec())]);
        let garbage = EncodedBatch(b"certified, but not a batch".to_vec());
        let asked: BTreeSet<_> = [wanted.digest(), garbage.digest()].into();
        let encoded = |batch: &Batch| EncodedBatch::new(batch);
        let reply = vec![encoded(&other), encoded(&wanted), encoded(&wanted), garbage];
        let (verified, invalid) = verify(reply, &asked);
        assert_eq!(verified.len(), 1);
        assert_eq!(verified[0].0, wanted.digest());
        assert_eq!(EncodedBatch(verified[0].1.clone()).decode().unwrap(), wanted);
        assert_eq!(invalid, 3, "a batch not asked for, a duplicate, and bytes that are not a batch");
    }
}
