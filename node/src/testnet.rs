//! `mako testnet`: a committee of validators and a client, each a separate OS process on loopback
//! (DESIGN.md §7). It writes keys, the committee and one config per validator into a working folder, starts
//! the validators (logs in `logs/`), starts the client once every validator serves its metrics, prints one
//! live line a second read from the validators' Prometheus pages, and stops everything on Ctrl-C or when the
//! client is done. It then opens every validator's store and checks that they executed the same blocks to
//! the same state roots (DESIGN.md §9.4).
//!
//! Figures (DESIGN.md §7): **end-to-end tx/s** counts transactions executed (the mean over validators) and
//! **end-to-end latency** is client send → executed, over sampled transactions, pooled over validators; both
//! over the measurement window, which starts `warmup` after the client does.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use mako_storage::Store;
use mako_types::cpu_time::Component;
use mako_types::HistogramSnapshot;
use tokio::time::{interval, Instant, MissedTickBehavior};

use crate::client::WorkloadKind;
use crate::config::{ValidatorConfig, WorkerLinkConfig};
use crate::metrics::Scrape;
use crate::{cpu, setup};

const LATENCY: &str = "mako_end_to_end_latency_seconds";
const EXECUTED: &str = "mako_executed_transactions";
const ROUND: &str = "mako_primary_round";

#[derive(Clone, Debug)]
pub struct TestnetOptions {
    pub dir: PathBuf,
    pub nodes: usize,
    pub workers: usize,
    pub rate: u64,
    pub duration: Duration,
    pub warmup: Duration,
    pub size: usize,
    pub workload: WorkloadKind,
    pub accounts: u64,
    pub base_port: u16,
    pub metrics_port: u16,
    /// Block-STM threads per validator (0: the machine's cores shared among the validators, at least one).
    pub execution_threads: usize,
    /// Run every worker as its own process, linked to its primary (`mako validator --worker <i>`).
    pub workers_apart: bool,
    /// The committee's protocol parameters (GC depth, leader schedule).
    pub protocol: mako_types::ProtocolParameters,
    /// Print the live line (the bench runs quietly).
    pub live: bool,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct TestnetReport {
    pub nodes: usize,
    pub rate: u64,
    /// Executed transactions per second over the window, mean over validators.
    pub end_to_end_tps: f64,
    pub latency: HistogramSnapshot,
    /// Blocks every validator executed, all to equal roots.
    pub agreed_blocks: u64,
    /// Transactions the least advanced validator executed in all.
    pub executed: u64,
    /// What the client achieved over its run, tx/s (below `rate` when the machine cannot generate that much
    /// beside the validators); none if its log has no summary (it did not finish).
    pub sent_tps: Option<f64>,
    /// µs of CPU per transaction executed over the window (per validator, so a transaction every validator
    /// executes counts once), from `/proc`; none when nothing was executed.
    pub cpu_us_per_tx: CpuPerTransaction,
    /// DAG rounds per second over the window: each round costs every validator the same signatures and
    /// pairings, whatever it carries.
    pub rounds_per_second: f64,
}

/// [`TestnetReport::cpu_us_per_tx`], split into the validators (all of them, workers included) and the client.
#[derive(Clone, Copy, Debug)]
pub struct CpuPerTransaction {
    pub validators: Option<f64>,
    pub client: Option<f64>,
    /// The validators' share, split by component (their own counters, and fjall's threads for storage).
    pub split: Option<CpuSplit>,
}

/// µs of the validators' CPU per executed transaction in each component; `rest` is what no counter covers
/// (the network with its encryption and system calls, consensus, the mempool's logic, the runtime).
#[derive(Clone, Copy, Debug)]
pub struct CpuSplit {
    pub crypto: f64,
    pub storage: f64,
    pub execution: f64,
    pub rest: f64,
}

impl CpuSplit {
    pub fn text(&self) -> String {
        format!(
            "crypto {:.1}, storage {:.1}, execution {:.1}, rest {:.1}",
            self.crypto, self.storage, self.execution, self.rest
        )
    }
}

impl CpuPerTransaction {
    pub fn total(&self) -> Option<f64> {
        Some(self.validators? + self.client?)
    }

