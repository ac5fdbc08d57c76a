//! The link between a primary and one of its workers when the worker runs in another process (DESIGN.md §3:
//! "workers can live on other machines").
//!
//! In one process a primary and its workers share bounded channels ([`WorkerToPrimary`], [`PrimaryToWorker`]).
//! Apart, the two ends of those channels are bridged here over a QUIC endpoint whose only peer is the other
//! end, pinned to the validator's own network key (both ends hold it), so nobody else can speak on the link.
//! Each end keeps its own store: the worker's holds the batches, and the primary's executor asks the worker
//! for a committed batch with [`LinkMessage::BatchRequest`] ([`PrimaryLink::fetch`]).
//!
//! Reports and synchronize requests are sent reliably (retried until the other end acknowledges them): a
//! lost "ours" report would leave a batch a quorum holds out of every header. The primary acknowledges a
//! report only once its core took it, so a slow primary slows its workers down, as in one process.

use std::net::SocketAddr;
use std::time::Duration;

use mako_network::{Endpoint, Inbound, NetworkError, Peer, Peers};
use mako_storage::Store;
use mako_types::{AuthorityIndex, BatchDigest, EncodedBatch, NetworkPublicKey, WorkerId};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::admission::Progress;
use crate::messages::{PrimaryToWorker, WorkerToPrimary};

/// The other end's index on a link endpoint (its only peer).
const OTHER_END: AuthorityIndex = AuthorityIndex(0);

/// How long the primary waits for a batch from its worker before asking again.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// What travels on a primary–worker link.
#[derive(Clone, Debug, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum LinkMessage {
    /// Worker → primary: [`WorkerToPrimary::OurBatch`], its seal time as an age (clocks of two processes
    /// do not share an `Instant`).
    OurBatch { digest: BatchDigest, worker: WorkerId, sealed_micros_ago: u64 },
    /// Worker → primary: [`WorkerToPrimary::OthersBatch`].
    OthersBatch { digest: BatchDigest, worker: WorkerId },
    /// Worker → primary: [`WorkerToPrimary::PeerBatch`].
    PeerBatch { digest: BatchDigest, worker: WorkerId, from: AuthorityIndex, size: u64 },
    /// Primary → worker: [`PrimaryToWorker::Synchronize`].
    Synchronize { digests: Vec<BatchDigest>, target: AuthorityIndex },
    /// Primary → worker: [`PrimaryToWorker::Acknowledged`].
    Acknowledged { digest: BatchDigest },
    /// Primary → worker: [`PrimaryToWorker::Delete`].
    Delete { digests: Vec<BatchDigest> },
    /// Primary → worker: [`PrimaryToWorker::Progress`].
    Progress { committed: u64, executed: u64 },
    /// Primary → worker: "send me this batch" (a committed batch, for execution).
    BatchRequest(BatchDigest),
    /// Worker → primary, the answer to a request: the batch, or `None` while the worker does not hold it.
    Batch(Option<EncodedBatch>),
}

/// The peer list of one end of a link: the other end at `other_end`, under the validator's network key.
pub fn link_peers(other_end: SocketAddr, key: NetworkPublicKey) -> Result<Peers, NetworkError> {
    Peers::new([Peer { index: OTHER_END, address: other_end, key }])
}

/// Sends `message` to the other end until it acknowledges, in the background.
async fn deliver(endpoint: &Endpoint<LinkMessage>, message: &LinkMessage) -> Result<(), NetworkError> {
    let delivery = endpoint.send_reliable(OTHER_END, message).await?;
    tokio::spawn(async move {
        if let Err(error) = delivery.await {
            debug!(%error, "link delivery ended without an answer");
        }
    });
    Ok(())
}

/// The worker's end: forwards the worker's reports to the primary, and the primary's requests to the worker
/// and its store.
///
/// The two directions run concurrently, neither waiting on the other, and each request from the primary is
/// served in a task of its own: a report held up by a busy primary must never hold up the executor's batch reads, or the primary
/// (waiting on its executor) and the worker (waiting on the primary) would wait for each other.
pub struct WorkerLink;

