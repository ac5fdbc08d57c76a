//! Execution agreement (DESIGN.md §5, §9.4): a validator whose state diverges from a quorum's halts with a
//! clear error instead of going on silently, and the others keep committing.

use std::time::Duration;

use mako_sim_tests::harness::{add_validators, commits, records, run_until, seed, simulation, Options};

const N: usize = 4;

#[test]
fn a_node_whose_root_disagrees_with_a_quorum_halts() {
    let seed = seed(21);
    let root = tempfile::tempdir().unwrap();
    let records = records();
    let mut sim = simulation(seed, Duration::from_secs(120));
    // Validator 3 starts from another genesis: every root it computes differs from the others'.
    add_validators(&mut sim, 0..N, Options::new(N, seed).divergent(3), root.path(), &records);
    let outcome = run_until(&mut sim, Duration::from_secs(120), |_| commits(&records, 0) >= 40);
    let error = outcome.expect_err("the diverging validator should have halted the simulation");
    assert!(error.contains("state divergence"), "seed {seed}: unexpected failure: {error}");
    let records = records.lock().unwrap();
    assert!(records[&3].violations.iter().any(|v| v.contains("state divergence")), "seed {seed}: {error}");
    for node in 0..3 {
        assert!(records[&node].violations.is_empty(), "seed {seed}: honest validator {node} halted");
    }
}
