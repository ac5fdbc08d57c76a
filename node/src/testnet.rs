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
use crate::faults::{Crash, FaultAction, FaultSchedule};
use crate::metrics::Scrape;
use crate::{cpu, setup};

const LATENCY: &str = "mako_end_to_end_latency_seconds";
const EXECUTED: &str = "mako_executed_transactions";
const ROUND: &str = "mako_primary_round";
const EXECUTED_INDEX: &str = "mako_executed_index";

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
    /// Validators killed (SIGKILL) and restarted during the run ([`crate::faults`]).
    pub crashes: Vec<Crash>,
    /// The last `down` validators are never started.
    pub down: usize,
    /// Latency, jitter, loss and partitions between the validators, through `mako relay` ([`crate::relay`]).
    pub network: EmulatedNetwork,
    /// The validators' `[mempool] min_header_delay`, where not the default.
    pub min_header_delay: Option<Duration>,
}

/// Network conditions between a testnet's validators; all zero: none, and no relay.
#[derive(Clone, Debug, Default)]
pub struct EmulatedNetwork {
    pub latency: Duration,
    pub jitter: Duration,
    pub loss_percent: f64,
    /// Validators cut off from the others (`at` to `restart`, or to the end), counted from the client's start.
    pub partitions: Vec<Crash>,
}

impl EmulatedNetwork {
    pub fn is_active(&self) -> bool {
        !self.latency.is_zero() || !self.jitter.is_zero() || self.loss_percent > 0.0 || !self.partitions.is_empty()
    }

    /// How it reads in a report, e.g. `latency 100 ms ± 20 ms, loss 1%`; empty when inactive.
    pub fn text(&self) -> String {
        let mut parts = Vec::new();
        if !self.latency.is_zero() || !self.jitter.is_zero() {
            parts.push(format!("latency {} ms ± {} ms", self.latency.as_millis(), self.jitter.as_millis()));
        }
        if self.loss_percent > 0.0 {
            parts.push(format!("loss {}%", self.loss_percent));
        }
        for p in &self.partitions {
            let to = p.restart.map_or("the end".to_string(), |r| format!("{} s", r.as_secs_f64()));
            parts.push(format!("validator {} cut off {} s to {to}", p.validator, p.at.as_secs_f64()));
        }
        parts.join(", ")
    }
}

/// The QUIC payload a WAN path carries (a 1,500-byte MTU less the IP and UDP headers and QUIC's margin):
/// what the validators' packets are held to when the relay emulates one on loopback.
const WAN_UDP_PAYLOAD: u16 = 1_452;
/// The QUIC ports of validators behind a relay are the committee's plus this.
const RELAY_PORT_SHIFT: u16 = 10_000;

/// What a run measured.
#[derive(Clone, Debug)]
pub struct TestnetReport {
    pub nodes: usize,
    pub rate: u64,
    /// Executed transactions per second over the window, mean over validators.
    pub end_to_end_tps: f64,
    pub latency: HistogramSnapshot,
    /// Validators started (`nodes` minus those never started).
    pub started: usize,
    /// Blocks every started validator executed, all to equal roots.
    pub agreed_blocks: u64,
    /// Transactions the least advanced validator executed in all (of those no crash touched: a restarted
    /// validator counts from its restart).
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
    /// Each restart of a crashed validator: when (after the client started), and how long until it had
    /// executed as far as the furthest validator had at its restart (none: not by the end of the run).
    pub restarts: Vec<Restart>,
    /// What became of the acknowledged transactions (none if the client wrote no acks file).
    pub delivery: Option<Delivery>,
    /// The QUIC links the validators dialed, at the end of the run.
    pub links: Links,
}

/// The validators' QUIC links, summed over those that answered the last scrape: a link that lost packets or
/// fell back to small ones shows here (`mako_network_packets_lost`, `mako_network_min_path_mtu`).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Links {
    pub packets_sent: u64,
    pub packets_lost: u64,
    /// The smallest path MTU among their live links, bytes (0: none reported).
    pub min_path_mtu: u64,
}

impl Links {
    fn of<'a>(scrapes: impl IntoIterator<Item = &'a Scrape> + Clone) -> Self {
        let sum = |name: &str| scrapes.clone().into_iter().map(|scrape| scrape.value(name) as u64).sum();
        let mtus = scrapes.clone().into_iter().map(|scrape| scrape.value("mako_network_min_path_mtu") as u64);
        Self {
            packets_sent: sum("mako_network_packets_sent"),
            packets_lost: sum("mako_network_packets_lost"),
            min_path_mtu: mtus.filter(|&mtu| mtu > 0).min().unwrap_or(0),
        }
    }
}

