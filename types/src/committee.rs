//! The committee: who validates, with what stake, under which keys and at which addresses.
//!
//! Loading a committee checks every proof of possession (so BLS aggregates over its keys are safe from rogue
//! keys, DESIGN.md §2) and rejects duplicate keys or addresses and zero stake, naming the validator and the
//! field. Validators are identified by their position in the file: [`AuthorityIndex`]. The file also holds the
//! committee's [`ProtocolParameters`] (its `[protocol]` section), which every validator must share.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::crypto::{BlsPublicKey, BlsSignature};
use crate::error::CommitteeError;
use crate::network_key::NetworkPublicKey;
use crate::protocol::ProtocolParameters;
use crate::ValidatorKeys;

/// Voting power.
pub type Stake = u64;

/// Which of a validator's workers; also the index into [`Authority::worker_addresses`].
pub type WorkerId = u32;

/// A validator's position in the committee.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(PartialEq, Eq, PartialOrd, Ord, Hash, Debug))]
pub struct AuthorityIndex(pub u16);

impl AuthorityIndex {
    pub fn as_usize(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Debug for AuthorityIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

impl fmt::Display for AuthorityIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}", self.0)
    }
}

/// One validator of the committee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authority {
    pub stake: Stake,
    pub bls_key: BlsPublicKey,
    pub proof_of_possession: BlsSignature,
    pub network_key: NetworkPublicKey,
    pub primary_address: SocketAddr,
    pub worker_addresses: Vec<SocketAddr>,
}

impl Authority {
    /// An authority for `keys`, with a fresh proof of possession.
    pub fn new(
        keys: &ValidatorKeys,
        stake: Stake,
        primary_address: SocketAddr,
        worker_addresses: Vec<SocketAddr>,
    ) -> Self {
        Self {
            stake,
            bls_key: keys.bls.public(),
            proof_of_possession: keys.bls.proof_of_possession(),
            network_key: keys.network.public(),
            primary_address,
            worker_addresses,
        }
    }
}

/// A validated committee.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Committee {
    authorities: Vec<Authority>,
    total_stake: Stake,
    by_network_key: BTreeMap<NetworkPublicKey, AuthorityIndex>,
    protocol: ProtocolParameters,
}

impl Committee {
    /// Validates and builds a committee; the position in `authorities` is the [`AuthorityIndex`].
    pub fn new(authorities: Vec<Authority>) -> Result<Self, CommitteeError> {
        if authorities.is_empty() {
            return Err(CommitteeError::Empty);
        }
        if authorities.len() > u16::MAX as usize {
            return Err(CommitteeError::TooLarge(authorities.len()));
        }
        let mut total_stake: Stake = 0;
        let mut bls_keys = BTreeMap::new();
        let mut network_keys = BTreeMap::new();
        let mut addresses = BTreeMap::new();
        for (validator, authority) in authorities.iter().enumerate() {
            if authority.stake == 0 {
                return Err(CommitteeError::ZeroStake { validator, field: "stake" });
            }
            total_stake = total_stake
                .checked_add(authority.stake)
                .ok_or(CommitteeError::StakeOverflow { validator, field: "stake" })?;
            if let Some(&other) = bls_keys.get(&authority.bls_key.to_bytes().0) {
                return Err(CommitteeError::Duplicate { validator, other, field: "bls_public_key" });
            }
            bls_keys.insert(authority.bls_key.to_bytes().0, validator);
            if let Some(&other) = network_keys.get(&authority.network_key) {
                return Err(CommitteeError::Duplicate { validator, other, field: "network_key" });
            }
            network_keys.insert(authority.network_key, validator);
            let mut own = BTreeSet::new();
            for (field, address) in std::iter::once(("primary_address", authority.primary_address))
                .chain(authority.worker_addresses.iter().map(|a| ("worker_addresses", *a)))
            {
                if let Some(&other) = addresses.get(&address) {
                    return Err(CommitteeError::Duplicate { validator, other, field });
                }
                if !own.insert(address) {
                    return Err(CommitteeError::Duplicate { validator, other: validator, field });
                }
            }
            addresses.extend(own.into_iter().map(|a| (a, validator)));
            authority
                .bls_key
                .verify_possession(&authority.proof_of_possession)
                .map_err(|_| CommitteeError::BadProofOfPossession { validator })?;
        }
        let by_network_key = network_keys.into_iter().map(|(key, i)| (key, AuthorityIndex(i as u16))).collect();
        Ok(Self { authorities, total_stake, by_network_key, protocol: ProtocolParameters::default() })
    }

    /// The same committee under other protocol parameters (checked).
    pub fn with_protocol(mut self, protocol: ProtocolParameters) -> Result<Self, CommitteeError> {
        protocol.validate()?;
        self.protocol = protocol;
        Ok(self)
    }

    /// The parameters every validator of the committee runs the protocol with.
    pub fn protocol(&self) -> &ProtocolParameters {
        &self.protocol
    }

