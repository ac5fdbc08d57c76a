//! `mako`: the command-line front of a mako validator (DESIGN.md §7).
//!
//! `mako keys` writes validator key files, `mako committee` the committee file that lists every validator's
//! keys, proof of possession and addresses, `mako config` a validator configuration with the defaults of
//! DESIGN.md §8, `mako validator` runs one validator and `mako client` loads a committee with transactions.
//! `mako testnet` runs all of it as processes on loopback with a live throughput and latency line, and
//! `mako bench` sweeps rates over such testnets into a CSV, a table and a plot.

mod bench;
mod client;
mod config;
mod cpu;
mod faults;
mod metrics;
mod relay;
mod setup;
mod testnet;
mod validator;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use mako_types::{ProtocolParameters, ScheduleKind};

#[derive(Parser)]
#[command(name = "mako", version, about = "A DAG-mempool consensus and parallel execution research core")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate key files (BLS signing key and network key) for a committee's validators.
    Keys {
        /// Folder to write `validator-<i>.toml` key files into.
        #[arg(long)]
        out: PathBuf,
        /// How many validators.
        #[arg(long, default_value_t = 4)]
        nodes: usize,
        /// Derive the keys from this seed (reproducible testnets); by default they come from OS randomness.
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Write the committee file for the validators whose key files are in a folder.
    Committee {
        /// Folder of `validator-<i>.toml` key files (from `mako keys`).
        #[arg(long)]
        keys: PathBuf,
        /// Where to write the committee file.
        #[arg(long)]
        out: PathBuf,
        /// One host (IP address) per validator, comma-separated; by default all on 127.0.0.1.
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<std::net::IpAddr>,
        /// First port: a validator's primary listens on it and its workers on the ports that follow (on
        /// loopback, each validator gets its own range).
        #[arg(long, default_value_t = 7000)]
        base_port: u16,
        /// Workers per validator.
        #[arg(long, default_value_t = 1)]
        workers: usize,
        #[command(flatten)]
        protocol: ProtocolArgs,
    },
    /// Run a validator: its primary, workers, consensus and execution (logs: RUST_LOG, default info). With
    /// `[[worker_links]]` in its config the workers run apart: run each with `--worker <i>`.
    Validator {
        /// The committee file (from `mako committee`).
        #[arg(long)]
        committee: PathBuf,
        /// This validator's key file (from `mako keys`).
        #[arg(long)]
        keys: PathBuf,
        /// The validator configuration; every parameter at its default when absent.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Run only this worker of the validator, linked to its primary by the config's `worker_links`.
        #[arg(long)]
        worker: Option<u32>,
        /// `text` (colours only on a terminal) or `json` (one object a line, for tools).
        #[arg(long, value_enum, default_value_t = LogFormat::Text)]
        log_format: LogFormat,
    },
    /// Relay the validators' QUIC traffic with emulated latency, jitter, loss and partitions (`mako testnet`
    /// starts one when asked for network conditions).
    Relay {
        /// The relay's configuration, written by `mako testnet`.
        #[arg(long)]
        config: PathBuf,
    },
    /// Send transfers between genesis accounts to every worker of a committee at a fixed rate.
    Client {
        /// The committee file.
        #[arg(long, required_unless_present = "to_sinks")]
        committee: Option<PathBuf>,
        /// Instead of a committee, send to this many local sinks that discard what they read: what the client
        /// alone can offer, and its CPU per transaction.
        #[arg(long, conflicts_with = "committee")]
        to_sinks: Option<usize>,
        /// Write each acknowledged batch here, one `digest-hex count` line each.
        #[arg(long)]
        acks_file: Option<PathBuf>,
        /// Transactions per second, in all.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
        /// How long to send, e.g. 30s or 2m.
        #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
        duration: std::time::Duration,
        /// Genesis accounts to draw senders and receivers from (must match the validators' genesis).
        #[arg(long, default_value_t = 100_000)]
        accounts: u64,
        /// Seed of the generated transactions.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Bytes per transaction (padded with a memo).
        #[arg(long, default_value_t = 512)]
        size: usize,
        /// One transaction in this many carries its send time, for end-to-end latency.
        #[arg(long, default_value_t = 100)]
        sample_every: u64,
        /// What to send.
        #[arg(long, value_enum, default_value = "transfers")]
        workload: client::WorkloadKind,
    },
    /// Run a local testnet: validators and a client as separate processes on loopback, with a live
    /// throughput and latency line; checks at the end that every validator executed to equal state roots.
    Testnet {
        #[command(flatten)]
        testnet: TestnetArgs,
    },
    /// Sweep offered rates (and committee sizes) over local testnets; writes a CSV, a markdown table and a
    /// throughput-latency PNG plot.
    Bench {
        /// Offered rates, tx/s, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "25000,50000,75000,100000")]
        rates: Vec<u64>,
        /// Committee sizes, comma-separated (overrides --nodes).
        #[arg(long = "sizes", value_delimiter = ',', default_value = "4")]
        sizes: Vec<usize>,
        /// Leader schedules, comma-separated: round-robin, reputation (overrides --leader-schedule).
        #[arg(long, value_delimiter = ',', default_value = "round-robin", value_parser = parse_schedule)]
        schedules: Vec<ScheduleKind>,
        /// Validators never started, comma-separated counts or f (the most the committee tolerates); overrides
        /// --down.
        #[arg(long = "down-sweep", value_delimiter = ',', default_value = "0")]
        down_sweep: Vec<mako_report::Down>,
        /// Emulated one-way latencies between validators, comma-separated (e.g. 0ms,25ms,50ms), each through the
        /// relay with the testnet's --jitter and --loss; overrides --latency.
        #[arg(long, value_delimiter = ',', value_parser = humantime::parse_duration)]
        latencies: Vec<std::time::Duration>,
        /// After each committee size's sweep, offer these multiples of its peak executed rate (what it keeps
        /// executing past saturation); `--overload` with no value for none.
        #[arg(long, value_delimiter = ',', num_args = 0.., default_value = "1.5,3")]
        overload: Vec<f64>,
        /// Where to write the report (each run's testnet folder goes under it).
        #[arg(long, default_value = "bench")]
        out: PathBuf,
        #[command(flatten)]
        testnet: TestnetArgs,
    },
    /// Write a validator configuration file with every parameter at its default, or check one.
    Config {
        /// Write the default configuration here.
        #[arg(long, conflicts_with = "check")]
        out: Option<PathBuf>,
        /// Check this configuration file and print it with the defaults filled in.
        #[arg(long)]
        check: Option<PathBuf>,
    },
}

