//! A block's result, and the one function both executors use to fold per-transaction outcomes into it.

use crate::receipt::Receipt;
use crate::state::{StateKey, StateView, Value};

/// Everything a block did to the state, and what each transaction did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockOutput {
    /// Every key written by some transaction, with its final value, sorted; the fee delta is already folded
    /// into [`StateKey::CollectedFees`].
    pub write_set: WriteSet,
    /// One per block entry, in block order.
    pub receipts: Vec<Receipt>,
    /// How much work it took; differs between executors and thread counts (not part of the result).
    pub stats: ExecutionStats,
}

/// A block's writes: each key once with its final value, in ascending key order, in one vector. What the
/// state root hashes, the state applies and the block log stores are read from it in that order; a map built
/// for it (a `BTreeMap` before) cost an allocation per dozen entries and a copy into a vector to store it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteSet(Vec<(StateKey, Value)>);

impl WriteSet {
    /// The entries of `sorted`, which holds each key once in ascending order (checked in debug builds).
    pub(crate) fn from_sorted(sorted: Vec<(StateKey, Value)>) -> Self {
        debug_assert!(sorted.windows(2).all(|w| w[0].0 < w[1].0), "a write set is sorted, each key once");
        Self(sorted)
    }

    /// Writes in the order they were made, a key possibly written more than once: each key keeps its last
    /// value. The writes are ordered by [`StateKey::order_key`], then by when they were made ([`sort_order`]).
    pub fn from_writes(writes: Vec<(StateKey, Value)>) -> Self {
        let order = sort_order(writes.iter().map(|(key, _)| key.order_key()).collect());
        let mut last_values: Vec<(StateKey, Value)> = Vec::with_capacity(writes.len());
        for i in order {
            let (key, value) = writes[i as usize];
            match last_values.last_mut() {
                Some(last) if last.0 == key => last.1 = value,
                _ => last_values.push((key, value)),
            }
        }
        Self(last_values)
    }

    /// The entries, in ascending key order.
    pub fn into_entries(self) -> Vec<(StateKey, Value)> {
        self.0
    }

    pub fn get(&self, key: &StateKey) -> Option<&Value> {
        self.0.binary_search_by(|(k, _)| k.cmp(key)).ok().map(|i| &self.0[i].1)
    }

    /// Sets `key` to `value`, in its place in the order.
    pub fn insert(&mut self, key: StateKey, value: Value) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&key)) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => self.0.insert(i, (key, value)),
        }
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entries in ascending key order.
    pub fn iter(&self) -> Entries<'_> {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

/// A write's place in a write set: its key's [`StateKey::order_key`], then its position among the writes.
type Ranked = ([u128; 2], u32);

/// The positions of `keys` in ascending order, equal keys in the order given: `keys[order[0]]` is the least.
///
/// Only the bytes at which some keys differ decide the order. Where at most eight of the 32 do (a block's
/// account keys over indexed addresses: the tag and the two or three low bytes of the index), they are packed
/// into one `u64` per key and sorted least significant byte first ([`sort_packed`]): one pass per byte over
/// 16-byte entries. Otherwise the keys are sorted most significant byte first ([`radix_sort`]). On indexed
/// addresses that sort split 25k-transfer blocks four bytes deep into runs of a few dozen keys, each split
/// copying its run and walking 256 buckets: 6% of a validator's CPU at 50k tx/s offered.
pub(crate) fn sort_order(keys: Vec<[u128; 2]>) -> Vec<u32> {
    let varying = varying_bytes(&keys);
    if varying.len() <= PACKED_BYTES {
        let packed = keys
            .iter()
            .enumerate()
            .map(|(i, key)| (varying.iter().fold(0u64, |p, &byte| p << 8 | u64::from(byte_at(key, byte))), i as u32))
            .collect();
        return sort_packed(packed, varying.len());
    }
    let mut ranked: Vec<Ranked> = keys.into_iter().enumerate().map(|(i, key)| (key, i as u32)).collect();
    radix_sort(&mut ranked, &mut Vec::new());
    ranked.into_iter().map(|(_, i)| i).collect()
}

/// The bytes (0 = most significant) at which some of `keys` differ from the others.
fn varying_bytes(keys: &[[u128; 2]]) -> Vec<usize> {
    let differ = differing_bits(keys.iter());
    (0..32).filter(|&byte| byte_at(&differ, byte) != 0).collect()
}

