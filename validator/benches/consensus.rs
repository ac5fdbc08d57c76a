//! The mempool + consensus benchmark: four validators — a worker, a primary and Bullshark each, assembled by
//! [`Validator::spawn`] without execution — in one process over loopback QUIC, under a client load of 512-byte transactions. It reports, as seen by validator 0
//! after a warm-up:
//! - **consensus tx/s**: transactions in batches of committed sub-DAGs (DESIGN.md §7: bytes committed / tx size
//!   / time);
//! - **batch-to-certificate latency**: a batch sealed → its author's certificate formed (validator 0's batches);
//! - **consensus latency**: a batch sealed (by any validator) → committed at validator 0.
//!
//! `cargo bench -p mako-validator --bench consensus -- --rate 40000 --duration 20`

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mako_consensus::CommittedSubDag;
use mako_mempool::config::MempoolParameters;
use mako_mempool::messages::{PrimaryMessage, WorkerMessage, WorkerToPrimary};
use mako_mempool::worker::ClientListener;
use mako_network::{Endpoint, NetworkConfig, Peers};
use mako_storage::Store;
use mako_types::{AuthorityIndex, BatchDigest, Committee, Round, ValidatorKeys};
use mako_validator::{Observer, Validator, ValidatorSetup, WorkerPlace};
use tokio::io::AsyncWriteExt;

const NODES: usize = 4;
const TX_SIZE: usize = 512;

struct Options {
    rate: u64,
    duration: Duration,
    warmup: Duration,
    base_port: u16,
}

fn options() -> Options {
    let mut options =
        Options { rate: 40_000, duration: Duration::from_secs(20), warmup: Duration::from_secs(5), base_port: 17_000 };
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    if let Some(rate) = value("--rate") {
        options.rate = rate.parse().expect("--rate takes transactions per second");
    }
    if let Some(seconds) = value("--duration") {
        options.duration = Duration::from_secs(seconds.parse().expect("--duration takes seconds"));
    }
    if let Some(port) = value("--base-port") {
        options.base_port = port.parse().expect("--base-port takes a port");
    }
    options.warmup = options.warmup.min(options.duration / 4);
    options
}

/// When each batch was sealed, by any validator (one process, one clock).
type SealTimes = Arc<Mutex<BTreeMap<BatchDigest, tokio::time::Instant>>>;

/// Validator 0's commits: when each was seen, and its batches.
type Commits = Arc<Mutex<Vec<(tokio::time::Instant, Round, Vec<BatchDigest>)>>>;

/// Notes when each batch is sealed (every validator) and what validator 0 commits.
struct BenchObserver {
    sealed: SealTimes,
    commits: Option<Commits>,
}

impl Observer for BenchObserver {
    fn worker_report(&self, report: &WorkerToPrimary) {
        if let WorkerToPrimary::OurBatch { digest, created, .. } = report {
            self.sealed.lock().unwrap().insert(*digest, *created);
        }
    }

    fn committed(&self, sub_dag: &CommittedSubDag) {
        if let Some(commits) = &self.commits {
            let batches =
                sub_dag.certificates.iter().flat_map(|c| c.header.payload().iter().map(|(d, _)| *d)).collect();
            commits.lock().unwrap().push((tokio::time::Instant::now(), sub_dag.leader_round(), batches));
        }
    }
}

/// Validator `node` (mempool and consensus, no execution) through the one validator assembly.
async fn start_validator(
    node: usize,
    committee: &Committee,
    keys: &ValidatorKeys,
    dir: &std::path::Path,
    observer: BenchObserver,
) -> (Validator, Store, SocketAddr) {
    let authority = committee.authority(AuthorityIndex(node as u16)).expect("node is in the committee");
    let store = Store::open(&dir.join(format!("validator{node}"))).expect("open store");
    let primary_network = Endpoint::<PrimaryMessage>::bind(
        NetworkConfig::default(),
        &keys.network,
        Peers::primaries(committee).unwrap(),
        authority.primary_address,
    )
    .expect("bind primary");
    let worker_address = authority.worker_addresses[0];
    let (endpoint, inbound) = Endpoint::<WorkerMessage>::bind(
        NetworkConfig::default(),
        &keys.network,
        Peers::workers(committee, 0).unwrap(),
        worker_address,
    )
    .expect("bind worker");
    let clients = ClientListener::bind(worker_address).await.expect("bind client port");
    let validator = Validator::spawn(ValidatorSetup {
        me: AuthorityIndex(node as u16),
        committee: committee.clone(),
        key: keys.bls.clone(),
        parameters: MempoolParameters::default(),
        store: store.clone(),
        primary_network,
        workers: vec![WorkerPlace::Local { endpoint, inbound, clients }],
        executor: None,
        rng_seed: node as u64,
        observer: Some(Arc::new(observer)),
    })
    .expect("start validator");
    (validator, store, worker_address)
}

