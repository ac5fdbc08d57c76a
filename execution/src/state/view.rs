//! Reading state, and the in-memory state an executor runs over.
//!
//! Executors only read through [`StateView`]; they never write to it. A block's result is a write set that
//! the caller applies once the block is committed ([`InMemoryState::apply`]).

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use crate::state::{StateKey, Value};

/// Read access to the state a block executes over. `Sync` is what Block-STM's threads need.
pub trait StateView {
    fn get(&self, key: &StateKey) -> Option<Value>;
}

impl<S: StateView + ?Sized> StateView for &S {
    fn get(&self, key: &StateKey) -> Option<Value> {
        (**self).get(key)
    }
}

/// The whole state in a hash map keyed by the full [`StateKey`] (the hash only picks a bucket).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InMemoryState {
    entries: FxHashMap<StateKey, Value>,
}

impl InMemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a block's write set: every key takes its written value.
    pub fn apply(&mut self, write_set: &BTreeMap<StateKey, Value>) {
        self.entries.extend(write_set.iter().map(|(k, v)| (*k, *v)));
    }

    pub fn insert(&mut self, key: StateKey, value: Value) {
        self.entries.insert(key, value);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// All entries in key order (for hashing a genesis or comparing states).
    pub fn to_sorted(&self) -> BTreeMap<StateKey, Value> {
        self.entries.iter().map(|(k, v)| (*k, *v)).collect()
    }
}

impl StateView for InMemoryState {
    fn get(&self, key: &StateKey) -> Option<Value> {
        self.entries.get(key).copied()
    }
}

impl FromIterator<(StateKey, Value)> for InMemoryState {
    fn from_iter<I: IntoIterator<Item = (StateKey, Value)>>(iter: I) -> Self {
        Self { entries: iter.into_iter().collect() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Address;

    #[test]
    fn apply_overwrites_and_adds() {
        let a = StateKey::Balance(Address::from_index(1));
        let b = StateKey::Balance(Address::from_index(2));
        let mut state: InMemoryState = [(a, Value::Amount(1))].into_iter().collect();
        state.apply(&[(a, Value::Amount(5)), (b, Value::Amount(6))].into_iter().collect());
        assert_eq!(state.get(&a), Some(Value::Amount(5)));
        assert_eq!(state.get(&b), Some(Value::Amount(6)));
        assert_eq!(state.len(), 2);
    }
}