/// Acknowledged transactions, how many of them were executed, and how many were lost.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delivery {
    pub acknowledged: u64,
    pub executed: u64,
    pub lost: u64,
}

#[derive(Clone, Copy, Debug)]
pub struct Restart {
    pub validator: usize,
    pub at: Duration,
    /// The executed index it had to reach.
    pub target: u64,
    pub caught_up_after: Option<Duration>,
}

/// [`TestnetReport::cpu_us_per_tx`], split into the validators (all of them, workers included) and the client.
#[derive(Clone, Copy, Debug)]
pub struct CpuPerTransaction {
    pub validators: Option<f64>,
    pub client: Option<f64>,
    /// The emulated network's relay (not part of the total: the system under test does not pay it).
    pub relay: Option<f64>,
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
                let relay = self.relay.map_or(String::new(), |r| format!("; and the network relay {r:.1}"));
                format!("{t:.1} µs (validators {v:.1}{split}; client {c:.1}{relay})")
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

/// What a process of the testnet is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Validator `i`'s, or one of its workers'.
    Validator(usize),
    Client,
    Relay,
}

struct Process {
    name: String,
    role: Role,
    args: Vec<String>,
    log: PathBuf,
    child: Child,
    /// Killed on purpose (a crash fault): its exit is not a failure.
    killed: bool,
    /// Its CPU seconds, and those of its fjall threads.
    cpu: Seconds,
    storage_threads: Seconds,
}

/// CPU seconds of a process over its incarnations: the last sample of the running one (a sample never goes
/// back, so the time of a process that exits between two samples is kept), plus the earlier ones' (a crash
/// fault restarts it from zero).
#[derive(Clone, Copy, Default)]
struct Seconds {
    now: f64,
    earlier: f64,
}

impl Seconds {
    fn total(&self) -> f64 {
        self.now + self.earlier
    }

    fn restarted(&mut self) {
        *self = Seconds { now: 0.0, earlier: self.total() };
    }
}

/// Starts `mako` with `args`, its output into `log`.
fn start(name: &str, args: &[String], log: std::fs::File) -> anyhow::Result<Child> {
    Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {name}"))
}

/// CPU seconds the testnet's processes have used so far: validators (with their worker processes) and client.
#[derive(Clone, Copy, Debug, Default)]
struct CpuSpent {
    validators: f64,
    client: f64,
    relay: f64,
    /// fjall's own threads (flushes, compactions) in the validators' processes.
    storage_threads: f64,
}

impl Processes {
    /// Samples every process's CPU time. A process that has exited keeps its last sample, so the client's
    /// time is not lost when it finishes between two samples (at most one tick of it is).
    fn cpu(&mut self) -> CpuSpent {
        let mut spent = CpuSpent::default();
        for process in &mut self.0 {
            let validator = matches!(process.role, Role::Validator(_));
            if !process.killed {
                let pid = process.child.id();
                if let Some(now) = cpu::seconds(pid) {
                    process.cpu.now = process.cpu.now.max(now);
                }
                // Threads that have exited are gone from /proc; fjall's run as long as the store is open.
                if let Some(now) = cpu::threads_seconds(pid, "fjall").filter(|_| validator) {
                    process.storage_threads.now = process.storage_threads.now.max(now);
                }
            }
            match process.role {
                Role::Client => spent.client += process.cpu.total(),
                Role::Relay => spent.relay += process.cpu.total(),
                Role::Validator(_) => {
                    spent.validators += process.cpu.total();
                    spent.storage_threads += process.storage_threads.total();
                }
            }
        }
        spent
    }

    fn spawn(&mut self, name: &str, role: Role, args: &[&str], log: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let child = start(name, &args, file)?;
        self.0.push(Process {
            name: name.to_string(),
            role,
            args,
            log: log.to_path_buf(),
            child,
            killed: false,
            cpu: Seconds::default(),
            storage_threads: Seconds::default(),
        });
        Ok(())
    }

    /// SIGKILLs every process of `validator`: a crash, with whatever its store had not synced.
    fn kill(&mut self, validator: usize) {
        for process in self.0.iter_mut().filter(|p| p.role == Role::Validator(validator) && !p.killed) {
            let _ = process.child.kill();
            let _ = process.child.wait();
            process.killed = true;
        }
    }

