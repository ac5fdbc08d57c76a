//! The mempool's parameters, with the defaults of DESIGN.md §8. They come from the validator's TOML config;
//! none of them changes what is committed (the GC depth is a protocol parameter, the committee's).

use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MempoolParameters {
    /// Seal a batch once its transactions reach this many bytes.
    pub batch_size: usize,
    /// Or once this long has passed since its first transaction.
    #[serde(with = "humantime_serde")]
    pub max_batch_delay: Duration,
    /// Largest transaction accepted from a client, in bytes.
    pub max_transaction_size: usize,
    /// Propose once this many batch digests wait.
    pub header_num_batches: usize,
    /// Or once this long has passed since the last proposal.
    #[serde(with = "humantime_serde")]
    pub max_header_delay: Duration,
    /// But never sooner than this after the last proposal. A round costs a validator the same signatures and
    /// pairings (≈15 ms of CPU at n = 4) however few batches it carries, so rounds that run as fast as the
    /// network allows spend the CPU on rounds, not transactions: with this floor, more load makes each round
    /// carry more batches instead of making rounds faster. Zero turns it off. Measured on the 2-core testnet
    /// (README): at 60k tx/s offered, 0 ms gave 55k executed at p50 1.7 s, 120 ms 63k at p50 0.73 s, 200 ms
    /// 62.5k at p50 1.4 s; below saturation (45k) the floor costs latency (p50 0.43 / 0.63 / 0.86 s).
    #[serde(with = "humantime_serde")]
    pub min_header_delay: Duration,
    /// Bullshark's bound on waiting for a leader's certificate or votes (DESIGN.md §4).
    #[serde(with = "humantime_serde")]
    pub leader_timeout: Duration,
    /// Certificate fetch retry period.
    #[serde(with = "humantime_serde")]
    pub sync_retry_delay: Duration,
    /// Peers asked per retry.
    pub sync_retry_nodes: usize,
    /// Workers admit client transactions only while this validator's executor is at most this many committed
    /// sub-DAGs behind consensus (`admission`): offered more than it executes, the validator pushes back on
    /// its clients instead of queueing. Zero turns it off.
    pub max_execution_lag: u64,
    /// Bytes of pushed batches that no certificate carries yet, per peer, that our workers keep; past it the
    /// peer's oldest such batches are deleted (`primary::retention`: a Byzantine worker cannot fill the disk).
    pub max_unreferenced_bytes_per_peer: usize,
}

impl Default for MempoolParameters {
    fn default() -> Self {
        Self {
            batch_size: 500_000,
            max_batch_delay: Duration::from_millis(100),
            max_transaction_size: 64 * 1024,
            header_num_batches: 1,
            max_header_delay: Duration::from_millis(200),
            min_header_delay: Duration::from_millis(120),
            leader_timeout: Duration::from_secs(1),
            sync_retry_delay: Duration::from_secs(5),
            sync_retry_nodes: 3,
            max_execution_lag: 2,
            max_unreferenced_bytes_per_peer: 256 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_with_defaults_and_unknown_field_rejected() {
        let parsed: MempoolParameters = toml::from_str("batch_size = 1000\nmax_batch_delay = \"10ms\"").unwrap();
        assert_eq!(parsed.batch_size, 1000);
        assert_eq!(parsed.max_batch_delay, Duration::from_millis(10));
        assert_eq!(parsed.sync_retry_nodes, 3);
        let err = toml::from_str::<MempoolParameters>("batch_sise = 1").unwrap_err().to_string();
        assert!(err.contains("batch_sise"), "{err}");
    }
}