#[derive(clap::Args, Clone)]
struct TestnetArgs {
    /// Validators.
    #[arg(long, default_value_t = 4)]
    nodes: usize,
    /// Workers per validator.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Client transactions per second, in all (25k is below what 4 validators sustain on 2 cores).
    #[arg(long, default_value_t = 25_000)]
    rate: u64,
    /// How long the client sends (the testnet then waits for execution to drain), e.g. 30s.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    duration: std::time::Duration,
    /// Measurement starts this long after the client (at most half of --duration).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    warmup: std::time::Duration,
    /// Bytes per transaction.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// What the client sends.
    #[arg(long, value_enum, default_value = "transfers")]
    workload: client::WorkloadKind,
    /// Genesis accounts (the client draws senders and receivers from them).
    #[arg(long, default_value_t = 100_000)]
    accounts: u64,
    /// Working folder: keys, committee, configs, databases and logs. Databases are cleared at start.
    #[arg(long, default_value = "testnet")]
    dir: PathBuf,
    /// First committee port (each validator takes 1 + workers ports from here).
    #[arg(long, default_value_t = 7000)]
    base_port: u16,
    /// Validator i serves Prometheus metrics on 127.0.0.1:(metrics-port + i).
    #[arg(long, default_value_t = 9100)]
    metrics_port: u16,
    /// Block-STM threads per validator (0: the machine's cores shared among the validators, at least one;
    /// one thread runs the sequential executor).
    #[arg(long, default_value_t = 0)]
    execution_threads: usize,
    /// Run each worker as its own process (`mako validator --worker <i>`), linked to its primary over QUIC.
    #[arg(long)]
    workers_apart: bool,
    /// Crash faults, comma-separated or repeated: V@T kills validator V's processes with SIGKILL T after the
    /// client starts, V@T-R also restarts them at R on the store they left (e.g. 2@15s-25s).
    #[arg(long = "crash", value_delimiter = ',')]
    crashes: Vec<faults::Crash>,
    /// Never start the last N validators (the committee still counts them), as the Narwhal benchmark's faults.
    #[arg(long, default_value_t = 0)]
    down: usize,
    /// Emulated one-way latency on every validator-to-validator path, through a userspace relay (`mako
    /// relay`), e.g. 100ms; the relay runs when any of --latency, --jitter, --loss or --partition is given.
    #[arg(long, value_parser = humantime::parse_duration)]
    latency: Option<std::time::Duration>,
    /// Up to this much more or less latency per datagram, uniformly (datagrams may reorder), e.g. 20ms.
    #[arg(long, value_parser = humantime::parse_duration)]
    jitter: Option<std::time::Duration>,
    /// Share of datagrams the relay drops, in percent, e.g. 1.
    #[arg(long)]
    loss: Option<f64>,
    /// Validator V cut off from every other one from T to R after the client starts (V@T-R, e.g. 2@30s-40s),
    /// comma-separated or repeated; V@T cuts it off to the end.
    #[arg(long = "partition", value_delimiter = ',')]
    partitions: Vec<faults::Crash>,
    /// Each primary proposes its headers at least this far apart (the validators' `[mempool]
    /// min_header_delay`, 120ms unless given): longer rounds carry more batches each, which spreads the
    /// per-round cost (signatures, certificates, messages) over more transactions, for some latency.
    #[arg(long, value_parser = humantime::parse_duration)]
    min_header_delay: Option<std::time::Duration>,
    #[command(flatten)]
    protocol: ProtocolArgs,
}

