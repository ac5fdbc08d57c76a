//! `mako-sim-tests sweep`: runs fault scenarios over many seeds, in parallel, with a progress bar and a summary
//! table; every failure is listed with the command that replays it.
//!
//! ```sh
//! cargo run --release -p mako-sim-tests -- sweep --scenario all --seeds 10000
//! cargo run --release -p mako-sim-tests -- sweep --scenario jitter --seed 42          # replay one run
//! cargo run --release -p mako-sim-tests -- sweep --scenario all --seeds 50 --inject-bug commit-with-f
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use mako_sim_tests::scenario::{run, Outcome, Scenario};
use mako_types::bug::{inject, Bug};

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
    let Command::Sweep { scenario, seeds, first_seed, seed, threads, inject_bug } = Cli::parse().command;
    // Logs (RUST_LOG) for replaying a run; most useful with `--seed` and one scenario.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let scenarios = scenarios(&scenario)?;
    if let Some(name) = &inject_bug {
        let bug = Bug::ALL.into_iter().find(|b| b.name() == name).ok_or_else(|| format!("unknown bug {name:?}"))?;
        inject(Some(bug));
        println!("injected bug: {name}");
    }
    let seeds: Vec<u64> = match seed {
        Some(seed) => vec![seed],
        None => (first_seed..first_seed + seeds).collect(),
    };
    let jobs: Arc<Vec<(Scenario, u64)>> =
        Arc::new(seeds.iter().flat_map(|seed| scenarios.iter().map(move |s| (*s, *seed))).collect());
    let threads = threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())).max(1);
    let progress = ProgressBar::new(jobs.len() as u64);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs, {msg} ETA {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    progress.set_message("0 failed");

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = mpsc::channel::<Outcome>();
    let workers: Vec<_> = (0..threads.min(jobs.len()))
        .map(|_| {
            let (jobs, next, tx) = (Arc::clone(&jobs), Arc::clone(&next), tx.clone());
            std::thread::spawn(move || {
                while let Some(&(scenario, seed)) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) {
                    if tx.send(run(scenario, seed)).is_err() {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(tx);

    let mut rows: BTreeMap<Scenario, Row> = BTreeMap::new();
    let mut failures = Vec::new();
    for outcome in rx {
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
    }
    for worker in workers {
        let _ = worker.join();
    }
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
    println!("\n{} runs in {:.0?}, {} failed", jobs.len(), started.elapsed(), failures.len());
    if failures.is_empty() {
        Ok(())
    } else {
        Err(format!("{} of {} runs failed", failures.len(), jobs.len()))
    }
}
