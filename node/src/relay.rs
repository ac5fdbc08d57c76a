//! `mako relay`: an emulated network between the validators of a local testnet (issue 17, item 4). This
//! machine's kernel has no `netem`, so every validator-to-validator QUIC path goes through this userspace UDP
//! relay instead: validators bind their QUIC endpoints `quic_port_shift` ports above the committee's, and the
//! relay listens on the committee's ports and forwards each datagram to the real one after the path's latency
//! plus a uniform jitter (in order: a datagram never overtakes an earlier one on its path), or drops it (random
//! loss, or a partition that cuts a validator off from the others for a while).
//!
//! What it emulates: one-way delay, jitter and loss per datagram, the same on every validator-to-validator path
//! (primaries and workers), and partitions on a schedule. What it does not: bandwidth limits or queueing (a
//! datagram waits only for its own delay and its path's order), per-path or asymmetric latency, the client's traffic (it
//! reaches the workers directly over TCP) and the links between a primary and its own workers. Its own CPU
//! (a copy and a timer per datagram) is reported apart in the testnet's summary.
//!
//! For each listening port (the committee's address of a validator's primary or worker) the relay keeps one
//! upstream socket per sender, so that the receiver's replies come back to it and go to that sender from the
//! committee's port: QUIC sees stable addresses, and peers are known by their keys, not their addresses.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// The largest datagram forwarded (QUIC's path-MTU discovery goes up to 64 KiB on loopback).
const MAX_DATAGRAM: usize = 65_536;
/// Socket buffers of the relay's sockets: Linux's default (212 KB) holds three 64 KiB datagrams, and a burst
/// past it is lost before the relay reads it, which QUIC takes for congestion (the validators' own sockets
/// use 4 MiB for the same reason).
const SOCKET_BUFFER: usize = 8 << 20;

/// A UDP socket on `address` with [`SOCKET_BUFFER`]-byte buffers.
async fn bind(address: SocketAddr) -> anyhow::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(address).with_context(|| format!("the relay cannot bind {address}"))?;
    let tuned = socket2::SockRef::from(&socket);
    tuned.set_recv_buffer_size(SOCKET_BUFFER)?;
    tuned.set_send_buffer_size(SOCKET_BUFFER)?;
    socket.set_nonblocking(true)?;
    Ok(UdpSocket::from_std(socket)?)
}

/// What `mako testnet` writes for its relay.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayConfig {
    /// One-way delay added to every datagram, in milliseconds.
    pub latency_ms: f64,
    /// Up to this much more or less, uniformly, in milliseconds.
    pub jitter_ms: f64,
    /// The share of datagrams dropped, 0 to 1.
    pub loss: f64,
    /// Validators cut off from every other validator for a while.
    #[serde(default)]
    pub partitions: Vec<Partition>,
    /// Partition times count from when this file appears (the client's start); none: from the relay's.
    pub start_file: Option<std::path::PathBuf>,
    pub ports: Vec<RelayedPort>,
}

/// One QUIC endpoint behind the relay.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayedPort {
    pub validator: usize,
    /// The committee's address, where the relay listens.
    pub listen: SocketAddr,
    /// Where the endpoint really is (and the address it sends from).
    pub real: SocketAddr,
}

/// Validator `validator` cut off from the others from `from_s` to `to_s` seconds.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    pub validator: usize,
    pub from_s: f64,
    pub to_s: f64,
}

/// The fate of one datagram: delivered after this delay, or dropped.
fn fate(
    config: &RelayConfig,
    from: usize,
    to: usize,
    since_start: Option<f64>,
    rng: &mut impl Rng,
) -> Option<Duration> {
    let cut = |p: &Partition| (p.validator == from) != (p.validator == to);
    if let Some(t) = since_start {
        if config.partitions.iter().any(|p| cut(p) && p.from_s <= t && t < p.to_s) {
            return None;
        }
    }
    if config.loss > 0.0 && rng.gen::<f64>() < config.loss {
        return None;
    }
    let jitter = if config.jitter_ms > 0.0 { rng.gen_range(-config.jitter_ms..=config.jitter_ms) } else { 0.0 };
    Some(Duration::from_secs_f64((config.latency_ms + jitter).max(0.0) / 1e3))
}

