//! The native contracts and the [`Context`] they run in.
//!
//! A contract reads through the context and buffers its writes there; it never sees which executor runs it.
//! Reads the transaction's own writes answer are served locally; the rest go to a [`Reads`] source (the
//! sequential executor's overlay, or Block-STM's multi-version memory, which may answer "blocked"). All
//! arithmetic is checked: overflow is [`Failure::Overflow`], never a panic or a wrap.

mod amm;
mod coin;
mod counter;
mod token;

pub(crate) use amm::{swap, BPS};
pub(crate) use coin::transfer;
pub(crate) use counter::{increment, nft_mint};
pub(crate) use token::{token_mint, token_transfer};

use crate::receipt::Failure;
use crate::state::{StateKey, Value};

/// Where a transaction's reads go when its own writes do not answer them.
pub(crate) trait Reads {
    /// Why a read could not be answered now (Block-STM: an ESTIMATE of a lower transaction).
    type Blocked;

    fn read(&mut self, key: &StateKey) -> Result<Option<Value>, Self::Blocked>;
}

/// Why a call stopped: it failed, or (Block-STM only) a read hit an unfinished dependency.
pub(crate) enum Halt<B> {
    Fail(Failure),
    Blocked(B),
}

impl<B> From<Failure> for Halt<B> {
    fn from(failure: Failure) -> Self {
        Halt::Fail(failure)
    }
}

pub(crate) type CallResult<B> = Result<(), Halt<B>>;

/// One transaction's view of the state: its own writes, in order, over a [`Reads`] source.
pub(crate) struct Context<'r, R> {
    reads: &'r mut R,
    /// Append-only; a later entry for a key overrides an earlier one. A transaction writes a handful of keys,
    /// so a scan beats a map.
    writes: Vec<(StateKey, Value)>,
}

impl<'r, R: Reads> Context<'r, R> {
    pub(crate) fn new(reads: &'r mut R) -> Self {
        Self { reads, writes: Vec::with_capacity(8) }
    }

    pub(crate) fn get(&mut self, key: &StateKey) -> Result<Option<Value>, Halt<R::Blocked>> {
        if let Some((_, value)) = self.writes.iter().rev().find(|(k, _)| k == key) {
            return Ok(Some(*value));
        }
        self.reads.read(key).map_err(Halt::Blocked)
    }

    pub(crate) fn put(&mut self, key: StateKey, value: Value) {
        self.writes.push((key, value));
    }

    /// An amount; absent reads as 0.
    pub(crate) fn amount(&mut self, key: &StateKey) -> Result<u64, Halt<R::Blocked>> {
        match self.get(key)? {
            None => Ok(0),
            Some(Value::Amount(n)) => Ok(n),
            Some(_) => Err(Failure::CorruptState.into()),
        }
    }

    pub(crate) fn address(&mut self, key: &StateKey) -> Result<Option<crate::ids::Address>, Halt<R::Blocked>> {
        match self.get(key)? {
            None => Ok(None),
            Some(Value::Address(a)) => Ok(Some(a)),
            Some(_) => Err(Failure::CorruptState.into()),
        }
    }

    /// Adds to an amount (absent = 0), failing on overflow.
    pub(crate) fn credit(&mut self, key: StateKey, amount: u64) -> CallResult<R::Blocked> {
        let balance = self.amount(&key)?;
        self.put(key, Value::Amount(balance.checked_add(amount).ok_or(Failure::Overflow)?));
        Ok(())
    }

    /// Subtracts from an amount, failing with `short` when it is too small.
    pub(crate) fn debit(&mut self, key: StateKey, amount: u64, short: Failure) -> CallResult<R::Blocked> {
        let balance = self.amount(&key)?;
        self.put(key, Value::Amount(balance.checked_sub(amount).ok_or(short)?));
        Ok(())
    }

    /// A point to [`Self::revert`] to.
    pub(crate) fn checkpoint(&self) -> usize {
        self.writes.len()
    }

    /// Drops every write made since `checkpoint`.
    pub(crate) fn revert(&mut self, checkpoint: usize) {
        self.writes.truncate(checkpoint);
    }

    /// The transaction's writes, one per key (the last written value), in first-written order.
    pub(crate) fn into_writes(self) -> Vec<(StateKey, Value)> {
        let mut unique: Vec<(StateKey, Value)> = Vec::with_capacity(self.writes.len());
        for (key, value) in self.writes {
            match unique.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = value,
                None => unique.push((key, value)),
            }
        }
        unique
    }
}
