//! quinn over turmoil: simulated hosts exchange reliable messages; the receive trace is a function of the
//! simulation seed alone, and reliable delivery survives a receiver's restart.

mod common;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{key, note, Note};
use mako_network::{Endpoint, NetworkConfig, Peer, Peers, Response};
use mako_types::AuthorityIndex;

const HOSTS: u16 = 3;
const PER_PEER: u64 = 50;
const PORT: u16 = 4000;

/// quinn's RNG seed for `host` in the simulation seeded `seed` (DESIGN.md §6).
fn quinn_seed(seed: u64, host: u16) -> [u8; 32] {
    quinn_seed_for_boot(seed, host, 0)
}

/// quinn's RNG seed for `host` after `boot` restarts: a restarted host must not reuse connection ids.
fn quinn_seed_for_boot(seed: u64, host: u16, boot: u8) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8..10].copy_from_slice(&host.to_le_bytes());
    bytes[10] = boot;
    bytes
}

fn name(host: u16) -> String {
    format!("n{host}")
}

/// A simulation with random latency and link failures, so that the seed matters.
fn simulation<'a>(seed: u64) -> turmoil::Sim<'a> {
    turmoil::Builder::new()
        .rng_seed(seed)
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(Duration::from_millis(25))
        .fail_rate(0.05)
        .repair_rate(0.5)
        .simulation_duration(Duration::from_secs(120))
        .build()
}

fn peer_list() -> Peers {
    Peers::new((0..HOSTS).map(|i| Peer {
        index: AuthorityIndex(i),
        address: SocketAddr::new(turmoil::lookup(name(i)), PORT),
        key: key(i).public(),
    }))
    .expect("distinct keys")
}

fn listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::UNSPECIFIED, PORT))
}

/// Runs the simulation and returns its receive trace, one line per delivered message.
fn run(seed: u64) -> Vec<String> {
    let mut sim = simulation(seed);
    let trace = Arc::new(Mutex::new(Vec::new()));
    let finished = Arc::new(AtomicUsize::new(0));
    for host in 0..HOSTS {
        let trace = Arc::clone(&trace);
        let finished = Arc::clone(&finished);
        sim.client(name(host), async move {
            let config = NetworkConfig { rng_seed: Some(quinn_seed(seed, host)), ..NetworkConfig::default() };
            let (endpoint, mut inbound) =
                Endpoint::<Note>::bind_turmoil(config, &key(host), peer_list(), listen()).await?;

            let sending = tokio::spawn({
                let endpoint = endpoint.clone();
                async move {
                    let mut deliveries = Vec::new();
                    for seq in 0..PER_PEER {
                        deliveries.extend(endpoint.broadcast_reliable(&note(seq)).await.expect("endpoint alive"));
                    }
                    for delivery in deliveries {
                        assert_eq!(delivery.await.expect("delivered"), Response::Ack);
                    }
                }
            });
            let record = |from: AuthorityIndex, seq: u64| {
                let at = turmoil::sim_elapsed().expect("inside the simulation");
                trace.lock().unwrap().push(format!("{at:?} n{host} from={from} seq={seq}"));
            };
            let mut seen = BTreeSet::new();
            while seen.len() < (PER_PEER as usize) * (HOSTS as usize - 1) {
                let message = inbound.recv().await.expect("endpoint alive");
                record(message.from, message.message.seq);
                seen.insert((message.from, message.message.seq));
            }
            sending.await?;
            // Keep answering (duplicates after a lost ack) until every host is done.
            finished.fetch_add(1, Ordering::SeqCst);
            while finished.load(Ordering::SeqCst) < HOSTS as usize {
                tokio::select! {
                    biased;
                    Some(message) = inbound.recv() => record(message.from, message.message.seq),
                    () = tokio::time::sleep(Duration::from_millis(10)) => {}
                }
            }
            Ok(())
        });
    }
    if let Err(error) = sim.run() {
        panic!(
            "simulation with seed {seed} failed: {error}; replay with `cargo test -p mako-network --test turmoil_sim`"
        );
    }
    let trace = trace.lock().unwrap().clone();
    trace
}

