//! A validator's Prometheus page: `GET /metrics` on the configured `metrics_address` (DESIGN.md §7).
//!
//! The actors keep their counters as plain atomics (`PrimaryMetrics`, `WorkerMetrics`, `NetworkMetrics`,
//! `ExecutionMetrics`); [`ValidatorCollector`] reads them at each scrape and encodes them with
//! `prometheus-client`, so nothing is copied between scrapes. `mako testnet` and `mako bench` read the same
//! page for their live line and their report.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use anyhow::Context;
use mako_execution::pipeline::ExecutionMetrics;
use mako_mempool::primary::PrimaryMetrics;
use mako_mempool::worker::WorkerMetrics;
use mako_network::NetworkMetrics;
use mako_types::cpu_time::{self, Component};
use mako_types::HistogramSnapshot;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::debug;

/// Everything a validator process exports: its primary half (none in a worker's own process), its workers,
/// and every network endpoint it runs.
#[derive(Debug)]
pub struct ValidatorCollector {
    pub primary: Option<PrimaryHalf>,
    pub workers: Vec<Arc<WorkerMetrics>>,
    /// The primary's, the workers' and the worker links' endpoints, summed.
    pub networks: Vec<Arc<NetworkMetrics>>,
}

/// The primary, consensus and execution of a validator.
#[derive(Debug)]
pub struct PrimaryHalf {
    pub primary: Arc<PrimaryMetrics>,
    pub execution: Arc<ExecutionMetrics>,
}

fn counter(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value as i64).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

fn histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    snapshot: &HistogramSnapshot,
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    // prometheus-client takes each bucket's own count and accumulates them itself.
    let buckets: Vec<(f64, u64)> = snapshot
        .cumulative_seconds()
        .iter()
        .zip(&snapshot.counts)
        .map(|(&(bound, _), &count)| (bound, count))
        .collect();
    metric.encode_histogram::<NoLabelSet>(snapshot.sum_us as f64 / 1e6, snapshot.count(), &buckets, None)
}

impl PrimaryHalf {
    fn encode(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let p = &self.primary;
        let get = |c: &AtomicU64| c.load(Relaxed);
        gauge(e, "mako_primary_round", "Highest DAG round this primary has seen", get(&p.highest_round))?;
        counter(e, "mako_primary_headers_proposed", "Headers this primary proposed", get(&p.headers_proposed))?;
        counter(e, "mako_primary_votes_sent", "Votes this primary sent", get(&p.votes_sent))?;
        counter(e, "mako_primary_syncs", "Disk syncs that released votes and headers", get(&p.syncs))?;
        counter(e, "mako_primary_sync_micros", "Time spent in those syncs, microseconds", get(&p.sync_micros))?;
        let verifications = get(&p.certificate_verifications);
        counter(
            e,
            "mako_primary_certificate_verifications",
            "Batch verifications of peers' certificates",
            verifications,
        )?;
        let verified = get(&p.certificates_verified);
        counter(e, "mako_primary_certificates_verified", "Peers' certificates those verifications covered", verified)?;
        counter(e, "mako_primary_certificates_formed", "Certificates of our headers", get(&p.certificates_formed))?;
        let accepted = get(&p.certificates_accepted);
        counter(e, "mako_primary_certificates_accepted", "Certificates added to the DAG", accepted)?;
        gauge(e, "mako_primary_dag_certificates", "Certificates held in memory", get(&p.dag_certificates))?;
        gauge(e, "mako_primary_gc_round", "Garbage-collection round", get(&p.gc_round))?;
        counter(e, "mako_primary_storage_errors", "Failed store operations", get(&p.storage_errors))?;
        let requeued = get(&p.batches_requeued);
        counter(e, "mako_primary_batches_requeued", "Our batches proposed again (uncertified, restart)", requeued)?;
        let evicted = get(&p.batches_evicted);
        counter(e, "mako_primary_batches_evicted", "Peers' unreferenced batches over budget, deleted", evicted)?;
        let rejected: u64 = p.rejected().values().sum();
        counter(e, "mako_primary_messages_rejected", "Headers, votes and certificates refused", rejected)?;

        gauge(e, "mako_consensus_committed_round", "Round of the last committed leader", get(&p.committed_round))?;
        gauge(e, "mako_consensus_queue", "Certificates waiting for consensus", get(&p.consensus_queue))?;

        let x = &self.execution;
        counter(e, "mako_executed_blocks", "Sub-DAGs executed", get(&x.blocks))?;
        gauge(e, "mako_executed_index", "Index of the last executed sub-DAG", get(&x.last_index))?;
        counter(e, "mako_executed_transactions", "Transactions executed", get(&x.transactions))?;
        let ok = get(&x.successful_transactions);
        counter(e, "mako_executed_transactions_successful", "Transactions whose call succeeded", ok)?;
        counter(e, "mako_executor_incarnations", "Block-STM incarnations", get(&x.incarnations))?;
        counter(e, "mako_executor_validations", "Block-STM validations", get(&x.validations))?;
        counter(e, "mako_executor_aborts", "Block-STM aborts (each re-executes)", get(&x.aborts))?;
        let latency = x.end_to_end_latency.snapshot();
        histogram(e, "mako_end_to_end_latency_seconds", "Client send to executed, sampled", &latency)
    }
}

