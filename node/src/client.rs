//! `mako client`: streams executable transactions (transfers, or a mix of native and token transfers, between
//! genesis accounts) to the workers of a committee at a fixed rate, over one long-lived TCP connection per
//! worker (DESIGN.md §6: never a stream per transaction), and prints the rate it achieved every second.
//!
//! Every transaction is padded to `size` bytes with its memo, and one in `sample_every` carries its send time
//! there: the executing validators measure end-to-end latency (send → executed) on those samples.
//!
//! Workers come and go (issue 17): a worker that cannot be reached at the start, or whose connection fails,
//! is reconnected with backoff (100 ms doubling to 2 s) while its share of the load goes to the workers that
//! are up; the client never exits because a worker is gone. Transactions it could not hand to any worker (none
//! up, or a write that failed) are counted as not sent.
//!
//! Each worker acknowledges the client's transactions batch by batch, once a batch is stored by a quorum and
//! recorded for proposal by its primary (`mako_mempool::worker::client_acks`): the promise that it will be
//! ordered whatever crashes. The client counts what was acknowledged and, with `--acks-file`, writes each
//! acknowledged batch's digest and count, so that `mako testnet` can check that every acknowledged
//! transaction was executed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use mako_execution::workload::{Distribution, Workload};
use mako_mempool::worker::client::{ACK_PAYLOAD, ACK_TAG};
use mako_types::{AuthorityIndex, Committee};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
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
    /// Where to write the acknowledged batches (`digest-hex count` lines), if anywhere.
    pub acks_file: Option<std::path::PathBuf>,
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
    let addresses: Vec<(AuthorityIndex, SocketAddr)> = committee
        .authorities()
        .flat_map(|(index, authority)| authority.worker_addresses.iter().map(move |a| (index, *a)))
        .collect();
    let report = send(&addresses, &options).await?;
    let seconds = report.elapsed.as_secs_f64();
    println!(
        "client: {} transactions not sent (no worker up, or its connection lost), {} connections made",
        report.not_sent, report.reconnections
    );
    println!(
        "client: acknowledged {} transactions in {} batches",
        report.acknowledged(),
        report.acknowledged_batches.len()
    );
    if let Some(path) = &options.acks_file {
        let lines: String = report
            .acknowledged_batches
            .iter()
            .map(|(digest, count)| format!("{} {count}\n", hex::encode(digest)))
            .collect();
        std::fs::write(path, lines).with_context(|| format!("cannot write {}", path.display()))?;
    }
    println!(
        "client: sent {} transactions in {seconds:.3} s ({:.0} tx/s)",
        report.sent,
        report.sent as f64 / seconds.max(1e-9)
    );
    Ok(())
}

/// `mako client --to-sinks N`: the client alone (issue 16, item 7). It sends to `sinks` local listeners that
/// read and discard, served by their own thread, while the client runs on the calling thread: the CPU it
/// reports is the client's alone, and the rate it reaches is what it can offer when nothing else competes.
pub fn to_sinks(sinks: usize, options: &ClientOptions) -> anyhow::Result<()> {
    anyhow::ensure!(sinks > 0, "--to-sinks needs at least one sink");
    let listeners = (0..sinks)
        .map(|_| {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            listener.set_nonblocking(true)?;
            Ok(listener)
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    let addresses: Vec<(AuthorityIndex, SocketAddr)> = listeners
        .iter()
        .enumerate()
        .map(|(i, l)| Ok((AuthorityIndex(i as u16), l.local_addr()?)))
        .collect::<std::io::Result<_>>()?;
    let sink = std::thread::spawn(move || -> std::io::Result<u64> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut drains = Vec::new();
            for listener in listeners {
                drains.push(tokio::spawn(discard(tokio::net::TcpListener::from_std(listener)?)));
            }
            let mut bytes = 0;
            for drain in drains {
                bytes += drain.await.unwrap_or(0);
            }
            Ok(bytes)
        })
    });
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let cpu_before = mako_types::cpu_time::thread_seconds();
    let report = runtime.block_on(send(&addresses, options))?;
    let cpu = mako_types::cpu_time::thread_seconds() - cpu_before;
    drop(runtime);
    let bytes = sink.join().map_err(|_| anyhow::anyhow!("the sink thread panicked"))??;
    let seconds = report.elapsed.as_secs_f64().max(1e-9);
    let per_tx = if report.sent > 0 { format!("{:.2}", cpu * 1e6 / report.sent as f64) } else { "-".into() };
    println!(
        "client alone: offered {} tx/s to {sinks} sinks, sent {:.0} tx/s ({} transactions, {:.1} MB read by the \
         sinks), {per_tx} µs of the client thread's CPU per transaction",
        options.rate,
        report.sent as f64 / seconds,
        report.sent,
        bytes as f64 / 1e6,
    );
    Ok(())
}

/// Accepts one connection and reads it to its end; the bytes read.
async fn discard(listener: tokio::net::TcpListener) -> u64 {
    let Ok((mut stream, _)) = listener.accept().await else { return 0 };
    tokio::io::copy(&mut stream, &mut tokio::io::sink()).await.unwrap_or(0)
}

