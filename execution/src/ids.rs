//! Names of things in the state: accounts, tokens, pools, counters and NFT collections.
//!
//! An [`Address`] is 20 opaque bytes (no signatures yet: the sender field is trusted as ordered by consensus).
//! It reads and writes as hex in genesis files. Contract instances are numbered, not addressed.

use std::fmt;

/// An account: holds native coin, a nonce, token balances and NFTs.
#[allow(clippy::derived_hash_with_manual_eq)] // `eq` is byte equality, as derived; only faster.
#[derive(Clone, Copy, Eq, PartialOrd, Ord, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(PartialEq, Eq, Debug))]
pub struct Address(pub [u8; 20]);

impl PartialEq for Address {
    /// Byte equality as two word compares, inlined: the derived one calls `memcmp`, and multi-version memory
    /// compares keys on every lookup.
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        let split = |a: &[u8; 20]| {
            let (head, tail) = a.split_at(16);
            (
                u128::from_ne_bytes(head.try_into().expect("16 bytes")),
                u32::from_ne_bytes(tail.try_into().expect("4 bytes")),
            )
        };
        split(&self.0) == split(&other.0)
    }
}

impl Address {
    /// The `index`-th account of a generated genesis: its big-endian index in the last 8 bytes.
    pub fn from_index(index: u64) -> Self {
        let mut bytes = [0u8; 20];
        bytes[12..].copy_from_slice(&index.to_be_bytes());
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 20] {
        &self.0
    }
}

impl fmt::Debug for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{}", hex::encode(self.0))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl std::str::FromStr for Address {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let text = text.strip_prefix("0x").unwrap_or(text);
        let bytes = hex::decode(text).map_err(|e| format!("address {text:?}: {e}"))?;
        let bytes: [u8; 20] =
            bytes.try_into().map_err(|b: Vec<u8>| format!("address {text:?}: {} bytes, expected 20", b.len()))?;
        Ok(Self(bytes))
    }
}

impl serde::Serialize for Address {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Address {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

macro_rules! instance_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default,
            serde::Serialize, serde::Deserialize, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[serde(transparent)]
        #[rkyv(derive(PartialEq, Eq, Debug))]
        pub struct $name(pub u32);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}#{}", stringify!($name), self.0)
            }
        }
    };
}

instance_id!(
    /// An ERC-20-like token: an owner who may mint, and a balance per account.
    TokenId
);
instance_id!(
    /// A constant-product pool of two tokens.
    PoolId
);
instance_id!(
    /// A counter anyone may increment: the hottest possible key.
    CounterId
);
instance_id!(
    /// An NFT collection: a next-id counter and an owner per minted id.
    CollectionId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_hex_round_trip() {
        let a = Address::from_index(0xdead_beef);
        assert_eq!(a.to_string().parse::<Address>().unwrap(), a);
        assert!("0x12".parse::<Address>().is_err());
        assert!("zz".parse::<Address>().is_err());
    }
}
