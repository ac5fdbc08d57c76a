//! Block-STM's result equals sequential execution's, for any block and any thread count (DESIGN.md §5).
//!
//! Random chains of small blocks over every contract, failures included (wrong nonces, overdrafts,
//! non-owner mints, slippage, overflow, malformed bytes), from heavy contention (2 accounts) to little
//! (2000 accounts), at 1 to 8 threads (more than this machine's cores, on purpose). Each block's write set,
//! receipts and state root must match the sequential oracle's; the pipeline's path, which executes and applies
//! in one step (sequentially in place), must also leave the state the oracle's write set makes.
//!
//! `MAKO_PROPTEST_CASES` sets the number of random cases (default 300, a few seconds in debug) and
//! `MAKO_STRESS_BLOCKS` the number of tiny blocks in the termination stress (default 1500). A long run:
//!
//! ```text
//! MAKO_PROPTEST_CASES=20000 MAKO_STRESS_BLOCKS=100000 cargo test --release -p mako-execution --test equivalence
//! ```

use mako_execution::workload::{Distribution, Workload};
use mako_execution::{
    decode_transaction, execute_block, execute_block_in_place, execute_sequential, execute_sequential_in_place,
    state_root, BlockStm, DecodeError, Genesis, InMemoryState, StateRoot, Transaction, Vm,
};
use proptest::prelude::*;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Adversarial,
    Transfers,
    Swaps,
    TokenMix,
}

/// One random block, with some entries replaced by malformed bytes.
fn block(
    w: &mut Workload,
    kind: Kind,
    size: usize,
    malformed_every: usize,
    seed: u64,
) -> Vec<Result<Transaction, DecodeError>> {
    let txs = match kind {
        Kind::Adversarial => w.adversarial(size),
        Kind::Transfers => w.transfers(size),
        Kind::Swaps => w.swaps(size),
        Kind::TokenMix => w.token_mix(size),
    };
    txs.into_iter()
        .enumerate()
        .map(|(i, tx)| {
            if malformed_every > 0 && (i as u64).wrapping_add(seed).is_multiple_of(malformed_every as u64) {
                let mut bytes = tx.to_bytes();
                let len = bytes.len();
                bytes.truncate(len / 2);
                decode_transaction(&bytes)
            } else {
                Ok(tx)
            }
        })
        .collect()
}

/// Runs `blocks` consecutive blocks both ways from the same genesis; returns a description of the first
/// difference.
fn compare_chain(
    seed: u64,
    accounts: u64,
    kind: Kind,
    distribution: Distribution,
    sizes: &[usize],
    threads: usize,
    malformed_every: usize,
) -> Result<(), String> {
    let mut state: InMemoryState = Genesis::generate(accounts).state().map_err(|e| e.to_string())?;
    let mut root = StateRoot::genesis(&state);
    let mut workload = Workload::new(seed, accounts, distribution);
    for (height, &size) in sizes.iter().enumerate() {
        let block = block(&mut workload, kind, size, malformed_every, seed);
        let expected = execute_sequential(&state, &block);
        let expected_root = state_root(root, &expected.write_set);
        for threads in [threads, 2] {
            let got = BlockStm::new(threads).execute(&state, &block);
            // The executor the pipeline runs chooses per block; whatever it picks, the result is the oracle's.
            let chosen = execute_block(&BlockStm::new(threads).with_vm(Vm::new(10)), &state, &block);
            if (&chosen.receipts, &chosen.write_set) != (&expected.receipts, &expected.write_set) {
                return Err(format!("block {height}: execute_block at {threads} threads differs (seed {seed})"));
            }
            let got_root = state_root(root, &got.write_set);
            if got.receipts != expected.receipts || got.write_set != expected.write_set || got_root != expected_root {
                return Err(format!(
                    "block {height} ({size} txs, {kind:?}, {accounts} accounts, {distribution:?}) differs at \
                     {threads} threads (seed {seed}):\nreceipts equal: {}\nwrite sets equal: {}\nroots {expected_root} \
                     vs {got_root}",
                    got.receipts == expected.receipts,
                    got.write_set == expected.write_set,
                ));
            }
        }
        let mut after = state.clone();
        after.apply(&expected.write_set);
        let pipelines = [(1, Vm::default()), (threads, Vm::new(10))];
        for (i, (threads, vm)) in pipelines.into_iter().enumerate() {
            let mut in_place = state.clone();
            let got = match i {
                0 => execute_sequential_in_place(vm, &mut in_place, &block),
                _ => execute_block_in_place(&BlockStm::new(threads).with_vm(vm), &mut in_place, &block),
            };
            if (&got.receipts, &got.write_set) != (&expected.receipts, &expected.write_set) {
                return Err(format!("block {height}: in place at {threads} threads, output differs (seed {seed})"));
            }
            if in_place.to_sorted() != after.to_sorted() {
                return Err(format!("block {height}: in place at {threads} threads, state differs (seed {seed})"));
            }
        }
        state = after;
        root = expected_root;
    }
    Ok(())
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        4 => Just(Kind::Adversarial),
        2 => Just(Kind::Transfers),
        1 => Just(Kind::Swaps),
        1 => Just(Kind::TokenMix),
    ]
}

