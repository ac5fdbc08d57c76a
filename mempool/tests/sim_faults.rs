//! Mempool scenarios under faults (DESIGN.md §3, §9): a validator crashed from the start, a validator
//! partitioned for 20+ rounds and then healed, and garbage collection keeping the DAG bounded over 500 rounds.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{add_validators, delivered_at, expect_ok, highest, host_name, run_until, seed, simulation, Records};

const N: usize = 4;

fn records() -> Records {
    Arc::new(Mutex::new(BTreeMap::new()))
}

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
    add_validators(&mut sim, 0..N, N, seed, root.path(), false, &records);
    let isolate = |sim: &mut turmoil::Sim<'_>, heal: bool| {
        for other in 0..3 {
            if heal {
                sim.repair(host_name(3), host_name(other));
            } else {
                sim.partition(host_name(3), host_name(other));
            }
        }
    };
    expect_ok(run_until(&mut sim, Duration::from_secs(30), |_| highest(&records, 3) >= 5), seed, "sim_faults");
    isolate(&mut sim, false);
    let cut_at = highest(&records, 3);
    expect_ok(
        run_until(&mut sim, Duration::from_secs(60), |_| highest(&records, 0) >= cut_at + 25),
        seed,
        "sim_faults",
    );
    assert!(highest(&records, 3) <= cut_at + 1, "seed {seed}: the partitioned node kept advancing");
    isolate(&mut sim, true);
    let target = highest(&records, 0);
    expect_ok(run_until(&mut sim, Duration::from_secs(60), |_| highest(&records, 3) >= target + 2), seed, "sim_faults");

    // Node 3 now holds every certificate that node 0 holds above node 3's GC horizon, up to `target`.
    let gc_round = records.lock().unwrap()[&3].metrics.as_ref().unwrap().gc_round.load(Ordering::Relaxed);
    let held = delivered_at(&records, 3);
    for ((round, author), digest) in delivered_at(&records, 0) {
        if round > gc_round && round <= target {
            assert_eq!(held.get(&(round, author)), Some(&digest), "seed {seed}: node 3 lacks ({round}, {author})");
        }
    }
}

#[test]
fn the_dag_stays_bounded_over_500_rounds() {
    let seed = seed(4);
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(600));
    add_validators(&mut sim, 0..N, N, seed, root.path(), false, &records);
    let mut largest = 0;
    let result = run_until(&mut sim, Duration::from_secs(600), |_| {
        let records = records.lock().unwrap();
        for record in records.values() {
            if let Some(metrics) = &record.metrics {
                largest = largest.max(metrics.dag_certificates.load(Ordering::Relaxed));
            }
        }
        (0..N).all(|node| records.get(&node).is_some_and(|r| r.highest_round >= 500))
    });
    expect_ok(result, seed, "sim_faults");
    // gc_depth (50) rounds behind a committed round that trails the highest by 2, plus rounds in flight.
    let bound = (N as u64) * (50 + 2 + 4);
    assert!(largest <= bound, "seed {seed}: the DAG held {largest} certificates, more than {bound}");
}

/// Runs three validators to round 20 (the fourth crashed) and returns a digest of everything they delivered,
/// in order, with the simulated time it took.
fn crashed_validator_trace(seed: u64) -> blake3::Hash {
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(60));
    add_validators(&mut sim, 0..3, N, seed, root.path(), false, &records);
    sim.host(host_name(3), || async { std::future::pending::<turmoil::Result>().await });
    let result = run_until(&mut sim, Duration::from_secs(60), |_| (0..3).all(|node| highest(&records, node) >= 20));
    expect_ok(result, seed, "sim_faults");
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
