//! Which executor runs a block: Block-STM, or the sequential executor where threads cannot pay for
//! Block-STM's bookkeeping. Both give the same result (Block-STM's equals sequential's by construction), so
//! the choice only decides how fast a block runs, never what it does.
//!
//! The choice is a pure function of the block, the thread count and the [`Vm`] ([`choose_executor`]),
//! made before any transaction runs from what transactions declare: a transaction names its sender and
//! the locations its call touches (a transfer's recipient, a token and holder, a pool, a counter, a
//! collection). From those it measures the block's critical path, the longest chain of transactions that
//! each touch a location an earlier one of the chain touched: no executor can finish a block in fewer
//! steps, so a block whose critical path is a large fraction of it (a single sender's nonce chain, one
//! AMM pool, two accounts trading) runs sequentially.
//!
//! Measured on the 2-core dev box (`cargo bench -p mako-execution --bench execution`, Block-STM at 2 threads
//! against sequential): a nonce chain ran at 0.1-0.3× with native transfers and 0.7-0.85× with 100 rounds of
//! modelled work per transaction; uniform transfers with that work at 1.8×; uniform native transfers at
//! 0.6-1.0× (10k) and 0.15-0.35× (100k); a 1-transaction block at 0.15-0.2×.

use crate::ids::Address;
use crate::transaction::{BlockTransaction, Call, Transaction};
use crate::vm::Vm;
use crate::{BlockStm, InMemoryState};

/// Smallest block Block-STM runs: below it, starting threads and emptying the multi-version memory
/// cost more than they save.
pub const MIN_PARALLEL_BLOCK: usize = 64;

/// Least synthetic work per transaction ([`Vm::synthetic_work`], rounds of about 85 ns) for which Block-STM
/// runs. Native contracts alone cost 0.1 to 0.3 µs a transaction, less than Block-STM's bookkeeping of one
/// (multi-version memory, scheduler slots, validation): with two threads it lost to sequential on every
/// native workload measured.
pub const MIN_WORK_ROUNDS: u32 = 10;

/// Least parallelism (transactions per step of the critical path) for which Block-STM runs: with less,
/// threads mostly wait on each other's writes, or abort and re-execute. Zipf(1.0) transfers over 100k
/// accounts have about 6 (Block-STM at 2 threads: 1.7× with modelled work); a nonce chain, one pool or two
/// accounts have 1.
pub const MIN_PARALLELISM: usize = 4;

/// The executor a block runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Choice {
    BlockStm,
    Sequential(Because),
}

/// Why a block runs sequentially.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Because {
    OneThread,
    /// Fewer than [`MIN_PARALLEL_BLOCK`] transactions.
    SmallBlock,
    /// Less work per transaction than [`MIN_WORK_ROUNDS`].
    CheapTransactions,
    /// The declared accesses chain at least `critical_path` of the block's transactions.
    Contended {
        critical_path: usize,
    },
}

/// Which executor should run `block` with `threads` threads and `vm`: the checks run cheapest first, and the
/// scan of declared accesses stops as soon as the critical path is too long.
pub fn choose_executor<T: BlockTransaction>(block: &[T], threads: usize, vm: Vm) -> Choice {
    if threads <= 1 {
        return Choice::Sequential(Because::OneThread);
    }
    if block.len() < MIN_PARALLEL_BLOCK {
        return Choice::Sequential(Because::SmallBlock);
    }
    if vm.synthetic_work < MIN_WORK_ROUNDS {
        return Choice::Sequential(Because::CheapTransactions);
    }
    match critical_path_above(block, block.len() / MIN_PARALLELISM) {
        Some(critical_path) => Choice::Sequential(Because::Contended { critical_path }),
        None => Choice::BlockStm,
    }
}

/// Executes a block on the executor [`choose_executor`] picks for `executor`'s threads and VM. The output
/// equals [`crate::execute_sequential`]'s except for `stats`.
pub fn execute_block<S, T>(executor: &BlockStm, state: &S, block: &[T]) -> crate::BlockOutput
where
    S: crate::StateView + Sync + ?Sized,
    T: BlockTransaction,
{
    match choose_executor(block, executor.threads(), executor.vm()) {
        Choice::BlockStm => executor.execute(state, block),
        Choice::Sequential(_) => crate::execute_sequential_with(executor.vm(), state, block),
    }
}

/// Executes `block` on `state` and applies it there, on the executor [`choose_executor`] picks: Block-STM's
/// threads read the state as it was and its write set is applied after; the sequential executor writes in
/// place ([`crate::sequential::execute_sequential_in_place`]). The output equals [`execute_block`]'s, and the
/// state ends as [`execute_block`] followed by [`InMemoryState::apply`] leaves it.
pub fn execute_block_in_place<T: BlockTransaction>(
    executor: &BlockStm,
    state: &mut InMemoryState,
    block: &[T],
) -> crate::BlockOutput {
    match choose_executor(block, executor.threads(), executor.vm()) {
        Choice::BlockStm => {
            let output = executor.execute(&*state, block);
            state.apply(&output.write_set);
            output
        }
        Choice::Sequential(_) => crate::sequential::execute_sequential_in_place(executor.vm(), state, block),
    }
}

