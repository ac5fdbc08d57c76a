//! mako-validator: one validator, assembled in one place (STYLE.md: one assembly, the caller owns the
//! channels). [`Validator::spawn`] wires a primary, its workers (in this process, or in others behind links),
//! Bullshark and the execution pipeline with bounded channels and nothing relaying between them:
//!
//! - workers → primary: batch reports; primary → workers: batches to fetch (to vote);
//! - primary → consensus: certificates in causal order;
//! - consensus → primary: the last committed leader round (garbage collection), the leader table (the
//!   proposer's leader waits), and the batches of our certificates that can no longer be committed (to be
//!   proposed again);
//! - consensus → execution: committed sub-DAGs (the bounded queue is the back-pressure, DESIGN.md §5);
//! - execution → primary: our latest (index, root), published in our headers; execution → workers: the
//!   committed batches it waits for (DESIGN.md §9.8);
//! - consensus and execution → workers: how far execution is behind, by which the workers admit client
//!   transactions (`mako_mempool::admission`).
//!
//! Execution recovers first (the caller hands in a recovered [`Executor`]) so that consensus resumes right
//! after the last block it executed. The `mako` binary, the simulation and the benchmarks all call
//! [`Validator::spawn`]: what the tests run is what users run. What a test or a benchmark needs to see it sees
//! through an [`Observer`], a tap on the channels that exists only when one is given.

pub mod state_sync;

use std::sync::Arc;

use mako_consensus::consensus::{Consensus, ConsensusHandle};
use mako_consensus::CommittedSubDag;
use mako_execution::pipeline::{BatchSource, Executor, ExecutorHandle, PipelineError};
use mako_mempool::admission::Progress;
use mako_mempool::config::MempoolParameters;
use mako_mempool::messages::{PrimaryToWorker, WorkerMessage, WorkerToPrimary};
use mako_mempool::primary::{Primary, PrimaryHandle, PrimaryNetwork, PrimarySetup};
use mako_mempool::worker::{ClientListener, Worker, WorkerSetup};
use mako_mempool::worker_link::{LinkMessage, PrimaryLink};
use mako_network::{Endpoint, Inbound};
use mako_storage::{Store, StoreError};
use mako_types::{AuthorityIndex, BlsKeyPair, Certificate, Committee, ExecutedState, Round};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Capacity of every channel between the validator's parts.
const CHANNEL_CAPACITY: usize = 10_000;

/// Where one of the validator's workers runs.
pub enum WorkerPlace {
    /// In this process, on the validator's store: its peer endpoint and client port, bound by the caller (on
    /// real sockets, or on turmoil's).
    Local {
        endpoint: Endpoint<WorkerMessage>,
        inbound: mpsc::Receiver<Inbound<WorkerMessage>>,
        clients: ClientListener,
    },
    /// In another process (`mako validator --worker <i>`): our end of the link to it.
    Apart { endpoint: Endpoint<LinkMessage>, inbound: mpsc::Receiver<Inbound<LinkMessage>> },
}

/// What a test or a benchmark watches. Every method defaults to nothing.
pub trait Observer: Send + Sync + 'static {
    /// A worker's report to the primary (`OurBatch`: a quorum stores the batch, the client's acknowledgement).
    fn worker_report(&self, _report: &WorkerToPrimary) {}
    /// An order of the primary (or the executor) to a worker (`Acknowledged`: a batch recorded durably for
    /// proposal, the acknowledgement's promise).
    fn worker_order(&self, _order: &PrimaryToWorker) {}
    /// A certificate the primary hands to consensus.
    fn certificate_delivered(&self, _certificate: &Certificate) {}
    /// A sub-DAG consensus hands to execution.
    fn committed(&self, _sub_dag: &CommittedSubDag) {}
}

/// Everything a validator is made of, built by its caller.
pub struct ValidatorSetup {
    pub me: AuthorityIndex,
    pub committee: Committee,
    pub key: BlsKeyPair,
    pub parameters: MempoolParameters,
    pub store: Store,
    pub primary_network: PrimaryNetwork,
    /// Worker `i` of the committee entry, by id.
    pub workers: Vec<WorkerPlace>,
    /// The recovered executor; none runs the mempool and consensus alone (the consensus benchmark).
    pub executor: Option<Executor>,
    /// Seeds the primary's random choices.
    pub rng_seed: u64,
    pub observer: Option<Arc<dyn Observer>>,
}

#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error("cannot start: {0}")]
    Store(#[from] StoreError),
    #[error("execution halted: {0}")]
    Execution(#[from] PipelineError),
    #[error("execution stopped: {0}")]
    ExecutionTask(String),
    /// f+1 validators published checkpoint {checkpoint}, and deleted what we would need to replay up to it
    /// from block {executed}: start again, which state-syncs ([`state_sync`]).
    #[error(
        "fell behind what the committee keeps: executed {executed}, while f+1 validators checkpointed {checkpoint}"
    )]
    FellBehind { executed: u64, checkpoint: u64 },
}

