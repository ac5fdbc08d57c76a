//! Four validators under client load (DESIGN.md §3): every node reaches round 50, every certificate
//! verifies, every referenced batch can be read on every node, and no two nodes hold different certificates
//! for one (round, author).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{expect_ok, host_name, keys, run_validator, seed, simulation, Records, WORKER_PORT};
use mako_types::{Certificate, Committee};
use tokio::io::AsyncWriteExt;

const N: usize = 4;

/// Streams 512-byte transactions to every worker, `per_tick` of them every 100 ms, until `done`.
async fn load_client(per_tick: usize, done: Arc<AtomicBool>) -> turmoil::Result {
    let mut connections = Vec::new();
    for node in 0..N {
        let address = SocketAddr::new(turmoil::lookup(host_name(node)), WORKER_PORT);
        connections.push(turmoil::net::TcpStream::connect(address).await?);
    }
    let mut counter = 0u64;
    while !done.load(Ordering::SeqCst) {
        for stream in &mut connections {
            let mut frames = Vec::with_capacity(per_tick * 516);
            for _ in 0..per_tick {
                let mut transaction = vec![0u8; 512];
                transaction[..8].copy_from_slice(&counter.to_le_bytes());
                counter += 1;
                frames.extend_from_slice(&(transaction.len() as u32).to_le_bytes());
                frames.extend_from_slice(&transaction);
            }
            stream.write_all(&frames).await?;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

#[test]
fn four_validators_under_load_reach_round_50() {
    let seed = seed(1);
    let root = tempfile::tempdir().unwrap();
    let records: Records = Arc::new(Mutex::new(BTreeMap::new()));
    let mut sim = simulation(seed, Duration::from_secs(60));
    for node in 0..N {
        let (root, records) = (root.path().to_path_buf(), Arc::clone(&records));
        sim.host(host_name(node), move || run_validator(node, N, seed, root.clone(), true, Arc::clone(&records)));
    }
    let done = Arc::new(AtomicBool::new(false));
    sim.client("load", load_client(10, Arc::clone(&done)));
    {
        let records = Arc::clone(&records);
        sim.client("observer", async move {
            while records.lock().unwrap().values().filter(|r| r.highest_round >= 50).count() < N {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            done.store(true, Ordering::SeqCst);
            Ok(())
        });
    }
    expect_ok(sim.run(), seed, "sim_load");
    drop(sim); // closes every validator's store

    let keys: Vec<_> = (0..N).map(keys).collect();
    let committee = Committee::local(&keys, 9_000, 1).unwrap(); // same keys and stakes as in the simulation
    let records = records.lock().unwrap();
    let lowest = records.values().map(|r| r.highest_round).min().unwrap();
    assert!(lowest >= 50, "seed {seed}: a node stopped at round {lowest}");

    let mut vertices = BTreeMap::new();
    for (node, record) in records.iter() {
        let mut rng = rand::rngs::mock::StepRng::new(1, 7);
        for chunk in record.delivered.chunks(64) {
            Certificate::verify_batch(chunk, &committee, &mut rng)
                .unwrap_or_else(|e| panic!("seed {seed}: node {node} delivered a bad certificate: {e}"));
        }
        for certificate in &record.delivered {
            let digest = certificate.digest();
            let known = vertices.entry((certificate.round(), certificate.author())).or_insert(digest);
            assert_eq!(*known, digest, "seed {seed}: two certificates for one (round, author)");
        }
        let store = mako_storage::Store::open(&common::store_dir(root.path(), *node)).unwrap();
        let mut batches = 0;
        for certificate in record.delivered.iter().filter(|c| c.round() + 5 <= lowest) {
            for (digest, _) in certificate.header.payload() {
                assert!(store.batches.contains(digest).unwrap(), "seed {seed}: node {node} lacks batch {digest}");
                batches += 1;
            }
        }
        assert!(batches > 0, "seed {seed}: node {node} saw no batches: the load did not reach the DAG");
    }
}