struct Relay {
    config: RelayConfig,
    /// Who sends from each real address.
    senders: BTreeMap<SocketAddr, usize>,
    /// When partition times start counting.
    start: std::sync::Mutex<Option<Instant>>,
}

impl Relay {
    fn since_start(&self) -> Option<f64> {
        let mut start = self.start.lock().expect("never poisoned");
        if start.is_none() {
            match &self.config.start_file {
                Some(path) if path.exists() => *start = Some(Instant::now()),
                Some(_) => return None,
                None => *start = Some(Instant::now()),
            }
        }
        start.map(|s| s.elapsed().as_secs_f64())
    }
}

/// Datagrams waiting on one path at most (beyond, they are dropped, as a full queue would).
const PATH_QUEUE: usize = 100_000;

/// One direction between two endpoints: datagrams leave in the order they came, each no earlier than its
/// fate says (a jittered datagram never overtakes an earlier one: reordering every burst, as a timer per
/// datagram did, made QUIC take most of them for lost and collapse its window).
#[derive(Clone)]
struct Route {
    relay: Arc<Relay>,
    queue: mpsc::Sender<(tokio::time::Instant, Vec<u8>)>,
    from: usize,
    to: usize,
}

impl Route {
    fn open(relay: &Arc<Relay>, socket: Arc<UdpSocket>, destination: SocketAddr, from: usize, to: usize) -> Self {
        let (queue, mut waiting) = mpsc::channel::<(tokio::time::Instant, Vec<u8>)>(PATH_QUEUE);
        tokio::spawn(async move {
            while let Some((due, bytes)) = waiting.recv().await {
                tokio::time::sleep_until(due).await;
                let _ = socket.send_to(&bytes, destination).await;
            }
        });
        Self { relay: Arc::clone(relay), queue, from, to }
    }

    fn send(&self, bytes: &[u8], last_due: &mut tokio::time::Instant) {
        let since = self.relay.since_start();
        let Some(delay) = fate(&self.relay.config, self.from, self.to, since, &mut rand::thread_rng()) else { return };
        let due = (tokio::time::Instant::now() + delay).max(*last_due);
        *last_due = due;
        let _ = self.queue.try_send((due, bytes.to_vec()));
    }
}

/// Runs the relay of `config` until Ctrl-C.
pub async fn run(config_path: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(config_path)
        .with_context(|| format!("cannot read the relay config {}", config_path.display()))?;
    let config: RelayConfig =
        toml::from_str(&text).with_context(|| format!("bad relay config {}", config_path.display()))?;
    if !(0.0..=1.0).contains(&config.loss) {
        anyhow::bail!("loss must be between 0 and 1, not {}", config.loss);
    }
    let senders = config.ports.iter().map(|p| (p.real, p.validator)).collect();
    let relay = Arc::new(Relay { config: config.clone(), senders, start: std::sync::Mutex::new(None) });
    let mut tasks = tokio::task::JoinSet::new();
    for port in config.ports {
        let socket = Arc::new(bind(port.listen).await?);
        tasks.spawn(serve(Arc::clone(&relay), socket, port));
    }
    tokio::select! {
        biased;
        _ = tokio::signal::ctrl_c() => Ok(()),
        Some(ended) = tasks.join_next() => ended?,
    }
}

