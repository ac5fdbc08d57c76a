//! The mempool benchmark (issue 3): four validators — a primary and one worker each — in one process, over
//! loopback QUIC, under a client load of 512-byte transactions. Reports **certified tx/s** (transactions in
//! batches referenced by certificates, as seen by validator 0, after a warm-up) and **batch-to-certificate
//! latency** (batch sealed → its author's certificate formed).
//!
//! `cargo bench -p mako-mempool --bench mempool -- --rate 40000 --duration 20`

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mako_mempool::config::MempoolParameters;
use mako_mempool::messages::{PrimaryMessage, WorkerMessage};
use mako_mempool::primary::{Primary, PrimaryHandle};
use mako_mempool::worker::{ClientListener, Worker, WorkerSetup};
use mako_network::{Endpoint, NetworkConfig, Peers};
use mako_storage::Store;
use mako_types::{AuthorityIndex, Committee, ValidatorKeys};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

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

struct Validator {
    primary: PrimaryHandle,
    _worker: Worker,
    store: Store,
    client_address: SocketAddr,
}

async fn start_validator(node: usize, committee: &Committee, keys: &ValidatorKeys, dir: &std::path::Path) -> Validator {
    let authority = committee.authority(AuthorityIndex(node as u16)).expect("node is in the committee");
    let store = Store::open(&dir.join(format!("validator{node}"))).expect("open store");
    let config = NetworkConfig::default;
    let primary_network = Endpoint::<PrimaryMessage>::bind(
        config(),
        &keys.network,
        Peers::primaries(committee).unwrap(),
        authority.primary_address,
    )
    .expect("bind primary");
    let worker_address = authority.worker_addresses[0];
    let (endpoint, inbound) =
        Endpoint::<WorkerMessage>::bind(config(), &keys.network, Peers::workers(committee, 0).unwrap(), worker_address)
            .expect("bind worker");
    let clients = ClientListener::bind(worker_address).await.expect("bind client port");
    let (to_primary, rx_reports) = mpsc::channel(10_000);
    let (tx_to_worker, from_primary) = mpsc::channel(10_000);
    let parameters = MempoolParameters::default();
    let worker = Worker::spawn(WorkerSetup {
        id: 0,
        committee: committee.clone(),
        parameters: parameters.clone(),
        store: store.clone(),
        endpoint,
        inbound,
        clients,
        to_primary,
        from_primary,
    });
    let primary = Primary::spawn(
        AuthorityIndex(node as u16),
        committee.clone(),
        keys.bls.clone(),
        parameters,
        store.clone(),
        primary_network,
        (rx_reports, vec![tx_to_worker]),
        None,
        node as u64,
    )
    .expect("start primary");
    Validator { primary, _worker: worker, store, client_address: worker_address }
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

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index] as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let options = options();
    let keys: Vec<_> = (0..NODES as u64).map(ValidatorKeys::from_seed).collect();
    let committee = Committee::local(&keys, options.base_port, 1).expect("local committee");
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut validators = Vec::new();
    for (node, key) in keys.iter().enumerate() {
        validators.push(start_validator(node, &committee, key, dir.path()).await);
    }
    println!(
        "mempool bench: {NODES} validators, {TX_SIZE}-byte transactions, {} tx/s offered, {:?} (warm-up {:?})",
        options.rate, options.duration, options.warmup
    );
    let start = Instant::now();
    let end = start + options.duration;
    let sent = Arc::new(AtomicU64::new(0));
    for validator in &validators {
        tokio::spawn(client(validator.client_address, options.rate / NODES as u64, end, Arc::clone(&sent)));
    }

    // Validator 0's view: transactions in the batches its certificates reference, after the warm-up.
    let mut certified = 0u64;
    let mut certificates = 0u64;
    let mut referenced = Vec::new();
    let mut highest = 0;
    let mut observers = Vec::new();
    let mut first = validators.remove(0);
    for mut validator in validators {
        observers.push(tokio::spawn(async move {
            while let Some(certificate) = validator.primary.certificates.recv().await {
                let committed = certificate.round().saturating_sub(2);
                validator.primary.committed_round.send_if_modified(|c| std::mem::replace(c, committed.max(*c)) != *c);
            }
            validator
        }));
    }
    let deadline = tokio::time::Instant::from_std(end);
    while let Ok(Some(certificate)) = tokio::time::timeout_at(deadline, first.primary.certificates.recv()).await {
        highest = highest.max(certificate.round());
        let committed = highest.saturating_sub(2);
        first.primary.committed_round.send_if_modified(|c| std::mem::replace(c, committed.max(*c)) != *c);
        if start.elapsed() < options.warmup {
            continue;
        }
        certificates += 1;
        referenced.extend(certificate.header.payload().iter().map(|(digest, _)| *digest));
    }
    // Batches of other validators may still be on their way to validator 0: give them a moment.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut missing = 0;
    for digest in &referenced {
        match first.store.batches.get(digest) {
            Ok(Some(batch)) => certified += batch.transactions.len() as u64,
            _ => missing += 1,
        }
    }
    let window = (options.duration - options.warmup).as_secs_f64();
    let mut latencies = first.primary.metrics.batch_latencies_us();
    latencies.sort_unstable();
    println!("rounds reached:            {highest}");
    println!(
        "certificates (after warm-up, validator 0): {certificates}, referencing {} batches ({missing} not readable)",
        referenced.len()
    );
    println!("offered tx/s:              {:.0}", sent.load(Ordering::Relaxed) as f64 / options.duration.as_secs_f64());
    println!("certified tx/s:            {:.0}", certified as f64 / window);
    println!(
        "batch-to-certificate latency (validator 0's batches, ms): p50 {:.0}  p95 {:.0}  max {:.0}  ({} batches)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 1.0),
        latencies.len()
    );
}
