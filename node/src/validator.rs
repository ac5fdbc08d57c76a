//! `mako validator`: one validator process — its primary, its workers, Bullshark and the execution pipeline —
//! on real QUIC endpoints, until Ctrl-C or until execution halts (a state divergence, a storage failure).
//!
//! The wiring: workers report batches to the primary; the primary's certificates feed consensus; consensus's
//! committed round drives the primary's garbage collection and its leader table the proposer's waits; its
//! sub-DAGs feed execution, whose (index, root) the proposer publishes in our headers. Execution recovers first,
//! so that consensus resumes right after the last block it executed.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;

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
use tokio::sync::{mpsc, watch};
use tracing::info;

use crate::config::ValidatorConfig;

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
    for (id, address) in authority.worker_addresses.iter().enumerate() {
        let id = id as u32;
        let (endpoint, inbound) = Endpoint::<WorkerMessage>::bind(
            NetworkConfig::default(),
            &keys.network,
            Peers::workers(&committee, id)?,
            listen(*address),
        )?;
        let clients = ClientListener::bind(listen(*address)).await?;
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
    }
    let network = Endpoint::<PrimaryMessage>::bind(
        NetworkConfig::default(),
        &keys.network,
        Peers::primaries(&committee)?,
        listen(authority.primary_address),
    )?;

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
    info!(%me, primary = %authority.primary_address, workers = workers.len(), "validator running");

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
            }
            Some(certificate) = primary.certificates.recv() => {
                if tx_certificates.send(certificate).await.is_err() {
                    bail!("consensus stopped");
                }
            }
        }
    }
}
