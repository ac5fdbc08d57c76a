//! The state's keys and values. Every piece of state is one full [`StateKey`]: multi-version memory and the
//! in-memory state are keyed by the whole key, never by a hash of it (DESIGN.md §5, trap 2).
//!
//! Both have a canonical byte encoding, fixed per variant and tag-prefixed (so it is prefix-free), which is
//! what the state root hashes: it does not depend on rkyv's layout.

use crate::ids::{Address, CollectionId, CounterId, PoolId, TokenId};

/// One location in the state.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, Debug))]
pub enum StateKey {
    /// Native coin of an account ([`Value::Amount`]).
    Balance(Address),
    /// Next expected nonce of an account ([`Value::Amount`]; absent = 0).
    Nonce(Address),
    /// Who may mint a token ([`Value::Address`]); absent = the token does not exist.
    TokenOwner(TokenId),
    /// An account's balance of a token ([`Value::Amount`]).
    TokenBalance(TokenId, Address),
    /// A pool's fixed configuration ([`Value::Pool`]); absent = the pool does not exist.
    Pool(PoolId),
    /// A pool's reserves ([`Value::Reserves`]): the AMM hot spot.
    PoolReserves(PoolId),
    /// A counter's value ([`Value::Amount`]; absent = 0).
    Counter(CounterId),
    /// The next id a collection mints ([`Value::Amount`]; absent = 0).
    NftNextId(CollectionId),
    /// Who owns a minted NFT ([`Value::Address`]).
    NftOwner(CollectionId, u64),
    /// Gas fees collected in this state ([`Value::Amount`]). Only ever added to as a commutative delta at the
    /// end of a block, never read during execution (DESIGN.md §5, trap 1).
    CollectedFees,
}

/// A pool's fixed terms: the two tokens it trades (`token_a != token_b`) and its fee in basis points.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, Debug))]
pub struct PoolConfig {
    pub token_a: TokenId,
    pub token_b: TokenId,
    pub fee_bps: u16,
}

/// The value at a [`StateKey`]; which variant a key holds is documented on the key.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, Debug))]
pub enum Value {
    Amount(u64),
    Address(Address),
    Pool(PoolConfig),
    Reserves { a: u64, b: u64 },
}

impl StateKey {
    /// Appends the canonical encoding: one tag byte, then the fields big-endian.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            StateKey::Balance(a) => tagged(out, 1, &[a.as_bytes()]),
            StateKey::Nonce(a) => tagged(out, 2, &[a.as_bytes()]),
            StateKey::TokenOwner(t) => tagged(out, 3, &[&t.0.to_be_bytes()]),
            StateKey::TokenBalance(t, a) => tagged(out, 4, &[&t.0.to_be_bytes(), a.as_bytes()]),
            StateKey::Pool(p) => tagged(out, 5, &[&p.0.to_be_bytes()]),
            StateKey::PoolReserves(p) => tagged(out, 6, &[&p.0.to_be_bytes()]),
            StateKey::Counter(c) => tagged(out, 7, &[&c.0.to_be_bytes()]),
            StateKey::NftNextId(c) => tagged(out, 8, &[&c.0.to_be_bytes()]),
            StateKey::NftOwner(c, id) => tagged(out, 9, &[&c.0.to_be_bytes(), &id.to_be_bytes()]),
            StateKey::CollectedFees => tagged(out, 10, &[]),
        }
    }
}

impl Value {
    /// Appends the canonical encoding: one tag byte, then the fields big-endian.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        match self {
            Value::Amount(n) => tagged(out, 1, &[&n.to_be_bytes()]),
            Value::Address(a) => tagged(out, 2, &[a.as_bytes()]),
            Value::Pool(c) => {
                tagged(out, 3, &[&c.token_a.0.to_be_bytes(), &c.token_b.0.to_be_bytes(), &c.fee_bps.to_be_bytes()])
            }
            Value::Reserves { a, b } => tagged(out, 4, &[&a.to_be_bytes(), &b.to_be_bytes()]),
        }
    }
}

fn tagged(out: &mut Vec<u8>, tag: u8, fields: &[&[u8]]) {
    out.push(tag);
    for field in fields {
        out.extend_from_slice(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_differ_by_variant() {
        let a = Address::from_index(7);
        let keys = [StateKey::Balance(a), StateKey::Nonce(a), StateKey::TokenBalance(TokenId(0), a)];
        let encoded: Vec<Vec<u8>> = keys
            .iter()
            .map(|k| {
                let mut out = Vec::new();
                k.encode_into(&mut out);
                out
            })
            .collect();
        assert_ne!(encoded[0], encoded[1]);
        assert_eq!(encoded[2].len(), 1 + 4 + 20);
    }
}