/// A running validator. Dropping it stops every part.
pub struct Validator {
    pub primary: PrimaryHandle,
    pub consensus: ConsensusHandle,
    /// The workers in this process.
    pub workers: Vec<Worker>,
    pub execution: Option<ExecutorHandle>,
    /// The last committed leader round.
    pub committed_round: watch::Receiver<Round>,
    /// The primary's side of the queue into consensus (its length is a metric).
    to_consensus: mpsc::Sender<Certificate>,
    committee: Committee,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Validator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Validator {
    /// Wires and starts every part; must run inside a tokio runtime (or a turmoil host).
    pub fn spawn(setup: ValidatorSetup) -> Result<Self, ValidatorError> {
        let ValidatorSetup {
            me,
            committee,
            key,
            parameters,
            store,
            primary_network,
            workers,
            executor,
            rng_seed,
            observer,
        } = setup;
        let mut tasks = Vec::new();

        // Workers ↔ primary.
        let (tx_reports, rx_reports) = mpsc::channel(CHANNEL_CAPACITY);
        let to_primary = tap(tx_reports, &observer, |o, report| o.worker_report(report), &mut tasks);
        let mut to_workers: Vec<mpsc::Sender<PrimaryToWorker>> = Vec::new();
        let mut local_workers = Vec::new();
        let mut links = Vec::new();
        for (id, place) in workers.into_iter().enumerate() {
            let (to_worker, from_primary) = mpsc::channel(CHANNEL_CAPACITY);
            to_workers.push(tap(to_worker, &observer, |o, order| o.worker_order(order), &mut tasks));
            match place {
                WorkerPlace::Local { endpoint, inbound, clients } => local_workers.push(Worker::spawn(WorkerSetup {
                    id: id as u32,
                    committee: committee.clone(),
                    parameters: parameters.clone(),
                    store: store.clone(),
                    endpoint,
                    inbound,
                    clients,
                    to_primary: to_primary.clone(),
                    from_primary,
                })),
                WorkerPlace::Apart { endpoint, inbound } => {
                    let (link, task) = PrimaryLink::spawn(endpoint, inbound, from_primary, to_primary.clone());
                    links.push(link);
                    tasks.push(task);
                }
            }
        }

        // Consensus → execution.
        let executor = executor.map(|executor| {
            let executor = executor.with_fetch_requests(to_workers.clone());
            if links.is_empty() {
                executor
            } else {
                executor.with_batch_source(BatchSource::Links(links))
            }
        });
        let applied_index = executor.as_ref().map_or(0, Executor::last_executed_index);
        let (tx_committed_round, committed_round) = watch::channel(0);
        let (to_consensus, rx_certificates) = mpsc::channel(CHANNEL_CAPACITY);
        let mut consensus =
            Consensus::spawn(me, committee.clone(), store.clone(), rx_certificates, tx_committed_round, applied_index)?;
        let sub_dags = std::mem::replace(&mut consensus.sub_dags, mpsc::channel(1).1);
        let skipped_batches = std::mem::replace(&mut consensus.skipped_batches, mpsc::unbounded_channel().1);
        let execution = match executor {
            Some(executor) => {
                let sub_dags = tap_receiver(sub_dags, &observer, |o, sub_dag| o.committed(sub_dag), &mut tasks);
                Some(executor.spawn(sub_dags))
            }
            None => {
                // Nobody executes: the sub-DAGs are seen, then dropped.
                let observer = observer.clone();
                let mut sub_dags = sub_dags;
                tasks.push(tokio::spawn(async move {
                    while let Some(sub_dag) = sub_dags.recv().await {
                        if let Some(observer) = &observer {
                            observer.committed(&sub_dag);
                        }
                    }
                }));
                None
            }
        };

        if let Some(execution) = &execution {
            let (committed, executed) = (consensus.committed_index.clone(), execution.executed.clone());
            tasks.push(tokio::spawn(report_progress(committed, executed, to_workers.clone())));
        }

        // Primary → consensus.
        let tx_certificates =
            tap(to_consensus.clone(), &observer, |o, certificate| o.certificate_delivered(certificate), &mut tasks);
        let primary = Primary::spawn(PrimarySetup {
            me,
            committee: committee.clone(),
            key,
            parameters,
            store,
            network: primary_network,
            from_workers: rx_reports,
            to_workers,
            to_consensus: tx_certificates,
            committed_round: committed_round.clone(),
            skipped_batches,
            leader_table: Some(consensus.leader_table.clone()),
            executed: execution.as_ref().map(|execution| execution.executed.clone()),
            rng_seed,
        })?;
        Ok(Self {
            primary,
            consensus,
            workers: local_workers,
            execution,
            committed_round,
            to_consensus,
            committee,
            tasks,
        })
    }

    /// Certificates waiting between the primary and consensus.
    pub fn consensus_queue(&self) -> usize {
        self.to_consensus.max_capacity() - self.to_consensus.capacity()
    }

    /// Waits until the validator cannot go on, and says why: execution halted (a state divergence, a storage
    /// failure), or it fell behind what its peers keep ([`ValidatorError::FellBehind`]: the caller starts it
    /// again, on the same store, and it state-syncs). Without execution it never returns.
    pub async fn stopped(&mut self) -> ValidatorError {
        let Some(execution) = self.execution.as_mut() else { return std::future::pending().await };
        let behind = fell_behind(&self.committee, self.primary.peer_checkpoints.clone(), execution.executed.clone());
        tokio::select! {
            biased;
            stopped = &mut execution.task => match stopped {
                Ok(error) => ValidatorError::Execution(error),
                Err(error) => ValidatorError::ExecutionTask(error.to_string()),
            },
            (executed, checkpoint) = behind => ValidatorError::FellBehind { executed, checkpoint },
        }
    }
}

/// Resolves once [`state_sync::decide`] would fetch a checkpoint: f+1 peers published one that lies beyond
/// what they keep of the history after our last executed block. Returns that block and the checkpoint.
async fn fell_behind(
    committee: &Committee,
    mut published: watch::Receiver<Vec<mako_types::CheckpointId>>,
    mut executed: watch::Receiver<ExecutedState>,
) -> (u64, u64) {
    loop {
        let offers: Vec<_> = published
            .borrow_and_update()
            .iter()
            .enumerate()
            .filter(|(_, id)| id.index > 0)
            .map(|(i, id)| (AuthorityIndex(i as u16), *id))
            .collect();
        let ours = executed.borrow_and_update().index;
        let decision = state_sync::decide(committee, ours, &offers, state_sync::Lag::BeyondRetained);
        if let state_sync::Decision::Fetch { id, .. } = decision {
            return (ours, id.index);
        }
        let moved = tokio::select! {
            biased;
            moved = published.changed() => moved,
            moved = executed.changed() => moved,
        };
        if moved.is_err() {
            return std::future::pending().await; // stopping anyway
        }
    }
}

/// Tells the workers how far execution is behind consensus each time either moves. A worker whose channel is
/// full misses one report and takes the next: reports are facts that only grow, never orders.
async fn report_progress(
    mut committed: watch::Receiver<u64>,
    mut executed: watch::Receiver<ExecutedState>,
    to_workers: Vec<mpsc::Sender<PrimaryToWorker>>,
) {
    loop {
        let progress =
            Progress { committed: *committed.borrow_and_update(), executed: executed.borrow_and_update().index };
        for worker in &to_workers {
            let _ = worker.try_send(PrimaryToWorker::Progress(progress));
        }
        let moved = tokio::select! {
            biased;
            moved = committed.changed() => moved,
            moved = executed.changed() => moved,
        };
        if moved.is_err() {
            return; // consensus or execution stopped
        }
    }
}

/// `to`, or, with an observer, a new sender whose messages the observer sees on their way to `to`.
fn tap<T: Send + 'static>(
    to: mpsc::Sender<T>,
    observer: &Option<Arc<dyn Observer>>,
    observe: fn(&dyn Observer, &T),
    tasks: &mut Vec<JoinHandle<()>>,
) -> mpsc::Sender<T> {
    let Some(observer) = observer.clone() else { return to };
    let (tapped, from) = mpsc::channel(to.max_capacity());
    tasks.push(tap_task(from, to, observer, observe));
    tapped
}

/// `from`, or, with an observer, a new receiver of the same messages, which the observer saw first.
fn tap_receiver<T: Send + 'static>(
    from: mpsc::Receiver<T>,
    observer: &Option<Arc<dyn Observer>>,
    observe: fn(&dyn Observer, &T),
    tasks: &mut Vec<JoinHandle<()>>,
) -> mpsc::Receiver<T> {
    let Some(observer) = observer.clone() else { return from };
    let (to, tapped) = mpsc::channel(from.max_capacity());
    tasks.push(tap_task(from, to, observer, observe));
    tapped
}

/// Forwards `from` to `to`, showing each message to the observer first.
fn tap_task<T: Send + 'static>(
    mut from: mpsc::Receiver<T>,
    to: mpsc::Sender<T>,
    observer: Arc<dyn Observer>,
    observe: fn(&dyn Observer, &T),
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some(message) = from.recv().await {
            observe(observer.as_ref(), &message);
            if to.send(message).await.is_err() {
                return;
            }
        }
    })
}
