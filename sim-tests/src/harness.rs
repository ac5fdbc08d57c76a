//! The simulation harness: validators on turmoil hosts, a load client, and a record of what each did.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mako_consensus::CommittedSubDag;
use mako_execution::pipeline::Executor;
use mako_execution::workload::{Distribution, Workload};
use mako_execution::Genesis;
use mako_mempool::admission::Progress;
use mako_mempool::config::MempoolParameters;
use mako_mempool::messages::PrimaryToWorker;
use mako_mempool::messages::{PrimaryMessage, WorkerMessage};
use mako_mempool::primary::PrimaryMetrics;
use mako_mempool::worker::ClientListener;
use mako_network::{Endpoint, Inbound, NetworkConfig, Peers};
use mako_storage::Store;
use mako_types::{
    Authority, AuthorityIndex, BatchDigest, Certificate, CertificateDigest, Committee, Digest, ExecutedState,
    ProtocolParameters, Round, ScheduleKind, ValidatorKeys,
};
use mako_validator::{state_sync, Observer, Validator, ValidatorError, ValidatorSetup, WorkerPlace};
use tokio::io::AsyncWriteExt;

/// Funded accounts in the simulated validators' genesis (the load client's senders and receivers).
pub const ACCOUNTS: u64 = 1_000;
/// Block-STM threads of every simulated executor.
const EXECUTION_THREADS: usize = 2;
/// Blocks between two checkpoints of a simulated validator's execution state.
pub const CHECKPOINT_INTERVAL: u64 = 8;

/// The protocol parameters of a simulated committee: the defaults, but checkpoints every few sub-DAGs, so
/// that restarts recover from one, validators delete what checkpoints cover, and a validator that falls
/// behind that history catches up by state sync within a short run.
pub fn sim_protocol() -> ProtocolParameters {
    ProtocolParameters { checkpoint_interval: CHECKPOINT_INTERVAL, ..ProtocolParameters::default() }
}

pub const PRIMARY_PORT: u16 = 5000;
pub const WORKER_PORT: u16 = 5001;

pub fn host_name(i: usize) -> String {
    format!("validator{i}")
}

/// Validator `i`'s keys. Simulated validators sign with the stand-in for BLS (`mako_types::crypto::stand_in`:
/// the same binding, a hash instead of pairings); every key the simulation uses comes through here, so this is
/// where the process switches to it, before anything is signed.
pub fn keys(i: usize) -> ValidatorKeys {
    mako_types::use_stand_in_signatures();
    ValidatorKeys::from_seed(i as u64)
}

