//! The sequential executor: the oracle Block-STM is checked against, and the baseline it is measured
//! against. A tight loop over a local overlay of the block's writes; no multi-version memory, no threads.
//! [`execute_sequential_in_place`] is the same loop for a caller that applies the block anyway (the pipeline):
//! it writes each transaction's writes straight into the state, instead of into an overlay that is applied
//! again at the end of the block.

use std::convert::Infallible;

use rustc_hash::FxHashMap;

use crate::contracts::Reads;
use crate::output::{assemble, BlockOutput, ExecutionStats, WriteSet};
use crate::state::{InMemoryState, StateKey, StateView, Value};
use crate::transaction::{BlockTransaction, Call};
use crate::vm::Vm;

/// Executes a block in order with the default [`Vm`].
pub fn execute_sequential<S, T>(state: &S, block: &[T]) -> BlockOutput
where
    S: StateView + ?Sized,
    T: BlockTransaction,
{
    execute_sequential_with(Vm::default(), state, block)
}

/// Executes a block in order.
pub fn execute_sequential_with<S, T>(vm: Vm, state: &S, block: &[T]) -> BlockOutput
where
    S: StateView + ?Sized,
    T: BlockTransaction,
{
    let mut overlay = Overlay { state, writes: FxHashMap::default() };
    let mut receipts = Vec::with_capacity(block.len());
    for entry in block {
        let outcome = match vm.execute(entry.transaction(), &mut overlay) {
            Ok(outcome) => outcome,
            Err(never) => match never {},
        };
        overlay.writes.extend(outcome.writes);
        receipts.push(outcome.receipt);
    }
    let n = block.len();
    let stats = ExecutionStats { transactions: n, incarnations: n as u64, ..ExecutionStats::default() };
    // The overlay holds each written key once, with its last value: the block's write set.
    assemble(state, overlay.writes.into_iter().collect(), receipts, stats)
}

/// Executes a block in order on `state`, and leaves in it the state after the block: the output and the final
/// state equal [`execute_sequential_with`]'s followed by [`InMemoryState::apply`]. A transaction's writes go
/// into the state as soon as it ends, while its reads have the entries it touched in cache; applying the write
/// set at the end of the block looked up every written key in the whole state a second time, each a cache miss.
pub fn execute_sequential_in_place<T: BlockTransaction>(vm: Vm, state: &mut InMemoryState, block: &[T]) -> BlockOutput {
    let mut writes: Vec<(StateKey, Value)> = Vec::with_capacity(block.len() * 3);
    let mut receipts = Vec::with_capacity(block.len());
    for window in block.chunks(WARM_WINDOW) {
        state.warm_accounts(window.iter().filter_map(BlockTransaction::transaction).flat_map(|tx| {
            let recipient = match &tx.call {
                Call::Transfer { to, .. } => Some(to),
                _ => None,
            };
            std::iter::once(&tx.sender).chain(recipient)
        }));
        for entry in window {
            let outcome = match vm.execute(entry.transaction(), &mut InPlace(state)) {
                Ok(outcome) => outcome,
                Err(never) => match never {},
            };
            for (key, value) in &outcome.writes {
                state.insert(*key, *value);
            }
            writes.extend(outcome.writes);
            receipts.push(outcome.receipt);
        }
    }
    // Each written key once, with its last value (sorted already: `assemble` only checks it).
    let last_values = WriteSet::from_writes(writes).into_entries();
    let n = block.len();
    let stats = ExecutionStats { transactions: n, incarnations: n as u64, ..ExecutionStats::default() };
    // No transaction writes the collected fees (`TxOutcome`): the state still holds the pre-block amount that
    // `assemble` adds the block's fees to.
    let output = assemble(&*state, last_values, receipts, stats);
    if let Some(fees) = output.write_set.get(&StateKey::CollectedFees) {
        state.insert(StateKey::CollectedFees, *fees);
    }
    output
}

/// Transactions whose accounts [`InMemoryState::warm_accounts`] looks up ahead of executing them: few enough
/// that their records are still in cache when the window executes, with three other validators sharing the
/// cores' caches. A whole testnet block's worth (25k transfers, 50k records) evicted its own first records
/// before execution reached them.
const WARM_WINDOW: usize = 128;

/// Reads straight from the state, which holds the block's writes so far.
struct InPlace<'s>(&'s InMemoryState);

impl Reads for InPlace<'_> {
    type Blocked = Infallible;

    fn read(&mut self, key: &StateKey) -> Result<Option<Value>, Infallible> {
        Ok(self.0.get(key))
    }
}

/// The block's writes so far over the pre-block state.
struct Overlay<'s, S: ?Sized> {
    state: &'s S,
    writes: FxHashMap<StateKey, Value>,
}

impl<S: StateView + ?Sized> Reads for Overlay<'_, S> {
    type Blocked = Infallible;

    fn read(&mut self, key: &StateKey) -> Result<Option<Value>, Infallible> {
        Ok(self.writes.get(key).copied().or_else(|| self.state.get(key)))
    }
}