    /// A committee on loopback for tests and local testnets: validator i's primary listens on
    /// `base_port + i * (1 + workers)` and its workers on the ports that follow.
    pub fn local(keys: &[ValidatorKeys], base_port: u16, workers: usize) -> Result<Self, CommitteeError> {
        let address = |port: usize| SocketAddr::from(([127, 0, 0, 1], port as u16));
        let stride = 1 + workers;
        let authorities = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let primary = base_port as usize + i * stride;
                Authority::new(k, 1, address(primary), (1..=workers).map(|w| address(primary + w)).collect())
            })
            .collect();
        Self::new(authorities)
    }

    pub fn size(&self) -> usize {
        self.authorities.len()
    }

    pub fn total_stake(&self) -> Stake {
        self.total_stake
    }

    /// Stake strictly above two thirds of the total: 2f+1 of 3f+1 equal validators.
    pub fn quorum_threshold(&self) -> Stake {
        2 * self.total_stake / 3 + 1
    }

    /// Stake that includes at least one honest validator: f+1 of 3f+1 equal validators.
    pub fn validity_threshold(&self) -> Stake {
        self.total_stake.div_ceil(3)
    }

    pub fn is_quorum(&self, stake: Stake) -> bool {
        stake >= self.quorum_threshold()
    }

    pub fn is_valid(&self, stake: Stake) -> bool {
        stake >= self.validity_threshold()
    }

    pub fn authority(&self, index: AuthorityIndex) -> Option<&Authority> {
        self.authorities.get(index.as_usize())
    }

    /// The stake of `index`, zero for an index outside the committee.
    pub fn stake(&self, index: AuthorityIndex) -> Stake {
        self.authority(index).map_or(0, |a| a.stake)
    }

    pub fn authorities(&self) -> impl Iterator<Item = (AuthorityIndex, &Authority)> {
        self.authorities.iter().enumerate().map(|(i, a)| (AuthorityIndex(i as u16), a))
    }

    pub fn index_of_network_key(&self, key: &NetworkPublicKey) -> Option<AuthorityIndex> {
        self.by_network_key.get(key).copied()
    }

    /// Parses and validates a committee from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, CommitteeError> {
        let file: CommitteeFile =
            toml::from_str(text).map_err(|e| CommitteeError::File { path: "<text>".into(), reason: e.to_string() })?;
        let authorities = file
            .validator
            .into_iter()
            .enumerate()
            .map(|(validator, v)| v.into_authority(validator))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(authorities)?.with_protocol(file.protocol)
    }

    pub fn to_toml(&self) -> String {
        let file = CommitteeFile {
            protocol: self.protocol,
            validator: self.authorities.iter().map(ValidatorEntry::from).collect(),
        };
        toml::to_string_pretty(&file).expect("a committee always serializes to TOML")
    }

    pub fn load(path: &Path) -> Result<Self, CommitteeError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| CommitteeError::File { path: path.display().to_string(), reason: e.to_string() })?;
        Self::from_toml(&text).map_err(|e| match e {
            CommitteeError::File { reason, .. } => CommitteeError::File { path: path.display().to_string(), reason },
            other => CommitteeError::File { path: path.display().to_string(), reason: other.to_string() },
        })
    }

    pub fn save(&self, path: &Path) -> Result<(), CommitteeError> {
        std::fs::write(path, self.to_toml())
            .map_err(|e| CommitteeError::File { path: path.display().to_string(), reason: e.to_string() })
    }
}

/// The TOML form of a committee: the `[protocol]` section (defaults when absent), then one `[[validator]]`
/// table each.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommitteeFile {
    #[serde(default)]
    protocol: ProtocolParameters,
    validator: Vec<ValidatorEntry>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ValidatorEntry {
    stake: Stake,
    bls_public_key: String,
    proof_of_possession: String,
    network_key: String,
    primary_address: SocketAddr,
    worker_addresses: Vec<SocketAddr>,
}

impl ValidatorEntry {
    fn into_authority(self, validator: usize) -> Result<Authority, CommitteeError> {
        let bad = |field| move |source| CommitteeError::BadKey { validator, field, source };
        Ok(Authority {
            stake: self.stake,
            bls_key: BlsPublicKey::from_hex(&self.bls_public_key).map_err(bad("bls_public_key"))?,
            proof_of_possession: BlsSignature::from_hex(&self.proof_of_possession)
                .map_err(bad("proof_of_possession"))?,
            network_key: NetworkPublicKey::from_hex(&self.network_key).map_err(bad("network_key"))?,
            primary_address: self.primary_address,
            worker_addresses: self.worker_addresses,
        })
    }
}

