//! The state root: a hash chain over blocks, `root_N = blake3(root_{N-1} ‖ block N's sorted write set)`
//! (DESIGN.md §5), under its own derive-key context. Equal roots at equal indices is invariant 4 of
//! DESIGN.md §9; the write set is hashed in its canonical encoding ([`StateKey::encode_into`]), preceded by
//! its length, so two different write sets never hash the same bytes.

use std::fmt;

use mako_types::Digest;

use crate::output::WriteSet;
use crate::state::InMemoryState;

const CONTEXT: &str = "mako 2026 state root v1";

/// The commitment to the state after a block.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, Debug))]
pub struct StateRoot(pub Digest);

impl StateRoot {
    /// The root before genesis: all zeros.
    pub const ZERO: StateRoot = StateRoot(Digest([0; 32]));

    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// The root of a genesis state: its whole content as the first write set.
    pub fn genesis(state: &InMemoryState) -> StateRoot {
        state_root(StateRoot::ZERO, &WriteSet::from_sorted(state.sorted_entries()))
    }
}

impl fmt::Debug for StateRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for StateRoot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// The root after applying `write_set` to the state whose root is `previous`.
pub fn state_root(previous: StateRoot, write_set: &WriteSet) -> StateRoot {
    let mut hasher = blake3::Hasher::new_derive_key(CONTEXT);
    hasher.update(previous.as_bytes());
    hasher.update(&(write_set.len() as u64).to_be_bytes());
    let mut buffer = Vec::with_capacity(64 * 1024);
    for (key, value) in write_set {
        key.encode_into(&mut buffer);
        value.encode_into(&mut buffer);
        if buffer.len() >= 60 * 1024 {
            hasher.update(&buffer);
            buffer.clear();
        }
    }
    hasher.update(&buffer);
    StateRoot(Digest(*hasher.finalize().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Address;
    use crate::state::{StateKey, Value};

    fn write_set(amount: u64) -> WriteSet {
        (0..100u64)
            .map(|i| (StateKey::Balance(Address::from_index(i)), Value::Amount(if i == 42 { amount } else { i })))
            .collect()
    }

    #[test]
    fn one_changed_value_changes_the_root() {
        let a = state_root(StateRoot::ZERO, &write_set(1));
        assert_eq!(a, state_root(StateRoot::ZERO, &write_set(1)));
        assert_ne!(a, state_root(StateRoot::ZERO, &write_set(2)));
    }

    #[test]
    fn root_chains_over_the_previous_root() {
        let ws = write_set(1);
        let first = state_root(StateRoot::ZERO, &ws);
        assert_ne!(state_root(first, &ws), first);
        assert_ne!(state_root(StateRoot::ZERO, &WriteSet::default()), StateRoot::ZERO);
    }

    #[test]
    fn key_and_value_kinds_are_separated() {
        let a = Address::from_index(1);
        let balance: WriteSet = [(StateKey::Balance(a), Value::Amount(5))].into_iter().collect();
        let nonce: WriteSet = [(StateKey::Nonce(a), Value::Amount(5))].into_iter().collect();
        assert_ne!(state_root(StateRoot::ZERO, &balance), state_root(StateRoot::ZERO, &nonce));
    }
}
