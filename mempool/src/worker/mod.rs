//! The worker half of the Narwhal mempool (DESIGN.md §3, worker steps 1–5).
//!
//! A worker is five small actors joined by bounded channels, so a reader follows a transaction from the
//! client port to its primary by reading their `run` loops in this order:
//!
//! 1. [`client::ClientPort`] accepts client connections and reads length-prefixed transactions;
//! 2. [`batch_maker::BatchMaker`] seals them into a [`Batch`](mako_types::Batch) by size or by delay;
//! 3. [`quorum_waiter::QuorumWaiter`] stores each sealed batch, broadcasts it reliably to the same-index
//!    workers of the other validators and reports it to the primary once a quorum holds it (our own stake
//!    counts);
//! 4. [`handler::Handler`] stores the batches peers send *before* acknowledging them, reports them, and
//!    serves peers' batch requests;
//! 5. [`synchronizer::Synchronizer`] fetches the batches the primary needs and does not hold.
//!
//! Every channel is bounded, so a slow primary, disk or peer slows the clients down instead of growing
//! memory. Invariant 3 of DESIGN.md §9 starts here: a batch is reported as ours only once a quorum stored it.

pub mod batch_maker;
pub mod client;
pub mod client_acks;
pub mod handler;
pub mod metrics;
pub mod quorum_waiter;
pub mod synchronizer;

use std::net::SocketAddr;
use std::sync::Arc;

use mako_network::{Endpoint, Inbound, NetworkError};
use mako_storage::{Durability, Store, StoreError};
use mako_types::{BatchDigest, Committee, WorkerId};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::admission::Progress;
use crate::config::MempoolParameters;
use crate::messages::{PrimaryToWorker, WorkerMessage, WorkerToPrimary};

pub use batch_maker::{Admitting, BatchMaker, SealedBatch};
pub use client::{ClientListener, ClientPort};
pub use client_acks::ClientAcks;
pub use handler::Handler;
pub use metrics::{WorkerMetrics, WorkerMetricsSnapshot};
pub use quorum_waiter::QuorumWaiter;
pub use synchronizer::Synchronizer;

/// Reads of client transactions waiting for the batch maker: each is at most a connection's read buffer of
/// whole transactions and one more (128 KB with the default 64 KB transaction limit), so at most 1 MB, or
/// about 1,000 transactions of 512 bytes read in full buffers.
const CLIENT_FRAMES_CHANNEL_CAPACITY: usize = 8;
/// Sealed batches waiting to be stored and broadcast (few: each is admitted transactions that wait).
const SEALED_CHANNEL_CAPACITY: usize = 2;

/// Everything a worker needs, built by the node (or a test) and handed to [`Worker::spawn`].
pub struct WorkerSetup {
    pub id: WorkerId,
    pub committee: Committee,
    pub parameters: MempoolParameters,
    /// The validator's store; the worker writes its `batches` keyspace.
    pub store: Store,
    /// An endpoint over `Peers::workers(&committee, id)` with our validator's network key; its index is ours.
    pub endpoint: Endpoint<WorkerMessage>,
    /// The endpoint's incoming messages.
    pub inbound: mpsc::Receiver<Inbound<WorkerMessage>>,
    /// Where clients connect (the worker's committee address serves TCP clients and QUIC peers alike).
    pub clients: ClientListener,
    /// To our own primary.
    pub to_primary: mpsc::Sender<WorkerToPrimary>,
    /// From our own primary.
    pub from_primary: mpsc::Receiver<PrimaryToWorker>,
}

/// A running worker. Dropping it stops every actor of the worker.
#[must_use = "dropping a Worker stops it"]
pub struct Worker {
    metrics: Arc<WorkerMetrics>,
    client_address: Option<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Worker {
    /// Starts the worker's actors; must run inside a tokio runtime (or a turmoil host).
    pub fn spawn(setup: WorkerSetup) -> Self {
        let WorkerSetup { id, committee, parameters, store, endpoint, inbound, clients, to_primary, from_primary } =
            setup;
        let metrics = Arc::new(WorkerMetrics::default());
        let client_address = clients.local_addr().ok();
        let (tx_transaction, rx_transaction) = mpsc::channel(CLIENT_FRAMES_CHANNEL_CAPACITY);
        let (tx_sealed, rx_sealed) = mpsc::channel(SEALED_CHANNEL_CAPACITY);
        let (tx_progress, rx_progress) = watch::channel(Progress::default());
        let acks = ClientAcks::default();

        let tasks = vec![
            ClientPort::spawn(
                clients,
                parameters.max_transaction_size,
                tx_transaction,
                acks.clone(),
                Arc::clone(&metrics),
            ),
            BatchMaker::spawn(
                parameters.batch_size,
                parameters.max_batch_delay,
                Admitting { progress: rx_progress, max_execution_lag: parameters.max_execution_lag },
                rx_transaction,
                tx_sealed,
                Arc::clone(&metrics),
            ),
            QuorumWaiter::spawn(
                id,
                committee,
                store.clone(),
                endpoint.clone(),
                rx_sealed,
                to_primary.clone(),
                acks.clone(),
                Arc::clone(&metrics),
            ),
            Handler::spawn(
                id,
                parameters.clone(),
                store.clone(),
                endpoint.clone(),
                inbound,
                to_primary.clone(),
                Arc::clone(&metrics),
            ),
            Synchronizer::spawn(
                id,
                parameters.sync_retry_delay,
                store,
                endpoint,
                from_primary,
                to_primary,
                tx_progress,
                acks,
                Arc::clone(&metrics),
            ),
        ];
        Self { metrics, client_address, tasks }
    }

    pub fn metrics(&self) -> &Arc<WorkerMetrics> {
        &self.metrics
    }

    /// The address clients connect to (useful when the listener was bound on port 0).
    pub fn client_address(&self) -> Option<SocketAddr> {
        self.client_address
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// What can go wrong in a worker; none of it stops the worker, each is logged and counted.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("cannot listen for clients on {address}: {source}")]
    ClientBind { address: SocketAddr, source: std::io::Error },

    #[error("transaction of 0 bytes is empty")]
    EmptyTransaction,

    #[error("transaction of {size} bytes exceeds the limit of {limit}")]
    TransactionTooLarge { size: usize, limit: usize },

    #[error("client connection failed: {0}")]
    ClientIo(#[from] std::io::Error),

    #[error(transparent)]
    Store(#[from] StoreError),

    #[error(transparent)]
    Network(#[from] NetworkError),
}

/// Stores a batch's canonical bytes, written to the operating system before it returns: a batch survives a
/// crash of the process once this returns, which is what an acknowledgement promises (DESIGN.md §3).
pub(crate) fn store_batch(store: &Store, digest: &BatchDigest, encoded: &[u8]) -> Result<(), StoreError> {
    let mut writes = store.write_set();
    writes.put_batch(digest, encoded);
    writes.commit(Durability::Buffered)
}
