//! `mako validator`: one validator process — its primary, its workers, Bullshark and the execution pipeline —
//! on real QUIC endpoints, until Ctrl-C or until execution halts (a state divergence, a storage failure). One
//! that falls behind what its peers keep starts its validator again on the same store, which state-syncs.
//! With `worker_links` in its config the workers run apart: `mako validator` runs the primary, consensus and
//! execution, and `mako validator --worker <i>` runs worker `i` alone, each end of the link bridging the
//! channels that join them in one process ([`mako_mempool::worker_link`]).
//!
//! The wiring is [`mako_validator::Validator::spawn`]'s, the one the simulation and the benchmarks run too: this
//! file binds the real sockets, loads the configuration and serves the metrics.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use mako_execution::pipeline::Executor;
use mako_execution::Genesis;
use mako_mempool::messages::{PrimaryMessage, WorkerMessage};
use mako_mempool::worker::{ClientListener, Worker, WorkerSetup};
use mako_mempool::worker_link::{link_peers, LinkMessage, WorkerLink};
use mako_network::{Endpoint, Inbound, NetworkConfig, Peers};
use mako_storage::Store;
use mako_types::{Authority, AuthorityIndex, Committee, ValidatorKeys, WorkerId};
use mako_validator::{state_sync, Validator, ValidatorError, ValidatorSetup, WorkerPlace};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;
use tracing::info;

use crate::config::ValidatorConfig;
use crate::metrics::{self, PrimaryHalf, ValidatorCollector};

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

/// Which part of a validator this process runs.
#[derive(Clone, Copy, Debug)]
pub enum Role {
    /// The primary, consensus and execution, with the workers too unless the config puts them apart.
    Validator,
    /// Worker `i` alone, linked to its primary by the config's `worker_links[i]`.
    Worker(WorkerId),
}

/// What every role starts from: the committee, our keys checked against it, the configuration.
struct Identity {
    committee: Committee,
    keys: ValidatorKeys,
    config: ValidatorConfig,
    config_name: String,
    me: AuthorityIndex,
    authority: Authority,
}

impl Identity {
    fn load(committee: &Path, keys: &Path, config: Option<&Path>) -> anyhow::Result<Self> {
        let committee = Committee::load(committee)?;
        let keys = ValidatorKeys::load(keys)?;
        let (config, config_name) = match config {
            Some(path) => (ValidatorConfig::load(path)?, path.display().to_string()),
            None => (ValidatorConfig::default(), "the default config".to_owned()),
        };
        let me = committee
            .index_of_network_key(&keys.network.public())
            .ok_or_else(|| anyhow!("the network key {} is not in the committee", keys.network.public()))?;
        let authority = committee.authority(me).expect("an index from the committee is in the committee").clone();
        if authority.bls_key != keys.bls.public() {
            bail!("validator {me}: the BLS key of the key file is not the committee's");
        }
        let workers = authority.worker_addresses.len();
        let links = config.worker_links.len();
        if links != 0 && links != workers {
            bail!("{config_name}: {links} [[worker_links]] for the committee's {workers} workers of validator {me}");
        }
        Ok(Self { committee, keys, config, config_name, me, authority })
    }

    /// Binds worker `id`'s peer endpoint and client port.
    async fn bind_worker(
        &self,
        id: WorkerId,
    ) -> anyhow::Result<(Endpoint<WorkerMessage>, mpsc::Receiver<Inbound<WorkerMessage>>, ClientListener)> {
        let address = self.authority.worker_addresses[id as usize];
        let (endpoint, inbound) = Endpoint::<WorkerMessage>::bind(
            self.network(),
            &self.keys.network,
            Peers::workers(&self.committee, id)?,
            self.quic(address)?,
        )?;
        let clients = ClientListener::bind(listen(address)).await?;
        Ok((endpoint, inbound, clients))
    }

    /// The network settings of our endpoints to other validators.
    fn network(&self) -> NetworkConfig {
        NetworkConfig { max_udp_payload: self.config.max_udp_payload, ..NetworkConfig::default() }
    }

