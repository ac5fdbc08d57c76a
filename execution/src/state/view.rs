//! Reading state, and the in-memory state an executor runs over.
//!
//! Executors only read through [`StateView`]; they never write to it. A block's result is a write set that
//! the caller applies once the block is committed ([`InMemoryState::apply`]).
//!
//! The state is laid out for the workload: native transfers touch an account's balance and nonce and little
//! else, so those two keys of an account live together in one small record, found with one lookup by address
//! in a map of 100k records rather than among every key of the state; every other key stays in a map keyed by
//! the full [`StateKey`]. The records sit inline in the map: a record in a vector behind an index of
//! addresses costs a second dependent cache miss per lookup, which measured slower. The layout is
//! invisible from outside: the state is still a set of `(StateKey, Value)` entries, an absent key stays
//! distinct from a zero one, and `len`, `to_sorted` and equality see exactly those entries.

use std::collections::BTreeMap;
use std::fmt;

use rustc_hash::FxHashMap;

use crate::ids::Address;
use crate::output::{sort_order, WriteSet};
use crate::state::{canonical, StateKey, Value};

/// Read access to the state a block executes over. `Sync` is what Block-STM's threads need.
pub trait StateView {
    fn get(&self, key: &StateKey) -> Option<Value>;
}

impl<S: StateView + ?Sized> StateView for &S {
    fn get(&self, key: &StateKey) -> Option<Value> {
        (**self).get(key)
    }
}

/// The whole state, keyed by the full [`StateKey`] (hashes only pick buckets).
///
/// Where an entry lives is decided by [`account_field`]: an account key holding an amount is a field of the
/// account's record in `accounts`; every other entry, including the odd account key holding a value that is
/// not an amount, is in `others`. A key is in exactly one of the two places.
#[derive(Clone, Default)]
pub struct InMemoryState {
    /// Each address's record. Records are never removed (no key is ever deleted).
    accounts: FxHashMap<Address, Account>,
    /// Present fields over all of `accounts`.
    account_entries: usize,
    others: FxHashMap<StateKey, Value>,
    /// Account keys in `others` (with a value that is not an amount): zero in any state the contracts write,
    /// which spares a lookup in `others` for every absent balance or nonce.
    misfiled: usize,
}

/// An account's [`StateKey::Balance`] and [`StateKey::Nonce`]; `None` is an absent key, never 0.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Account {
    balance: Option<u64>,
    nonce: Option<u64>,
}

#[derive(Clone, Copy)]
enum Field {
    Balance,
    Nonce,
}

impl Account {
    fn field(&mut self, field: Field) -> &mut Option<u64> {
        match field {
            Field::Balance => &mut self.balance,
            Field::Nonce => &mut self.nonce,
        }
    }

    fn get(&self, field: Field) -> Option<u64> {
        match field {
            Field::Balance => self.balance,
            Field::Nonce => self.nonce,
        }
    }
}

/// The record field a key lives in, if it is an account key.
fn account_field(key: &StateKey) -> Option<(&Address, Field)> {
    match key {
        StateKey::Balance(a) => Some((a, Field::Balance)),
        StateKey::Nonce(a) => Some((a, Field::Nonce)),
        _ => None,
    }
}

