//! Execution benchmark: the sequential executor against Block-STM at 1..N threads (DESIGN.md §5, "Measure
//! honestly"), and against the executor [`execute_block`] chooses for the block ("chosen Nt", with the reason
//! when it is the sequential one).
//!
//! Workloads over a generated genesis: native transfers over 10k accounts (uniform), a single sender's nonce
//! chain (native transfers from one account to uniform recipients), native transfers over 2 accounts (full
//! contention), over 100k accounts with Zipf(1.0) senders and receivers, AMM swaps on one pool, and a
//! native/token transfer mix; blocks of 1k and 10k transactions. The timed span is executing the block and
//! computing its state root; every run checks that root against the sequential one.
//!
//! Besides criterion's own output it prints a table of tx/s, speedup over sequential, and incarnations and
//! validations per transaction (from a separate median-of-N timing, the executors taking turns).
//!
//! Environment:
//! - `MAKO_BENCH_THREADS=1,2,4,8,16`: Block-STM thread counts (default: the powers of two up to
//!   `available_parallelism`, at most 16);
//! - `MAKO_BENCH_WORK=0,100`: synthetic work per transaction in rounds of blake3 over 32 bytes ([`Vm`]; 0 = the
//!   native contracts alone);
//! - `MAKO_BENCH_SIZES=1000,10000`: block sizes (`1` for a 1-transaction block);
//! - `MAKO_BENCH_CASES=uniform_10k,nonce_chain`: workloads to run (default: all).
//!
//! The `pipeline_100k` case is one testnet validator's path instead: a state of 100k accounts (warmed until
//! nearly every account has a nonce: ~400k entries), then blocks of 25k uniform native transfers (what a
//! testnet commit carries near 100k tx/s), each executed sequentially, its state root chained and its write
//! set applied to the state, as [`mako_execution::pipeline`] does (without the block log's fjall write). It
//! reports µs per transaction for the three steps, and times a checkpoint's encoding of the warmed state; `MAKO_BENCH_THREADS`, `MAKO_BENCH_WORK` and
//! `MAKO_BENCH_SIZES` do not apply to it.
//!
//! `cargo bench -p mako-execution --bench execution`

use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use mako_execution::workload::{Distribution, Workload};
use mako_execution::{
    choose_executor, execute_block, execute_sequential, execute_sequential_in_place, execute_sequential_with,
    state_root, BlockOutput, BlockStm, Choice, Genesis, InMemoryState, StateRoot, Transaction, Vm,
};

#[derive(Clone, Copy)]
enum Kind {
    Transfers,
    NonceChain,
    Swaps,
    TokenMix,
}

struct Case {
    name: &'static str,
    accounts: u64,
    distribution: Distribution,
    kind: Kind,
}

const CASES: [Case; 6] = [
    Case { name: "uniform_10k", accounts: 10_000, distribution: Distribution::Uniform, kind: Kind::Transfers },
    Case { name: "nonce_chain", accounts: 10_000, distribution: Distribution::Uniform, kind: Kind::NonceChain },
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
        Kind::NonceChain => workload.nonce_chain(size),
        Kind::Swaps => workload.swaps(size),
        Kind::TokenMix => workload.token_mix(size),
    }
}

/// What runs a block: the sequential executor, Block-STM always, or the one [`execute_block`] chooses.
#[derive(Clone, Copy)]
enum Executor {
    Sequential,
    BlockStm(BlockStm),
    Chosen(BlockStm),
}

/// One timed run: execute and compute the root, checking it.
fn run(executor: Executor, vm: Vm, state: &InMemoryState, block: &[Transaction], root: StateRoot) -> BlockOutput {
    let out = match executor {
        Executor::Sequential => execute_sequential_with(vm, state, block),
        Executor::BlockStm(stm) => stm.execute(state, block),
        Executor::Chosen(stm) => execute_block(&stm, state, block),
    };
    let got = state_root(StateRoot::ZERO, &out.write_set);
    assert_eq!(got, root, "Block-STM's state root differs from the sequential one");
    out
}

