//! Network identity: the Ed25519 key a validator's QUIC endpoints present in TLS.
//!
//! The committee lists each validator's network public key, and endpoints accept a peer only when the key
//! in its (self-signed) certificate is one of them: identity is pinned, there is no certificate authority.

use std::fmt;

use rand::RngCore;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::error::KeyError;

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410): the 32-byte seed follows it.
const PKCS8_ED25519_PREFIX: [u8; 16] =
    [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

/// An Ed25519 public key, 32 bytes, as listed in the committee.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct NetworkPublicKey(pub [u8; 32]);

impl NetworkPublicKey {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        Ok(Self(crate::hex_array(text)?))
    }
}

impl fmt::Debug for NetworkPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net:{}", &self.to_hex()[..8])
    }
}

impl fmt::Display for NetworkPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// An Ed25519 key pair for TLS. Kept as its seed, from which both halves derive.
#[derive(Clone)]
pub struct NetworkKeyPair {
    seed: [u8; 32],
    public: NetworkPublicKey,
}

impl NetworkKeyPair {
    /// Derives the key pair from a 32-byte seed (tests and testnets use fixed seeds).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let pair = Ed25519KeyPair::from_seed_unchecked(&seed).expect("ring accepts every 32-byte Ed25519 seed");
        let public = NetworkPublicKey(pair.public_key().as_ref().try_into().expect("Ed25519 public keys are 32 bytes"));
        Self { seed, public }
    }

    /// A fresh key pair from the operating system's randomness.
    pub fn generate() -> Self {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        Self::from_seed(seed)
    }

    pub fn public(&self) -> NetworkPublicKey {
        self.public
    }

    /// The 32-byte seed, for writing the key to a key file.
    pub fn seed(&self) -> &[u8; 32] {
        &self.seed
    }

    /// The private key as PKCS#8 v1 DER, the form TLS libraries load.
    pub fn pkcs8_der(&self) -> Vec<u8> {
        let mut der = PKCS8_ED25519_PREFIX.to_vec();
        der.extend_from_slice(&self.seed);
        der
    }
}

impl fmt::Debug for NetworkKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkKeyPair").field("public", &self.public).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_determines_key_and_pkcs8_round_trips() {
        let a = NetworkKeyPair::from_seed([7; 32]);
        let b = NetworkKeyPair::from_seed([7; 32]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public(), NetworkKeyPair::from_seed([8; 32]).public());
        let parsed = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&a.pkcs8_der()).unwrap();
        assert_eq!(parsed.public_key().as_ref(), a.public().as_bytes());
    }

    #[test]
    fn hex_round_trip() {
        let key = NetworkKeyPair::generate().public();
        assert_eq!(NetworkPublicKey::from_hex(&key.to_hex()).unwrap(), key);
        assert!(NetworkPublicKey::from_hex("abcd").is_err());
    }
}