impl Collector for ValidatorCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(primary) = &self.primary {
            primary.encode(&mut e)?;
        }
        let get = |c: &AtomicU64| c.load(Relaxed);
        let sum = |f: &dyn Fn(&WorkerMetrics) -> u64| self.workers.iter().map(|w| f(w)).sum::<u64>();
        counter(
            &mut e,
            "mako_worker_transactions",
            "Client transactions accepted",
            sum(&|w| get(&w.transactions_accepted)),
        )?;
        counter(
            &mut e,
            "mako_worker_transactions_rejected",
            "Client transactions refused",
            sum(&|w| get(&w.transactions_rejected)),
        )?;
        counter(&mut e, "mako_worker_batches_sealed", "Batches sealed", sum(&|w| get(&w.batches_sealed)))?;
        counter(&mut e, "mako_worker_batches_received", "Peers' batches stored", sum(&|w| get(&w.batches_received)))?;
        counter(
            &mut e,
            "mako_worker_batches_acknowledged",
            "Our batches held by a quorum and recorded for proposal",
            sum(&|w| get(&w.batches_acknowledged)),
        )?;
        counter(&mut e, "mako_worker_batches_deleted", "Peers' batches deleted", sum(&|w| get(&w.batches_deleted)))?;

        let networks: Vec<_> = self.networks.iter().map(|n| n.snapshot()).collect();
        let net = |f: &dyn Fn(&mako_network::MetricsSnapshot) -> u64| networks.iter().map(f).sum::<u64>();
        counter(&mut e, "mako_network_received", "Well-formed messages received", net(&|n| n.received))?;
        counter(&mut e, "mako_network_sent", "Frames sent", net(&|n| n.sent))?;
        let dropped = net(&|n| n.malformed + n.oversized);
        counter(&mut e, "mako_network_frames_dropped", "Malformed or oversized frames dropped", dropped)?;
        counter(&mut e, "mako_network_queue_full", "Messages dropped on a full queue", net(&|n| n.dropped_queue_full))?;
        counter(&mut e, "mako_network_retries", "Reliable sends retried", net(&|n| n.retries))?;
        counter(&mut e, "mako_network_packets_sent", "QUIC packets sent on dialed links", net(&|n| n.packets_sent))?;
        counter(&mut e, "mako_network_packets_lost", "QUIC packets declared lost", net(&|n| n.packets_lost))?;
        let black_holes = net(&|n| n.black_holes);
        counter(&mut e, "mako_network_black_holes", "Links fallen back to 1,200-byte packets", black_holes)?;
        let min_mtu = networks.iter().map(|n| n.min_path_mtu).filter(|&mtu| mtu > 0).min().unwrap_or(0);
        gauge(&mut e, "mako_network_min_path_mtu", "Smallest path MTU among live dialed links, bytes", min_mtu)?;
        for component in Component::ALL {
            let name = format!("mako_cpu_{}_micros", component.name());
            let micros = (cpu_time::spent_seconds(component) * 1e6) as u64;
            counter(&mut e, &name, "CPU time of this process's threads in this component, microseconds", micros)?;
        }
        Ok(())
    }
}