/// The seed of a test run: `MAKO_SEED` if set, else the test's own. Also turns on logs when `RUST_LOG` is set.
pub fn seed(default: u64) -> u64 {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    std::env::var("MAKO_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// Panics with the seed and the replay command if `result` is an error.
pub fn expect_ok<T, E: std::fmt::Display>(result: Result<T, E>, seed: u64, test: &str) -> T {
    result.unwrap_or_else(|error| {
        panic!(
            "{test} failed with seed {seed}: {error}\nreplay: MAKO_SEED={seed} cargo test -p mako-sim-tests --test {test}"
        )
    })
}

/// The committee of `n` simulated validators; call inside the simulation (addresses come from turmoil).
pub fn committee(n: usize) -> Committee {
    let authorities = (0..n)
        .map(|i| {
            let ip = turmoil::lookup(host_name(i));
            Authority::new(&keys(i), 1, SocketAddr::new(ip, PRIMARY_PORT), vec![SocketAddr::new(ip, WORKER_PORT)])
        })
        .collect();
    Committee::new(authorities).expect("the simulated committee is valid")
}

/// The same keys and stakes outside the simulation (addresses differ, which verification never reads).
pub fn committee_outside(n: usize) -> Committee {
    let keys: Vec<_> = (0..n).map(keys).collect();
    Committee::local(&keys, 9_000, 1).expect("a local committee is valid")
}

/// Fast parameters for simulation: small batches, short delays.
pub fn parameters() -> MempoolParameters {
    MempoolParameters {
        batch_size: 50_000,
        max_batch_delay: Duration::from_millis(50),
        max_header_delay: Duration::from_millis(100),
        min_header_delay: Duration::from_millis(60),
        leader_timeout: Duration::from_millis(500),
        sync_retry_delay: Duration::from_millis(1_000),
        // Small, so that the Byzantine worker's flood goes over it within a second, and an honest batch left
        // unreferenced by a partition is deleted and fetched again when a certificate names it.
        max_unreferenced_bytes_per_peer: 64 * 1024,
        ..MempoolParameters::default()
    }
}

/// Validator `node`'s primary endpoint on the simulated network, in its `boot`-th life: honest validators and
/// the hand-written Byzantine ones bind it the same way.
pub async fn bind_primary(
    seed: u64,
    node: usize,
    boot: u64,
    committee: &Committee,
) -> Result<(Endpoint<PrimaryMessage>, tokio::sync::mpsc::Receiver<Inbound<PrimaryMessage>>), Box<dyn std::error::Error>>
{
    let listen = SocketAddr::from((Ipv4Addr::UNSPECIFIED, PRIMARY_PORT));
    let peers = Peers::primaries(committee)?;
    Ok(Endpoint::bind_turmoil(network_config(seed, node, boot, 0), &keys(node).network, peers, listen).await?)
}

pub fn network_config(seed: u64, node: usize, boot: u64, lane: u8) -> NetworkConfig {
    let mut rng_seed = [0u8; 32];
    rng_seed[..8].copy_from_slice(&seed.to_le_bytes());
    rng_seed[8..16].copy_from_slice(&(node as u64).to_le_bytes());
    rng_seed[16..24].copy_from_slice(&boot.to_le_bytes());
    rng_seed[24] = lane;
    NetworkConfig {
        rng_seed: Some(rng_seed),
        idle_timeout: Duration::from_millis(1_500),
        keep_alive_interval: Duration::from_millis(300),
        ..NetworkConfig::default()
    }
}

/// A committed sub-DAG as a validator's consumer saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub index: u64,
    pub leader_round: Round,
    pub leader_author: AuthorityIndex,
    pub certificates: Vec<CertificateDigest>,
    /// The batches it delivered for execution.
    pub batches: Vec<BatchDigest>,
}

/// What one validator did, across its lives.
#[derive(Default)]
pub struct NodeRecord {
    /// Certificates in the order the primary delivered them to consensus.
    pub delivered: Vec<Certificate>,
    /// Committed sub-DAGs by index, each once (across restarts: a sub-DAG emitted again must equal the first
    /// emission, and is checked, not recorded again). Consecutive, but for the jump over what a checkpoint
    /// that state sync installed covers.
    pub commits: BTreeMap<u64, Commit>,
    /// Broken invariants seen while running (a re-emission that differs, a gap in the indices).
    pub violations: Vec<String>,
    pub metrics: Option<Arc<PrimaryMetrics>>,
    pub boots: u64,
    pub highest_round: Round,
    /// Our batches the primary acknowledged: a quorum holds each and it is recorded durably for proposal
    /// (DESIGN.md §9.3: each must be committed, across crashes too).
    pub acked_batches: Vec<BatchDigest>,
    /// Every (index, root) execution published, across lives (DESIGN.md §9.5: the log must keep them).
    pub executed: Vec<ExecutedState>,
    /// The latest execution progress the workers were told, by which they admit client transactions.
    pub progress: Option<Progress>,
    /// The checkpoints state sync installed, one per life that began with one.
    pub synced: Vec<u64>,
    /// For the validator that measures latency ([`Options::latency_at`]): each transaction it executed, when
    /// the load client sent it and when this validator had executed it, in simulated time.
    pub samples: Vec<Sample>,
    /// The last block whose transactions are in `samples`.
    pub sampled_to: u64,
    /// Batches of executed blocks that were gone from the store before they could be sampled.
    pub unsampled_batches: u64,
}

/// One transaction's trip, in simulated time since the simulation began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub sent: Duration,
    pub executed: Duration,
}

