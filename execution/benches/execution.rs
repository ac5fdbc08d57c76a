//! Execution benchmark: the sequential executor against Block-STM at 1..N threads (DESIGN.md §5, "Measure
//! honestly").
//!
//! Workloads over a generated genesis: native transfers over 10k accounts (uniform), over 2 accounts (full
//! contention), over 100k accounts with Zipf(1.0) senders and receivers, AMM swaps on one pool, and a
//! native/token transfer mix; blocks of 1k and 10k transactions. The timed span is executing the block and
//! computing its state root; every run checks that root against the sequential one.
//!
//! Besides criterion's own output it prints a table of tx/s, speedup over sequential, and incarnations and
//! validations per transaction (from a separate median-of-N timing).
//!
//! Environment:
//! - `MAKO_BENCH_THREADS=1,2,4,8,16`: Block-STM thread counts (default: the powers of two up to
//!   `available_parallelism`, at most 16);
//! - `MAKO_BENCH_WORK=0,100`: synthetic work per transaction in rounds of blake3 over 32 bytes ([`Vm`]; 0 = the
//!   native contracts alone);
//! - `MAKO_BENCH_SIZES=1000,10000`: block sizes;
//! - `MAKO_BENCH_CASES=uniform_10k,contended_2`: workloads to run (default: all).
//!
//! `cargo bench -p mako-execution --bench execution`

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use mako_execution::workload::{Distribution, Workload};
use mako_execution::{
    execute_sequential_with, state_root, BlockOutput, BlockStm, Genesis, InMemoryState, StateRoot, Transaction, Vm,
};

#[derive(Clone, Copy)]
enum Kind {
    Transfers,
    Swaps,
    TokenMix,
}

struct Case {
    name: &'static str,
    accounts: u64,
    distribution: Distribution,
    kind: Kind,
}

const CASES: [Case; 5] = [
    Case { name: "uniform_10k", accounts: 10_000, distribution: Distribution::Uniform, kind: Kind::Transfers },
    Case { name: "contended_2", accounts: 2, distribution: Distribution::Uniform, kind: Kind::Transfers },
    Case {
        name: "zipf_100k",
        accounts: 100_000,
        distribution: Distribution::Zipf { exponent: 1.0 },
        kind: Kind::Transfers,
    },
    Case { name: "amm_1pool", accounts: 10_000, distribution: Distribution::Uniform, kind: Kind::Swaps },
    Case { name: "token_mix_10k", accounts: 10_000, distribution: Distribution::Uniform, kind: Kind::TokenMix },
];

fn env_list(name: &str, default: Vec<usize>) -> Vec<usize> {
    match std::env::var(name) {
        Ok(text) => text.split(',').filter_map(|v| v.trim().parse().ok()).collect(),
        Err(_) => default,
    }
}

fn default_threads() -> Vec<usize> {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(16);
    [1, 2, 4, 8, 16].into_iter().filter(|&t| t <= cores).collect()
}

fn block(case: &Case, size: usize) -> Vec<Transaction> {
    let mut workload = Workload::new(42, case.accounts, case.distribution);
    match case.kind {
        Kind::Transfers => workload.transfers(size),
        Kind::Swaps => workload.swaps(size),
        Kind::TokenMix => workload.token_mix(size),
    }
}

/// One timed run: execute and compute the root, checking it.
fn run(
    executor: Option<BlockStm>,
    vm: Vm,
    state: &InMemoryState,
    block: &[Transaction],
    root: StateRoot,
) -> BlockOutput {
    let out = match executor {
        None => execute_sequential_with(vm, state, block),
        Some(stm) => stm.execute(state, block),
    };
    let got = state_root(StateRoot::ZERO, &out.write_set);
    assert_eq!(got, root, "Block-STM's state root differs from the sequential one");
    out
}

/// Median wall time of `runs` runs, and the stats of the last.
fn median(runs: usize, mut f: impl FnMut() -> BlockOutput) -> (Duration, BlockOutput) {
    let mut times = Vec::with_capacity(runs);
    let mut last = None;
    for _ in 0..runs {
        let start = Instant::now();
        let out = f();
        times.push(start.elapsed());
        last = Some(out);
    }
    times.sort();
    (times[runs / 2], last.expect("runs > 0"))
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let threads = env_list("MAKO_BENCH_THREADS", default_threads());
    let works = env_list("MAKO_BENCH_WORK", vec![0, 100]);
    let sizes = env_list("MAKO_BENCH_SIZES", vec![1_000, 10_000]);
    let mut table = Vec::new();

    let cases: Option<Vec<String>> =
        std::env::var("MAKO_BENCH_CASES").ok().map(|text| text.split(',').map(|c| c.trim().to_string()).collect());
    for case in CASES.iter().filter(|c| cases.as_ref().is_none_or(|names| names.iter().any(|n| n == c.name))) {
        let state = Genesis::generate(case.accounts).state().expect("generated genesis is valid");
        for &size in &sizes {
            let block = block(case, size);
            for &work in &works {
                let vm = Vm::new(work as u32);
                let expected = execute_sequential_with(vm, &state, &block);
                let root = state_root(StateRoot::ZERO, &expected.write_set);
                let ok = expected.receipts.iter().filter(|r| r.is_success()).count();
                let label = format!("{}/{}tx/work{}", case.name, size, work);

                let mut group = criterion.benchmark_group(&label);
                group.throughput(Throughput::Elements(size as u64));
                group.bench_function("sequential", |b| b.iter(|| run(None, vm, &state, &block, root)));
                for &t in &threads {
                    let stm = BlockStm::new(t).with_vm(vm);
                    group.bench_function(format!("block_stm_{t}"), |b| {
                        b.iter(|| run(Some(stm), vm, &state, &block, root))
                    });
                }
                group.finish();

                let runs = if size >= 10_000 { 7 } else { 21 };
                let (seq_time, _) = median(runs, || run(None, vm, &state, &block, root));
                let mut row = BTreeMap::new();
                row.insert(0usize, (seq_time, 1.0, 0.0));
                for &t in &threads {
                    let stm = BlockStm::new(t).with_vm(vm);
                    let (time, out) = median(runs, || run(Some(stm), vm, &state, &block, root));
                    row.insert(t, (time, out.stats.incarnations_per_tx(), out.stats.validations_per_tx()));
                }
                table.push((label, ok, size, row));
            }
        }
    }
    criterion.final_summary();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("\n## Execution (execute + state root), {cores} cores; median of 7 (10k) or 21 (1k) runs\n");
    println!("| workload | ok tx | executor | tx/s | speedup | incarnations/tx | validations/tx |");
    println!("|---|---|---|---|---|---|---|");
    for (label, ok, size, row) in &table {
        let seq = row[&0].0.as_secs_f64();
        for (t, (time, inc, val)) in row {
            let name = if *t == 0 { "sequential".to_string() } else { format!("block-stm {t}t") };
            let tps = *size as f64 / time.as_secs_f64();
            println!(
                "| {label} | {ok} | {name} | {:.0}k | {:.2}x | {inc:.2} | {val:.2} |",
                tps / 1e3,
                seq / time.as_secs_f64()
            );
        }
    }
}
