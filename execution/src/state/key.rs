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

/// The encoding's tags of the two account keys, which [`StateKey::order_key`] also lays out by hand.
const BALANCE_TAG: u8 = 1;
const NONCE_TAG: u8 = 2;

impl StateKey {
    /// Appends the canonical encoding: one tag byte, then the fields big-endian.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        self.encode_with(|bytes| out.extend_from_slice(bytes));
    }

    /// Hands the canonical encoding to `put`, a piece at a time.
    fn encode_with(&self, mut put: impl FnMut(&[u8])) {
        let mut tagged = |tag: u8, fields: &[&[u8]]| tagged(&mut put, tag, fields);
        match self {
            StateKey::Balance(a) => tagged(BALANCE_TAG, &[a.as_bytes()]),
            StateKey::Nonce(a) => tagged(NONCE_TAG, &[a.as_bytes()]),
            StateKey::TokenOwner(t) => tagged(3, &[&t.0.to_be_bytes()]),
            StateKey::TokenBalance(t, a) => tagged(4, &[&t.0.to_be_bytes(), a.as_bytes()]),
            StateKey::Pool(p) => tagged(5, &[&p.0.to_be_bytes()]),
            StateKey::PoolReserves(p) => tagged(6, &[&p.0.to_be_bytes()]),
            StateKey::Counter(c) => tagged(7, &[&c.0.to_be_bytes()]),
            StateKey::NftNextId(c) => tagged(8, &[&c.0.to_be_bytes()]),
            StateKey::NftOwner(c, id) => tagged(9, &[&c.0.to_be_bytes(), &id.to_be_bytes()]),
            StateKey::CollectedFees => tagged(10, &[]),
        }
    }

    /// A key that orders as the key itself: its canonical encoding, zero-padded to 32 bytes, read as two
    /// big-endian integers. Tags follow the variants' order and a variant's fields are fixed-size and
    /// big-endian, so the encodings sort as the keys (a derived `Ord`); two integer comparisons instead of a
    /// discriminant, a field and a `memcmp`, for sorting hundreds of thousands of keys.
    pub fn order_key(&self) -> [u128; 2] {
        // Account keys, nearly every write, are laid out without going through the encoder.
        let account = |tag: u8, address: &Address| {
            let a = address.as_bytes();
            let high =
                [tag, a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9], a[10], a[11], a[12], a[13], a[14]];
            let low = [a[15], a[16], a[17], a[18], a[19], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
            [u128::from_be_bytes(high), u128::from_be_bytes(low)]
        };
        match self {
            StateKey::Balance(a) => return account(BALANCE_TAG, a),
            StateKey::Nonce(a) => return account(NONCE_TAG, a),
            _ => {}
        }
        let mut padded = [0u8; 32];
        let mut at = 0;
        self.encode_with(|bytes| {
            padded[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        });
        let (high, low) = padded.split_at(16);
        [
            u128::from_be_bytes(high.try_into().expect("16 bytes")),
            u128::from_be_bytes(low.try_into().expect("16 bytes")),
        ]
    }

    /// Reads one key's canonical encoding off the front of `input`.
    pub fn decode_from(input: &mut &[u8]) -> Result<Self, String> {
        let mut r = Reader(input);
        Ok(match r.u8()? {
            BALANCE_TAG => StateKey::Balance(r.address()?),
            NONCE_TAG => StateKey::Nonce(r.address()?),
            3 => StateKey::TokenOwner(TokenId(r.u32()?)),
            4 => StateKey::TokenBalance(TokenId(r.u32()?), r.address()?),
            5 => StateKey::Pool(PoolId(r.u32()?)),
            6 => StateKey::PoolReserves(PoolId(r.u32()?)),
            7 => StateKey::Counter(CounterId(r.u32()?)),
            8 => StateKey::NftNextId(CollectionId(r.u32()?)),
            9 => StateKey::NftOwner(CollectionId(r.u32()?), r.u64()?),
            10 => StateKey::CollectedFees,
            tag => return Err(format!("unknown state key tag {tag}")),
        })
    }
}

impl Value {
    /// Appends the canonical encoding: one tag byte, then the fields big-endian.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let put = &mut |bytes: &[u8]| out.extend_from_slice(bytes);
        match self {
            Value::Amount(n) => tagged(put, 1, &[&n.to_be_bytes()]),
            Value::Address(a) => tagged(put, 2, &[a.as_bytes()]),
            Value::Pool(c) => {
                tagged(put, 3, &[&c.token_a.0.to_be_bytes(), &c.token_b.0.to_be_bytes(), &c.fee_bps.to_be_bytes()])
            }
            Value::Reserves { a, b } => tagged(put, 4, &[&a.to_be_bytes(), &b.to_be_bytes()]),
        }
    }

    /// Reads one value's canonical encoding off the front of `input`.
    pub fn decode_from(input: &mut &[u8]) -> Result<Self, String> {
        let mut r = Reader(input);
        Ok(match r.u8()? {
            1 => Value::Amount(r.u64()?),
            2 => Value::Address(r.address()?),
            3 => Value::Pool(PoolConfig { token_a: TokenId(r.u32()?), token_b: TokenId(r.u32()?), fee_bps: r.u16()? }),
            4 => Value::Reserves { a: r.u64()?, b: r.u64()? },
            tag => return Err(format!("unknown value tag {tag}")),
        })
    }
}

