//! `mako-sim-tests sweep`: runs fault scenarios over many seeds, in parallel, with a progress bar and a summary
//! table; every failure is listed with the command that replays it.
//!
//! ```sh
//! cargo run --release -p mako-sim-tests -- sweep --scenario all --seeds 10000
//! cargo run --release -p mako-sim-tests -- sweep --scenario jitter --seed 42          # replay one run
//! cargo run --release -p mako-sim-tests -- sweep --scenario all --seeds 50 --inject-bug commit-with-f
//! ```
//!
//! `mako-sim-tests experiment` runs `mako bench`'s experiment under the simulator ([`experiment`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mako_report::Down;
use mako_sim_tests::experiment::{self, Conditions, Configuration, Latency, Point};
use mako_sim_tests::scenario::{run, Outcome, Scenario};
use mako_types::bug::{inject, Bug};
use mako_types::ScheduleKind;

#[derive(Parser)]
#[command(name = "mako-sim-tests", about = "Deterministic fault simulations of mako validators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run scenarios over seeds and check every invariant of DESIGN.md §9.
    Sweep {
        /// `all`, or scenario names, comma-separated (no-faults, message-loss, jitter, minority-partition,
        /// no-quorum-split, crashed-f, crash-restart, leader-isolation, byzantine).
        #[arg(long, default_value = "all")]
        scenario: String,
        /// How many seeds per scenario, starting at --first-seed.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        #[arg(long, default_value_t = 1)]
        first_seed: u64,
        /// Run this one seed (a replay).
        #[arg(long, conflicts_with_all = ["seeds", "first_seed"])]
        seed: Option<u64>,
        /// Parallel simulations (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Turn on a deliberate protocol bug (commit-with-f, vote-twice, skip-recursive-commit,
        /// keep-batch-after-table-change, gc-per-batch, deliver-batch-twice) to see the checker catch it.
        #[arg(long)]
        inject_bug: Option<String>,
    },
    /// `mako bench`'s experiment under the simulator: offered rates over committee sizes, leader schedules,
    /// validators down and one-way latencies (or five WAN regions); writes a CSV, a markdown table and a
    /// throughput-latency plot. Every row is a function of the seed.
    Experiment {
        /// Offered rates, tx/s, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1000,4000")]
        rates: Vec<u64>,
        /// Committee sizes, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "4,10")]
        sizes: Vec<usize>,
        /// Leader schedules, comma-separated: round-robin, reputation.
        #[arg(long, value_delimiter = ',', default_value = "round-robin")]
        schedules: Vec<ScheduleKind>,
        /// Validators never started, comma-separated counts or f.
        #[arg(long = "down-sweep", value_delimiter = ',', default_value = "0")]
        down_sweep: Vec<Down>,
        /// One-way latencies between validators, comma-separated durations, or `regions` (five WAN regions).
        #[arg(long, value_delimiter = ',', default_value = "regions")]
        latencies: Vec<Latency>,
        /// Each datagram between validators gets its path's latency ± this.
        #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
        jitter: Duration,
        /// Percent of datagrams between validators dropped.
        #[arg(long, default_value_t = 0.0)]
        loss: f64,
        /// Simulated time measured per point, after 5 s of load.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        window: Duration,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Points simulated at once (default: one per core).
        #[arg(long)]
        threads: Option<usize>,
        /// Where to write the report.
        #[arg(long, default_value = "sim-experiment")]
        out: std::path::PathBuf,
    },
}

fn scenarios(names: &str) -> Result<Vec<Scenario>, String> {
    if names == "all" {
        return Ok(Scenario::ALL.to_vec());
    }
    names.split(',').map(|n| Scenario::from_name(n.trim()).ok_or_else(|| format!("unknown scenario {n:?}"))).collect()
}

#[derive(Default)]
struct Row {
    runs: u64,
    failures: u64,
    commits: u64,
    simulated: Duration,
}

fn main() -> Result<(), String> {
    // Logs (RUST_LOG) for replaying a run; most useful with `--seed` and one scenario.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Sweep { scenario, seeds, first_seed, seed, threads, inject_bug } => {
            sweep(&scenario, seeds, first_seed, seed, threads, inject_bug)
        }
        Command::Experiment {
            rates,
            sizes,
            schedules,
            down_sweep,
            latencies,
            jitter,
            loss,
            window,
            seed,
            threads,
            out,
        } => {
            let configurations = mako_report::configurations(
                &sizes,
                &schedules,
                &down_sweep,
                &latencies,
                |validators, schedule, down, latency| Configuration { validators, schedule, down, latency },
            );
            let conditions = Conditions { jitter, loss: loss / 100.0 };
            let points: Vec<Point> = configurations
                .iter()
                .flat_map(|configuration| {
                    rates.iter().map(move |&rate| Point {
                        configuration: *configuration,
                        rate,
                        conditions,
                        seed,
                        window,
                    })
                })
                .collect();
            experiment_report(points, threads, &out)
        }
    }
}