impl WorkerLink {
    /// Starts both directions; the handle ends (and stops both) when the worker or the link stops.
    pub fn spawn(
        endpoint: Endpoint<LinkMessage>,
        mut inbound: mpsc::Receiver<Inbound<LinkMessage>>,
        store: Store,
        mut from_worker: mpsc::Receiver<WorkerToPrimary>,
        to_worker: mpsc::Sender<PrimaryToWorker>,
    ) -> JoinHandle<()> {
        let reports = async move {
            while let Some(report) = from_worker.recv().await {
                let message = match report {
                    WorkerToPrimary::OurBatch { digest, worker, created } => LinkMessage::OurBatch {
                        digest,
                        worker,
                        sealed_micros_ago: u64::try_from(created.elapsed().as_micros()).unwrap_or(u64::MAX),
                    },
                    WorkerToPrimary::OthersBatch { digest, worker } => LinkMessage::OthersBatch { digest, worker },
                    WorkerToPrimary::PeerBatch { digest, worker, from, size } => {
                        LinkMessage::PeerBatch { digest, worker, from, size }
                    }
                };
                if let Err(error) = deliver(&endpoint, &message).await {
                    warn!(%error, "cannot report to the primary; stopping the link");
                    return;
                }
            }
        };
        let requests = async move {
            let mut served = JoinSet::new();
            loop {
                tokio::select! {
                    biased;
                    Some(_) = served.join_next() => {}
                    inbound = inbound.recv() => {
                        let Some(Inbound { message, responder, .. }) = inbound else { return };
                        let (store, to_worker) = (store.clone(), to_worker.clone());
                        // The responder goes with the task: a synchronize request is acknowledged once the
                        // worker has it, so the primary's reliable sends bound how many wait.
                        served.spawn(async move {
                            match message {
                                LinkMessage::Synchronize { digests, target } => {
                                    let _ = to_worker.send(PrimaryToWorker::Synchronize { digests, target }).await;
                                    drop(responder);
                                }
                                LinkMessage::Acknowledged { digest } => {
                                    let _ = to_worker.send(PrimaryToWorker::Acknowledged { digest }).await;
                                    drop(responder);
                                }
                                LinkMessage::Delete { digests } => {
                                    let _ = to_worker.send(PrimaryToWorker::Delete { digests }).await;
                                    drop(responder);
                                }
                                LinkMessage::Progress { committed, executed } => {
                                    let progress = Progress { committed, executed };
                                    let _ = to_worker.send(PrimaryToWorker::Progress(progress)).await;
                                    drop(responder);
                                }
                                LinkMessage::BatchRequest(digest) => {
                                    let batch = store.batches.take_encoded(&digest).unwrap_or_else(|error| {
                                        warn!(%digest, %error, "cannot read a batch the primary asked for");
                                        None
                                    });
                                    let batch = batch.map(EncodedBatch);
                                    if let Err(error) = responder.reply(&LinkMessage::Batch(batch)).await {
                                        debug!(%error, "batch answer not delivered");
                                    }
                                }
                                other => debug!(?other, "a worker ignores this link message"),
                            }
                        });
                    }
                }
            }
        };
        tokio::spawn(async move {
            tokio::select! {
                biased;
                () = reports => {}
                () = requests => {}
            }
        })
    }
}

/// The primary's end of the link to one worker: forwards the worker's reports to the core and the core's
/// synchronize requests to the worker, concurrently, so that neither direction waits on the other;
/// [`PrimaryLink::fetch`] reads a batch from the worker.
#[derive(Clone)]
pub struct PrimaryLink {
    endpoint: Endpoint<LinkMessage>,
}

impl PrimaryLink {
    pub fn spawn(
        endpoint: Endpoint<LinkMessage>,
        mut inbound: mpsc::Receiver<Inbound<LinkMessage>>,
        mut from_core: mpsc::Receiver<PrimaryToWorker>,
        to_core: mpsc::Sender<WorkerToPrimary>,
    ) -> (Self, JoinHandle<()>) {
        let link = Self { endpoint: endpoint.clone() };
        let requests = async move {
            while let Some(order) = from_core.recv().await {
                let message = match order {
                    PrimaryToWorker::Synchronize { digests, target } => LinkMessage::Synchronize { digests, target },
                    PrimaryToWorker::Acknowledged { digest } => LinkMessage::Acknowledged { digest },
                    PrimaryToWorker::Delete { digests } => LinkMessage::Delete { digests },
                    PrimaryToWorker::Progress(Progress { committed, executed }) => {
                        LinkMessage::Progress { committed, executed }
                    }
                };
                if let Err(error) = deliver(&endpoint, &message).await {
                    warn!(%error, "cannot reach the worker; stopping the link");
                    return;
                }
            }
        };
        let reports = async move {
            while let Some(Inbound { message, responder, .. }) = inbound.recv().await {
                let report = match message {
                    LinkMessage::OurBatch { digest, worker, sealed_micros_ago } => {
                        let age = Duration::from_micros(sealed_micros_ago);
                        let created = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
                        WorkerToPrimary::OurBatch { digest, worker, created }
                    }
                    LinkMessage::OthersBatch { digest, worker } => WorkerToPrimary::OthersBatch { digest, worker },
                    LinkMessage::PeerBatch { digest, worker, from, size } => {
                        WorkerToPrimary::PeerBatch { digest, worker, from, size }
                    }
                    other => {
                        debug!(?other, "a primary ignores this link message");
                        continue;
                    }
                };
                // Acknowledged (the responder dropped) only once the core has the report.
                if to_core.send(report).await.is_err() {
                    return;
                }
                drop(responder);
            }
        };
        let task = tokio::spawn(async move {
            tokio::select! {
                biased;
                () = requests => {}
                () = reports => {}
            }
        });
        (link, task)
    }

    /// The batch `digest` from the worker, in its canonical bytes as stored; `None` while it does not hold it (it
    /// is fetching it).
    pub async fn fetch(&self, digest: BatchDigest) -> Result<Option<EncodedBatch>, NetworkError> {
        match self.endpoint.request(OTHER_END, &LinkMessage::BatchRequest(digest), FETCH_TIMEOUT).await? {
            LinkMessage::Batch(batch) => Ok(batch.filter(|batch| batch.digest() == digest)),
            other => {
                debug!(?other, "unexpected answer to a batch request");
                Ok(None)
            }
        }
    }
}