    /// Where a QUIC endpoint of ours listens: the committee's port, shifted when a relay emulates the network.
    fn quic(&self, address: SocketAddr) -> anyhow::Result<SocketAddr> {
        let port = address.port().checked_add(self.config.quic_port_shift).context("QUIC port past 65535")?;
        Ok(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), port))
    }

    /// Binds our end of the link to worker `id`: at `ours`, its only peer the other end at `theirs`.
    fn bind_link(
        &self,
        ours: SocketAddr,
        theirs: SocketAddr,
    ) -> anyhow::Result<(Endpoint<LinkMessage>, mpsc::Receiver<mako_network::Inbound<LinkMessage>>)> {
        let peers = link_peers(theirs, self.keys.network.public())?;
        Ok(Endpoint::<LinkMessage>::bind(NetworkConfig::default(), &self.keys.network, peers, listen(ours))?)
    }
}

pub fn run(committee: &Path, keys: &Path, config: Option<&Path>, role: Role) -> anyhow::Result<()> {
    let identity = Identity::load(committee, keys, config)?;
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    if identity.config.runtime_threads > 0 {
        runtime.worker_threads(identity.config.runtime_threads);
    }
    runtime.enable_all().build()?.block_on(async {
        match role {
            Role::Validator => run_validator(identity).await,
            Role::Worker(id) => run_worker(identity, id).await,
        }
    })
}

/// Worker `id` alone: its peers, its clients, its own store, and the link to its primary.
async fn run_worker(identity: Identity, id: WorkerId) -> anyhow::Result<()> {
    let Some(link) = identity.config.worker_links.get(id as usize).cloned() else {
        bail!("{}: no [[worker_links]] entry for worker {id}", identity.config_name);
    };
    let storage = identity.config.worker_storage(id as usize);
    let store = Store::open(&storage).with_context(|| format!("cannot open {}", storage.display()))?;
    let (to_primary, from_worker) = mpsc::channel(CHANNEL_CAPACITY);
    let (to_worker, from_primary) = mpsc::channel(CHANNEL_CAPACITY);
    let (endpoint, inbound, clients) = identity.bind_worker(id).await?;
    let worker_network = Arc::clone(endpoint.metrics());
    let worker = Worker::spawn(WorkerSetup {
        id,
        committee: identity.committee.clone(),
        parameters: identity.config.mempool.clone(),
        store: store.clone(),
        endpoint,
        inbound,
        clients,
        to_primary,
        from_primary,
    });
    let (endpoint, inbound) = identity.bind_link(link.worker, link.primary)?;
    let link_network = Arc::clone(endpoint.metrics());
    let mut link_task = AbortOnDrop(WorkerLink::spawn(endpoint, inbound, store, from_worker, to_worker));
    let _metrics_server = match link.metrics_address {
        Some(address) => {
            let collector = ValidatorCollector {
                primary: None,
                workers: vec![Arc::clone(worker.metrics())],
                networks: vec![worker_network, link_network],
            };
            let mut registry = Registry::default();
            registry.register_collector(Box::new(collector));
            Some(AbortOnDrop(metrics::serve(address, registry).await?))
        }
        None => None,
    };
    info!(me = %identity.me, worker = id, link = %link.worker, primary = %link.primary, "worker running");
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {
            info!("shutting down");
            Ok(())
        }
        _ = &mut link_task.0 => bail!("the link to the primary stopped"),
    }
}

