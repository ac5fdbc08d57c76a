//! A validator's secret keys: the BLS key it signs headers and votes with, and the network key its QUIC
//! endpoints present. Stored as a TOML key file of hex secrets.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::crypto::BlsKeyPair;
use crate::error::KeyError;
use crate::network_key::NetworkKeyPair;

#[derive(Clone, Debug)]
pub struct ValidatorKeys {
    pub bls: BlsKeyPair,
    pub network: NetworkKeyPair,
}

impl ValidatorKeys {
    /// Deterministic keys for tests and local testnets.
    pub fn from_seed(seed: u64) -> Self {
        let derive =
            |purpose: &str| *blake3::Hasher::new_derive_key(purpose).update(&seed.to_le_bytes()).finalize().as_bytes();
        Self {
            bls: BlsKeyPair::from_seed(derive("mako 2026 test bls seed v1")),
            network: NetworkKeyPair::from_seed(derive("mako 2026 test network seed v1")),
        }
    }

    /// Fresh keys from the operating system's randomness.
    pub fn generate() -> Self {
        Self { bls: BlsKeyPair::generate(), network: NetworkKeyPair::generate() }
    }

    pub fn to_toml(&self) -> String {
        let file = KeyFile {
            bls_secret: hex::encode(self.bls.secret_bytes()),
            network_secret: hex::encode(self.network.seed()),
        };
        toml::to_string(&file).expect("a key file always serializes")
    }

    pub fn from_toml(text: &str) -> Result<Self, KeyError> {
        let file: KeyFile =
            toml::from_str(text).map_err(|e| KeyError::File { path: "<text>".into(), reason: e.to_string() })?;
        Ok(Self {
            bls: BlsKeyPair::from_secret_bytes(&crate::hex_array(&file.bls_secret)?)?,
            network: NetworkKeyPair::from_seed(crate::hex_array(&file.network_secret)?),
        })
    }

    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let file_error = |reason: String| KeyError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        Self::from_toml(&text).map_err(|e| match e {
            KeyError::File { reason, .. } => file_error(reason),
            other => file_error(other.to_string()),
        })
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    bls_secret: String,
    network_secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_round_trip() {
        let keys = ValidatorKeys::from_seed(5);
        let back = ValidatorKeys::from_toml(&keys.to_toml()).unwrap();
        assert_eq!(back.bls.public(), keys.bls.public());
        assert_eq!(back.network.public(), keys.network.public());
        assert!(ValidatorKeys::from_toml("bls_secret = \"00\"\nnetwork_secret = \"00\"").is_err());
    }
}
