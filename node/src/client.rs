//! `mako client`: streams executable transactions (transfers, or a mix of native and token transfers, between
//! genesis accounts) to the workers of a committee at a fixed rate, over one long-lived TCP connection per
//! worker (DESIGN.md §6: never a stream per transaction), and prints the rate it achieved every second.
//!
//! Every transaction is padded to `size` bytes with its memo, and one in `sample_every` carries its send time
//! there: the executing validators measure end-to-end latency (send → executed) on those samples.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use mako_execution::workload::{Distribution, Workload};
use mako_types::Committee;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::{interval, Instant, MissedTickBehavior};

/// Bursts per second: transactions go out every 10 ms.
const TICKS_PER_SECOND: u64 = 100;

pub struct ClientOptions {
    pub rate: u64,
    pub duration: Duration,
    pub accounts: u64,
    pub seed: u64,
    /// Bytes per transaction (the memo pads it).
    pub size: usize,
    pub sample_every: u64,
    pub workload: WorkloadKind,
}

/// What the client sends.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum WorkloadKind {
    /// Native transfers between uniformly drawn accounts.
    Transfers,
    /// Native and token transfers, half and half.
    TokenMix,
}

pub async fn run(committee: &Path, options: ClientOptions) -> anyhow::Result<()> {
    let committee = Committee::load(committee)?;
    let mut connections = Vec::new();
    for (index, authority) in committee.authorities() {
        for address in &authority.worker_addresses {
            let stream = TcpStream::connect(address)
                .await
                .with_context(|| format!("cannot reach {index}'s worker at {address}"))?;
            stream.set_nodelay(true)?;
            connections.push(stream);
        }
    }
    anyhow::ensure!(!connections.is_empty(), "the committee lists no workers");
    let mut workload = Workload::new(options.seed, options.accounts, Distribution::Uniform);
    let per_tick = (options.rate / TICKS_PER_SECOND).max(1) as usize;
    let mut ticker = interval(Duration::from_secs(1) / TICKS_PER_SECOND as u32);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let start = Instant::now();
    let (mut sent, mut last_report, mut sent_at_report) = (0u64, start, 0u64);
    let mut numbered = 0u64;
    let mut frames = vec![Vec::new(); connections.len()];
    while start.elapsed() < options.duration {
        ticker.tick().await;
        let batch = match options.workload {
            WorkloadKind::Transfers => workload.transfers(per_tick),
            WorkloadKind::TokenMix => workload.token_mix(per_tick),
        };
        for mut transaction in batch {
            transaction.pad_to(options.size);
            if numbered.is_multiple_of(options.sample_every.max(1)) {
                transaction.stamp_sample(std::time::SystemTime::now());
            }
            numbered += 1;
            // A sender always goes to the same worker, so its transactions reach consensus in nonce order.
            let sender = transaction.sender.as_bytes().iter().fold(0usize, |h, b| h.wrapping_mul(31) ^ *b as usize);
            let frame = &mut frames[sender % connections.len()];
            let bytes = transaction.to_bytes();
            frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            frame.extend_from_slice(&bytes);
        }
        for (connection, frame) in connections.iter_mut().zip(&mut frames) {
            connection.write_all(frame).await.context("a worker closed the connection")?;
            frame.clear();
        }
        sent += per_tick as u64;
        if last_report.elapsed() >= Duration::from_secs(1) {
            let rate = (sent - sent_at_report) as f64 / last_report.elapsed().as_secs_f64();
            println!("client: {rate:.0} tx/s sent ({sent} in all)");
            (last_report, sent_at_report) = (Instant::now(), sent);
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    println!("client: sent {sent} transactions in {seconds:.3} s ({:.0} tx/s)", sent as f64 / seconds.max(1e-9));
    Ok(())
}
