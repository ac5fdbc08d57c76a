//! A validator's TOML configuration: its own parameters of DESIGN.md §8 with their defaults, and where the
//! validator keeps its data. Every field may be left out; an unknown or ill-typed field is an error that names
//! the field and the file. The parameters that change what is committed (GC depth, leader schedule) are not
//! here: they are the committee's (`[protocol]` in the committee file), and a validator config that still
//! sets one is refused with a message that says where it went.

use std::path::{Path, PathBuf};

use anyhow::Context;
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
    pub execution: ExecutionConfig,
    /// Workers that run in their own processes (`mako validator --worker <i>`, possibly on other machines):
    /// entry `i` is the link between the primary and worker `i`, one per worker of the committee entry. Empty
    /// (the default): every worker runs inside the validator process.
    pub worker_links: Vec<WorkerLinkConfig>,
    /// The QUIC endpoints of the primary and the workers bind this many ports above the committee's addresses,
    /// where an emulated network (`mako relay`) forwards what reaches the committee's; a worker's client port
    /// (TCP) stays the committee's. 0 (the default): the committee's ports.
    pub quic_port_shift: u16,
    /// Largest UDP payload the QUIC packets between validators may grow to (path-MTU discovery probes up to
    /// it). The default, 65,527, lets loopback links (MTU 64 KiB) carry a batch in a few packets; a path through
    /// the internet stops at its MTU (1,452 bytes of QUIC payload under a 1,500-byte MTU) whatever this says.
    /// `mako testnet` sets 1,452 when it emulates a WAN on loopback (`mako relay`), as the WAN would: 64 KiB
    /// datagrams fill a socket buffer in 64 packets, and a burst the size of a 100 ms path's window overflows it.
    pub max_udp_payload: u16,
    /// Threads of the validator's async runtime (tokio's workers: network, consensus, the mempool); 0 (the
    /// default) means one per core. Validators that share a machine should share its cores: `mako testnet`
    /// gives each its share (at least one), as it does Block-STM's threads.
    pub runtime_threads: usize,
}

/// The two ends of a primary–worker link (QUIC, pinned to the validator's network key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerLinkConfig {
    /// Where the primary's end listens (UDP), as the worker reaches it.
    pub primary: std::net::SocketAddr,
    /// Where the worker's end listens (UDP), as the primary reaches it.
    pub worker: std::net::SocketAddr,
    /// The worker process's database folder; by default the validator's `storage` with `-worker-<i>` added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<PathBuf>,
    /// Where the worker process serves Prometheus metrics; none serves nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<std::net::SocketAddr>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExecutionConfig {
    /// Block-STM threads; 0 means one per core, and 1 runs the sequential executor (Block-STM on one thread
    /// only adds bookkeeping).
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
            execution: ExecutionConfig::default(),
            worker_links: Vec::new(),
            quic_port_shift: 0,
            max_udp_payload: mako_network::NetworkConfig::default().max_udp_payload,
            runtime_threads: 0,
        }
    }
}

impl Default for ExecutionConfig {
    fn default() -> Self {
        Self { threads: 0, genesis: None, genesis_accounts: 100_000 }
    }
}

/// Fields that validator configs had before they became the committee's protocol parameters (issue 15).
const MOVED_TO_COMMITTEE: [(&str, &str); 2] = [("mempool", "gc_depth"), ("consensus", "leader_schedule")];

impl ValidatorConfig {
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let table: toml::Table = toml::from_str(text)?;
        for (section, field) in MOVED_TO_COMMITTEE {
            if table.get(section).and_then(|s| s.get(field)).is_some() {
                anyhow::bail!(
                    "{section}.{field} is a protocol parameter: every validator must run the same, so it is set \
                     in the committee file's [protocol] section (mako committee --{}); remove it here",
                    field.replace('_', "-")
                );
            }
        }
        Ok(toml::from_str(text)?)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("bad config {}", path.display()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a config always serializes")
    }

    /// Where worker `id` keeps its database when it runs in its own process.
    pub fn worker_storage(&self, id: usize) -> PathBuf {
        match self.worker_links.get(id).and_then(|link| link.storage.clone()) {
            Some(path) => path,
            None => {
                let mut path = self.storage.clone().into_os_string();
                path.push(format!("-worker-{id}"));
                path.into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_and_partial_files_fill_in() {
        let config = ValidatorConfig::default();
        assert_eq!(ValidatorConfig::from_toml(&config.to_toml()).unwrap(), config);
        let partial = ValidatorConfig::from_toml("[execution]\nthreads = 3\n").unwrap();
        assert_eq!(partial.execution.threads, 3);
        assert_eq!(partial.mempool, MempoolParameters::default());
    }

    #[test]
    fn worker_links_round_trip_and_name_their_storage() {
        let text = "storage = \"db/v0\"\n[[worker_links]]\nprimary = \"10.0.0.1:7000\"\nworker = \"10.0.0.2:7001\"\n";
        let config = ValidatorConfig::from_toml(text).unwrap();
        assert_eq!(ValidatorConfig::from_toml(&config.to_toml()).unwrap(), config);
        assert_eq!(config.worker_links[0].worker, "10.0.0.2:7001".parse::<std::net::SocketAddr>().unwrap());
        assert_eq!(config.worker_storage(0), PathBuf::from("db/v0-worker-0"));
        let missing = ValidatorConfig::from_toml("[[worker_links]]\nprimary = \"10.0.0.1:7000\"\n").unwrap_err();
        assert!(format!("{missing:#}").contains("worker"), "{missing:#}");
    }

    #[test]
    fn protocol_parameters_are_refused_with_where_they_went() {
        for text in ["[mempool]\ngc_depth = 10\n", "[consensus]\nleader_schedule = \"reputation\"\n"] {
            let error = format!("{:#}", ValidatorConfig::from_toml(text).unwrap_err());
            assert!(error.contains("committee file's [protocol]"), "{error}");
        }
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
