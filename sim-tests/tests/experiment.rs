//! `mako-sim-tests experiment` (issue 17, item 5): a point is a function of its seed, and the WAN model is
//! really between the validators.

use std::time::Duration;

use mako_sim_tests::experiment::{report, Conditions, Configuration, Latency, Point};
use mako_sim_tests::harness::{expect_ok, seed};
use mako_types::ScheduleKind;

fn point(seed: u64, latency: Latency, schedule: ScheduleKind) -> Point {
    Point {
        configuration: Configuration { validators: 4, schedule, down: 0, latency },
        rate: 800,
        conditions: Conditions::default(),
        seed,
        window: Duration::from_secs(3),
    }
}

/// Run twice, a point writes the same row, bit for bit (with the reputation schedule, whose table changes
/// with what is committed); and its latency is what the regions put between validators, not what the
/// simulator's default links do.
#[test]
fn a_point_replays_bit_for_bit_from_its_seed_and_regions_add_their_latency() {
    let seed = seed(5);
    let regions = point(seed, Latency::Regions, ScheduleKind::Reputation);
    let first = expect_ok(regions.run(), seed, "experiment");
    let second = expect_ok(regions.run(), seed, "experiment");
    assert!(first.executed_tps > 0.0 && !first.latencies.is_empty(), "seed {seed}: nothing executed");
    assert_eq!(first, second, "seed {seed}: two runs of one point differ");
    assert_eq!(report(&[(&regions, &first)]).csv(), report(&[(&regions, &second)]).csv());

    // Between regions 35 to 127 ms one way, and a certificate takes three trips (header, votes, certificate):
    // the p50 must be well above the same committee's on 0 ms paths.
    let local = point(seed, Latency::Uniform(Duration::ZERO), ScheduleKind::Reputation);
    let local = expect_ok(local.run(), seed, "experiment");
    assert!(
        first.latency_ms(0.5) > local.latency_ms(0.5) + 150.0,
        "seed {seed}: p50 {:.0} ms over regions against {:.0} ms locally",
        first.latency_ms(0.5),
        local.latency_ms(0.5)
    );
}
