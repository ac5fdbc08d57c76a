//! Mempool scenarios under faults (DESIGN.md §3, §9): a validator crashed from the start, a validator
//! partitioned for 20+ rounds and then healed, and the same seed giving the same run. (Garbage collection keeping
//! the DAG bounded over 500 rounds is checked under load in `consensus.rs`.)

use std::sync::atomic::Ordering;
use std::time::Duration;

use mako_sim_tests::harness::{
    add_crashed, add_validators, delivered_at, expect_ok, highest, host_name, records, run_until, seed, simulation,
    Options,
};

const N: usize = 4;

#[test]
fn one_validator_crashed_from_the_start_the_others_advance() {
    // The three live validators must reach round 20; the trace itself is checked for determinism below.
    crashed_validator_trace(seed(2));
}

#[test]
fn partitioned_validator_catches_up_through_the_synchronizer() {
    let seed = seed(3);
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(120));
    add_validators(&mut sim, 0..N, Options::new(N, seed), root.path(), &records);
    let isolate = |sim: &mut turmoil::Sim<'_>, heal: bool| {
        for other in 0..3 {
            if heal {
                sim.repair(host_name(3), host_name(other));
            } else {
                sim.partition(host_name(3), host_name(other));
            }
        }
    };
    expect_ok(run_until(&mut sim, Duration::from_secs(30), |_| highest(&records, 3) >= 5), seed, "mempool_faults");
    isolate(&mut sim, false);
    let cut_at = highest(&records, 3);
    expect_ok(
        run_until(&mut sim, Duration::from_secs(60), |_| highest(&records, 0) >= cut_at + 25),
        seed,
        "mempool_faults",
    );
    assert!(highest(&records, 3) <= cut_at + 1, "seed {seed}: the partitioned node kept advancing");
    isolate(&mut sim, true);
    let target = highest(&records, 0);
    expect_ok(
        run_until(&mut sim, Duration::from_secs(60), |_| highest(&records, 3) >= target + 2),
        seed,
        "mempool_faults",
    );

    // Node 3 now holds every certificate that node 0 holds above node 3's GC horizon, up to `target`.
    let gc_round = records.lock().unwrap()[&3].metrics.as_ref().unwrap().gc_round.load(Ordering::Relaxed);
    let held = delivered_at(&records, 3);
    for ((round, author), digest) in delivered_at(&records, 0) {
        if round > gc_round && round <= target {
            assert_eq!(held.get(&(round, author)), Some(&digest), "seed {seed}: node 3 lacks ({round}, {author})");
        }
    }
}

/// Runs three validators to round 20 (the fourth crashed) and returns a digest of everything they delivered,
/// in order, with the simulated time it took.
fn crashed_validator_trace(seed: u64) -> blake3::Hash {
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(60));
    add_validators(&mut sim, 0..3, Options::new(N, seed), root.path(), &records);
    add_crashed(&mut sim, 3);
    let result = run_until(&mut sim, Duration::from_secs(60), |_| (0..3).all(|node| highest(&records, node) >= 20));
    expect_ok(result, seed, "mempool_faults");
    let mut hasher = blake3::Hasher::new();
    hasher.update(format!("{:?}", sim.elapsed()).as_bytes());
    for (node, record) in records.lock().unwrap().iter() {
        for certificate in &record.delivered {
            hasher.update(&(*node as u64).to_le_bytes());
            hasher.update(certificate.digest().as_bytes());
        }
    }
    hasher.finalize()
}

#[test]
fn same_seed_same_trace_other_seed_other_trace() {
    let seed = seed(6);
    let first = crashed_validator_trace(seed);
    assert_eq!(first, crashed_validator_trace(seed), "seed {seed} gave two different traces");
    assert_ne!(first, crashed_validator_trace(seed + 1), "seeds {seed} and {} gave the same trace", seed + 1);
}