/// Median wall time of `runs` runs of each executor, and the stats of its last. The executors take turns run
/// by run, so that a slow spell of a noisy machine falls on all of them rather than on one.
fn medians(
    runs: usize,
    executors: &[Executor],
    mut f: impl FnMut(Executor) -> BlockOutput,
) -> Vec<(Duration, BlockOutput)> {
    let mut times = vec![Vec::with_capacity(runs); executors.len()];
    let mut last = vec![None; executors.len()];
    for run in 0..runs {
        // Every other run in reverse: each executor follows each other one as often (a run leaves the caches
        // and the allocator to the next one).
        let order: Vec<usize> =
            if run % 2 == 0 { (0..executors.len()).collect() } else { (0..executors.len()).rev().collect() };
        for i in order {
            let executor = executors[i];
            let start = Instant::now();
            let out = f(executor);
            times[i].push(start.elapsed());
            last[i] = Some(out);
        }
    }
    times
        .into_iter()
        .zip(last)
        .map(|(mut times, last)| {
            times.sort();
            (times[runs / 2], last.expect("runs > 0"))
        })
        .collect()
}

/// The `pipeline_100k` case: accounts, warm-up blocks (untimed) and timed blocks, of `PIPELINE_BLOCK` transfers.
const PIPELINE_ACCOUNTS: u64 = 100_000;
const PIPELINE_WARM_BLOCKS: usize = 30;
const PIPELINE_BLOCKS: usize = 10;
const PIPELINE_BLOCK: usize = 25_000;

/// Time spent in each step of [`pipeline_step`].
#[derive(Clone, Copy, Default)]
struct StepTimes {
    execute: Duration,
    root: Duration,
    apply: Duration,
}

/// One block of a validator's path: execute it sequentially, chain the root, apply the write set; `in_place`
/// as the pipeline does it (each transaction's writes straight into the state), otherwise through an overlay
/// applied after the root.
fn pipeline_step(
    state: &mut InMemoryState,
    root: &mut StateRoot,
    block: &[Transaction],
    in_place: bool,
    times: &mut StepTimes,
) {
    let start = Instant::now();
    let out = match in_place {
        true => execute_sequential_in_place(Vm::default(), state, block),
        false => execute_sequential(&*state, block),
    };
    let executed = Instant::now();
    *root = state_root(*root, &out.write_set);
    let rooted = Instant::now();
    if !in_place {
        state.apply(&out.write_set);
    }
    times.execute += executed - start;
    times.root += rooted - executed;
    times.apply += rooted.elapsed();
}

