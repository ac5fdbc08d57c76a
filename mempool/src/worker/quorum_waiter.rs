//! The quorum waiter (DESIGN.md §3, worker steps 3–4): stores each batch we sealed, broadcasts it reliably
//! to the same-index worker of every other validator, and reports it to our primary as
//! [`WorkerToPrimary::OurBatch`] once the stake of the workers that acknowledged it, plus our own, reaches
//! `committee.quorum_threshold()`. A receiver acknowledges only after storing the batch, so a reported batch
//! is held by a quorum and can always be fetched (DESIGN.md §9, invariant 3).
//!
//! Quorum waits are pipelined: up to [`MAX_PENDING_QUORUMS`] batches wait at once while the batch maker
//! seals the next ones. Deliveries still running when a quorum is reached carry on in the background, at
//! most about half of the network's `max_pending_reliable` of them; beyond that the oldest is given up (a peer that misses a batch
//! fetches it when its primary needs it), so a dead peer can never stall the worker or grow memory.

use std::collections::VecDeque;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use mako_network::{Delivery, Endpoint};
use mako_storage::Store;
use mako_types::{AuthorityIndex, BatchDigest, Committee, Stake, WorkerId};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::batch_maker::SealedBatch;
use super::client_acks::ClientAcks;
use super::metrics::{bump, WorkerMetrics};
use super::store_batch;
use crate::messages::{WorkerMessage, WorkerToPrimary};

/// Batches waiting for their quorum at once; beyond this the batch maker waits.
pub const MAX_PENDING_QUORUMS: usize = 4;

/// One of our batches on its way to a quorum.
struct PendingQuorum {
    digest: BatchDigest,
    created: Instant,
    /// Stake of the workers holding it, ours included.
    stake: Stake,
    deliveries: Vec<Delivery<WorkerMessage>>,
}

/// How the wait for one batch ended.
enum QuorumOutcome {
    Reached,
    /// Every delivery ended (the endpoint shut down) short of a quorum.
    Failed,
}

pub struct QuorumWaiter {
    id: WorkerId,
    committee: Committee,
    store: Store,
    endpoint: Endpoint<WorkerMessage>,
    sealed: mpsc::Receiver<SealedBatch>,
    to_primary: mpsc::Sender<WorkerToPrimary>,
    /// Where each batch's client acknowledgements go once the primary acknowledges it.
    acks: ClientAcks,
    metrics: Arc<WorkerMetrics>,
    pending: Vec<PendingQuorum>,
    /// Deliveries past their batch's quorum, oldest first.
    lingering: VecDeque<Delivery<WorkerMessage>>,
    max_lingering: usize,
}