pub type Records = Arc<Mutex<BTreeMap<usize, NodeRecord>>>;

pub fn records() -> Records {
    Arc::new(Mutex::new(BTreeMap::new()))
}

pub fn store_dir(root: &Path, node: usize) -> PathBuf {
    root.join(format!("validator{node}"))
}

/// How the simulated validators run.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    pub validators: usize,
    pub seed: u64,
    pub with_worker: bool,
    /// The committee's protocol parameters (GC depth, leader schedule and its window).
    pub protocol: ProtocolParameters,
    /// A validator started from another genesis state (a deliberately diverging node).
    pub divergent: Option<usize>,
    pub tuning: Tuning,
    /// The validator that records every transaction it executes ([`NodeRecord::samples`]).
    pub latency_at: Option<usize>,
}

/// Which mempool parameters the simulated validators run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tuning {
    /// [`parameters`]: short delays and small budgets, so that faults show within seconds.
    Faults,
    /// The defaults, what `mako testnet` runs: for experiments whose figures stand beside the testnet's.
    Testnet,
}

impl Tuning {
    pub fn parameters(self) -> MempoolParameters {
        match self {
            Tuning::Faults => parameters(),
            Tuning::Testnet => MempoolParameters::default(),
        }
    }
}

impl Options {
    pub fn new(validators: usize, seed: u64) -> Self {
        Self {
            validators,
            seed,
            with_worker: false,
            protocol: sim_protocol(),
            divergent: None,
            tuning: Tuning::Faults,
            latency_at: None,
        }
    }

    pub fn with_worker(self) -> Self {
        Self { with_worker: true, ..self }
    }

    pub fn schedule(self, leader_schedule: ScheduleKind) -> Self {
        Self { protocol: ProtocolParameters { leader_schedule, ..self.protocol }, ..self }
    }

    pub fn protocol(self, protocol: ProtocolParameters) -> Self {
        Self { protocol, ..self }
    }

    pub fn divergent(self, node: usize) -> Self {
        Self { divergent: Some(node), ..self }
    }

    pub fn tuning(self, tuning: Tuning) -> Self {
        Self { tuning, ..self }
    }

    pub fn latency_at(self, node: usize) -> Self {
        Self { latency_at: Some(node), ..self }
    }
}

/// Runs validator `node` until the simulation ends: opens its store, binds its endpoints on turmoil, and runs
/// the one validator assembly the binary runs ([`Validator::spawn`]), recording through a [`SimObserver`] what
/// its worker acknowledged, what its primary delivered and what consensus committed, and every (index, root)
/// its executor published. A validator that falls behind what its peers keep starts again on the same store
/// (as the binary does), and state-syncs.
pub async fn run_validator(node: usize, options: Options, root: PathBuf, records: Records) -> turmoil::Result {
    // Every simulated machine can lose power: a crash with `mako_storage::cut_power` loses the unsynced writes.
    let store = Store::open_emulating_power_loss(&store_dir(&root, node))?;
    loop {
        match run_validator_once(node, options, store.clone(), Arc::clone(&records)).await {
            Err(error) => return Err(error),
            // QUIC drains the closed connections of the last life for a few seconds before its sockets go.
            Ok(()) => wait_for_free_ports().await,
        }
    }
}

