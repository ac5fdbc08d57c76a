//! Four validators under client load (DESIGN.md §3): every node reaches round 50, every certificate
//! verifies, every referenced batch can be read on every node, and no two nodes hold different certificates
//! for one (round, author).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mako_sim_tests::harness::{
    add_validators, committee_outside, expect_ok, load_client, records, seed, sim_protocol, simulation, store_dir,
    Options,
};
use mako_types::{Certificate, ProtocolParameters};

const N: usize = 4;

#[test]
fn four_validators_under_load_reach_round_50() {
    let seed = seed(1);
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(60));
    // Without checkpoints nothing is deleted (executed batches go with the checkpoint after the next), so every
    // batch a certificate names must still be on every node at the end.
    let keep_everything = ProtocolParameters { checkpoint_interval: 0, ..sim_protocol() };
    let options = Options::new(N, seed).with_worker().protocol(keep_everything);
    add_validators(&mut sim, 0..N, options, root.path(), &records);
    let done = Arc::new(AtomicBool::new(false));
    sim.client("load", load_client((0..N).collect(), 10, 0, Arc::clone(&done)));
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
    expect_ok(sim.run(), seed, "mempool_load");
    drop(sim); // closes every validator's store

    let committee = committee_outside(N);
    let records = records.lock().unwrap();
    let lowest = records.values().map(|r| r.highest_round).min().unwrap();
    assert!(lowest >= 50, "seed {seed}: a node stopped at round {lowest}");

    let mut vertices = std::collections::BTreeMap::new();
    for (node, record) in records.iter() {
        let mut rng = rand::rngs::mock::StepRng::new(1, 7);
        for chunk in record.delivered.chunks(64) {
            Certificate::verify_batch(chunk, &committee, &mako_types::VoteMessages::default(), &mut rng)
                .unwrap_or_else(|e| panic!("seed {seed}: node {node} delivered a bad certificate: {e}"));
        }
        for certificate in &record.delivered {
            let digest = certificate.digest();
            let known = vertices.entry((certificate.round(), certificate.author())).or_insert(digest);
            assert_eq!(*known, digest, "seed {seed}: two certificates for one (round, author)");
        }
        let store = mako_storage::Store::open(&store_dir(root.path(), *node)).unwrap();
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
