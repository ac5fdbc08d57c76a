//! The equivocation test of `mako_sim_tests::equivocation` (a Byzantine author, a power cut, bad input).

use mako_sim_tests::equivocation;
use mako_sim_tests::harness::{expect_ok, seed};

#[test]
fn restarted_validator_never_votes_twice_and_bad_input_is_counted() {
    let seed = seed(5);
    expect_ok(
        equivocation::restarted_validator_never_votes_twice_and_bad_input_is_counted(seed),
        seed,
        "mempool_byzantine",
    );
}