/// What a run of the client did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientReport {
    pub sent: u64,
    pub not_sent: u64,
    pub reconnections: u64,
    /// Sending time (the wait for the last acknowledgements after it is not counted).
    pub elapsed: Duration,
    /// How many transactions each acknowledged batch carried.
    pub acknowledged_batches: BTreeMap<[u8; 32], u32>,
}

impl ClientReport {
    /// Transactions acknowledged.
    pub fn acknowledged(&self) -> u64 {
        self.acknowledged_batches.values().map(|c| u64::from(*c)).sum()
    }
}

/// The acknowledgements read from every connection so far.
type Acknowledged = Arc<Mutex<BTreeMap<[u8; 32], u32>>>;

/// After sending, wait for acknowledgements while they still come (one within this), at most [`ACK_WAIT`].
const ACK_QUIET: Duration = Duration::from_secs(2);
const ACK_WAIT: Duration = Duration::from_secs(15);

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// One worker's connection: up, or down until `retry_at`.
struct WorkerConnection {
    worker: AuthorityIndex,
    address: SocketAddr,
    /// The sending half; the receiving half is read by a task that records acknowledgements.
    stream: Option<OwnedWriteHalf>,
    retry_at: Instant,
    backoff: Duration,
}

impl WorkerConnection {
    /// Connects again if the worker is down and its backoff has passed; whether it is up.
    async fn ensure(&mut self, reconnections: &mut u64, acknowledged: &Acknowledged) -> bool {
        if self.stream.is_some() {
            return true;
        }
        if Instant::now() < self.retry_at {
            return false;
        }
        let attempt = tokio::time::timeout(MAX_BACKOFF, connect(self.address)).await;
        match attempt {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                let (reader, writer) = stream.into_split();
                tokio::spawn(read_acks(reader, self.worker, Arc::clone(acknowledged)));
                self.stream = Some(writer);
                self.backoff = FIRST_BACKOFF;
                *reconnections += 1;
                true
            }
            _ => {
                self.down();
                false
            }
        }
    }

    fn down(&mut self) {
        self.stream = None;
        self.retry_at = Instant::now() + self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
    }
}

/// Streams `options.rate` transactions a second for `options.duration` to the workers at `addresses`.
/// The kernel's send buffer per worker connection. Linux would let it grow to `net.ipv4.tcp_wmem`'s maximum
/// (4 MB, 8k transactions): while a worker pushes back (its admission closed) they would wait there, stamped,
/// and count as seconds of latency the system never saw. With a small buffer the client just sends less.
const SEND_BUFFER: u32 = 256 * 1024;

/// Reads a worker's frames until the connection closes: acks are recorded, an error frame is printed.
async fn read_acks(reader: OwnedReadHalf, worker: AuthorityIndex, acknowledged: Acknowledged) {
    let mut reader = tokio::io::BufReader::new(reader);
    loop {
        let mut length = [0u8; 4];
        if reader.read_exact(&mut length).await.is_err() {
            return;
        }
        let mut payload = vec![0u8; (u32::from_le_bytes(length) as usize).min(64 * 1024)];
        if reader.read_exact(&mut payload).await.is_err() {
            return;
        }
        match payload.strip_prefix(ACK_TAG) {
            Some(ack) if payload.len() == ACK_PAYLOAD => {
                let digest: [u8; 32] = ack[..32].try_into().expect("32 bytes");
                let count = u32::from_le_bytes(ack[32..].try_into().expect("4 bytes"));
                *acknowledged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).entry(digest).or_default() +=
                    count;
            }
            _ => eprintln!("client: {worker}'s worker says: {}", String::from_utf8_lossy(&payload)),
        }
    }
}

async fn connect(address: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = if address.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    socket.set_send_buffer_size(SEND_BUFFER)?;
    socket.connect(address).await
}