/// The bits at which some of `keys` differ from the first of them.
fn differing_bits<'k>(mut keys: impl Iterator<Item = &'k [u128; 2]>) -> [u128; 2] {
    let Some(&first) = keys.next() else { return [0; 2] };
    keys.fold([0; 2], |acc, key| [acc[0] | (key[0] ^ first[0]), acc[1] | (key[1] ^ first[1])])
}

/// Varying bytes that still fit one `u64`.
const PACKED_BYTES: usize = 8;

/// Byte `byte` (0 = most significant) of an order key.
fn byte_at(key: &[u128; 2], byte: usize) -> u8 {
    (key[byte / 16] >> (8 * (15 - byte % 16))) as u8
}

/// Sorts `(packed key, position)` pairs, given in position order, by their low `bytes` bytes, stably, one
/// counting pass for every byte and then one scattering pass per byte, least significant first; returns the
/// positions.
fn sort_packed(mut entries: Vec<(u64, u32)>, bytes: usize) -> Vec<u32> {
    let mut counts = vec![[0usize; 256]; bytes];
    for (key, _) in &entries {
        for (byte, count) in counts.iter_mut().enumerate() {
            count[(key >> (8 * byte)) as u8 as usize] += 1;
        }
    }
    let mut scratch = vec![(0u64, 0u32); entries.len()];
    for (byte, count) in counts.iter().enumerate() {
        let mut next = [0usize; 256];
        let mut start = 0;
        for (slot, n) in next.iter_mut().zip(count) {
            *slot = start;
            start += n;
        }
        for entry in &entries {
            let digit = (entry.0 >> (8 * byte)) as u8 as usize;
            scratch[next[digit]] = *entry;
            next[digit] += 1;
        }
        std::mem::swap(&mut entries, &mut scratch);
    }
    entries.into_iter().map(|(_, i)| i).collect()
}

/// Runs this short are sorted by comparison.
const SHORT_RUN: usize = 32;

/// Sorts `ranked` as `sort_unstable` would, by most-significant byte first: each pass finds the first byte at
/// which the run's keys differ, skipping the bytes they share (an account key's tag, and the leading zero
/// bytes of indexed addresses), and splits the run by that byte, stably, into runs sorted the same way. A run
/// whose keys are all equal is then already in the order of the writes. A testnet block near 100k tx/s holds
/// 75k writes: sorting them by comparison took 4 ms, a third of executing the block.
fn radix_sort(ranked: &mut [Ranked], scratch: &mut Vec<Ranked>) {
    if ranked.len() <= SHORT_RUN {
        ranked.sort_unstable();
        return;
    }
    let byte = match differing_bits(ranked.iter().map(|(key, _)| key)) {
        [0, 0] => return,
        [0, low] => 16 + low.leading_zeros() as usize / 8,
        [high, _] => high.leading_zeros() as usize / 8,
    };
    let digit = |key: &[u128; 2]| usize::from(byte_at(key, byte));
    let mut ends = [0usize; 256];
    for (key, _) in ranked.iter() {
        ends[digit(key)] += 1;
    }
    let mut next = [0usize; 256];
    for d in 1..256 {
        next[d] = next[d - 1] + ends[d - 1];
        ends[d - 1] = next[d];
    }
    ends[255] = ranked.len();
    scratch.clear();
    scratch.extend_from_slice(ranked);
    for entry in scratch.iter() {
        let d = digit(&entry.0);
        ranked[next[d]] = *entry;
        next[d] += 1;
    }
    let mut start = 0;
    for end in ends {
        if end - start > 1 {
            radix_sort(&mut ranked[start..end], scratch);
        }
        start = end;
    }
}

/// A write set's entries by reference, as a map's iterator gives them.
pub type Entries<'a> =
    std::iter::Map<std::slice::Iter<'a, (StateKey, Value)>, fn(&'a (StateKey, Value)) -> (&'a StateKey, &'a Value)>;