impl From<&Authority> for ValidatorEntry {
    fn from(a: &Authority) -> Self {
        Self {
            stake: a.stake,
            bls_public_key: a.bls_key.to_hex(),
            proof_of_possession: a.proof_of_possession.to_hex(),
            network_key: a.network_key.to_hex(),
            primary_address: a.primary_address,
            worker_addresses: a.worker_addresses.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{BlsKeyPair, Domain};

    fn keys(n: u64) -> Vec<ValidatorKeys> {
        (0..n).map(ValidatorKeys::from_seed).collect()
    }

    #[test]
    fn thresholds() {
        for (n, quorum, validity) in [(1, 1, 1), (3, 3, 1), (4, 3, 2), (7, 5, 3), (10, 7, 4), (100, 67, 34)] {
            let c = Committee::local(&keys(n), 9000, 1).unwrap();
            assert_eq!((c.quorum_threshold(), c.validity_threshold()), (quorum, validity), "n = {n}");
        }
    }

    #[test]
    fn toml_round_trip_through_a_file() {
        let c = Committee::local(&keys(4), 9000, 2).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("committee.toml");
        c.save(&path).unwrap();
        assert_eq!(Committee::load(&path).unwrap(), c);
        assert_eq!(c.index_of_network_key(&keys(4)[2].network.public()), Some(AuthorityIndex(2)));
    }

    fn with(edit: impl FnOnce(&mut Vec<Authority>)) -> Result<Committee, CommitteeError> {
        let mut authorities: Vec<Authority> = Committee::local(&keys(4), 9000, 1).unwrap().authorities.clone();
        edit(&mut authorities);
        Committee::new(authorities)
    }

    #[test]
    fn rejects_bad_entries_naming_validator_and_field() {
        let err = with(|a| a[2].stake = 0).unwrap_err();
        assert_eq!(err, CommitteeError::ZeroStake { validator: 2, field: "stake" });
        let err = with(|a| a[3].bls_key = a[1].bls_key).unwrap_err();
        assert_eq!(err, CommitteeError::Duplicate { validator: 3, other: 1, field: "bls_public_key" });
        let err = with(|a| a[3].network_key = a[0].network_key).unwrap_err();
        assert_eq!(err, CommitteeError::Duplicate { validator: 3, other: 0, field: "network_key" });
        let err = with(|a| a[1].worker_addresses[0] = a[0].primary_address).unwrap_err();
        assert_eq!(err, CommitteeError::Duplicate { validator: 1, other: 0, field: "worker_addresses" });
        let err = with(|a| a[2].proof_of_possession = a[1].proof_of_possession).unwrap_err();
        assert_eq!(err, CommitteeError::BadProofOfPossession { validator: 2 });
        assert!(err.to_string().contains("validator 2"), "{err}");
    }

    #[test]
    fn rejects_rogue_key_without_possession() {
        // A key the adversary does not hold the secret of (here: a sum of honest keys) with a signature
        // that is not its own proof of possession.
        let honest = BlsKeyPair::from_seed([1; 32]);
        let err = with(|a| {
            a[3].bls_key = honest.public();
            a[3].proof_of_possession = honest.sign(Domain::Vote, &honest.public().to_bytes().0);
        })
        .unwrap_err();
        assert_eq!(err, CommitteeError::BadProofOfPossession { validator: 3 });
    }

    #[test]
    fn protocol_parameters_are_the_committee_files() {
        use crate::protocol::ScheduleKind;
        let protocol = ProtocolParameters {
            gc_depth: 7,
            leader_schedule: ScheduleKind::Reputation,
            reputation_window: 3,
            checkpoint_interval: 40,
        };
        let c = Committee::local(&keys(4), 9000, 1).unwrap().with_protocol(protocol).unwrap();
        let text = c.to_toml();
        assert!(text.starts_with("[protocol]"), "{text}");
        assert_eq!(Committee::from_toml(&text).unwrap().protocol(), &protocol);
        // A file without the section (written before it existed) runs the defaults.
        let old = text[text.find("[[validator]]").unwrap()..].to_string();
        assert_eq!(Committee::from_toml(&old).unwrap().protocol(), &ProtocolParameters::default());
        let err = Committee::from_toml(&text.replace("gc_depth = 7", "gc_depth = 1")).unwrap_err().to_string();
        assert!(err.contains("gc_depth"), "{err}");
        let err = Committee::from_toml(&text.replace("gc_depth = 7", "gc_dept = 7")).unwrap_err().to_string();
        assert!(err.contains("gc_dept"), "{err}");
    }

    #[test]
    fn toml_errors_name_the_field() {
        let text = Committee::local(&keys(2), 9000, 1).unwrap().to_toml();
        let broken = text.replacen("network_key = \"", "network_key = \"zz", 1);
        let err = Committee::from_toml(&broken).unwrap_err().to_string();
        assert!(err.contains("validator 0") && err.contains("network_key"), "{err}");
        let err = Committee::from_toml("validator = 3").unwrap_err().to_string();
        assert!(err.contains("validator"), "{err}");
    }
}