/// Forwards what arrives at `port.listen` to `port.real`, each sender through its own upstream socket, and
/// what comes back on that socket to the sender.
async fn serve(relay: Arc<Relay>, listen: Arc<UdpSocket>, port: RelayedPort) -> anyhow::Result<()> {
    let mut paths: BTreeMap<SocketAddr, (Route, tokio::time::Instant)> = BTreeMap::new();
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, sender) = listen.recv_from(&mut buffer).await?;
        // Only validators' endpoints are relayed; anything else is dropped.
        let Some(&from_v) = relay.senders.get(&sender) else { continue };
        let (path, last_due) = match paths.entry(sender) {
            std::collections::btree_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::btree_map::Entry::Vacant(entry) => {
                let upstream = Arc::new(bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?);
                let inbound = Route::open(&relay, Arc::clone(&upstream), port.real, from_v, port.validator);
                let outbound = Route::open(&relay, Arc::clone(&listen), sender, port.validator, from_v);
                tokio::spawn(answer(upstream, outbound));
                entry.insert((inbound, tokio::time::Instant::now()))
            }
        };
        path.send(&buffer[..len], last_due);
    }
}

/// The endpoint's replies on `upstream`, back to the sender along `path`.
async fn answer(upstream: Arc<UdpSocket>, path: Route) {
    let mut buffer = vec![0u8; MAX_DATAGRAM];
    let mut last_due = tokio::time::Instant::now();
    while let Ok(len) = upstream.recv(&mut buffer).await {
        path.send(&buffer[..len], &mut last_due);
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    /// The adversary is a burst: datagrams sent at once, each with its own jittered delay. They must come out
    /// in order (a timer per datagram reordered every burst), and the replies find their way back.
    #[tokio::test]
    async fn a_burst_crosses_in_order_and_replies_come_back() {
        let sender = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let endpoint = bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap();
        let listen = Arc::new(bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.unwrap());
        let port =
            RelayedPort { validator: 1, listen: listen.local_addr().unwrap(), real: endpoint.local_addr().unwrap() };
        let config = RelayConfig { latency_ms: 2.0, jitter_ms: 2.0, ports: vec![port.clone()], ..Default::default() };
        let senders = [(sender.local_addr().unwrap(), 0)].into_iter().collect();
        let relay = Arc::new(Relay { config, senders, start: std::sync::Mutex::new(None) });
        tokio::spawn(serve(relay, Arc::clone(&listen), port.clone()));
        for i in 0..200u32 {
            sender.send_to(&i.to_le_bytes(), port.listen).await.unwrap();
        }
        let mut buffer = [0u8; 16];
        let mut upstream = None;
        for i in 0..200u32 {
            let (len, from) = endpoint.recv_from(&mut buffer).await.unwrap();
            assert_eq!(&buffer[..len], &i.to_le_bytes(), "datagram {i} in order");
            upstream = Some(from);
        }
        endpoint.send_to(b"reply", upstream.unwrap()).await.unwrap();
        let (len, from) = sender.recv_from(&mut buffer).await.unwrap();
        assert_eq!((&buffer[..len], from), (&b"reply"[..], port.listen), "from the committee's address");
    }

    #[test]
    fn a_partition_cuts_one_validator_off_both_ways_and_loss_drops_its_share() {
        let config = RelayConfig {
            latency_ms: 50.0,
            jitter_ms: 10.0,
            loss: 0.1,
            partitions: vec![Partition { validator: 2, from_s: 10.0, to_s: 20.0 }],
            ..Default::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        assert_eq!(fate(&config, 2, 0, Some(15.0), &mut rng), None, "out of the isolated validator");
        assert_eq!(fate(&config, 1, 2, Some(15.0), &mut rng), None, "into it");
        let delivered = (0..10_000).filter_map(|_| fate(&config, 0, 1, Some(15.0), &mut rng)).collect::<Vec<_>>();
        assert!((8_800..9_200).contains(&delivered.len()), "about 10% lost: {}", delivered.len());
        assert!(delivered.iter().all(|d| (40..=60).contains(&d.as_millis())), "50 ms ± 10");
        assert!(
            fate(&config, 2, 0, Some(25.0), &mut rng).is_some() || fate(&config, 2, 0, Some(25.0), &mut rng).is_some()
        );
        assert!(
            fate(&config, 2, 0, None, &mut rng).is_some() || fate(&config, 2, 0, None, &mut rng).is_some(),
            "before the start"
        );
    }
}