/// The length of the longest chain of `block`'s transactions linked by declared locations, as soon as the
/// scan shows it exceeds `limit` (the length found so far, then); `None` if it never does.
///
/// Locations are hashed into a direct-mapped table holding, per slot, the length of the longest chain that
/// ends at a transaction touching it. Two locations sharing a slot only link chains that are independent,
/// so a collision can overestimate the critical path, never underestimate it. About 10 ns a transaction.
fn critical_path_above<T: BlockTransaction>(block: &[T], limit: usize) -> Option<usize> {
    let slots = (block.len() * 4).next_power_of_two().clamp(1 << 10, 1 << 22);
    let mut chain_ending_at = vec![0u32; slots];
    let mask = slots - 1;
    let mut longest = 0u32;
    for tx in block.iter().filter_map(BlockTransaction::transaction) {
        let locations = declared_locations(tx);
        let depth = 1 + locations.iter().flatten().map(|&h| chain_ending_at[h as usize & mask]).max().unwrap_or(0);
        for &h in locations.iter().flatten() {
            chain_ending_at[h as usize & mask] = depth;
        }
        longest = longest.max(depth);
        if longest as usize > limit {
            return Some(longest as usize);
        }
    }
    None
}

/// Hashes of the locations a transaction declares it touches: its sender's account (nonce and balance),
/// then what its call names. Read-only locations every such call reads (a token's owner, a pool's terms) are
/// left out: reads alone never conflict. A swap's token balances depend on the pool's terms and are not
/// declared; its pool's reserves link every swap on that pool anyway.
fn declared_locations(tx: &Transaction) -> [Option<u64>; 3] {
    let account = |a: &Address| {
        let bytes = a.as_bytes();
        let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 of 20 bytes"));
        // Words at 0, 8 and 12 cover all 20 bytes.
        mix(word(0) ^ mix(word(8) ^ mix(word(12))))
    };
    let sender = Some(account(&tx.sender));
    match tx.call {
        Call::Transfer { to, .. } => [sender, Some(account(&to)), None],
        Call::TokenTransfer { token, to, .. } => {
            [sender, Some(mix(account(&tx.sender) ^ token.0 as u64)), Some(mix(account(&to) ^ token.0 as u64))]
        }
        Call::TokenMint { token, to, .. } => [sender, Some(mix(account(&to) ^ token.0 as u64)), None],
        Call::Swap { pool, .. } => [sender, Some(mix(1 << 60 | pool.0 as u64)), None],
        Call::Increment { counter } => [sender, Some(mix(2 << 60 | counter.0 as u64)), None],
        Call::NftMint { collection } => [sender, Some(mix(3 << 60 | collection.0 as u64)), None],
    }
}

/// A 64-bit finalizer (splitmix64): spreads any input over all bits, so that the table's low bits are
/// uniform whatever the location.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::workload::{Distribution, Workload};

    const WORK: Vm = Vm { synthetic_work: 100 };

    #[test]
    fn a_uniform_block_with_work_runs_on_block_stm() {
        let block = Workload::new(1, 10_000, Distribution::Uniform).transfers(10_000);
        assert_eq!(choose_executor(&block, 2, WORK), Choice::BlockStm);
        let block = Workload::new(1, 10_000, Distribution::Uniform).token_mix(1_000);
        assert_eq!(choose_executor(&block, 8, WORK), Choice::BlockStm);
    }

    #[test]
    fn a_nonce_chain_runs_sequentially() {
        let block = Workload::new(1, 10_000, Distribution::Uniform).nonce_chain(10_000);
        let limit = 10_000 / MIN_PARALLELISM;
        assert_eq!(
            choose_executor(&block, 2, WORK),
            Choice::Sequential(Because::Contended { critical_path: limit + 1 })
        );
    }

    #[test]
    fn one_hot_location_runs_sequentially() {
        for block in [
            Workload::new(2, 2, Distribution::Uniform).transfers(1_000),
            Workload::new(3, 10_000, Distribution::Uniform).swaps(1_000),
        ] {
            assert!(matches!(choose_executor(&block, 2, WORK), Choice::Sequential(Because::Contended { .. })));
        }
    }

    #[test]
    fn small_blocks_cheap_transactions_and_one_thread_run_sequentially() {
        let mut workload = Workload::new(4, 10_000, Distribution::Uniform);
        for size in [0, 1, MIN_PARALLEL_BLOCK - 1] {
            assert_eq!(choose_executor(&workload.transfers(size), 2, WORK), Choice::Sequential(Because::SmallBlock));
        }
        let block = workload.transfers(10_000);
        assert_eq!(choose_executor(&block, 2, Vm::default()), Choice::Sequential(Because::CheapTransactions));
        assert_eq!(choose_executor(&block, 1, WORK), Choice::Sequential(Because::OneThread));
    }

    #[test]
    fn the_critical_path_follows_declared_locations() {
        let mut workload = Workload::new(5, 10_000, Distribution::Uniform);
        let mut block = workload.transfers(100);
        // Every transaction pays one recipient: each extends the chain.
        let hot = Address::from_index(0);
        for tx in &mut block {
            tx.call = Call::Transfer { to: hot, amount: 1 };
        }
        assert_eq!(critical_path_above(&block, 0), Some(1));
        assert_eq!(critical_path_above(&block, 99), Some(100));
        let block = workload.transfers(100);
        assert_eq!(critical_path_above(&block, 20), None, "100 uniform transfers over 10k accounts");
    }
}