pub async fn send(addresses: &[(AuthorityIndex, SocketAddr)], options: &ClientOptions) -> anyhow::Result<ClientReport> {
    anyhow::ensure!(!addresses.is_empty(), "the committee lists no workers");
    let start = Instant::now();
    let mut connections: Vec<WorkerConnection> = addresses
        .iter()
        .map(|(worker, address)| WorkerConnection {
            worker: *worker,
            address: *address,
            stream: None,
            retry_at: start,
            backoff: FIRST_BACKOFF,
        })
        .collect();
    let mut report = ClientReport::default();
    let acknowledged = Acknowledged::default();
    let mut workload = Workload::new(options.seed, options.accounts, Distribution::Uniform);
    let per_tick = (options.rate / TICKS_PER_SECOND).max(1) as usize;
    let mut ticker = interval(Duration::from_secs(1) / TICKS_PER_SECOND as u32);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let (mut last_report, mut sent_at_report) = (start, 0u64);
    let mut numbered = 0u64;
    let mut frames = vec![(Vec::new(), 0u64); connections.len()];
    // Every transaction is encoded once: the padding that makes it `size` bytes is computed once.
    let memo_len = mako_execution::Transaction::memo_len_for(options.size);
    while start.elapsed() < options.duration {
        ticker.tick().await;
        let mut up = Vec::with_capacity(connections.len());
        for (i, connection) in connections.iter_mut().enumerate() {
            if connection.ensure(&mut report.reconnections, &acknowledged).await {
                up.push(i);
            }
        }
        let batch = match options.workload {
            WorkloadKind::Transfers => workload.transfers(per_tick),
            WorkloadKind::TokenMix => workload.token_mix(per_tick),
        };
        if up.is_empty() {
            report.not_sent += batch.len() as u64;
            continue;
        }
        for mut transaction in batch {
            transaction.memo.resize(memo_len.max(transaction.memo.len()), 0);
            if numbered.is_multiple_of(options.sample_every.max(1)) {
                transaction.stamp_sample(std::time::SystemTime::now());
            }
            numbered += 1;
            // A sender goes to the same worker while the same workers are up, so its transactions reach
            // consensus in nonce order.
            let sender = transaction.sender.as_bytes().iter().fold(0usize, |h, b| h.wrapping_mul(31) ^ *b as usize);
            let (frame, count) = &mut frames[up[sender % up.len()]];
            let bytes = transaction.to_bytes();
            frame.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
            frame.extend_from_slice(&bytes);
            *count += 1;
        }
        for (connection, (frame, count)) in connections.iter_mut().zip(&mut frames) {
            if *count == 0 {
                continue;
            }
            let written = match connection.stream.as_mut() {
                Some(stream) => stream.write_all(frame).await.is_ok(),
                None => false,
            };
            if written {
                report.sent += *count;
            } else {
                eprintln!("client: lost {}'s worker at {}; reconnecting", connection.worker, connection.address);
                report.not_sent += *count;
                connection.down();
            }
            frame.clear();
            *count = 0;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            let rate = (report.sent - sent_at_report) as f64 / last_report.elapsed().as_secs_f64();
            println!("client: {rate:.0} tx/s sent ({} in all)", report.sent);
            (last_report, sent_at_report) = (Instant::now(), report.sent);
        }
    }
    report.elapsed = start.elapsed();
    // The last batches are acknowledged a round trip and a sync after they were sent.
    let total = || -> u64 {
        acknowledged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().map(|c| u64::from(*c)).sum()
    };
    let (waiting, mut last, mut last_change) = (Instant::now(), total(), Instant::now());
    while waiting.elapsed() < ACK_WAIT && last_change.elapsed() < ACK_QUIET && report.sent > 0 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = total();
        if now != last {
            (last, last_change) = (now, Instant::now());
        }
    }
    drop(connections);
    report.acknowledged_batches = acknowledged.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

    fn options(duration: Duration) -> ClientOptions {
        ClientOptions {
            rate: 2_000,
            duration,
            accounts: 100,
            seed: 1,
            size: 0,
            sample_every: 100,
            workload: WorkloadKind::Transfers,
            acks_file: None,
        }
    }

    /// Reads a connection to the end; the bytes it got.
    async fn drain(listener: TcpListener, connections: usize) -> usize {
        let mut total = 0;
        for _ in 0..connections {
            let Ok((mut stream, _)) = listener.accept().await else { break };
            let mut buffer = vec![0u8; 1 << 16];
            while let Ok(n) = stream.read(&mut buffer).await {
                if n == 0 {
                    break;
                }
                total += n;
            }
        }
        total
    }

    #[tokio::test]
    async fn a_worker_down_at_the_start_and_one_lost_midway_do_not_stop_the_client() {
        // Worker 0 is up throughout. Worker 1 is not listening: nothing at its address. Worker 2 accepts one
        // connection, reads for a while and goes away.
        let up = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nobody = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let nobody_address = nobody.local_addr().unwrap();
        drop(nobody);
        let leaving = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addresses = vec![
            (AuthorityIndex(0), up.local_addr().unwrap()),
            (AuthorityIndex(1), nobody_address),
            (AuthorityIndex(2), leaving.local_addr().unwrap()),
        ];
        let kept = tokio::spawn(drain(up, 1));
        let gone = tokio::spawn(async move {
            let (mut stream, _) = leaving.accept().await.unwrap();
            let mut buffer = vec![0u8; 1 << 16];
            let deadline = Instant::now() + Duration::from_millis(300);
            while Instant::now() < deadline {
                let _ = tokio::time::timeout(Duration::from_millis(50), stream.read(&mut buffer)).await;
            }
            // The listener and the connection close: writes to it fail from now on.
        });
        let report =
            send(&addresses, &options(Duration::from_millis(1_500))).await.expect("the client runs to the end");
        gone.await.unwrap();
        assert!(report.sent > 2_000, "most of 3,000 transactions sent: {report:?}");
        assert!(kept.await.unwrap() > 0, "the worker that stayed up got transactions");
    }
}