impl<'a> IntoIterator for &'a WriteSet {
    type Item = (&'a StateKey, &'a Value);
    type IntoIter = Entries<'a>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// Any writes, in any order: a key written twice keeps its last value.
impl FromIterator<(StateKey, Value)> for WriteSet {
    fn from_iter<I: IntoIterator<Item = (StateKey, Value)>>(iter: I) -> Self {
        Self::from_writes(iter.into_iter().collect())
    }
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
/// The write set is sorted in place: inputs made of a few sorted runs (Block-STM's per-thread parts) cost a
/// merge, not a full sort, and sorted input (the sequential executor's) one pass.
pub(crate) fn assemble<S: StateView + ?Sized>(
    state: &S,
    mut writes: Vec<(StateKey, Value)>,
    receipts: Vec<Receipt>,
    stats: ExecutionStats,
) -> BlockOutput {
    writes.sort_by_key(|(key, _)| *key);
    let mut write_set = WriteSet::from_sorted(writes);
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

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::ids::{Address, CollectionId, PoolId, TokenId};

    /// Writes in any order make one sorted entry per key with the last value written to it; `insert` keeps
    /// the order, `get` finds what is there and only that.
    #[test]
    fn a_write_set_holds_each_key_once_in_order_with_its_last_value() {
        let key = |i: u64| StateKey::Balance(Address::from_index(i));
        let mut set: WriteSet =
            [(key(3), Value::Amount(1)), (key(1), Value::Amount(2)), (key(3), Value::Amount(9))].into_iter().collect();
        assert_eq!(
            set.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            [(key(1), Value::Amount(2)), (key(3), Value::Amount(9))]
        );
        set.insert(key(2), Value::Amount(5));
        set.insert(key(1), Value::Amount(7));
        assert_eq!(set.len(), 3);
        assert_eq!(set.get(&key(1)), Some(&Value::Amount(7)));
        assert_eq!(set.get(&key(2)), Some(&Value::Amount(5)));
        assert_eq!(set.get(&key(4)), None);
        assert!(set.iter().zip(set.iter().skip(1)).all(|(a, b)| a.0 < b.0));
    }

    /// Keys of every variant, over indexed addresses (which share their leading bytes) and hashed ones.
    fn any_key() -> impl Strategy<Value = StateKey> {
        let address = prop_oneof![
            (0u64..300).prop_map(Address::from_index),
            any::<[u8; 20]>().prop_map(Address),
            (0u64..4).prop_map(|i| Address::from_index(i << 40)),
        ];
        prop_oneof![
            4 => address.clone().prop_map(StateKey::Balance),
            4 => address.clone().prop_map(StateKey::Nonce),
            1 => (0u32..3, address).prop_map(|(t, a)| StateKey::TokenBalance(TokenId(t), a)),
            1 => (0u32..3).prop_map(|p| StateKey::PoolReserves(PoolId(p))),
            1 => (0u32..3, 0u64..3).prop_map(|(c, id)| StateKey::NftOwner(CollectionId(c), id)),
            1 => Just(StateKey::CollectedFees),
        ]
    }

    /// Keys over a few hundred indexed addresses: they differ in the tag and the index's low bytes only.
    fn indexed_account_key() -> impl Strategy<Value = StateKey> {
        (any::<bool>(), 0u64..70_000).prop_map(|(balance, i)| match balance {
            true => StateKey::Balance(Address::from_index(i)),
            false => StateKey::Nonce(Address::from_index(i)),
        })
    }

    /// What [`sort_order`] must give: positions by key, equal keys in the order given.
    fn stable_order(keys: &[[u128; 2]]) -> Vec<u32> {
        let mut order: Vec<u32> = (0..keys.len() as u32).collect();
        order.sort_by_key(|&i| keys[i as usize]);
        order
    }

    proptest! {
        /// Packed (few varying bytes) or byte by byte (many), the order is a stable comparison sort's.
        #[test]
        fn sort_order_is_a_stable_sort(
            indexed in proptest::collection::vec(indexed_account_key(), 0..700),
            mixed in proptest::collection::vec(any_key(), 0..700),
        ) {
            let indexed: Vec<[u128; 2]> = indexed.iter().map(StateKey::order_key).collect();
            prop_assert!(varying_bytes(&indexed).len() <= PACKED_BYTES);
            prop_assert_eq!(sort_order(indexed.clone()), stable_order(&indexed));
            let mixed: Vec<[u128; 2]> = mixed.iter().map(StateKey::order_key).collect();
            prop_assert_eq!(sort_order(mixed.clone()), stable_order(&mixed));
        }

        /// The writes are ordered as a comparison sort orders them, so each key keeps the value written to it
        /// last: checked against a map filled in write order, over runs long enough to be split many times.
        #[test]
        fn a_write_set_is_what_a_map_of_the_writes_holds(
            writes in proptest::collection::vec((any_key(), any::<u64>().prop_map(Value::Amount)), 0..600)
        ) {
            let expected: std::collections::BTreeMap<StateKey, Value> = writes.iter().copied().collect();
            let set = WriteSet::from_writes(writes);
            prop_assert_eq!(set.into_entries(), expected.into_iter().collect::<Vec<_>>());
        }
    }
}