/// Fixed-size big-endian fields off the front of a slice.
struct Reader<'a, 'b>(&'a mut &'b [u8]);

impl Reader<'_, '_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let Some((head, rest)) = self.0.split_first_chunk::<N>() else {
            return Err(format!("truncated: {} bytes left, {N} expected", self.0.len()));
        };
        *self.0 = rest;
        Ok(*head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        self.take().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, String> {
        self.take().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, String> {
        self.take().map(u64::from_be_bytes)
    }

    fn address(&mut self) -> Result<Address, String> {
        self.take().map(Address)
    }
}

/// One tag byte, then the fields, to `put`.
fn tagged(put: &mut impl FnMut(&[u8]), tag: u8, fields: &[&[u8]]) {
    put(&[tag]);
    for field in fields {
        put(field);
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

    /// Sorting by `order_key` is sorting by the key: every pair of a mixed set, including keys that share a
    /// variant and differ only in a later field.
    #[test]
    fn order_keys_order_as_the_keys() {
        let (a, b) = (Address::from_index(7), Address::from_index(1 << 40));
        let keys = [
            StateKey::Balance(a),
            StateKey::Balance(b),
            StateKey::Nonce(a),
            StateKey::TokenOwner(TokenId(u32::MAX)),
            StateKey::TokenBalance(TokenId(3), b),
            StateKey::TokenBalance(TokenId(3), a),
            StateKey::TokenBalance(TokenId(256), a),
            StateKey::Pool(PoolId(4)),
            StateKey::PoolReserves(PoolId(4)),
            StateKey::Counter(CounterId(5)),
            StateKey::NftNextId(CollectionId(6)),
            StateKey::NftOwner(CollectionId(6), 1 << 60),
            StateKey::NftOwner(CollectionId(6), 2),
            StateKey::CollectedFees,
        ];
        for x in &keys {
            for y in &keys {
                assert_eq!(x.order_key().cmp(&y.order_key()), x.cmp(y), "{x:?} vs {y:?}");
            }
            // The account keys' shortcut lays out the same bytes as the encoding.
            let mut padded = Vec::new();
            x.encode_into(&mut padded);
            padded.resize(32, 0);
            let [high, low] = x.order_key();
            assert_eq!([high.to_be_bytes(), low.to_be_bytes()].concat(), padded, "{x:?}");
        }
    }

    #[test]
    fn every_variant_decodes_to_itself_and_a_truncation_or_unknown_tag_is_refused() {
        let a = Address::from_index(7);
        let keys = [
            StateKey::Balance(a),
            StateKey::Nonce(a),
            StateKey::TokenOwner(TokenId(3)),
            StateKey::TokenBalance(TokenId(3), a),
            StateKey::Pool(PoolId(4)),
            StateKey::PoolReserves(PoolId(4)),
            StateKey::Counter(CounterId(5)),
            StateKey::NftNextId(CollectionId(6)),
            StateKey::NftOwner(CollectionId(6), u64::MAX - 1),
            StateKey::CollectedFees,
        ];
        let values = [
            Value::Amount(u64::MAX),
            Value::Address(a),
            Value::Pool(PoolConfig { token_a: TokenId(1), token_b: TokenId(2), fee_bps: 30 }),
            Value::Reserves { a: 1, b: u64::MAX },
        ];
        for key in keys {
            let mut out = Vec::new();
            key.encode_into(&mut out);
            assert_eq!(StateKey::decode_from(&mut out.as_slice()), Ok(key));
            if out.len() > 1 {
                assert!(StateKey::decode_from(&mut &out[..out.len() - 1]).is_err(), "{key:?} truncated");
            }
        }
        for value in values {
            let mut out = Vec::new();
            value.encode_into(&mut out);
            assert_eq!(Value::decode_from(&mut out.as_slice()), Ok(value));
            assert!(Value::decode_from(&mut &out[..out.len() - 1]).is_err(), "{value:?} truncated");
        }
        assert!(StateKey::decode_from(&mut &[11u8][..]).is_err());
        assert!(Value::decode_from(&mut &[0u8; 9][..]).is_err());
    }
}
