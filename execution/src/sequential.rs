//! The sequential executor: the oracle Block-STM is checked against, and the baseline it is measured
//! against. A tight loop over a local overlay of the block's writes; no multi-version memory, no threads.

use std::convert::Infallible;

use rustc_hash::FxHashMap;

use crate::contracts::Reads;
use crate::output::{assemble, BlockOutput, ExecutionStats};
use crate::state::{StateKey, StateView, Value};
use crate::transaction::BlockTransaction;
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
