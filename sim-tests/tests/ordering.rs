//! The differential ordering test over seeds (`mako_sim_tests::ordering`): every arrival order of an
//! adversarial DAG commits the same sequence, for both leader schedules and small GC depths.
//!
//! `MAKO_SEED=<seed> cargo test -p mako-sim-tests --test ordering` replays one seed; `MAKO_SEEDS=<n>` sweeps
//! seeds 1..=n (CI runs 24).

use mako_sim_tests::ordering::{check_figures, check_seed};

/// The two hand-built figures of issue 15 (a table change inside a recursive commit, the GC round at a
/// recursive commit): a late supporter must not change the committed sequence.
#[test]
fn a_late_supporter_changes_nothing_in_the_hand_built_figures() {
    assert_eq!(check_figures(), Ok(()));
}

#[test]
fn every_arrival_order_commits_the_same_sequence() {
    let seeds: Vec<u64> = match std::env::var("MAKO_SEED") {
        Ok(seed) => vec![seed.parse().expect("MAKO_SEED is a number")],
        Err(_) => {
            let count = std::env::var("MAKO_SEEDS").ok().and_then(|n| n.parse().ok()).unwrap_or(24);
            (1..=count).collect()
        }
    };
    let failures: Vec<String> = seeds.iter().filter_map(|&seed| check_seed(seed).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} seeds disagree; replay one with MAKO_SEED=<seed> cargo test -p mako-sim-tests --test ordering\n{}",
        failures.len(),
        seeds.len(),
        failures.join("\n")
    );
}