/// Waits until this host's validator ports can be bound again.
async fn wait_for_free_ports() {
    let any = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    loop {
        let primary = turmoil::net::UdpSocket::bind(any(PRIMARY_PORT)).await;
        let worker = turmoil::net::UdpSocket::bind(any(WORKER_PORT)).await;
        if primary.is_ok() && worker.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One life of validator `node`: returns `Ok` when it fell behind and must start again.
async fn run_validator_once(node: usize, options: Options, store: Store, records: Records) -> turmoil::Result {
    let committee = committee(options.validators).with_protocol(options.protocol)?;
    let me = AuthorityIndex(node as u16);
    let boot = {
        let mut records = records.lock().unwrap();
        let record = records.entry(node).or_default();
        record.boots += 1;
        record.boots
    };
    let genesis = if options.divergent == Some(node) { Genesis::generate(ACCOUNTS + 1) } else { genesis() };
    // Two threads: the pipeline runs Block-STM (one thread would run the sequential executor); its result is
    // the same for any thread count, so the run still replays from its seed.
    // A store too far behind the others' resumes from a checkpoint f+1 vouch for (state sync), as the binary.
    let primary_network = bind_primary(options.seed, node, boot, &committee).await?;
    if let Some(checkpoint) = state_sync::sync_state(&primary_network.0, me, &committee, &store).await? {
        records.lock().unwrap().entry(node).or_default().synced.push(checkpoint.index);
    }
    let executor = Executor::recover(committee.clone(), store.clone(), &genesis, EXECUTION_THREADS)?;
    let key = keys(node);
    let listen = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let mut workers = Vec::new();
    if options.with_worker {
        let (endpoint, inbound) = Endpoint::<WorkerMessage>::bind_turmoil(
            network_config(options.seed, node, boot, 1),
            &key.network,
            Peers::workers(&committee, 0)?,
            listen(WORKER_PORT),
        )
        .await?;
        let clients = ClientListener::bind_turmoil(listen(WORKER_PORT)).await?;
        workers.push(WorkerPlace::Local { endpoint, inbound, clients });
    }
    let mut validator = Validator::spawn(ValidatorSetup {
        me,
        committee,
        key: key.bls.clone(),
        parameters: options.tuning.parameters(),
        store: store.clone(),
        primary_network,
        workers,
        executor: Some(executor),
        rng_seed: options.seed ^ node as u64,
        observer: Some(Arc::new(SimObserver { node, records: Arc::clone(&records) })),
    })?;
    records.lock().unwrap().get_mut(&node).expect("inserted above").metrics =
        Some(Arc::clone(&validator.primary.metrics));

    let mut executed = validator.execution.as_ref().expect("simulated validators execute").executed.clone();
    loop {
        tokio::select! {
            biased;
            Ok(()) = executed.changed() => {
                let state = *executed.borrow_and_update();
                let mut records = records.lock().unwrap();
                let record = records.get_mut(&node).expect("inserted above");
                record.executed.push(state);
                if options.latency_at == Some(node) {
                    sample(&store, record, state.index)?;
                }
            }
            reason = validator.stopped() => {
                if matches!(reason, ValidatorError::FellBehind { .. }) {
                    return Ok(());
                }
                let reason = reason.to_string();
                records.lock().unwrap().get_mut(&node).expect("inserted above").violations.push(reason.clone());
                return Err(reason.into());
            }
        }
    }
}

/// Adds to `record.samples` the transactions of the blocks executed after `record.sampled_to` up to `index`,
/// read back from the store (their batches are deleted only two checkpoints later), with the time now.
fn sample(store: &Store, record: &mut NodeRecord, index: u64) -> Result<(), mako_storage::StoreError> {
    let now = turmoil::sim_elapsed().unwrap_or_default();
    // A checkpoint that state sync installed covers blocks this validator never executed (it fell behind):
    // they have no latency here, and their batches may be gone.
    let synced_through = record.synced.iter().copied().max().unwrap_or(0);
    for block in (record.sampled_to + 1).max(synced_through + 1)..=index {
        let Some(sub_dag) = store.state.sub_dag(block)? else { continue };
        for (digest, _, _) in &sub_dag.batches {
            let Some(batch) = store.batches.get(digest)? else {
                record.unsampled_batches += 1;
                continue;
            };
            for transaction in &batch.transactions {
                let sent = mako_execution::decode_transaction(&transaction.0).ok().and_then(|t| t.sample_sent_at());
                if let Some(sent) = sent {
                    let sent = sent.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
                    record.samples.push(Sample { sent, executed: now });
                }
            }
        }
    }
    record.sampled_to = record.sampled_to.max(index);
    Ok(())
}

/// What the simulation records of one validator, seen on the assembly's channels.
struct SimObserver {
    node: usize,
    records: Records,
}

impl SimObserver {
    fn record(&self, update: impl FnOnce(&mut NodeRecord)) {
        update(self.records.lock().unwrap().get_mut(&self.node).expect("inserted before the validator starts"));
    }
}

impl Observer for SimObserver {
    fn worker_order(&self, order: &PrimaryToWorker) {
        match order {
            PrimaryToWorker::Acknowledged { digest } => self.record(|record| record.acked_batches.push(*digest)),
            PrimaryToWorker::Progress(progress) => self.record(|record| record.progress = Some(*progress)),
            _ => {}
        }
    }

    fn certificate_delivered(&self, certificate: &Certificate) {
        self.record(|record| {
            record.highest_round = record.highest_round.max(certificate.round());
            record.delivered.push(certificate.clone());
        });
    }

    fn committed(&self, sub_dag: &CommittedSubDag) {
        let commit = Commit {
            index: sub_dag.index,
            leader_round: sub_dag.leader_round(),
            leader_author: sub_dag.leader.author(),
            certificates: sub_dag.digests(),
            batches: sub_dag.batches.iter().map(|(digest, _, _)| *digest).collect(),
        };
        record_commit(&self.records, self.node, commit);
    }
}

/// The genesis state of the simulated validators.
pub fn genesis() -> Genesis {
    Genesis::generate(ACCOUNTS)
}

/// Appends a commit to the node's log; one emitted again after a restart must equal the first emission.
fn record_commit(records: &Records, node: usize, commit: Commit) {
    let mut records = records.lock().unwrap();
    let record = records.get_mut(&node).expect("inserted before consensus starts");
    let last = record.commits.last_key_value().map_or(0, |(index, _)| *index);
    let synced_to = record.synced.last().copied().unwrap_or(0);
    match commit.index {
        index if index == last + 1 || (index == synced_to + 1 && synced_to >= last) => {
            record.commits.insert(index, commit);
        }
        index if record.commits.contains_key(&index) => {
            if record.commits[&index] != commit {
                record.violations.push(format!("sub-DAG {index} emitted again with other content"));
            }
        }
        index if index <= synced_to => {} // covered by the checkpoint this life began with
        index => record.violations.push(format!("sub-DAG {index} emitted after {last}: a gap")),
    }
}

/// Datagrams a simulated socket holds before it drops more: a validator's receive buffer
/// (`NetworkConfig::socket_receive_buffer`, 4 MiB) in the 1,200-byte packets QUIC sends under turmoil (quinn
/// turns path-MTU discovery off on a socket that may fragment, as turmoil's may). turmoil's default, 64
/// datagrams, is 77 KB: the window of a 50 ms path at 10k tx/s overflowed it, and QUIC took the drops for
/// congestion (`experiment` at 50 ms one-way: 9,333 of 10,000 tx/s at p50 2.0 s, against 10,000 at 0.8 s).
pub fn udp_capacity() -> usize {
    NetworkConfig::default().socket_receive_buffer / 1_200
}

/// A turmoil simulation with some latency, so that the seed matters.
pub fn simulation<'a>(seed: u64, duration: Duration) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .udp_capacity(udp_capacity())
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(duration + Duration::from_secs(60))
        .build()
}

/// Registers validators `nodes` as hosts.
pub fn add_validators(
    sim: &mut turmoil::Sim<'_>,
    nodes: impl IntoIterator<Item = usize>,
    options: Options,
    root: &Path,
    records: &Records,
) {
    for node in nodes {
        let (root, records) = (root.to_path_buf(), Arc::clone(records));
        sim.host(host_name(node), move || run_validator(node, options, root.clone(), Arc::clone(&records)));
    }
}

/// A host that never starts: a validator crashed from the beginning (its name still resolves).
pub fn add_crashed(sim: &mut turmoil::Sim<'_>, node: usize) {
    sim.host(host_name(node), || async { std::future::pending::<turmoil::Result>().await });
}

/// Steps the simulation until `done` holds, failing after `limit` of simulated time.
pub fn run_until(
    sim: &mut turmoil::Sim<'_>,
    limit: Duration,
    mut done: impl FnMut(&mut turmoil::Sim<'_>) -> bool,
) -> Result<(), String> {
    let start = sim.elapsed();
    while !done(sim) {
        if sim.elapsed() - start > limit {
            return Err(format!("condition not reached within {limit:?} of simulated time"));
        }
        sim.step().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Steps the simulation for `duration` of simulated time.
pub fn advance(sim: &mut turmoil::Sim<'_>, duration: Duration) -> Result<(), String> {
    let end = sim.elapsed() + duration;
    while sim.elapsed() < end {
        sim.step().map_err(|e| format!("the simulation failed: {e}"))?;
    }
    Ok(())
}

/// The highest round node `node` delivered.
pub fn highest(records: &Records, node: usize) -> Round {
    records.lock().unwrap().get(&node).map_or(0, |r| r.highest_round)
}

/// The index of the last sub-DAG node `node` committed.
pub fn commits(records: &Records, node: usize) -> usize {
    records.lock().unwrap().get(&node).and_then(|r| r.commits.keys().next_back()).map_or(0, |i| *i as usize)
}

/// The digests each node delivered, per (round, author): the DAG it holds.
pub fn delivered_at(records: &Records, node: usize) -> BTreeMap<(Round, AuthorityIndex), CertificateDigest> {
    let records = records.lock().unwrap();
    records[&node].delivered.iter().map(|c| ((c.round(), c.author()), c.digest())).collect()
}

/// Streams transfers between genesis accounts to the workers of `nodes`, `per_tick` of them every 100 ms to
/// each, until `done`, each padded to `size` bytes (0: unpadded) and stamped with the simulated time it was
/// sent. A worker that is down (crashed, restarting) is skipped and reconnected to later; what was sent to it
/// on a broken connection is lost, as for a real client.
pub async fn load_client(nodes: Vec<usize>, per_tick: usize, size: usize, done: Arc<AtomicBool>) -> turmoil::Result {
    let addresses: Vec<SocketAddr> =
        nodes.iter().map(|node| SocketAddr::new(turmoil::lookup(host_name(*node)), WORKER_PORT)).collect();
    // A validator not up yet (or down) is connected to when it is.
    let mut connections: Vec<Option<turmoil::net::TcpStream>> = Vec::new();
    for address in &addresses {
        connections.push(turmoil::net::TcpStream::connect(address).await.ok());
    }
    let mut workload = Workload::new(7, ACCOUNTS, Distribution::Uniform);
    let memo_len = mako_execution::Transaction::memo_len_for(size);
    while !done.load(Ordering::SeqCst) {
        for (connection, address) in connections.iter_mut().zip(&addresses) {
            if connection.is_none() {
                *connection = turmoil::net::TcpStream::connect(address).await.ok();
            }
            let Some(stream) = connection.as_mut() else { continue };
            let mut frames = Vec::new();
            let now = std::time::UNIX_EPOCH + turmoil::sim_elapsed().unwrap_or_default();
            for mut transaction in workload.transfers(per_tick) {
                transaction.memo.resize(memo_len.max(transaction.memo.len()), 0);
                transaction.stamp_sample(now);
                let bytes = transaction.to_bytes();
                frames.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                frames.extend_from_slice(&bytes);
            }
            if stream.write_all(&frames).await.is_err() {
                *connection = None;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// Checks prefix agreement (DESIGN.md §9.1) and integrity (§9.2) over every pair of nodes' commit logs, and
/// that each log's indices are consecutive from 1 (no gap, no repeat across restarts).
pub fn check_commits(records: &Records) -> Result<(), String> {
    let nodes: Vec<usize> = records.lock().unwrap().keys().copied().collect();
    check_commits_among(records, &nodes)
}

/// [`check_commits`] over the logs of `nodes` only (the honest ones).
pub fn check_commits_among(records: &Records, nodes: &[usize]) -> Result<(), String> {
    let records = records.lock().unwrap();
    let records: BTreeMap<usize, &NodeRecord> =
        records.iter().filter(|(node, _)| nodes.contains(node)).map(|(node, record)| (*node, record)).collect();
    for (node, record) in records.iter() {
        if let Some(violation) = record.violations.first() {
            return Err(format!("node {node}: {violation}"));
        }
        // From 1, or from just after a checkpoint state sync installed, and consecutive from there.
        let mut expected = 1;
        for (index, commit) in &record.commits {
            let resumed = record.synced.iter().any(|synced| synced + 1 == *index);
            if commit.index != *index || (*index != expected && !(resumed && *index > expected)) {
                return Err(format!("node {node}: sub-DAG {index} follows {}", expected - 1));
            }
            expected = index + 1;
        }
        let mut seen = std::collections::BTreeSet::new();
        for digest in record.commits.values().flat_map(|c| &c.certificates) {
            if !seen.insert(*digest) {
                return Err(format!("node {node}: certificate {digest} committed twice"));
            }
        }
    }
    let logs: Vec<(usize, &BTreeMap<u64, Commit>)> = records.iter().map(|(n, r)| (*n, &r.commits)).collect();
    for (a, log_a) in &logs {
        for (b, log_b) in &logs {
            if let Some((index, _)) =
                log_a.iter().find(|(index, commit)| log_b.get(index).is_some_and(|c| c != *commit))
            {
                return Err(format!("nodes {a} and {b} disagree at sub-DAG {index}"));
            }
        }
    }
    Ok(())
}

/// Execution agreement (DESIGN.md §9.4), read from the stores after the simulation: every pair of nodes has
/// equal state roots at equal indices. Returns the lowest number of blocks a node executed, and how many of
/// node `nodes[0]`'s executed blocks carried batches (so that a test can tell the load reached execution; the
/// write sets themselves are dropped below each checkpoint).
pub fn check_execution(root: &Path, nodes: impl IntoIterator<Item = usize>) -> Result<(u64, u64), String> {
    let mut logs: Vec<(usize, BTreeMap<u64, Digest>)> = Vec::new();
    let mut changing_blocks = None;
    for node in nodes {
        let store = Store::open(&store_dir(root, node)).map_err(|e| e.to_string())?;
        let executed = store.state.execution_progress().map_err(|e| e.to_string())?.unwrap_or_default();
        // Restarts recover from the latest checkpoint: there must be a recent one (issue 17, item 3).
        let checkpoint = store.state.checkpoint().map_err(|e| e.to_string())?.map_or(0, |c| c.index);
        let mut roots = BTreeMap::new();
        let mut changing = 0;
        for index in 1..=executed.last_executed_index {
            let block = store.state.block(index).map_err(|e| e.to_string())?;
            let Some(block) = block else {
                // A validator that state-synced has no log below the checkpoint it installed.
                if index < checkpoint {
                    continue;
                }
                return Err(format!("node {node}: block {index} missing from the log"));
            };
            let sub_dag = store.state.sub_dag(index).map_err(|e| e.to_string())?;
            changing += u64::from(sub_dag.is_some_and(|s| !s.batches.is_empty()));
            roots.insert(index, block.root);
        }
        changing_blocks.get_or_insert(changing);
        if executed.last_executed_index >= checkpoint + 2 * CHECKPOINT_INTERVAL {
            return Err(format!(
                "node {node}: executed {} blocks, but its latest checkpoint is at {checkpoint}",
                executed.last_executed_index
            ));
        }
        logs.push((node, roots));
    }
    for (a, roots_a) in &logs {
        for (b, roots_b) in &logs {
            if let Some((index, _)) =
                roots_a.iter().find(|(index, root)| roots_b.get(index).is_some_and(|r| r != *root))
            {
                return Err(format!("nodes {a} and {b} have different state roots after block {index}"));
            }
        }
    }
    let lowest = logs.iter().map(|(_, roots)| roots.keys().next_back().copied().unwrap_or(0)).min().unwrap_or(0);
    Ok((lowest, changing_blocks.unwrap_or(0)))
}