    /// `T (validators V + client C)` µs, `-` when unknown.
    pub fn text(&self) -> String {
        match (self.total(), self.validators, self.client) {
            (Some(t), Some(v), Some(c)) => {
                let split = self.split.map_or(String::new(), |s| format!(": {}", s.text()));
                format!("{t:.1} µs (validators {v:.1}{split}; client {c:.1})")
            }
            _ => "-".to_string(),
        }
    }
}

impl TestnetReport {
    /// The client's achieved rate for a report line, `-` when unknown.
    pub fn sent_text(&self) -> String {
        self.sent_tps.map_or("-".to_string(), |tps| format!("{tps:.0}"))
    }
}

/// The client's achieved rate, from the summary line it prints last (`client: sent N transactions in S s (R
/// tx/s)`).
fn client_rate(log: &str) -> Option<f64> {
    let line = log.lines().rev().find(|line| line.starts_with("client: sent "))?;
    line.rsplit_once('(')?.1.strip_suffix(" tx/s)")?.parse().ok()
}

/// The validator and client processes; dropping it interrupts (SIGINT) then kills whatever still runs.
struct Processes(Vec<Process>);

struct Process {
    name: String,
    child: Child,
    /// Its CPU seconds at the last sample, and those of its fjall threads.
    cpu: f64,
    storage_threads: f64,
}

/// CPU seconds the testnet's processes have used so far: validators (with their worker processes) and client.
#[derive(Clone, Copy, Debug, Default)]
struct CpuSpent {
    validators: f64,
    client: f64,
    /// fjall's own threads (flushes, compactions) in the validators' processes.
    storage_threads: f64,
}

impl Processes {
    /// Samples every process's CPU time. A process that has exited keeps its last sample, so the client's
    /// time is not lost when it finishes between two samples (at most one tick of it is).
    fn cpu(&mut self) -> CpuSpent {
        let mut spent = CpuSpent::default();
        for process in &mut self.0 {
            if let Some(now) = cpu::seconds(process.child.id()) {
                process.cpu = process.cpu.max(now);
            }
            if process.name == "client" {
                spent.client += process.cpu;
            } else {
                // Threads that have exited are gone from /proc; fjall's run as long as the store is open.
                if let Some(now) = cpu::threads_seconds(process.child.id(), "fjall") {
                    process.storage_threads = process.storage_threads.max(now);
                }
                spent.validators += process.cpu;
                spent.storage_threads += process.storage_threads;
            }
        }
        spent
    }

    fn spawn(&mut self, name: &str, args: &[&str], log: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let child = Command::new(std::env::current_exe()?)
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.0.push(Process { name: name.to_string(), child, cpu: 0.0, storage_threads: 0.0 });
        Ok(())
    }

    /// The first process that exited, with its status.
    fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.0.iter_mut().find_map(|p| Some((p.name.clone(), p.child.try_wait().ok()??)))
    }