    /// Starts the killed processes of `validator` again with the same arguments, on the same store; their
    /// logs go on in the same files.
    fn restart(&mut self, validator: usize) -> anyhow::Result<()> {
        for process in self.0.iter_mut().filter(|p| p.role == Role::Validator(validator) && p.killed) {
            let log = std::fs::File::options()
                .append(true)
                .open(&process.log)
                .with_context(|| format!("cannot open {}", process.log.display()))?;
            process.child = start(&process.name, &process.args, log)?;
            process.killed = false;
            process.cpu.restarted();
            process.storage_threads.restarted();
        }
        Ok(())
    }

    /// The client's exit status, if it has exited.
    fn client_status(&mut self) -> Option<std::process::ExitStatus> {
        let client = self.0.iter_mut().find(|p| p.role == Role::Client)?;
        client.child.try_wait().ok()?
    }

    /// The first process that exited without being killed on purpose, with its status.
    fn exited(&mut self) -> Option<(String, std::process::ExitStatus)> {
        self.0.iter_mut().filter(|p| !p.killed).find_map(|p| Some((p.name.clone(), p.child.try_wait().ok()??)))
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

/// Writes the relay's configuration (every QUIC endpoint of the committee, at its shifted port) and starts it.
/// Returns the file whose creation starts the partitions' clock (the client's start).
fn start_relay(options: &TestnetOptions, committee: &Path, processes: &mut Processes) -> anyhow::Result<PathBuf> {
    let committee = mako_types::Committee::load(committee)?;
    let mut ports = Vec::new();
    for (index, authority) in committee.authorities() {
        for listen in std::iter::once(authority.primary_address).chain(authority.worker_addresses.iter().copied()) {
            let real = SocketAddr::new(listen.ip(), listen.port() + RELAY_PORT_SHIFT);
            ports.push(crate::relay::RelayedPort { validator: index.as_usize(), listen, real });
        }
    }
    let network = &options.network;
    let start_file = options.dir.join("relay.start");
    let _ = std::fs::remove_file(&start_file);
    let config = crate::relay::RelayConfig {
        latency_ms: network.latency.as_secs_f64() * 1e3,
        jitter_ms: network.jitter.as_secs_f64() * 1e3,
        loss: network.loss_percent / 100.0,
        partitions: network
            .partitions
            .iter()
            .map(|p| crate::relay::Partition {
                validator: p.validator,
                from_s: p.at.as_secs_f64(),
                to_s: p.restart.map_or(f64::INFINITY, |r| r.as_secs_f64()),
            })
            .collect(),
        start_file: Some(start_file.clone()),
        ports,
    };
    let path = options.dir.join("relay.toml");
    std::fs::write(&path, toml::to_string(&config)?).with_context(|| format!("cannot write {}", path.display()))?;
    let args = ["relay", "--config", path.to_str().context("a non-UTF-8 path")?];
    processes.spawn("relay", Role::Relay, &args, &options.dir.join("logs/relay.log"))?;
    Ok(start_file)
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
            if let Some(delay) = options.min_header_delay {
                config.mempool.min_header_delay = delay;
            }
            if options.network.is_active() {
                config.quic_port_shift = RELAY_PORT_SHIFT;
                config.max_udp_payload = WAN_UDP_PAYLOAD;
            }
            config.execution.threads = execution_threads(options);
            config.runtime_threads = cores_per_validator(options.nodes);
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
        0 => cores_per_validator(options.nodes),
        n => n,
    }
}

/// Each validator's share of this machine's cores, at least one: what its async runtime and its executor
/// each get. Two runtime threads per validator on a 2-core machine shared by four only added thread switches
/// and wake-ups: one thread each spent 4% less CPU per transaction at 50k and 100k tx/s, at a lower p50.
fn cores_per_validator(nodes: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (cores / nodes.max(1)).max(1)
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
    /// Each validator's executed transactions and executed index; none if it did not answer.
    executed_each: Vec<Option<f64>>,
    index: Vec<Option<f64>>,
}

impl Totals {
    /// Transactions executed between `self` and `end`, per validator, over those of `validators` that
    /// answered at both moments (all that did, if none of those did).
    fn mean_executed_since(&self, end: &Totals, validators: &[usize]) -> f64 {
        let delta = |v: usize| Some(end.executed_each.get(v).copied()?? - self.executed_each.get(v).copied()??);
        let mut deltas: Vec<f64> = validators.iter().filter_map(|v| delta(*v)).collect();
        if deltas.is_empty() {
            deltas = (0..end.executed_each.len()).filter_map(delta).collect();
        }
        deltas.iter().sum::<f64>() / deltas.len().max(1) as f64
    }
}

fn totals(scrapes: &[Option<Scrape>]) -> Totals {
    let each = |name: &str| scrapes.iter().map(|s| s.as_ref().map(|s| s.value(name))).collect();
    let mut totals = Totals { executed_each: each(EXECUTED), index: each(EXECUTED_INDEX), ..Totals::default() };
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
    let mut schedule = FaultSchedule::new(&options.crashes, options.nodes, options.down).map_err(anyhow::Error::msg)?;
    let started_validators = options.nodes - options.down;
    let tolerated = (options.nodes - 1) / 3;
    if schedule.most_down_at_once(options.down) > tolerated {
        println!(
            "testnet: warning: up to {} of {} validators down at once, more than the {tolerated} the committee \
             tolerates: nothing commits while they are",
            schedule.most_down_at_once(options.down),
            options.nodes
        );
    }
    let validators = prepare(options)?;
    let addresses: Vec<SocketAddr> = validators.iter().map(|v| v.metrics).collect();
    let dir = &options.dir;
    let committee = dir.join("committee.toml");
    let mut processes = Processes(Vec::new());
    let relay_start = match options.network.is_active() {
        true => Some(start_relay(options, &committee, &mut processes)?),
        false => None,
    };
    for (i, validator) in validators.iter().enumerate().take(started_validators) {
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
        processes.spawn(
            &format!("validator {i}"),
            Role::Validator(i),
            &args,
            &dir.join(format!("logs/validator-{i}.log")),
        )?;
        for w in 0..validator.worker_metrics.len() {
            let id = w.to_string();
            let args: Vec<&str> = args.iter().copied().chain(["--worker", &id]).collect();
            let log = dir.join(format!("logs/validator-{i}-worker-{w}.log"));
            processes.spawn(&format!("validator {i} worker {w}"), Role::Validator(i), &args, &log)?;
        }
    }

    // Start the client once every process serves metrics (its listeners are bound by then).
    let started = Instant::now();
    let every_page: Vec<SocketAddr> = validators
        .iter()
        .take(started_validators)
        .flat_map(|v| std::iter::once(v.metrics).chain(v.worker_metrics.iter().copied()))
        .collect();
    while scrape_all(&every_page).await.iter().any(Option::is_none) {
        if let Some((name, status)) = processes.exited() {
            bail!("{name} exited at start ({status}); see {}", dir.join("logs").display());
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("validators did not come up in 30 s; see {}", dir.join("logs").display());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let acks_file = dir.join("acks.txt");
    let _ = std::fs::remove_file(&acks_file);
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
        "--acks-file".into(),
        path_arg(&acks_file)?.into(),
    ];
    let client_args: Vec<&str> = client_args.iter().map(String::as_str).collect();
    if let Some(start_file) = &relay_start {
        std::fs::write(start_file, b"").with_context(|| format!("cannot write {}", start_file.display()))?;
    }
    processes.spawn("client", Role::Client, &client_args, &dir.join("logs/client.log"))?;
    let client_started = Instant::now();
    if options.live {
        println!(
            "testnet: {} validators{}, client at {} tx/s for {}{}; logs in {}",
            options.nodes,
            if options.down > 0 { format!(" ({} never started)", options.down) } else { String::new() },
            options.rate,
            humantime::format_duration(options.duration),
            match options.network.is_active() {
                true => format!("; emulated network (relay): {}", options.network.text()),
                false => String::new(),
            },
            dir.join("logs").display()
        );
    }

    let mut ticker = interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let (mut last, mut window_start, mut window_end) = (totals(&scrape_all(&addresses).await), None, None);
    let (mut cpu_start, mut cpu_end) = (CpuSpent::default(), CpuSpent::default());
    let mut drained_at: Option<(Instant, f64)> = None;
    let mut restarts: Vec<Restart> = Vec::new();
    let live_line = options.live && std::io::stdout().is_terminal();
    loop {
        tokio::select! {
            biased;
            _ = tokio::signal::ctrl_c() => {
                if options.live { println!("\ntestnet: interrupted"); }
                break;
            }
            _ = ticker.tick() => {}
        }
        let elapsed = client_started.elapsed();
        for action in schedule.due(elapsed) {
            let v = action.validator();
            match action {
                FaultAction::Kill(_) => processes.kill(v),
                FaultAction::Restart(_) => {
                    processes.restart(v)?;
                    let furthest = last.index.iter().flatten().fold(0.0, |a: f64, b| a.max(*b)) as u64;
                    restarts.push(Restart { validator: v, at: elapsed, target: furthest, caught_up_after: None });
                }
            }
            if options.live {
                let what = if matches!(action, FaultAction::Kill(_)) { "killed (SIGKILL)" } else { "restarted" };
                println!("t={:>4}s  validator {v} {what}", elapsed.as_secs());
            }
        }
        let now = totals(&scrape_all(&addresses).await);
        let cpu = processes.cpu();
        for restart in restarts.iter_mut().filter(|r| r.caught_up_after.is_none()) {
            if now.index[restart.validator].is_some_and(|index| index as u64 >= restart.target) {
                restart.caught_up_after = Some(elapsed.saturating_sub(restart.at));
            }
        }
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
        // After the client stops sending, wait until it has its last acknowledgements and exited, and execution
        // drained (no progress for 2 s); at most 30 s.
        if window_end.is_some() {
            let client_done = processes.client_status().is_some();
            match drained_at {
                Some((since, executed)) if executed == now.executed => {
                    if since.elapsed() >= Duration::from_secs(2) && client_done {
                        break;
                    }
                }
                _ => drained_at = Some((Instant::now(), now.executed)),
            }
            if elapsed >= options.duration + Duration::from_secs(30) {
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
    // Throughput is what the validators no fault touched executed (a crashed one's counters restart from zero
    // and miss its time down); with every validator touched, those that answered at both ends.
    let steady: Vec<usize> = (0..started_validators).filter(|v| !schedule.touches(*v)).collect();
    if let Some(status) = processes.client_status().filter(|status| !status.success()) {
        processes.stop(Duration::from_secs(5));
        bail!("the client exited with {status}; see {}", dir.join("logs/client.log").display());
    }
    let final_scrapes = scrape_all(&addresses).await;
    let executed_by = |v: &usize| Some(final_scrapes.get(*v)?.as_ref()?.value(EXECUTED) as u64);
    let executed = steady.iter().filter_map(executed_by).min().unwrap_or(0);
    let links = Links::of(final_scrapes.iter().flatten());
    processes.stop(Duration::from_secs(10));
    let (end_to_end_tps, latency, window_executed, rounds_per_second) = match (&window_start, &window_end) {
        (Some((t0, start)), Some((t1, end))) => {
            let seconds = t1.duration_since(*t0).as_secs_f64().max(1e-3);
            let executed = start.mean_executed_since(end, &steady);
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
        relay: options.network.is_active().then(|| per_transaction(cpu_end.relay - cpu_start.relay)).flatten(),
        split,
    };
    let started_configs: Vec<PathBuf> = validators.iter().take(started_validators).map(|v| v.config.clone()).collect();
    let agreed_blocks = check_agreement(&started_configs)?;
    // Checked against the first validator that no crash touched (validator 0 if every one was).
    let judge = steady.first().copied().unwrap_or(0);
    let delivery = match std::fs::read_to_string(&acks_file) {
        Ok(acks) => {
            let storage = ValidatorConfig::load(&validators[judge].config)?.storage;
            let store = Store::open(&storage).with_context(|| format!("cannot open {}", storage.display()))?;
            Some(delivery(&acks, &store)?)
        }
        Err(_) => None,
    };
    let sent_tps = std::fs::read_to_string(dir.join("logs/client.log")).ok().and_then(|log| client_rate(&log));
    Ok(TestnetReport {
        nodes: options.nodes,
        started: started_validators,
        rate: options.rate,
        end_to_end_tps,
        latency,
        agreed_blocks,
        executed,
        sent_tps,
        cpu_us_per_tx,
        rounds_per_second,
        restarts,
        delivery,
        links,
    })
}

/// What became of the transactions workers acknowledged to the client ([`crate::client`]'s acks file): how
/// many, and how many of them the validator with this store executed. An acknowledged batch never executed is
/// lost.
fn delivery(acks: &str, store: &Store) -> anyhow::Result<Delivery> {
    let mut acknowledged: std::collections::HashMap<[u8; 32], u64> = std::collections::HashMap::new();
    for line in acks.lines().filter(|l| !l.trim().is_empty()) {
        let parsed = line.split_once(' ').and_then(|(digest, count)| {
            let digest: [u8; 32] = hex::decode(digest).ok()?.try_into().ok()?;
            Some((digest, count.trim().parse::<u64>().ok()?))
        });
        let (digest, count) = parsed.with_context(|| format!("malformed line in the acks file: {line:?}"))?;
        *acknowledged.entry(digest).or_default() += count;
    }
    let executed_index = store.state.execution_progress()?.map_or(0, |p| p.last_executed_index);
    let mut executed = 0;
    let total: u64 = acknowledged.values().sum();
    for index in 1..=executed_index {
        let sub_dag = store.state.sub_dag(index)?.with_context(|| format!("sub-DAG {index} missing"))?;
        for (digest, _, _) in &sub_dag.batches {
            // A batch is executed once even if two certificates carry it.
            executed += acknowledged.remove(&digest.0 .0).unwrap_or(0);
        }
    }
    Ok(Delivery { acknowledged: total, executed, lost: total - executed })
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
    let mut checkpoints = Vec::new();
    for store in &stores {
        checkpoints.push(store.state.checkpoint()?.map_or(0, |c| c.index));
    }
    for index in 1..=common {
        let mut roots = Vec::new();
        for (store, checkpoint) in stores.iter().zip(&checkpoints) {
            match store.state.block(index)? {
                Some(block) => roots.push(block.root),
                // A validator that state-synced has no log between its last life and its checkpoint.
                None if index < *checkpoint => {}
                None => bail!("block {index} missing from a block log"),
            }
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
        report.started,
        report.executed,
    );
    if let Some(d) = report.delivery {
        println!("testnet: acknowledged {}, executed {}, lost {}", d.acknowledged, d.executed, d.lost);
    }
    let links = report.links;
    println!(
        "testnet: QUIC packets lost {} of {} sent, smallest path MTU {} bytes",
        links.packets_lost, links.packets_sent, links.min_path_mtu
    );
    for line in restart_lines(report) {
        println!("{line}");
    }
}

/// The restarts of crashed validators, a line each.
pub fn restart_lines(report: &TestnetReport) -> Vec<String> {
    report
        .restarts
        .iter()
        .map(|r| {
            let caught_up = match r.caught_up_after {
                Some(after) => format!("caught up in {:.1} s", after.as_secs_f64()),
                None => "had not caught up by the end".to_string(),
            };
            format!(
                "testnet: validator {} restarted at t={:.1} s, {caught_up} (executed index {}, the furthest at its \
                 restart)",
                r.validator,
                r.at.as_secs_f64(),
                r.target
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two batches acknowledged; the validator executed one (in a sub-DAG it executed) and committed the other
    /// only in a sub-DAG it has not executed: that one's transactions are lost, as far as this run knows.
    #[test]
    fn acknowledged_batches_not_executed_are_lost() {
        use mako_storage::{Durability, ExecutionProgress, SubDagRecord};
        use mako_types::{AuthorityIndex, BatchDigest, CertificateDigest, Digest};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let batch = |byte: u8| BatchDigest(Digest([byte; 32]));
        let mut writes = store.write_set();
        for (index, byte) in [(1, 7u8), (2, 8)] {
            let batches = vec![(batch(byte), 0, AuthorityIndex(0))];
            let leader = CertificateDigest(Digest([index as u8; 32]));
            writes.put_sub_dag(&SubDagRecord { index, leader, certificates: vec![leader], batches });
        }
        writes.put_execution_progress(&ExecutionProgress { last_executed_index: 1, state_root: Digest([0; 32]) });
        writes.commit(Durability::Synced).unwrap();
        let acks = format!("{} 40\n{} 2\n", hex::encode([7u8; 32]), hex::encode([8u8; 32]));
        let outcome = delivery(&acks, &store).unwrap();
        assert_eq!(outcome, Delivery { acknowledged: 42, executed: 40, lost: 2 });
        assert!(delivery("not a digest 3\n", &store).is_err(), "a malformed acks file is an error");
    }

    #[test]
    fn the_client_rate_comes_from_its_last_summary() {
        let log =
            "client: 24000 tx/s sent (24000 in all)\nclient: sent 1054000 transactions in 20.202 s (52173 tx/s)\n";
        assert_eq!(client_rate(log), Some(52173.0));
        assert_eq!(client_rate("client: 24000 tx/s sent (24000 in all)\n"), None);
    }
}
