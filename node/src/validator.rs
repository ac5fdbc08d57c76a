//! `mako validator`: one validator process — its primary, its workers, Bullshark and the execution pipeline —
//! on real QUIC endpoints, until Ctrl-C or until execution halts (a state divergence, a storage failure).
//!
//! The wiring: workers report batches to the primary; the primary's certificates feed consensus; consensus's
//! committed round drives the primary's garbage collection and its leader table the proposer's waits; its
//! sub-DAGs feed execution, whose (index, root) the proposer publishes in our headers. Execution recovers first,
//! so that consensus resumes right after the last block it executed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use mako_consensus::consensus::Consensus;
use mako_execution::pipeline::Executor;
use mako_execution::Genesis;
use mako_mempool::messages::{PrimaryMessage, WorkerMessage};
use mako_mempool::primary::{Primary, PrimarySetup};
use mako_mempool::worker::{ClientListener, Worker, WorkerSetup};
use mako_network::{Endpoint, NetworkConfig, Peers};
use mako_storage::Store;
use mako_types::{Committee, ValidatorKeys};
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::config::ValidatorConfig;
use crate::metrics::{self, ValidatorCollector};

/// Stops a background task when the validator returns.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

const CHANNEL_CAPACITY: usize = 10_000;

/// Listens on every interface at the committee address's port (the committee names the reachable address).
fn listen(address: SocketAddr) -> SocketAddr {
    SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), address.port())
}

pub async fn run(committee: &Path, keys: &Path, config: Option<&Path>) -> anyhow::Result<()> {
    let committee = Committee::load(committee)?;
    let keys = ValidatorKeys::load(keys)?;
    let config = match config {
        Some(path) => ValidatorConfig::load(path)?,
        None => ValidatorConfig::default(),
    };
    let me = committee
        .index_of_network_key(&keys.network.public())
        .ok_or_else(|| anyhow!("the network key {} is not in the committee", keys.network.public()))?;
    let authority = committee.authority(me).expect("an index from the committee is in the committee");
    if authority.bls_key != keys.bls.public() {
        bail!("validator {me}: the BLS key of the key file is not the committee's");
    }

    let store = Store::open(&config.storage).with_context(|| format!("cannot open {}", config.storage.display()))?;
    let genesis = match &config.execution.genesis {
        Some(path) => Genesis::load(path)?,
        None => Genesis::generate(config.execution.genesis_accounts),
    };
    let threads = match config.execution.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let executor = Executor::recover(committee.clone(), store.clone(), &genesis, threads)?;

    let (tx_reports, rx_reports) = mpsc::channel(CHANNEL_CAPACITY);
    let mut to_workers = Vec::new();
    let mut workers = Vec::new();
    let mut worker_metrics = Vec::new();
    for (id, address) in authority.worker_addresses.iter().enumerate() {
        let id = id as u32;
        let (endpoint, inbound) = Endpoint::<WorkerMessage>::bind(
            NetworkConfig::default(),
            &keys.network,
            Peers::workers(&committee, id)?,
            listen(*address),
        )?;
        let clients = ClientListener::bind(listen(*address)).await?;
        let worker_network = Arc::clone(endpoint.metrics());
        let (to_worker, from_primary) = mpsc::channel(CHANNEL_CAPACITY);
        to_workers.push(to_worker);
        workers.push(Worker::spawn(WorkerSetup {
            id,
            committee: committee.clone(),
            parameters: config.mempool.clone(),
            store: store.clone(),
            endpoint,
            inbound,
            clients,
            to_primary: tx_reports.clone(),
            from_primary,
        }));
        worker_metrics.push((Arc::clone(workers.last().expect("just pushed").metrics()), worker_network));
    }
    let network = Endpoint::<PrimaryMessage>::bind(
        NetworkConfig::default(),
        &keys.network,
        Peers::primaries(&committee)?,
        listen(authority.primary_address),
    )?;

    let primary_network = Arc::clone(network.0.metrics());
    let (tx_committed_round, mut committed_round) = watch::channel(0);
    let (tx_certificates, rx_certificates) = mpsc::channel(CHANNEL_CAPACITY);
    let mut consensus = Consensus::spawn(
        committee.clone(),
        config.consensus.leader_schedule,
        config.mempool.gc_depth,
        store.clone(),
        rx_certificates,
        tx_committed_round,
        executor.last_executed_index(),
    )?;
    let sub_dags = std::mem::replace(&mut consensus.sub_dags, mpsc::channel(1).1);
    let mut execution = executor.spawn(sub_dags);
    let mut primary = Primary::spawn(PrimarySetup {
        me,
        committee: committee.clone(),
        key: keys.bls.clone(),
        parameters: config.mempool.clone(),
        store,
        network,
        from_workers: rx_reports,
        to_workers,
        leader_table: Some(consensus.leader_table.clone()),
        executed: Some(execution.executed.clone()),
        rng_seed: rand::random(),
    })?;
    let gauges = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let _metrics_server = match config.metrics_address {
        Some(address) => {
            let mut registry = Registry::default();
            registry.register_collector(Box::new(ValidatorCollector {
                primary: Arc::clone(&primary.metrics),
                primary_network,
                workers: worker_metrics,
                execution: Arc::clone(&execution.metrics),
                committed_round: Arc::clone(&gauges.0),
                consensus_queue: Arc::clone(&gauges.1),
            }));
            Some(AbortOnDrop(metrics::serve(address, registry).await?))
        }
        None => None,
    };
    info!(%me, primary = %authority.primary_address, workers = workers.len(), metrics = ?config.metrics_address, "validator running");

    loop {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => {
                info!("shutting down");
                return Ok(());
            }
            outcome = &mut execution.task => {
                let reason = outcome.map(|e| e.to_string()).unwrap_or_else(|e| e.to_string());
                bail!("execution halted: {reason}");
            }
            Ok(()) = committed_round.changed() => {
                let round = *committed_round.borrow_and_update();
                primary.committed_round.send_replace(round);
                gauges.0.store(round, Ordering::Relaxed);
            }
            Some(certificate) = primary.certificates.recv() => {
                if tx_certificates.send(certificate).await.is_err() {
                    bail!("consensus stopped");
                }
                let queued = tx_certificates.max_capacity() - tx_certificates.capacity();
                gauges.1.store(queued as u64, Ordering::Relaxed);
            }
        }
    }
}
