//! Bullshark over the real mempool, under turmoil (DESIGN.md §4, §9): validators commit identical sequences,
//! keep committing with a leader crashed, continue their sequence across a restart, and the reputation
//! schedule skips fewer anchors than round-robin when a validator is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mako_consensus::ScheduleKind;
use mako_sim_tests::harness::{
    add_crashed, add_validators, check_commits, check_execution, commits, expect_ok, host_name, load_client, records,
    run_until, seed, simulation, Options, Records,
};

const N: usize = 4;

#[test]
fn validators_under_load_commit_identical_sequences_and_the_dag_stays_bounded() {
    let seed = seed(11);
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(600));
    add_validators(&mut sim, 0..N, Options::new(N, seed).with_worker(), root.path(), &records);
    let done = Arc::new(AtomicBool::new(false));
    sim.client("load", load_client((0..N).collect(), 5, 0, Arc::clone(&done)));
    let mut largest_dag = 0;
    let result = run_until(&mut sim, Duration::from_secs(600), |_| {
        let records = records.lock().unwrap();
        for metrics in records.values().filter_map(|r| r.metrics.as_ref()) {
            largest_dag = largest_dag.max(metrics.dag_certificates.load(Ordering::Relaxed));
        }
        (0..N).all(|node| records.get(&node).is_some_and(|r| r.highest_round >= 500 && r.commits.len() >= 200))
    });
    done.store(true, Ordering::SeqCst);
    expect_ok(result, seed, "consensus");
    expect_ok(check_commits(&records), seed, "consensus");
    // GC keeps `gc_depth` (50) rounds below the last committed leader, which trails the highest round by a few.
    let bound = (N as u64) * (50 + 8);
    assert!(largest_dag <= bound, "seed {seed}: the DAG held {largest_dag} certificates, more than {bound}");
    drop(sim); // closes the stores
    let (executed, changing) = expect_ok(check_execution(root.path(), 0..N), seed, "consensus");
    assert!(executed >= 150, "seed {seed}: a node executed only {executed} blocks");
    assert!(
        changing >= 50,
        "seed {seed}: only {changing} executed blocks carried batches: the load did not reach execution"
    );
}

#[test]
fn commits_continue_with_a_leader_crashed() {
    let seed = seed(12);
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(120));
    add_validators(&mut sim, 0..3, Options::new(N, seed), root.path(), &records);
    add_crashed(&mut sim, 3);
    let result = run_until(&mut sim, Duration::from_secs(120), |_| (0..3).all(|node| commits(&records, node) >= 20));
    expect_ok(result, seed, "consensus");
    expect_ok(check_commits(&records), seed, "consensus");
    let led_by_3 = records.lock().unwrap()[&0].commits.values().filter(|c| c.leader_author.0 == 3).count();
    assert_eq!(led_by_3, 0, "seed {seed}: a crashed validator's anchor was committed");
}

#[test]
fn a_restarted_node_continues_its_sequence_without_gap_or_repeat() {
    let seed = seed(13);
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(120));
    add_validators(&mut sim, 0..N, Options::new(N, seed), root.path(), &records);
    expect_ok(run_until(&mut sim, Duration::from_secs(60), |_| commits(&records, 0) >= 10), seed, "consensus");
    sim.bounce(host_name(0));
    let before = commits(&records, 0);
    expect_ok(run_until(&mut sim, Duration::from_secs(60), |_| commits(&records, 0) >= before + 20), seed, "consensus");
    assert_eq!(records.lock().unwrap()[&0].boots, 2, "seed {seed}: validator 0 did not restart");
    // Consecutive indices across both lives, and agreement with the validators that never stopped, in
    // consensus and in execution (the restarted node replayed its block log).
    expect_ok(check_commits(&records), seed, "consensus");
    drop(sim);
    let (executed, _) = expect_ok(check_execution(root.path(), 0..N), seed, "consensus");
    assert!(executed >= 20, "seed {seed}: a node executed only {executed} blocks");
}

/// Anchors (even rounds up to the last committed leader) that were not committed, with validator 3 down.
fn skipped_anchors(schedule: ScheduleKind, seed: u64) -> (usize, usize) {
    let root = tempfile::tempdir().unwrap();
    let records: Records = records();
    let mut sim = simulation(seed, Duration::from_secs(300));
    add_validators(&mut sim, 0..3, Options::new(N, seed).schedule(schedule), root.path(), &records);
    add_crashed(&mut sim, 3);
    expect_ok(run_until(&mut sim, Duration::from_secs(300), |_| commits(&records, 0) >= 60), seed, "consensus");
    expect_ok(check_commits(&records), seed, "consensus");
    let records = records.lock().unwrap();
    let log = &records[&0].commits;
    let last_round = log.values().next_back().unwrap().leader_round;
    ((last_round / 2) as usize - log.len(), log.len())
}

#[test]
fn reputation_skips_fewer_anchors_than_round_robin_with_a_validator_down() {
    let seed = seed(14);
    let (round_robin, commits_rr) = skipped_anchors(ScheduleKind::RoundRobin, seed);
    let (reputation, commits_rep) = skipped_anchors(ScheduleKind::Reputation, seed);
    eprintln!(
        "skipped anchors with validator 3 down: round-robin {round_robin} (of {}), reputation {reputation} (of {})",
        round_robin + commits_rr,
        reputation + commits_rep
    );
    assert!(
        reputation < round_robin,
        "seed {seed}: reputation skipped {reputation} anchors, round-robin {round_robin}"
    );
}
