//! A block's result, and the one function both executors use to fold per-transaction outcomes into it.

use std::collections::BTreeMap;

use crate::receipt::Receipt;
use crate::state::{StateKey, StateView, Value};

/// Everything a block did to the state, and what each transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutput {
    /// Every key written by some transaction, with its final value, sorted; the fee delta is already folded
    /// into [`StateKey::CollectedFees`].
    pub write_set: BTreeMap<StateKey, Value>,
    /// One per block entry, in block order.
    pub receipts: Vec<Receipt>,
    /// How much work it took; differs between executors and thread counts (not part of the result).
    pub stats: ExecutionStats,
}

/// Work counters. Sequential execution has one incarnation per transaction and no validations.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecutionStats {
    pub transactions: usize,
    /// VM runs, including those stopped at an ESTIMATE (a dependency) and those later aborted.
    pub incarnations: u64,
    /// Read-set validations run.
    pub validations: u64,
    /// Validations that failed and aborted an incarnation.
    pub aborts: u64,
    /// Executions that stopped on a dependency and waited for it.
    pub dependency_waits: u64,
}

impl ExecutionStats {
    /// Adds another thread's work counters (not `transactions`).
    pub fn add(&mut self, other: &ExecutionStats) {
        self.incarnations += other.incarnations;
        self.validations += other.validations;
        self.aborts += other.aborts;
        self.dependency_waits += other.dependency_waits;
    }

    pub fn incarnations_per_tx(&self) -> f64 {
        ratio(self.incarnations, self.transactions)
    }

    pub fn validations_per_tx(&self) -> f64 {
        ratio(self.validations, self.transactions)
    }
}

fn ratio(n: u64, d: usize) -> f64 {
    if d == 0 {
        0.0
    } else {
        n as f64 / d as f64
    }
}

/// Folds a block's result into its output: `writes` holds every written key once with its final value, in any
/// order, and `receipts` one receipt per block entry. Fees (each receipt's `gas_used`) are summed here, once,
/// onto the pre-block fee balance: the commutative delta of DESIGN.md §5.
///
/// The write set is sorted and then built in one pass (`BTreeMap`'s bulk build from sorted input), which is
/// several times cheaper than inserting tens of thousands of keys one by one. Inputs made of a few sorted runs
/// (Block-STM's per-thread parts) cost a merge, not a full sort.
pub(crate) fn assemble<S: StateView + ?Sized>(
    state: &S,
    mut writes: Vec<(StateKey, Value)>,
    receipts: Vec<Receipt>,
    stats: ExecutionStats,
) -> BlockOutput {
    writes.sort_by_key(|(key, _)| *key);
    debug_assert!(writes.windows(2).all(|w| w[0].0 != w[1].0), "assemble: a key is written twice");
    let mut write_set: BTreeMap<StateKey, Value> = writes.into_iter().collect();
    let mut fees: u64 = 0;
    let mut charged = false;
    for receipt in &receipts {
        // Fees come out of native balances, whose total fits in u64 (genesis checks it), so the sum cannot
        // saturate; saturating keeps even a hand-made state from panicking, identically in both executors.
        fees = fees.saturating_add(receipt.gas_used);
        charged |= receipt.gas_used > 0;
    }
    if charged {
        let before = match state.get(&StateKey::CollectedFees) {
            Some(Value::Amount(n)) => n,
            _ => 0,
        };
        write_set.insert(StateKey::CollectedFees, Value::Amount(before.saturating_add(fees)));
    }
    BlockOutput { write_set, receipts, stats }
}