impl QuorumWaiter {
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        id: WorkerId,
        committee: Committee,
        store: Store,
        endpoint: Endpoint<WorkerMessage>,
        sealed: mpsc::Receiver<SealedBatch>,
        to_primary: mpsc::Sender<WorkerToPrimary>,
        acks: ClientAcks,
        metrics: Arc<WorkerMetrics>,
    ) -> JoinHandle<()> {
        // Leave room in each peer's reliable permits for the deliveries still short of a quorum.
        let max_lingering = endpoint.config().max_pending_reliable.saturating_sub(MAX_PENDING_QUORUMS) / 2;
        let waiter = Self {
            id,
            committee,
            store,
            endpoint,
            sealed,
            to_primary,
            acks,
            metrics,
            pending: Vec::new(),
            lingering: VecDeque::new(),
            max_lingering,
        };
        tokio::spawn(waiter.run())
    }

    async fn run(mut self) {
        loop {
            tokio::select! {
                biased;
                (index, outcome) = next_outcome(&mut self.pending, &self.committee), if !self.pending.is_empty() => {
                    if self.conclude(index, outcome).await.is_err() {
                        return;
                    }
                }
                sealed = self.sealed.recv(), if self.pending.len() < MAX_PENDING_QUORUMS => match sealed {
                    Some(sealed) => {
                        if self.disseminate(sealed).await.is_err() {
                            return;
                        }
                    }
                    None => return,
                },
            }
        }
    }

    /// Stores our batch and starts its reliable broadcast. A storage failure drops the batch (its
    /// transactions are lost, as if the worker had crashed before sealing); it is logged and counted.
    async fn disseminate(&mut self, sealed: SealedBatch) -> Result<(), mpsc::error::SendError<WorkerToPrimary>> {
        // Encoded as it was filled: these bytes are stored, digested and sent to every peer.
        let SealedBatch { batch: encoded, created, origins } = sealed;
        let digest = encoded.digest();
        if let Err(error) = store_batch(&self.store, &digest, &encoded.0) {
            bump(&self.metrics.storage_errors);
            warn!(%digest, %error, "cannot store our own batch; dropped");
            return Ok(());
        }
        self.acks.sealed(digest, origins);
        let message = WorkerMessage::Batch(encoded);
        let deliveries = match self.endpoint.broadcast_reliable(&message).await {
            Ok(deliveries) => deliveries,
            Err(error) => {
                warn!(%digest, %error, "cannot broadcast our batch");
                Vec::new()
            }
        };
        if let WorkerMessage::Batch(encoded) = message {
            self.store.batches.keep_recent(digest, encoded.0);
        }
        let me = self.endpoint.me();
        self.pending.push(PendingQuorum { digest, created, stake: self.committee.stake(me), deliveries });
        // A committee where our own stake is a quorum (one validator) needs no acknowledgement.
        if self.committee.is_quorum(self.committee.stake(me)) {
            let index = self.pending.len() - 1;
            return self.conclude(index, QuorumOutcome::Reached).await;
        }
        Ok(())
    }

    async fn conclude(
        &mut self,
        index: usize,
        outcome: QuorumOutcome,
    ) -> Result<(), mpsc::error::SendError<WorkerToPrimary>> {
        let PendingQuorum { digest, created, stake, deliveries } = self.pending.swap_remove(index);
        match outcome {
            QuorumOutcome::Reached => {
                self.linger(deliveries);
                bump(&self.metrics.batches_quorum);
                self.to_primary.send(WorkerToPrimary::OurBatch { digest, worker: self.id, created }).await
            }
            QuorumOutcome::Failed => {
                warn!(%digest, stake, quorum = self.committee.quorum_threshold(), "batch did not reach a quorum");
                Ok(())
            }
        }
    }

    /// Lets the remaining deliveries of a batch run on, within the bound.
    fn linger(&mut self, deliveries: Vec<Delivery<WorkerMessage>>) {
        self.lingering.retain(|delivery| !delivery.is_finished());
        self.lingering.extend(deliveries);
        while self.lingering.len() > self.max_lingering {
            if let Some(oldest) = self.lingering.pop_front() {
                debug!(peer = %oldest.peer(), "giving up an old delivery");
                bump(&self.metrics.deliveries_abandoned);
            }
        }
    }
}

/// Waits until some pending batch reaches a quorum (or can no longer reach one) and says which.
async fn next_outcome(pending: &mut [PendingQuorum], committee: &Committee) -> (usize, QuorumOutcome) {
    poll_fn(|cx| poll_outcome(pending, committee, cx)).await
}

fn poll_outcome(
    pending: &mut [PendingQuorum],
    committee: &Committee,
    cx: &mut Context<'_>,
) -> Poll<(usize, QuorumOutcome)> {
    for (index, batch) in pending.iter_mut().enumerate() {
        let mut i = 0;
        while i < batch.deliveries.len() {
            let Poll::Ready(result) = Pin::new(&mut batch.deliveries[i]).poll(cx) else {
                i += 1;
                continue;
            };
            // A finished delivery leaves the list at once: it must never be polled again.
            let peer: AuthorityIndex = batch.deliveries.swap_remove(i).peer();
            match result {
                // Any answer, ack or reply, means the peer stored the batch.
                Ok(_) => batch.stake += committee.stake(peer),
                Err(error) => debug!(digest = %batch.digest, %peer, %error, "delivery ended without an answer"),
            }
        }
        if committee.is_quorum(batch.stake) {
            return Poll::Ready((index, QuorumOutcome::Reached));
        }
        if batch.deliveries.is_empty() {
            return Poll::Ready((index, QuorumOutcome::Failed));
        }
    }
    Poll::Pending
}