impl InMemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a block's write set: every key takes its written value.
    pub fn apply(&mut self, write_set: &WriteSet) {
        for (key, value) in write_set {
            self.insert(*key, *value);
        }
    }

    pub fn insert(&mut self, key: StateKey, value: Value) {
        match (account_field(&key), value) {
            (Some((address, field)), Value::Amount(amount)) => {
                if self.accounts.entry(*address).or_default().field(field).replace(amount).is_none() {
                    self.account_entries += 1;
                    if self.misfiled > 0 && self.others.remove(&key).is_some() {
                        self.misfiled -= 1;
                    }
                }
            }
            (Some((address, field)), _) => {
                if let Some(account) = self.accounts.get_mut(address) {
                    if account.field(field).take().is_some() {
                        self.account_entries -= 1;
                    }
                }
                if self.others.insert(key, value).is_none() {
                    self.misfiled += 1;
                }
            }
            (None, _) => {
                self.others.insert(key, value);
            }
        }
    }

    /// Looks up the records of `addresses` and drops what it finds: run over a block before it executes, the
    /// lookups are independent of each other, so the processor overlaps their cache misses, where executing
    /// waits for each in turn (a record is a miss in a 400k-entry state; a block's records fit in cache).
    pub fn warm_accounts<'a>(&self, addresses: impl IntoIterator<Item = &'a Address>) {
        for address in addresses {
            std::hint::black_box(self.accounts.get(address));
        }
    }

    pub fn len(&self) -> usize {
        self.account_entries + self.others.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// All entries in key order (for hashing a genesis or comparing states).
    pub fn to_sorted(&self) -> BTreeMap<StateKey, Value> {
        self.sorted_iter().collect()
    }

    /// All entries in key order, as a vector.
    pub fn sorted_entries(&self) -> Vec<(StateKey, Value)> {
        let mut entries = Vec::with_capacity(self.len());
        entries.extend(self.sorted_iter());
        entries
    }

    /// All entries in key order. Account keys sort before every other kind (every `Balance` by address, then
    /// every `Nonce`), so the records are sorted once by address, which gives both runs, and only `others` is
    /// sorted; the two sorted runs are then merged as they are read. Both sorts rank entries by
    /// [`StateKey::order_key`] with the block write sets' radix sort: sorting every entry by its derived order
    /// took 60 ms for 400k entries, half of them token balances, and by comparison of their order keys 43 ms
    /// with the encoding (`cargo bench -p mako-execution --bench execution`, `checkpoint_encode`).
    pub fn sorted_iter(&self) -> impl Iterator<Item = (StateKey, Value)> + '_ {
        let accounts: Vec<(&Address, &Account)> = self.accounts.iter().collect();
        let accounts = by_order_key(accounts, |(address, _)| StateKey::Balance(**address));
        let records = accounts.len();
        let mut fields = (0..2 * records)
            .filter_map(move |i| {
                let (address, record) = accounts[i % records];
                if i < records {
                    Some((StateKey::Balance(*address), Value::Amount(record.balance?)))
                } else {
                    Some((StateKey::Nonce(*address), Value::Amount(record.nonce?)))
                }
            })
            .peekable();
        let others: Vec<(StateKey, Value)> = self.others.iter().map(|(k, v)| (*k, *v)).collect();
        let mut others = by_order_key(others, |(key, _)| *key).into_iter().peekable();
        // A key is in one place only: never equal. `others` holds account keys only when misfiled.
        std::iter::from_fn(move || match (fields.peek(), others.peek()) {
            (Some(field), Some(other)) if other.0 < field.0 => others.next(),
            (Some(_), _) => fields.next(),
            (None, _) => others.next(),
        })
    }

    /// The state's canonical bytes, what a checkpoint holds ([`canonical`]): equal states give equal bytes.
    pub fn encode_canonical(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_canonical_into(&mut out);
        out
    }

    /// [`Self::encode_canonical`] into `out` (cleared first), keeping its capacity: a checkpoint of 100k
    /// accounts is about 13 MB, and a buffer that new faulted in zeroed pages for most of its cost.
    pub fn encode_canonical_into(&self, out: &mut Vec<u8>) {
        canonical::encode_entries_into(out, self.sorted_iter())
    }

    /// The state that [`Self::encode_canonical`] wrote as `bytes`; refuses what it cannot write.
    pub fn decode_canonical(bytes: &[u8]) -> Result<Self, String> {
        let mut state = Self::new();
        canonical::decode_entries(bytes, |key, value| state.insert(key, value))?;
        Ok(state)
    }

    /// Every entry once, in no particular order.
    fn entries(&self) -> impl Iterator<Item = (StateKey, Value)> + '_ {
        let accounts = self.accounts.iter().flat_map(|(address, account)| {
            let balance = account.balance.map(|n| (StateKey::Balance(*address), Value::Amount(n)));
            let nonce = account.nonce.map(|n| (StateKey::Nonce(*address), Value::Amount(n)));
            balance.into_iter().chain(nonce)
        });
        accounts.chain(self.others.iter().map(|(k, v)| (*k, *v)))
    }
}

/// `entries` sorted by the order of their keys (`key` says each one's), each key once.
fn by_order_key<T: Copy>(entries: Vec<T>, key: impl Fn(&T) -> StateKey) -> Vec<T> {
    sort_order(entries.iter().map(|e| key(e).order_key()).collect()).into_iter().map(|i| entries[i as usize]).collect()
}

impl StateView for InMemoryState {
    fn get(&self, key: &StateKey) -> Option<Value> {
        let Some((address, field)) = account_field(key) else {
            return self.others.get(key).copied();
        };
        let amount = self.accounts.get(address).and_then(|account| account.get(field));
        match amount {
            Some(amount) => Some(Value::Amount(amount)),
            None if self.misfiled > 0 => self.others.get(key).copied(),
            None => None,
        }
    }
}

impl FromIterator<(StateKey, Value)> for InMemoryState {
    fn from_iter<I: IntoIterator<Item = (StateKey, Value)>>(iter: I) -> Self {
        let mut state = Self::new();
        for (key, value) in iter {
            state.insert(key, value);
        }
        state
    }
}

/// Equal entries, whatever the order in which records were created.
impl PartialEq for InMemoryState {
    fn eq(&self, other: &Self) -> bool {
        // `entries` yields each key once, so equal lengths make this a set comparison.
        self.len() == other.len() && self.entries().all(|(key, value)| other.get(&key) == Some(value))
    }
}

impl Eq for InMemoryState {}