/// Serves `registry` at `address` until the task is dropped. Any path answers with the metrics page.
pub async fn serve(address: SocketAddr, registry: Registry) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(address).await.with_context(|| format!("cannot serve metrics on {address}"))?;
    let registry = Arc::new(registry);
    Ok(tokio::spawn(async move {
        loop {
            let Ok((mut stream, peer)) = listener.accept().await else { continue };
            let registry = Arc::clone(&registry);
            tokio::spawn(async move {
                // The request itself does not matter; read what arrived so the client sees a clean close.
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let mut body = String::new();
                if prometheus_client::encoding::text::encode(&mut body, &registry).is_err() {
                    return;
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                if let Err(error) = stream.write_all(response.as_bytes()).await {
                    debug!(%peer, %error, "metrics client went away");
                }
            });
        }
    }))
}

/// One read of a metrics page.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    values: std::collections::HashMap<String, f64>,
}

impl Scrape {
    /// `GET /metrics` from `address`.
    pub async fn fetch(address: SocketAddr) -> anyhow::Result<Scrape> {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: mako\r\nConnection: close\r\n\r\n").await?;
        let mut text = String::new();
        stream.read_to_string(&mut text).await?;
        let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok(Scrape::parse(body))
    }

    /// The text exposition format: `name{labels} value` lines, comments skipped.
    pub fn parse(body: &str) -> Scrape {
        let values = body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .filter_map(|line| {
                let (name, value) = line.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape { values }
    }

    /// A counter (its `_total` sample) or a gauge; 0 when absent.
    pub fn value(&self, name: &str) -> f64 {
        self.values.get(&format!("{name}_total")).or_else(|| self.values.get(name)).copied().unwrap_or(0.0)
    }

    /// A histogram exported from a [`mako_types::LatencyHistogram`].
    pub fn histogram(&self, name: &str) -> HistogramSnapshot {
        let prefix = format!("{name}_bucket{{le=\"");
        let buckets: Vec<(f64, u64)> = self
            .values
            .iter()
            .filter_map(|(key, value)| {
                let bound = key.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                Some((bound.parse().ok()?, *value as u64))
            })
            .collect();
        HistogramSnapshot::from_cumulative(&buckets, self.value(&format!("{name}_sum"))).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scrape_reads_back_what_the_collector_wrote() {
        let execution = Arc::new(ExecutionMetrics::default());
        execution.transactions.store(1234, Relaxed);
        execution.end_to_end_latency.observe(std::time::Duration::from_millis(250));
        execution.end_to_end_latency.observe(std::time::Duration::from_millis(900));
        let mut registry = Registry::default();
        let worker = Arc::new(WorkerMetrics::default());
        worker.batches_sealed.store(5, Relaxed);
        let primary = Arc::new(PrimaryMetrics::default());
        primary.committed_round.store(17, Relaxed);
        registry.register_collector(Box::new(ValidatorCollector {
            primary: Some(PrimaryHalf { primary, execution: Arc::clone(&execution) }),
            workers: vec![Arc::clone(&worker)],
            networks: vec![Arc::default(), Arc::default()],
        }));
        let scrape = Scrape::parse(&encode(&registry));
        assert_eq!(scrape.value("mako_executed_transactions"), 1234.0);
        assert_eq!(scrape.value("mako_consensus_committed_round"), 17.0);
        assert_eq!(scrape.value("mako_worker_batches_sealed"), 5.0);
        let latency = scrape.histogram("mako_end_to_end_latency_seconds");
        assert_eq!(latency, execution.end_to_end_latency.snapshot());

        // A worker's own process exports its worker and network metrics only.
        let mut registry = Registry::default();
        registry.register_collector(Box::new(ValidatorCollector {
            primary: None,
            workers: vec![worker],
            networks: vec![Arc::default()],
        }));
        let body = encode(&registry);
        assert_eq!(Scrape::parse(&body).value("mako_worker_batches_sealed"), 5.0);
        assert!(!body.contains("mako_executed_transactions"), "{body}");
    }

    fn encode(registry: &Registry) -> String {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, registry).unwrap();
        body
    }
}
