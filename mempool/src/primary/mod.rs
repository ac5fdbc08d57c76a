//! The primary (DESIGN.md §3): the [`core::Core`] owns the DAG and votes, the [`proposer::Proposer`] makes our
//! headers, the [`synchronizer::Synchronizer`] fetches what is missing. [`Primary::spawn`] wires them and
//! returns the causally ordered stream of certificates for consensus and the committed-round input that drives
//! garbage collection.
//!
//! A restarted primary rebuilds its DAG from the store (the last `gc_depth` rounds it holds), and re-sends its
//! last header if that has no certificate yet, so it never proposes two headers for one round.

pub mod aggregator;
pub mod core;
pub mod held_batches;
pub mod metrics;
pub mod proposer;
pub mod synchronizer;

use std::sync::Arc;

use mako_network::{Endpoint, Inbound};
use mako_storage::{Store, StoreError};
use mako_types::{AuthorityIndex, BlsKeyPair, Certificate, Committee, ExecutedState, LeaderTable, Round};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use self::core::{Core, CoreChannels};
pub use self::metrics::PrimaryMetrics;
use self::proposer::Proposer;
use self::synchronizer::Synchronizer;
use crate::config::MempoolParameters;
use crate::dag::Dag;
use crate::messages::{PrimaryMessage, PrimaryToWorker, WorkerToPrimary};

const CHANNEL_CAPACITY: usize = 1_000;

/// What a running primary gives its owner.
pub struct PrimaryHandle {
    /// Every accepted certificate, in causal order: the input of consensus.
    pub certificates: mpsc::Receiver<Certificate>,
    /// Set the last committed round here; the primary garbage-collects `gc_depth` rounds behind it.
    pub committed_round: watch::Sender<Round>,
    pub metrics: Arc<PrimaryMetrics>,
    tasks: Vec<JoinHandle<()>>,
}

impl PrimaryHandle {
    /// Stops the primary's tasks.
    pub fn shutdown(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Drop for PrimaryHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The primary's network endpoint with its incoming messages.
pub type PrimaryNetwork = (Endpoint<PrimaryMessage>, mpsc::Receiver<Inbound<PrimaryMessage>>);

/// Everything a primary needs, built by the node (or a test) and handed to [`Primary::spawn`].
pub struct PrimarySetup {
    pub me: AuthorityIndex,
    pub committee: Committee,
    pub key: BlsKeyPair,
    pub parameters: MempoolParameters,
    pub store: Store,
    pub network: PrimaryNetwork,
    /// Reports from our workers.
    pub from_workers: mpsc::Receiver<WorkerToPrimary>,
    /// One channel to each of our workers, by worker id.
    pub to_workers: Vec<mpsc::Sender<PrimaryToWorker>>,
    /// Who leads each even round (from consensus): turns on Bullshark's leader waits; `None` runs plain Narwhal.
    pub leader_table: Option<watch::Receiver<LeaderTable>>,
    /// Our latest executed sub-DAG and state root (from execution), published in our headers.
    pub executed: Option<watch::Receiver<ExecutedState>>,
    /// Seeds the primary's random choices (which peers to ask, batch-verification weights).
    pub rng_seed: u64,
}

pub struct Primary;

impl Primary {
    /// Starts a primary: rebuilds its DAG from the store, then runs its core, proposer and synchronizer.
    pub fn spawn(setup: PrimarySetup) -> Result<PrimaryHandle, StoreError> {
        let PrimarySetup {
            me,
            committee,
            key,
            parameters,
            store,
            network,
            from_workers: rx_workers,
            to_workers: tx_workers,
            leader_table,
            executed,
            rng_seed,
        } = setup;
        let dag = recover_dag(&committee, &store, parameters.gc_depth)?;
        let last_header_round = store.state.last_header()?.map_or(0, |h| h.round());
        let key = Arc::new(key);
        let metrics = Arc::new(PrimaryMetrics::default());
        let (endpoint, rx_network) = network;

        let (tx_parents, rx_parents) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_our_batches, rx_our_batches) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_own_headers, rx_own_headers) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_sync, rx_sync) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_synced, rx_synced) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_consensus, rx_consensus) = mpsc::channel(CHANNEL_CAPACITY);
        let (tx_last_rounds, rx_last_rounds) = watch::channel(dag.last_round_per_author(committee.size()));
        let (committed_round, rx_committed_round) = watch::channel(0);

        let tasks = vec![
            Proposer::spawn(
                me,
                Arc::clone(&key),
                parameters.clone(),
                last_header_round + 1,
                rx_parents,
                rx_our_batches,
                tx_own_headers,
                executed,
            ),
            Synchronizer::spawn(
                me,
                &committee,
                parameters.clone(),
                endpoint.clone(),
                rng_seed ^ 0x5f5f,
                rx_sync,
                rx_last_rounds,
                tx_synced,
            ),
            Core::spawn(
                me,
                committee,
                key,
                parameters,
                store,
                endpoint,
                dag,
                rng_seed,
                Arc::clone(&metrics),
                CoreChannels {
                    rx_network,
                    rx_own_headers,
                    rx_workers,
                    rx_synced,
                    rx_committed_round,
                    tx_parents,
                    leader_table,
                    tx_our_batches,
                    tx_workers,
                    tx_sync,
                    tx_last_rounds,
                    tx_consensus,
                },
            ),
        ];
        Ok(PrimaryHandle { certificates: rx_consensus, committed_round, metrics, tasks })
    }
}

/// The DAG as the store holds it: genesis, then the stored certificates of the last `gc_depth` rounds.
fn recover_dag(committee: &Committee, store: &Store, gc_depth: u64) -> Result<Dag, StoreError> {
    let mut dag = Dag::new(Certificate::genesis(committee));
    let highest = store.certificates.highest_round()?;
    let start = highest.saturating_sub(gc_depth).max(1);
    dag.garbage_collect(start - 1);
    for certificate in store.certificates.from_round(start)? {
        // Stored certificates were verified before they were stored, and stored in causal order.
        let _ = dag.insert(certificate);
    }
    Ok(dag)
}