/// Runs the `pipeline_100k` case both ways; returns its table rows (path, step, µs per transaction).
fn pipeline_path(criterion: &mut Criterion) -> Vec<(&'static str, &'static str, f64)> {
    let mut workload = Workload::new(42, PIPELINE_ACCOUNTS, Distribution::Uniform);
    let mut warm = Genesis::generate(PIPELINE_ACCOUNTS).state().expect("generated genesis is valid");
    let mut warm_root = StateRoot::genesis(&warm);
    for _ in 0..PIPELINE_WARM_BLOCKS {
        let block = workload.transfers(PIPELINE_BLOCK);
        pipeline_step(&mut warm, &mut warm_root, &block, false, &mut StepTimes::default());
    }
    let blocks: Vec<Vec<Transaction>> = (0..PIPELINE_BLOCKS).map(|_| workload.transfers(PIPELINE_BLOCK)).collect();
    let run = |in_place: bool, times: &mut StepTimes| {
        let (mut state, mut root) = (warm.clone(), warm_root);
        let start = Instant::now();
        for block in &blocks {
            pipeline_step(&mut state, &mut root, block, in_place, times);
        }
        (start.elapsed(), root, state.to_sorted())
    };
    let (_, expected, final_state) = run(false, &mut StepTimes::default());
    let (_, in_place_root, in_place_state) = run(true, &mut StepTimes::default());
    assert!(in_place_root == expected && in_place_state == final_state, "in place, the same roots and state");
    println!(
        "pipeline_100k: {} entries after warm-up, {} after the timed blocks, final root {expected}",
        warm.len(),
        final_state.len()
    );

    let transactions = (PIPELINE_BLOCKS * PIPELINE_BLOCK) as u64;
    let mut group = criterion.benchmark_group(format!("pipeline_100k/{PIPELINE_BLOCKS}x{PIPELINE_BLOCK}tx"));
    group.throughput(Throughput::Elements(transactions));
    for (name, in_place) in [("overlay+root+apply", false), ("in_place+root", true)] {
        group.bench_function(name, |b| {
            b.iter_batched_ref(
                || (warm.clone(), warm_root),
                |(state, root)| {
                    for block in &blocks {
                        pipeline_step(state, root, block, in_place, &mut StepTimes::default());
                    }
                },
                BatchSize::LargeInput,
            )
        });
    }
    // A checkpoint of the warmed state: its entries in key order, encoded (`Executor::put_checkpoint` does this
    // every `checkpoint_interval` blocks, into the last checkpoint's buffer).
    let mut buffer = Vec::new();
    group.throughput(Throughput::Elements(warm.len() as u64));
    group.bench_function("checkpoint_encode", |b| b.iter(|| warm.encode_canonical_into(&mut buffer)));
    group.finish();

    // Median of 7 runs of the whole path, with the steps of that run, each way.
    let mut rows = Vec::new();
    for (path, in_place) in [("overlay, then apply", false), ("in place", true)] {
        let mut runs: Vec<(Duration, StepTimes)> = (0..7)
            .map(|_| {
                let mut times = StepTimes::default();
                let (total, root, _) = run(in_place, &mut times);
                assert_eq!(root, expected, "the pipeline path is deterministic");
                (total, times)
            })
            .collect();
        runs.sort_by_key(|(total, _)| *total);
        let (total, times) = runs[runs.len() / 2];
        let per_tx = |d: Duration| d.as_secs_f64() * 1e6 / transactions as f64;
        rows.extend([
            (path, "execute", per_tx(times.execute)),
            (path, "state root", per_tx(times.root)),
            (path, "apply", per_tx(times.apply)),
            (path, "total", per_tx(total)),
        ]);
    }
    rows
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
                group.bench_function("sequential", |b| b.iter(|| run(Executor::Sequential, vm, &state, &block, root)));
                for &t in &threads {
                    let stm = BlockStm::new(t).with_vm(vm);
                    group.bench_function(format!("block_stm_{t}"), |b| {
                        b.iter(|| run(Executor::BlockStm(stm), vm, &state, &block, root))
                    });
                    group.bench_function(format!("chosen_{t}"), |b| {
                        b.iter(|| run(Executor::Chosen(stm), vm, &state, &block, root))
                    });
                }
                group.finish();

                let runs = if size >= 10_000 { 7 } else { 21 };
                let mut executors = vec![("sequential".to_string(), Executor::Sequential)];
                for &t in &threads {
                    let stm = BlockStm::new(t).with_vm(vm);
                    executors.push((format!("block-stm {t}t"), Executor::BlockStm(stm)));
                    if t > 1 {
                        let choice = match choose_executor(&block, t, vm) {
                            Choice::BlockStm => "block-stm".to_string(),
                            Choice::Sequential(because) => format!("sequential: {because:?}"),
                        };
                        executors.push((format!("chosen {t}t ({choice})"), Executor::Chosen(stm)));
                    }
                }
                let kinds: Vec<Executor> = executors.iter().map(|(_, e)| *e).collect();
                let timed = medians(runs, &kinds, |e| run(e, vm, &state, &block, root));
                let row: Vec<_> = executors
                    .into_iter()
                    .zip(timed)
                    .map(|((name, _), (time, out))| {
                        (name, time, out.stats.incarnations_per_tx(), out.stats.validations_per_tx())
                    })
                    .collect();
                table.push((label, ok, size, row));
            }
        }
    }
    let pipeline = match &cases {
        Some(names) if !names.iter().any(|n| n == "pipeline_100k") => Vec::new(),
        _ => pipeline_path(&mut criterion),
    };
    criterion.final_summary();

    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!("\n## Execution (execute + state root), {cores} cores; median of 7 (10k) or 21 (1k) runs\n");
    println!("| workload | ok tx | executor | tx/s | speedup | incarnations/tx | validations/tx |");
    println!("|---|---|---|---|---|---|---|");
    for (label, ok, size, row) in &table {
        let seq = row[0].1.as_secs_f64();
        for (name, time, inc, val) in row {
            let tps = *size as f64 / time.as_secs_f64();
            println!(
                "| {label} | {ok} | {name} | {:.0}k | {:.2}x | {inc:.2} | {val:.2} |",
                tps / 1e3,
                seq / time.as_secs_f64()
            );
        }
    }
    if !pipeline.is_empty() {
        println!(
            "\n## pipeline_100k: {PIPELINE_BLOCKS} blocks of {PIPELINE_BLOCK} transfers over {PIPELINE_ACCOUNTS} \
             accounts, sequential; median of 7 runs\n"
        );
        println!("| path | step | µs/tx |");
        println!("|---|---|---|");
        for (path, step, micros) in pipeline {
            println!("| {path} | {step} | {micros:.3} |");
        }
    }
}