/// Sends `rate` transactions per second to `address` in bursts every 10 ms until `end`.
async fn client(address: SocketAddr, rate: u64, end: Instant, sent: Arc<AtomicU64>) {
    let mut stream = tokio::net::TcpStream::connect(address).await.expect("connect to worker");
    stream.set_nodelay(true).ok();
    let burst = (rate / 100).max(1) as usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(10));
    let mut counter = 0u64;
    let mut frames = Vec::with_capacity(burst * (TX_SIZE + 4));
    while Instant::now() < end {
        ticker.tick().await;
        frames.clear();
        for _ in 0..burst {
            let mut transaction = [0u8; TX_SIZE];
            transaction[..8].copy_from_slice(&counter.to_le_bytes());
            counter += 1;
            frames.extend_from_slice(&(TX_SIZE as u32).to_le_bytes());
            frames.extend_from_slice(&transaction);
        }
        if stream.write_all(&frames).await.is_err() {
            return;
        }
        sent.fetch_add(burst as u64, Ordering::Relaxed);
    }
}

fn percentile_ms(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let options = options();
    let keys: Vec<_> = (0..NODES as u64).map(ValidatorKeys::from_seed).collect();
    let committee = Committee::local(&keys, options.base_port, 1).expect("local committee");
    let dir = tempfile::tempdir().expect("temporary directory");
    let sealed: SealTimes = Arc::default();
    let commits: Commits = Arc::default();
    let mut validators = Vec::new();
    for (node, key) in keys.iter().enumerate() {
        let observer =
            BenchObserver { sealed: Arc::clone(&sealed), commits: (node == 0).then(|| Arc::clone(&commits)) };
        validators.push(start_validator(node, &committee, key, dir.path(), observer).await);
    }
    println!(
        "mempool + consensus bench: {NODES} validators, {TX_SIZE}-byte transactions, {} tx/s offered, {:?} (warm-up {:?})",
        options.rate, options.duration, options.warmup
    );
    let start = Instant::now();
    let end = start + options.duration;
    let sent = Arc::new(AtomicU64::new(0));
    for (_, _, client_address) in &validators {
        tokio::spawn(client(*client_address, options.rate / NODES as u64, end, Arc::clone(&sent)));
    }
    tokio::time::sleep_until(tokio::time::Instant::from_std(end)).await;

    // Validator 0's commits after the warm-up: which batches, and how long since each was sealed.
    let warmed_up = tokio::time::Instant::from_std(start + options.warmup);
    let deadline = tokio::time::Instant::from_std(end);
    let mut committed_batches = Vec::new();
    let mut consensus_latency_us = Vec::new();
    let mut sub_dags = 0u64;
    let mut last_leader_round = 0;
    for (at, leader_round, batches) in commits.lock().unwrap().iter() {
        last_leader_round = *leader_round;
        if *at < warmed_up || *at > deadline {
            continue;
        }
        sub_dags += 1;
        let sealed = sealed.lock().unwrap();
        for digest in batches {
            committed_batches.push(*digest);
            if let Some(sealed_at) = sealed.get(digest) {
                consensus_latency_us.push(at.duration_since(*sealed_at).as_micros() as u64);
            }
        }
    }
    // Batches of other validators may still be on their way to validator 0: give them a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (first, first_store, _) = &validators[0];
    let window = (options.duration - options.warmup).as_secs_f64();
    let committed: u64 = committed_batches
        .iter()
        .filter_map(|d| first_store.batches.get(d).ok().flatten())
        .map(|b| b.transactions.len() as u64)
        .sum();
    let mut certificate_latency = first.primary.metrics.batch_latencies_us();
    certificate_latency.sort_unstable();
    consensus_latency_us.sort_unstable();
    let metrics = &first.primary.metrics;
    let (syncs, sync_micros) = (metrics.syncs.load(Ordering::Relaxed), metrics.sync_micros.load(Ordering::Relaxed));
    let rounds = metrics.highest_round.load(Ordering::Relaxed).max(1);
    let offered = sent.load(Ordering::Relaxed) as f64 / options.duration.as_secs_f64();
    println!("offered tx/s:               {offered:.0}");
    println!("sub-DAGs committed:         {sub_dags} after warm-up (last leader round {last_leader_round})");
    println!("consensus tx/s:             {:.0}", committed as f64 / window);
    println!(
        "batch-to-certificate (ms):  p50 {:.0}  p95 {:.0}  ({} of validator 0's batches)",
        percentile_ms(&certificate_latency, 0.5),
        percentile_ms(&certificate_latency, 0.95),
        certificate_latency.len()
    );
    println!(
        "consensus latency (ms):     p50 {:.0}  p95 {:.0}  ({} batches, sealed -> committed at validator 0)",
        percentile_ms(&consensus_latency_us, 0.5),
        percentile_ms(&consensus_latency_us, 0.95),
        consensus_latency_us.len()
    );
    println!(
        "disk syncs (validator 0):   {syncs} ({:.1} per round), {:.0} ms in all, {:.2} ms each",
        syncs as f64 / rounds as f64,
        sync_micros as f64 / 1000.0,
        sync_micros as f64 / 1000.0 / syncs.max(1) as f64
    );
}