impl fmt::Debug for InMemoryState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.to_sorted()).finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ids::TokenId;

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

    #[test]
    fn absent_is_not_zero() {
        let address = Address::from_index(3);
        let mut state = InMemoryState::new();
        state.insert(StateKey::Balance(address), Value::Amount(0));
        assert_eq!(state.get(&StateKey::Balance(address)), Some(Value::Amount(0)));
        assert_eq!(state.get(&StateKey::Nonce(address)), None, "the record exists, its nonce does not");
        assert_eq!(state.len(), 1);
        let sorted = state.to_sorted();
        assert_eq!(sorted.into_iter().collect::<Vec<_>>(), vec![(StateKey::Balance(address), Value::Amount(0))]);

        let mut with_nonce = state.clone();
        with_nonce.insert(StateKey::Nonce(address), Value::Amount(0));
        assert_ne!(state, with_nonce, "a zero nonce is an entry");
        assert_eq!(with_nonce.len(), 2);
    }

    #[test]
    fn an_account_key_holding_another_value_moves_between_record_and_map() {
        let key = StateKey::Nonce(Address::from_index(4));
        let mut state = InMemoryState::new();
        state.insert(key, Value::Amount(7));
        state.insert(key, Value::Address(Address::from_index(9)));
        assert_eq!(state.get(&key), Some(Value::Address(Address::from_index(9))));
        assert_eq!(state.len(), 1);
        state.insert(key, Value::Amount(8));
        assert_eq!(state.get(&key), Some(Value::Amount(8)));
        assert_eq!(state.len(), 1);
        assert_eq!(state.to_sorted().len(), 1);
    }

    #[test]
    fn equality_ignores_the_order_records_were_made_in() {
        let (a, b) = (Address::from_index(1), Address::from_index(2));
        let entries = [
            (StateKey::Balance(a), Value::Amount(1)),
            (StateKey::Nonce(b), Value::Amount(2)),
            (StateKey::TokenBalance(TokenId(0), a), Value::Amount(3)),
        ];
        let forward: InMemoryState = entries.into_iter().collect();
        let backward: InMemoryState = entries.into_iter().rev().collect();
        assert_eq!(forward, backward);
        let mut changed = backward.clone();
        changed.insert(StateKey::Nonce(b), Value::Amount(3));
        assert_ne!(forward, changed);
    }

    /// A key and value from a small space, so that inserts collide and overwrite, with the odd non-amount at
    /// an account key.
    fn entry() -> impl Strategy<Value = (StateKey, Value)> {
        let key = (0u8..4, 0u64..6).prop_map(|(kind, i)| {
            let a = Address::from_index(i);
            match kind {
                0 => StateKey::Balance(a),
                1 => StateKey::Nonce(a),
                2 => StateKey::TokenBalance(TokenId(i as u32 % 2), a),
                _ => StateKey::CollectedFees,
            }
        });
        let value = (0u8..8, 0u64..3).prop_map(|(kind, n)| match kind {
            0 => Value::Address(Address::from_index(n)),
            _ => Value::Amount(n),
        });
        (key, value)
    }

    proptest! {
        /// The oracle is a plain map: inserts, applies, reads, `len`, `to_sorted` and equality agree with it.
        #[test]
        fn behaves_as_a_plain_map(
            initial in prop::collection::vec(entry(), 0..40),
            writes in prop::collection::vec(prop::collection::btree_map(entry().prop_map(|e| e.0), entry().prop_map(|e| e.1), 0..10), 0..5),
            inserts in prop::collection::vec(entry(), 0..10),
        ) {
            let mut reference: BTreeMap<StateKey, Value> = initial.iter().copied().collect();
            let mut state: InMemoryState = initial.into_iter().collect();
            for write_set in &writes {
                reference.extend(write_set.iter().map(|(k, v)| (*k, *v)));
                state.apply(&write_set.iter().map(|(k, v)| (*k, *v)).collect());
            }
            for (key, value) in inserts {
                reference.insert(key, value);
                state.insert(key, value);
            }
            prop_assert_eq!(state.len(), reference.len());
            prop_assert_eq!(&state.to_sorted(), &reference);
            prop_assert_eq!(state.sorted_entries(), reference.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            for i in 0..7 {
                let a = Address::from_index(i);
                for key in [StateKey::Balance(a), StateKey::Nonce(a), StateKey::TokenBalance(TokenId(0), a)] {
                    prop_assert_eq!(state.get(&key), reference.get(&key).copied());
                }
            }
            let rebuilt: InMemoryState = reference.iter().rev().map(|(k, v)| (*k, *v)).collect();
            prop_assert_eq!(&state, &rebuilt);
            // A checkpoint's bytes: the same for the same entries however they were made, and read back whole.
            let bytes = state.encode_canonical();
            prop_assert_eq!(&bytes, &rebuilt.encode_canonical());
            prop_assert_eq!(&InMemoryState::decode_canonical(&bytes).unwrap(), &state);
        }
    }
}