/// Runs `points` over `threads` and writes their report into `out`.
fn experiment_report(points: Vec<Point>, threads: Option<usize>, out: &std::path::Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let total = points.len();
    let results = parallel(
        points.clone(),
        threads,
        move |index, point: &Point| {
            let started = Instant::now();
            let measured = point.run();
            let line = match &measured {
                Ok(m) => format!(
                    "{:.0} tx/s, p50 {:.0} ms, p95 {:.0} ms, {:.1} rounds/s",
                    m.executed_tps,
                    m.latency_ms(0.5),
                    m.latency_ms(0.95),
                    m.rounds_per_second
                ),
                Err(error) => format!("FAILED: {error}"),
            };
            println!(
                "experiment [{}/{total}] {} at {} tx/s: {line} ({:.0?} of real time)",
                index + 1,
                point.configuration.label(),
                point.rate,
                started.elapsed()
            );
            measured
        },
        |_, _| {},
    );
    let mut rows = Vec::new();
    let mut failed = Vec::new();
    for (point, measured) in points.iter().zip(&results) {
        match measured {
            Ok(measured) => rows.push((point, measured)),
            Err(error) => failed.push(format!("{} at {} tx/s: {error}", point.configuration.label(), point.rate)),
        }
    }
    let report = experiment::report(&rows);
    report.write(out).map_err(|e| e.to_string())?;
    println!("\n{}", report.markdown());
    println!("wrote results.csv, results.md and {} to {}", experiment::PLOT, out.display());
    match failed.is_empty() {
        true => Ok(()),
        false => Err(format!("{} of {total} points failed:\n{}", failed.len(), failed.join("\n"))),
    }
}

/// `run` over `jobs` on `threads` threads (default: one per core), calling `each` on this thread as each
/// result comes; returns the results in the order of `jobs`.
fn parallel<J: Send + Sync + 'static, R: Send + 'static>(
    jobs: Vec<J>,
    threads: Option<usize>,
    run: impl Fn(usize, &J) -> R + Send + Sync + 'static,
    mut each: impl FnMut(&J, &R),
) -> Vec<R> {
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let (jobs, run) = (Arc::new(jobs), Arc::new(run));
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<(usize, R)>();
    let workers: Vec<_> = (0..threads.min(jobs.len()))
        .map(|_| {
            let (jobs, next, tx, run) = (Arc::clone(&jobs), Arc::clone(&next), tx.clone(), Arc::clone(&run));
            std::thread::spawn(move || loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(job) = jobs.get(index) else { return };
                if tx.send((index, run(index, job))).is_err() {
                    return;
                }
            })
        })
        .collect();
    drop(tx);
    let mut results: Vec<(usize, R)> = Vec::with_capacity(jobs.len());
    for (index, result) in rx {
        each(&jobs[index], &result);
        results.push((index, result));
    }
    for worker in workers {
        let _ = worker.join();
    }
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, result)| result).collect()
}

fn sweep(
    scenario: &str,
    seeds: u64,
    first_seed: u64,
    seed: Option<u64>,
    threads: Option<usize>,
    inject_bug: Option<String>,
) -> Result<(), String> {
    let scenarios = scenarios(scenario)?;
    if let Some(name) = &inject_bug {
        let bug = Bug::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| format!("unknown bug {name:?}"))?;
        inject(Some(bug));
        println!("injected bug: {name}");
    }
    let seeds: Vec<u64> = match seed {
        Some(seed) => vec![seed],
        None => (first_seed..first_seed + seeds).collect(),
    };
    let jobs: Vec<(Scenario, u64)> = seeds.iter().flat_map(|seed| scenarios.iter().map(move |s| (*s, *seed))).collect();
    let total = jobs.len();
    let progress = ProgressBar::new(total as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs, {msg} ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.set_message("0 failed");

    let started = Instant::now();
    let mut rows: BTreeMap<Scenario, Row> = BTreeMap::new();
    let mut failures = Vec::new();
    parallel(
        jobs,
        threads,
        |_, (scenario, seed)| run(*scenario, *seed),
        |_, outcome: &Outcome| {
            let row = rows.entry(outcome.scenario).or_default();
            row.runs += 1;
            row.simulated += outcome.simulated;
            match outcome.verdict() {
                Ok(summary) => row.commits += summary.commits,
                Err(message) => {
                    row.failures += 1;
                    progress.suspend(|| eprintln!("FAILED {message}"));
                    failures.push(message);
                }
            }
            progress.set_message(format!("{} failed", failures.len()));
            progress.inc(1);
        },
    );
    progress.finish();

    println!("\n| scenario | runs | failed | mean commits | mean simulated time |");
    println!("|---|---|---|---|---|");
    for (scenario, row) in &rows {
        let passed = (row.runs - row.failures).max(1);
        println!(
            "| {scenario} | {} | {} | {} | {:.1} s |",
            row.runs,
            row.failures,
            row.commits / passed,
            row.simulated.as_secs_f64() / row.runs as f64
        );
    }
    println!("\n{total} runs in {:.0?}, {} failed", started.elapsed(), failures.len());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {total} runs failed", failures.len()))
    }
}