fn distribution() -> impl Strategy<Value = Distribution> {
    prop_oneof![Just(Distribution::Uniform), Just(Distribution::Zipf { exponent: 1.0 })]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: env_or("MAKO_PROPTEST_CASES", 300) as u32, ..ProptestConfig::default() })]

    #[test]
    fn block_stm_equals_sequential(
        seed in any::<u64>(),
        accounts in prop_oneof![Just(2u64), Just(3), Just(5), Just(20), Just(200), Just(2000)],
        kind in kind(),
        distribution in distribution(),
        sizes in prop::collection::vec(0usize..80, 1..4),
        threads in 1usize..=8,
        malformed_every in prop_oneof![3 => Just(0usize), 1 => 2usize..20],
    ) {
        let result = compare_chain(seed, accounts, kind, distribution, &sizes, threads, malformed_every);
        prop_assert!(
            result.is_ok(),
            "{}\nreplay: cargo test -p mako-execution --test equivalence (proptest keeps the failing case)",
            result.unwrap_err()
        );
    }
}

/// Termination under stress (DESIGN.md §5, trap 3): thousands of tiny, fully conflicting blocks at 8 threads
/// on a 2-core machine. A scheduler that reported "done" early would leave a transaction without an outcome
/// (a panic) or with a stale one (a different write set).
#[test]
fn many_tiny_conflicting_blocks_terminate_with_the_sequential_result() {
    let blocks = env_or("MAKO_STRESS_BLOCKS", 1500);
    let state = Genesis::generate(2).state().expect("generated genesis is valid");
    for seed in 0..blocks {
        let mut workload = Workload::new(seed, 2, Distribution::Uniform);
        let size = 1 + (seed % 8) as usize;
        let block = if seed % 2 == 0 { workload.adversarial(size) } else { workload.swaps(size) };
        let expected = execute_sequential(&state, &block);
        let threads = [8, 3, 16][(seed % 3) as usize];
        let got = BlockStm::new(threads).execute(&state, &block);
        assert_eq!(
            (got.write_set, got.receipts),
            (expected.write_set, expected.receipts),
            "block seed {seed}, {size} txs, {threads} threads; replay: MAKO_STRESS_BLOCKS={} cargo test -p \
             mako-execution --test equivalence many_tiny",
            seed + 1
        );
    }
}

/// Larger blocks at the thread counts the benchmark uses.
#[test]
fn large_blocks_equal_sequential() {
    for (accounts, distribution) in [(2, Distribution::Uniform), (1000, Distribution::Zipf { exponent: 1.0 })] {
        let state = Genesis::generate(accounts).state().expect("generated genesis is valid");
        let mut workload = Workload::new(accounts, accounts, distribution);
        let block = workload.adversarial(1500);
        let expected = execute_sequential(&state, &block);
        for threads in [1, 2, 4, 8] {
            let got = BlockStm::new(threads).execute(&state, &block);
            assert_eq!(got.write_set, expected.write_set, "{accounts} accounts, {threads} threads");
            assert_eq!(got.receipts, expected.receipts, "{accounts} accounts, {threads} threads");
        }
        // Synthetic work widens the window between reads and commit: other interleavings, same result.
        let got = BlockStm::new(3).with_vm(Vm::new(4)).execute(&state, &block[..300]);
        let expected = execute_sequential(&state, &block[..300]);
        assert_eq!((got.write_set, got.receipts), (expected.write_set, expected.receipts), "{accounts} accounts");
    }
}