    /// Interrupts every process and waits up to `grace` for them to exit, then kills the rest.
    fn stop(&mut self, grace: Duration) {
        for process in &self.0 {
            let pid = nix::unistd::Pid::from_raw(process.child.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        }
        let deadline = std::time::Instant::now() + grace;
        for Process { child, .. } in &mut self.0 {
            while matches!(child.try_wait(), Ok(None)) && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.0.clear();
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(5));
    }
}

fn path_arg(path: &Path) -> anyhow::Result<&str> {
    path.to_str().with_context(|| format!("{} is not UTF-8", path.display()))
}

/// One validator of the testnet as written by [`prepare`].
struct Prepared {
    config: PathBuf,
    /// The validator process's metrics page.
    metrics: SocketAddr,
    /// The metrics pages of its worker processes (none when the workers run inside the validator).
    worker_metrics: Vec<SocketAddr>,
}

fn loopback(port: usize, what: &str) -> anyhow::Result<SocketAddr> {
    let port = u16::try_from(port).with_context(|| format!("{what} ports past 65535"))?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

/// Removes a previous run's database: a testnet starts from genesis.
fn clear(storage: &Path) -> anyhow::Result<()> {
    if storage.exists() {
        std::fs::remove_dir_all(storage).with_context(|| format!("cannot clear {}", storage.display()))?;
    }
    Ok(())
}

/// Writes keys, committee and configs. The committee takes `nodes * (1 + workers)` ports from `base_port`;
/// worker links (with `workers_apart`) take two each after those; validator `i` serves metrics on
/// `metrics_port + i` and its worker processes after all validators.
fn prepare(options: &TestnetOptions) -> anyhow::Result<Vec<Prepared>> {
    let dir = &options.dir;
    std::fs::create_dir_all(dir.join("logs")).with_context(|| format!("cannot create {}", dir.display()))?;
    let keys = dir.join("keys");
    setup::write_keys(&keys, options.nodes, Some(0))?;
    let committee_file = dir.join("committee.toml");
    setup::write_committee(&keys, &committee_file, &[], options.base_port, options.workers, options.protocol)?;
    let link_ports = options.base_port as usize + options.nodes * (1 + options.workers);
    (0..options.nodes)
        .map(|i| {
            let metrics = loopback(options.metrics_port as usize + i, "metrics")?;
            let mut config = ValidatorConfig {
                storage: dir.join(format!("db-{i}")),
                metrics_address: Some(metrics),
                ..ValidatorConfig::default()
            };
            config.execution.genesis_accounts = options.accounts;
            config.execution.threads = execution_threads(options);
            clear(&config.storage)?;
            let mut worker_metrics = Vec::new();
            if options.workers_apart {
                for w in 0..options.workers {
                    let link = i * options.workers + w;
                    let metrics_address = loopback(options.metrics_port as usize + options.nodes + link, "metrics")?;
                    config.worker_links.push(WorkerLinkConfig {
                        primary: loopback(link_ports + 2 * link, "link")?,
                        worker: loopback(link_ports + 2 * link + 1, "link")?,
                        storage: None,
                        metrics_address: Some(metrics_address),
                    });
                    worker_metrics.push(metrics_address);
                    clear(&config.worker_storage(w))?;
                }
            }
            let path = dir.join(format!("validator-{i}.toml"));
            std::fs::write(&path, config.to_toml()).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(Prepared { config: path, metrics, worker_metrics })
        })
        .collect()
}

/// Threads per validator's executor: the validators share this machine, so by default they share its cores
/// (four validators on two cores each get one, and run the sequential executor).
fn execution_threads(options: &TestnetOptions) -> usize {
    match options.execution_threads {
        0 => {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            (cores / options.nodes.max(1)).max(1)
        }
        n => n,
    }
}

async fn scrape_all(addresses: &[SocketAddr]) -> Vec<Option<Scrape>> {
    let mut scrapes = Vec::with_capacity(addresses.len());
    for address in addresses {
        scrapes.push(Scrape::fetch(*address).await.ok());
    }
    scrapes
}

/// What the validators' metrics pages say, at one moment.
#[derive(Clone, Default)]
struct Totals {
    /// Executed transactions, summed over validators.
    executed: f64,
    /// Latency samples, pooled.
    latency: HistogramSnapshot,
    /// Validators that answered.
    up: usize,
    /// The highest DAG round any of them has seen.
    round: f64,
    /// CPU seconds the validators counted in each component ([`Component::ALL`]'s order), summed.
    cpu: [f64; 3],
}

fn totals(scrapes: &[Option<Scrape>]) -> Totals {
    let mut totals = Totals::default();
    for scrape in scrapes.iter().flatten() {
        totals.executed += scrape.value(EXECUTED);
        totals.latency.merge(&scrape.histogram(LATENCY));
        totals.round = totals.round.max(scrape.value(ROUND));
        for (spent, component) in totals.cpu.iter_mut().zip(Component::ALL) {
            *spent += scrape.value(&format!("mako_cpu_{}_micros", component.name())) / 1e6;
        }
        totals.up += 1;
    }
    totals
}

fn ms(latency: Option<Duration>) -> String {
    latency.map_or("-".to_string(), |l| format!("{} ms", l.as_millis()))
}

pub async fn run(options: &TestnetOptions) -> anyhow::Result<TestnetReport> {
    if options.nodes < 1 {
        bail!("--nodes must be at least 1");
    }
    let validators = prepare(options)?;
    let addresses: Vec<SocketAddr> = validators.iter().map(|v| v.metrics).collect();
    let dir = &options.dir;
    let committee = dir.join("committee.toml");
    let mut processes = Processes(Vec::new());
    for (i, validator) in validators.iter().enumerate() {
        let keys = setup::key_file(&dir.join("keys"), i);
        let args = [
            "validator",
            "--committee",
            path_arg(&committee)?,
            "--keys",
            path_arg(&keys)?,
            "--config",
            path_arg(&validator.config)?,
        ];
        processes.spawn(&format!("validator {i}"), &args, &dir.join(format!("logs/validator-{i}.log")))?;
        for w in 0..validator.worker_metrics.len() {
            let id = w.to_string();
            let args: Vec<&str> = args.iter().copied().chain(["--worker", &id]).collect();
            let log = dir.join(format!("logs/validator-{i}-worker-{w}.log"));
            processes.spawn(&format!("validator {i} worker {w}"), &args, &log)?;
        }
    }

    // Start the client once every process serves metrics (its listeners are bound by then).
    let started = Instant::now();
    let every_page: Vec<SocketAddr> =
        validators.iter().flat_map(|v| std::iter::once(v.metrics).chain(v.worker_metrics.iter().copied())).collect();
    while scrape_all(&every_page).await.iter().any(Option::is_none) {
        if let Some((name, status)) = processes.exited() {
            bail!("{name} exited at start ({status}); see {}", dir.join("logs").display());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("validators did not come up in 30 s; see {}", dir.join("logs").display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let client_args = [
        "client".to_string(),
        "--committee".into(),
        path_arg(&committee)?.into(),
        "--rate".into(),
        options.rate.to_string(),
        "--duration".into(),
        humantime::format_duration(options.duration).to_string(),
        "--size".into(),
        options.size.to_string(),
        "--accounts".into(),
        options.accounts.to_string(),
        "--workload".into(),
        clap::ValueEnum::to_possible_value(&options.workload).expect("no skipped variants").get_name().to_string(),
    ];
    let client_args: Vec<&str> = client_args.iter().map(String::as_str).collect();
    processes.spawn("client", &client_args, &dir.join("logs/client.log"))?;
    let client_started = Instant::now();
    if options.live {
        println!(
            "testnet: {} validators, client at {} tx/s for {}; logs in {}",
            options.nodes,
            options.rate,
            humantime::format_duration(options.duration),
            dir.join("logs").display()
        );
    }

    let mut ticker = interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut last, mut window_start, mut window_end) = (totals(&scrape_all(&addresses).await), None, None);
    let (mut cpu_start, mut cpu_end) = (CpuSpent::default(), CpuSpent::default());
    let mut drained_at: Option<(Instant, f64)> = None;
    let live_line = options.live && std::io::stdout().is_terminal();
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                if options.live { println!("\ntestnet: interrupted"); }
                break;
            }
            _ = ticker.tick() => {}
        }
        let now = totals(&scrape_all(&addresses).await);
        let cpu = processes.cpu();
        let elapsed = client_started.elapsed();
        let up = now.up.max(1) as f64;
        if options.live {
            let recent = now.latency.since(&last.latency);
            let line = format!(
                "t={:>4}s  executed {:>7.0} tx/s  latency p50 {} p95 {}  ({} of {} validators up)",
                elapsed.as_secs(),
                (now.executed - last.executed) / up,
                ms(recent.quantile(0.5)),
                ms(recent.quantile(0.95)),
                now.up,
                options.nodes,
            );
            if live_line {
                print!("\r{line}   ");
            } else {
                println!("{line}");
            }
            use std::io::Write;
            let _ = std::io::stdout().flush();
        }
        if window_start.is_none() && elapsed >= options.warmup.min(options.duration / 2) {
            window_start = Some((Instant::now(), now.clone()));
            cpu_start = cpu;
        }
        if window_end.is_none() && elapsed >= options.duration {
            window_end = Some((Instant::now(), now.clone()));
            cpu_end = cpu;
        }
        // After the client stops, wait until execution drains (no progress for 2 s, at most 15 s).
        if window_end.is_some() {
            match drained_at {
                Some((since, executed)) if executed == now.executed => {
                    if since.elapsed() >= Duration::from_secs(2) {
                        break;
                    }
                }
                _ => drained_at = Some((Instant::now(), now.executed)),
            }
            if elapsed >= options.duration + Duration::from_secs(15) {
                break;
            }
        }
        if let Some((name, status)) = processes.exited().filter(|(name, _)| name != "client") {
            processes.stop(Duration::from_secs(5));
            bail!("{name} exited ({status}); see {}", dir.join("logs").display());
        }
        last = now;
    }
    if live_line {
        println!();
    }
    let final_scrapes = scrape_all(&addresses).await;
    let executed = final_scrapes.iter().flatten().map(|s| s.value(EXECUTED) as u64).min().unwrap_or(0);
    processes.stop(Duration::from_secs(10));

    let (end_to_end_tps, latency, window_executed, rounds_per_second) = match (&window_start, &window_end) {
        (Some((t0, start)), Some((t1, end))) => {
            let seconds = t1.duration_since(*t0).as_secs_f64().max(1e-3);
            let executed = (end.executed - start.executed) / end.up.max(1) as f64;
            let rounds = (end.round - start.round) / seconds;
            (executed / seconds, end.latency.since(&start.latency), executed, rounds)
        }
        _ => (0.0, HistogramSnapshot::default(), 0.0, 0.0),
    };
    let per_transaction = |seconds: f64| (window_executed > 0.0).then(|| seconds * 1e6 / window_executed);
    let validators_us = per_transaction(cpu_end.validators - cpu_start.validators);
    let split = match (&window_start, &window_end, validators_us) {
        (Some((_, start)), Some((_, end)), Some(validators)) => {
            let component = |i: usize| per_transaction(end.cpu[i] - start.cpu[i]).unwrap_or(0.0);
            let storage_threads = per_transaction(cpu_end.storage_threads - cpu_start.storage_threads).unwrap_or(0.0);
            let (crypto, storage, execution) = (component(0), component(1) + storage_threads, component(2));
            Some(CpuSplit { crypto, storage, execution, rest: validators - crypto - storage - execution })
        }
        _ => None,
    };
    let cpu_us_per_tx = CpuPerTransaction {
        validators: validators_us,
        client: per_transaction(cpu_end.client - cpu_start.client),
        split,
    };
    let agreed_blocks = check_agreement(&validators.iter().map(|v| v.config.clone()).collect::<Vec<_>>())?;
    let sent_tps = std::fs::read_to_string(dir.join("logs/client.log")).ok().and_then(|log| client_rate(&log));
    Ok(TestnetReport {
        nodes: options.nodes,
        rate: options.rate,
        end_to_end_tps,
        latency,
        agreed_blocks,
        executed,
        sent_tps,
        cpu_us_per_tx,
        rounds_per_second,
    })
}

/// Opens every validator's store (the processes have exited) and compares the roots of the blocks they all
/// executed. Returns how many that is.
pub fn check_agreement(configs: &[PathBuf]) -> anyhow::Result<u64> {
    let mut stores = Vec::new();
    for config in configs {
        let storage = ValidatorConfig::load(config)?.storage;
        stores.push(Store::open(&storage).with_context(|| format!("cannot open {}", storage.display()))?);
    }
    let mut common = u64::MAX;
    for store in &stores {
        common = common.min(store.state.execution_progress()?.map_or(0, |p| p.last_executed_index));
    }
    for index in 1..=common {
        let mut roots = Vec::new();
        for store in &stores {
            let block = store.state.block(index)?.with_context(|| format!("block {index} missing from a block log"))?;
            roots.push(block.root);
        }
        if roots.iter().any(|root| *root != roots[0]) {
            bail!("state divergence at block {index}: roots {roots:?}");
        }
    }
    Ok(common)
}

/// `mako testnet`'s own output: the live line, then this summary.
pub fn print_summary(report: &TestnetReport) {
    let sent = report.sent_text();
    println!(
        "testnet: client sent {sent} tx/s; end-to-end {:.0} tx/s, latency p50 {} p95 {} ({} samples), CPU per \
         executed transaction {}, {:.1} rounds/s; {} blocks executed by all {} validators with equal state roots ({} \
         transactions)",
        report.end_to_end_tps,
        ms(report.latency.quantile(0.5)),
        ms(report.latency.quantile(0.95)),
        report.latency.count(),
        report.cpu_us_per_tx.text(),
        report.rounds_per_second,
        report.agreed_blocks,
        report.nodes,
        report.executed,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_rate_comes_from_its_last_summary() {
        let log =
            "client: 24000 tx/s sent (24000 in all)\nclient: sent 1054000 transactions in 20.202 s (52173 tx/s)\n";
        assert_eq!(client_rate(log), Some(52173.0));
        assert_eq!(client_rate("client: 24000 tx/s sent (24000 in all)\n"), None);
    }
}
