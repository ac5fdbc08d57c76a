//! A small turmoil harness for mempool scenarios: validators (a primary and, optionally, one worker each) on
//! simulated hosts, their stores on disk under a temporary folder (so a restarted host finds its state), and
//! a shared record of what each validator accepted. Every run is a function of its seed; a failing test
//! prints the seed and the command that replays it. `MAKO_SEED` overrides the seed.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mako_mempool::config::MempoolParameters;
use mako_mempool::messages::{PrimaryMessage, WorkerMessage};
use mako_mempool::primary::{Primary, PrimaryMetrics};
use mako_mempool::worker::{ClientListener, Worker, WorkerSetup};
use mako_network::{Endpoint, NetworkConfig, Peers};
use mako_storage::Store;
use mako_types::{Authority, AuthorityIndex, Certificate, CertificateDigest, Committee, Round, ValidatorKeys};
use tokio::sync::mpsc;

pub const PRIMARY_PORT: u16 = 5000;
pub const WORKER_PORT: u16 = 5001;

pub fn host_name(i: usize) -> String {
    format!("validator{i}")
}

pub fn keys(i: usize) -> ValidatorKeys {
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
        panic!("{test} failed with seed {seed}: {error}\nreplay: MAKO_SEED={seed} cargo test -p mako-mempool --test {test}")
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

/// Fast parameters for simulation: small batches, short delays.
pub fn parameters() -> MempoolParameters {
    MempoolParameters {
        batch_size: 50_000,
        max_batch_delay: Duration::from_millis(50),
        max_header_delay: Duration::from_millis(100),
        gc_depth: 50,
        sync_retry_delay: Duration::from_millis(1_000),
        ..MempoolParameters::default()
    }
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

/// What one validator did, across its lives.
#[derive(Default)]
pub struct NodeRecord {
    /// Certificates in the order the primary delivered them (duplicates after a restart included).
    pub delivered: Vec<Certificate>,
    pub metrics: Option<Arc<PrimaryMetrics>>,
    pub boots: u64,
    /// Largest DAG size (in certificates) the primary held, sampled from the delivered stream.
    pub highest_round: Round,
}

pub type Records = Arc<Mutex<BTreeMap<usize, NodeRecord>>>;

pub fn store_dir(root: &Path, node: usize) -> PathBuf {
    root.join(format!("validator{node}"))
}

/// Runs validator `node` until the simulation ends: opens its store, starts its primary (and worker), records
/// what the primary delivers, and hands the committed round back as `highest round - lag` so that GC runs.
pub async fn run_validator(
    node: usize,
    n: usize,
    seed: u64,
    root: PathBuf,
    with_worker: bool,
    records: Records,
) -> turmoil::Result {
    let committee = committee(n);
    let me = AuthorityIndex(node as u16);
    let store = Store::open(&store_dir(&root, node))?;
    let boot = {
        let mut records = records.lock().unwrap();
        let record = records.entry(node).or_default();
        record.boots += 1;
        record.boots
    };
    let key = keys(node);
    let listen = |port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let primary_network = Endpoint::<PrimaryMessage>::bind_turmoil(
        network_config(seed, node, boot, 0),
        &key.network,
        Peers::primaries(&committee)?,
        listen(PRIMARY_PORT),
    )
    .await?;
    let (tx_reports, rx_reports) = mpsc::channel(1_000);
    let (tx_to_worker, rx_to_worker) = mpsc::channel(1_000);
    let _worker = if with_worker {
        let (endpoint, inbound) = Endpoint::<WorkerMessage>::bind_turmoil(
            network_config(seed, node, boot, 1),
            &key.network,
            Peers::workers(&committee, 0)?,
            listen(WORKER_PORT),
        )
        .await?;
        let clients = ClientListener::bind_turmoil(listen(WORKER_PORT)).await?;
        Some(Worker::spawn(WorkerSetup {
            id: 0,
            committee: committee.clone(),
            parameters: parameters(),
            store: store.clone(),
            endpoint,
            inbound,
            clients,
            to_primary: tx_reports,
            from_primary: rx_to_worker,
        }))
    } else {
        drop(tx_reports);
        None
    };
    let mut handle = Primary::spawn(
        me,
        committee.clone(),
        key.bls.clone(),
        parameters(),
        store,
        primary_network,
        (rx_reports, vec![tx_to_worker]),
        seed ^ node as u64,
    )?;
    records.lock().unwrap().get_mut(&node).expect("inserted above").metrics = Some(Arc::clone(&handle.metrics));
    let lag: Round = 2;
    while let Some(certificate) = handle.certificates.recv().await {
        let round = certificate.round();
        let mut records = records.lock().unwrap();
        let record = records.get_mut(&node).expect("inserted above");
        record.highest_round = record.highest_round.max(round);
        record.delivered.push(certificate);
        let committed = record.highest_round.saturating_sub(lag);
        drop(records);
        handle.committed_round.send_if_modified(|current| {
            let moved = committed > *current;
            if moved {
                *current = committed;
            }
            moved
        });
    }
    Ok(())
}

/// A turmoil simulation with some latency, so that the seed matters.
pub fn simulation<'a>(seed: u64, duration: Duration) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(20))
        .simulation_duration(duration + Duration::from_secs(60))
        .build()
}

/// The digests each node delivered, per (round, author): the DAG it holds.
pub fn delivered_at(records: &Records, node: usize) -> BTreeMap<(Round, AuthorityIndex), CertificateDigest> {
    let records = records.lock().unwrap();
    records[&node].delivered.iter().map(|c| ((c.round(), c.author()), c.digest())).collect()
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

/// The highest round node `node` delivered.
pub fn highest(records: &Records, node: usize) -> Round {
    records.lock().unwrap().get(&node).map_or(0, |r| r.highest_round)
}

/// Registers validators `nodes` (primaries only when `with_worker` is false) as hosts.
pub fn add_validators(
    sim: &mut turmoil::Sim<'_>,
    nodes: impl IntoIterator<Item = usize>,
    n: usize,
    seed: u64,
    root: &Path,
    with_worker: bool,
    records: &Records,
) {
    for node in nodes {
        let (root, records) = (root.to_path_buf(), Arc::clone(records));
        sim.host(host_name(node), move || {
            run_validator(node, n, seed, root.clone(), with_worker, Arc::clone(&records))
        });
    }
}