fn digest(trace: &[String]) -> blake3::Hash {
    blake3::hash(trace.join("\n").as_bytes())
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let first = run(7);
    let expected = (PER_PEER as usize) * (HOSTS as usize) * (HOSTS as usize - 1);
    assert!(first.len() >= expected, "trace has {} lines, expected at least {expected}", first.len());
    let second = run(7);
    assert_eq!(digest(&first), digest(&second), "seed 7 gave two different traces");
    let other = run(8);
    assert_ne!(digest(&first), digest(&other), "seeds 7 and 8 gave the same trace");
}

/// n0 and n1 send reliably to n2, which restarts in the middle: every message still arrives (at least
/// once), and the run, restart included, repeats exactly for its seed.
fn run_with_restart(seed: u64) -> (Vec<String>, BTreeSet<(AuthorityIndex, u64)>, usize) {
    let mut sim = simulation(seed);
    let trace = Arc::new(Mutex::new(Vec::new()));
    // What n2 received across its lives, as if it were stored durably before the ack.
    let stored = Arc::new(Mutex::new(BTreeSet::new()));
    let boots = Arc::new(AtomicUsize::new(0));
    let config = NetworkConfig {
        idle_timeout: Duration::from_millis(800),
        keep_alive_interval: Duration::from_millis(200),
        ..NetworkConfig::default()
    };
    {
        let (trace, stored, boots, config) =
            (Arc::clone(&trace), Arc::clone(&stored), Arc::clone(&boots), config.clone());
        sim.host(name(2), move || {
            let (trace, stored) = (Arc::clone(&trace), Arc::clone(&stored));
            let boot = boots.fetch_add(1, Ordering::SeqCst) as u8;
            let config = NetworkConfig { rng_seed: Some(quinn_seed_for_boot(seed, 2, boot)), ..config.clone() };
            async move {
                let (_endpoint, mut inbound) =
                    Endpoint::<Note>::bind_turmoil(config, &key(2), peer_list(), listen()).await?;
                while let Some(message) = inbound.recv().await {
                    let at = turmoil::sim_elapsed().expect("inside the simulation");
                    trace
                        .lock()
                        .unwrap()
                        .push(format!("{at:?} boot={boot} from={} seq={}", message.from, message.message.seq));
                    stored.lock().unwrap().insert((message.from, message.message.seq));
                }
                Ok(())
            }
        });
    }
    for host in 0..2 {
        let config = NetworkConfig { rng_seed: Some(quinn_seed(seed, host)), ..config.clone() };
        sim.client(name(host), async move {
            let (endpoint, _inbound) =
                Endpoint::<Note>::bind_turmoil(config, &key(host), peer_list(), listen()).await?;
            let mut deliveries = Vec::new();
            for seq in 0..PER_PEER {
                deliveries.push(endpoint.send_reliable(AuthorityIndex(2), &note(seq)).await?);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            for delivery in deliveries {
                assert_eq!(delivery.await?, Response::Ack);
            }
            Ok(())
        });
    }
    // Restart n2 half-way through the senders' second.
    while sim.elapsed() < Duration::from_millis(500) {
        sim.step().expect("simulation step");
    }
    sim.bounce(name(2));
    if let Err(error) = sim.run() {
        panic!(
            "simulation with seed {seed} failed: {error}; replay with `cargo test -p mako-network --test turmoil_sim`"
        );
    }
    let trace = trace.lock().unwrap().clone();
    let stored = stored.lock().unwrap().clone();
    (trace, stored, boots.load(Ordering::SeqCst))
}

#[test]
fn reliable_messages_survive_a_receiver_restart_and_the_run_repeats() {
    let (trace, stored, boots) = run_with_restart(3);
    assert_eq!(boots, 2, "n2 should have started twice");
    let expected: BTreeSet<_> =
        (0..2).flat_map(|from| (0..PER_PEER).map(move |seq| (AuthorityIndex(from), seq))).collect();
    assert_eq!(stored, expected);
    assert!(trace.iter().any(|line| line.contains("boot=0")) && trace.iter().any(|line| line.contains("boot=1")));
    let (again, _, _) = run_with_restart(3);
    assert_eq!(digest(&trace), digest(&again), "seed 3 gave two different traces");
}
