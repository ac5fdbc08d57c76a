//! A validator's TOML configuration: the protocol parameters of DESIGN.md §8 with their defaults, and where
//! the validator keeps its data. Every field may be left out; an unknown or ill-typed field is an error that
//! names the field and the file.

use std::path::{Path, PathBuf};

use anyhow::Context;
use mako_consensus::ScheduleKind;
use mako_mempool::config::MempoolParameters;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ValidatorConfig {
    /// Folder of the validator's database.
    pub storage: PathBuf,
    /// Where to serve Prometheus metrics (`GET /metrics`); none serves nothing.
    pub metrics_address: Option<std::net::SocketAddr>,
    pub mempool: MempoolParameters,
    pub consensus: ConsensusConfig,
    pub execution: ExecutionConfig,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsensusConfig {
    /// `round_robin` or `reputation`; every validator of a committee must use the same.
    pub leader_schedule: ScheduleKind,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Block-STM threads; 0 means one per core.
    pub threads: usize,
    /// The genesis state file; none means the generated genesis of `genesis_accounts` accounts.
    pub genesis: Option<PathBuf>,
    pub genesis_accounts: u64,
}

impl Default for ValidatorConfig {
    fn default() -> Self {
        Self {
            storage: PathBuf::from("mako-db"),
            metrics_address: None,
            mempool: MempoolParameters::default(),
            consensus: ConsensusConfig::default(),
            execution: ExecutionConfig::default(),
        }
    }
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self { threads: 0, genesis: None, genesis_accounts: 100_000 }
    }
}

impl ValidatorConfig {
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("bad config {}", path.display()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_partial_files_fill_in() {
        let config = ValidatorConfig::default();
        assert_eq!(ValidatorConfig::from_toml(&config.to_toml()).unwrap(), config);
        let partial = ValidatorConfig::from_toml("[consensus]\nleader_schedule = \"reputation\"\n").unwrap();
        assert_eq!(partial.consensus.leader_schedule, ScheduleKind::Reputation);
        assert_eq!(partial.mempool, MempoolParameters::default());
    }

    #[test]
    fn errors_name_the_field_and_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("validator.toml");
        std::fs::write(&path, "[mempool]\nbatch_size = \"big\"\n").unwrap();
        let error = format!("{:#}", ValidatorConfig::load(&path).unwrap_err());
        assert!(error.contains("validator.toml") && error.contains("batch_size"), "{error}");
        std::fs::write(&path, "[mempool]\nbach_size = 5\n").unwrap();
        let error = format!("{:#}", ValidatorConfig::load(&path).unwrap_err());
        assert!(error.contains("bach_size"), "{error}");
    }
}