async fn run_validator(identity: Identity) -> anyhow::Result<()> {
    let config = &identity.config;
    let store = Store::open(&config.storage).with_context(|| format!("cannot open {}", config.storage.display()))?;
    let genesis = match &config.execution.genesis {
        Some(path) => Genesis::load(path)?,
        None => Genesis::generate(config.execution.genesis_accounts),
    };
    // A validator that fell behind what its peers keep starts again on the same store, and state-syncs.
    let mut restarts = None;
    loop {
        match run_validator_life(&identity, &store, &genesis).await {
            Ok(Life::Ended) => return Ok(()),
            Ok(Life::Halted(reason)) => bail!("{reason}"),
            Ok(Life::FellBehind) => {
                info!("starting again from a checkpoint");
                restarts = Some(0);
            }
            // The sockets of the last life close once QUIC has drained its connections (a few seconds).
            Err(error) if restarts.is_some_and(|failed| failed < MAX_FAILED_RESTARTS) => {
                info!(%error, "cannot start again yet; retrying");
                restarts = restarts.map(|failed| failed + 1);
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
            Err(error) => return Err(error),
        }
    }
}

/// Starts again after a life that fell behind, while its sockets are still draining, at most this many times
/// a second apart.
const MAX_FAILED_RESTARTS: u32 = 60;

/// How one life of a validator process ended.
enum Life {
    /// Ctrl-C.
    Ended,
    /// Execution halted (a state divergence, a storage failure): the process stops.
    Halted(ValidatorError),
    /// It fell behind what its peers keep ([`ValidatorError::FellBehind`]): it starts again.
    FellBehind,
}

async fn run_validator_life(identity: &Identity, store: &Store, genesis: &Genesis) -> anyhow::Result<Life> {
    let Identity { committee, keys, config, me, authority, .. } = identity;
    let store = store.clone();
    let threads = match config.execution.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let primary_network = Endpoint::<PrimaryMessage>::bind(
        identity.network(),
        &keys.network,
        Peers::primaries(committee)?,
        identity.quic(authority.primary_address)?,
    )?;
    // A store too far behind the others' (empty, or down for long) resumes from a checkpoint f+1 vouch for.
    state_sync::sync_state(&primary_network.0, *me, committee, &store).await?;
    let executor = Executor::recover(committee.clone(), store.clone(), genesis, threads)?;

    // Workers in this process share our store; workers apart are reached over their links.
    let mut workers = Vec::new();
    let mut networks = Vec::new();
    for id in 0..authority.worker_addresses.len() as WorkerId {
        match config.worker_links.get(id as usize) {
            None => {
                let (endpoint, inbound, clients) = identity.bind_worker(id).await?;
                networks.push(Arc::clone(endpoint.metrics()));
                workers.push(WorkerPlace::Local { endpoint, inbound, clients });
            }
            Some(link) => {
                let (endpoint, inbound) = identity.bind_link(link.primary, link.worker)?;
                networks.push(Arc::clone(endpoint.metrics()));
                workers.push(WorkerPlace::Apart { endpoint, inbound });
            }
        }
    }
    networks.push(Arc::clone(primary_network.0.metrics()));
    let linked_workers = config.worker_links.len();
    let mut validator = Validator::spawn(ValidatorSetup {
        me: *me,
        committee: committee.clone(),
        key: keys.bls.clone(),
        parameters: config.mempool.clone(),
        store,
        primary_network,
        workers,
        executor: Some(executor),
        rng_seed: rand::random(),
        observer: None,
    })?;
    let _metrics_server = match config.metrics_address {
        Some(address) => {
            let execution = validator.execution.as_ref().expect("this validator executes");
            let mut registry = Registry::default();
            registry.register_collector(Box::new(ValidatorCollector {
                primary: Some(PrimaryHalf {
                    primary: Arc::clone(&validator.primary.metrics),
                    execution: Arc::clone(&execution.metrics),
                }),
                workers: validator.workers.iter().map(|worker| Arc::clone(worker.metrics())).collect(),
                networks,
            }));
            Some(AbortOnDrop(metrics::serve(address, registry).await?))
        }
        None => None,
    };
    info!(%me, primary = %authority.primary_address, workers = validator.workers.len(), linked_workers, metrics = ?config.metrics_address, "validator running");

    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => {
            info!("shutting down");
            Ok(Life::Ended)
        }
        reason = validator.stopped() => match reason {
            ValidatorError::FellBehind { .. } => {
                info!(%reason, "stopping");
                Ok(Life::FellBehind)
            }
            reason => Ok(Life::Halted(reason)),
        },
    }
}