/// The committee's protocol parameters (DESIGN.md §4), written into the committee file's `[protocol]`.
#[derive(clap::Args, Clone)]
struct ProtocolArgs {
    /// Rounds kept below the last committed leader (the GC round trails it by this much).
    #[arg(long, default_value_t = ProtocolParameters::default().gc_depth)]
    gc_depth: u64,
    /// Leader schedule: round-robin or reputation.
    #[arg(long, default_value = "round-robin", value_parser = parse_schedule)]
    leader_schedule: ScheduleKind,
    /// Commits between two updates of the reputation schedule's table.
    #[arg(long, default_value_t = ProtocolParameters::default().reputation_window)]
    reputation_window: u64,
    /// Sub-DAGs between two checkpoints (state sync fetches the latest; each validator deletes what its
    /// previous one covers); 0 never checkpoints and keeps everything.
    #[arg(long, default_value_t = ProtocolParameters::default().checkpoint_interval)]
    checkpoint_interval: u64,
}

impl ProtocolArgs {
    fn parameters(&self) -> ProtocolParameters {
        ProtocolParameters {
            gc_depth: self.gc_depth,
            leader_schedule: self.leader_schedule,
            reputation_window: self.reputation_window,
            checkpoint_interval: self.checkpoint_interval,
        }
    }
}

fn parse_schedule(text: &str) -> Result<ScheduleKind, String> {
    text.parse()
}

impl TestnetArgs {
    fn options(&self, live: bool) -> testnet::TestnetOptions {
        testnet::TestnetOptions {
            dir: self.dir.clone(),
            nodes: self.nodes,
            workers: self.workers,
            rate: self.rate,
            duration: self.duration,
            warmup: self.warmup,
            size: self.size,
            workload: self.workload,
            accounts: self.accounts,
            base_port: self.base_port,
            metrics_port: self.metrics_port,
            execution_threads: self.execution_threads,
            workers_apart: self.workers_apart,
            protocol: self.protocol.parameters(),
            live,
            crashes: self.crashes.clone(),
            down: self.down,
            network: testnet::EmulatedNetwork {
                latency: self.latency.unwrap_or_default(),
                jitter: self.jitter.unwrap_or_default(),
                loss_percent: self.loss.unwrap_or(0.0),
                partitions: self.partitions.clone(),
            },
            min_header_delay: self.min_header_delay,
        }
    }
}

/// How a validator writes its logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Logs to stdout at RUST_LOG's levels (default info): colours only when stdout is a terminal, so that a log
/// file (the testnet's `logs/`) reads as plain text.
fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stdout().is_terminal());
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Keys { out, nodes, seed } => setup::write_keys(&out, nodes, seed),
        Command::Committee { keys, out, hosts, base_port, workers, protocol } => {
            setup::write_committee(&keys, &out, &hosts, base_port, workers, protocol.parameters())
        }
        Command::Validator { committee, keys, config, worker, log_format } => {
            init_logs(log_format);
            let role = worker.map_or(validator::Role::Validator, validator::Role::Worker);
            validator::run(&committee, &keys, config.as_deref(), role)
        }
        Command::Client {
            committee,
            to_sinks,
            acks_file,
            rate,
            duration,
            accounts,
            seed,
            size,
            sample_every,
            workload,
        } => {
            let options =
                client::ClientOptions { rate, duration, accounts, seed, size, sample_every, workload, acks_file };
            match (committee, to_sinks) {
                (_, Some(sinks)) => client::to_sinks(sinks, &options),
                (Some(committee), None) => tokio::runtime::Runtime::new()?.block_on(client::run(&committee, options)),
                (None, None) => anyhow::bail!("give --committee, or --to-sinks to measure the client alone"),
            }
        }
        Command::Relay { config } => tokio::runtime::Runtime::new()?.block_on(relay::run(&config)),
        Command::Testnet { testnet } => {
            let runtime = tokio::runtime::Runtime::new()?;
            let report = runtime.block_on(testnet::run(&testnet.options(true)))?;
            testnet::print_summary(&report);
            Ok(())
        }
        Command::Bench { rates, sizes, schedules, down_sweep, latencies, overload, out, testnet } => {
            anyhow::ensure!(
                overload.iter().all(|f| f.is_finite() && *f > 0.0),
                "--overload takes positive multiples of the peak, not {overload:?}"
            );
            let runtime = tokio::runtime::Runtime::new()?;
            let options = testnet.options(false);
            let latencies = if latencies.is_empty() { vec![options.network.latency] } else { latencies };
            let sweep = bench::Sweep { rates, sizes, schedules, down: down_sweep, latencies, overload };
            runtime.block_on(bench::run(&options, &sweep, &out))
        }
        Command::Config { out: Some(out), .. } => {
            std::fs::write(&out, config::ValidatorConfig::default().to_toml())?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Config { check: Some(path), .. } => {
            print!("{}", config::ValidatorConfig::load(&path)?.to_toml());
            Ok(())
        }
        Command::Config { .. } => anyhow::bail!("mako config needs --out FILE or --check FILE"),
    }
}
