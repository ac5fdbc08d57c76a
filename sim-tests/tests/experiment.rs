//! `mako-sim-tests experiment` (issue 17, item 5): a point is a function of its seed, and the WAN model is
//! really between the validators.

use std::time::Duration;

use mako_sim_tests::experiment::{report, Conditions, Configuration, Latency, Point};
use mako_sim_tests::harness::{expect_ok, seed};
use mako_types::ScheduleKind;

fn point(seed: u64, latency: Latency, rate: u64, loss: f64) -> Point {
    Point {
        configuration: Configuration { validators: 4, schedule: ScheduleKind::Reputation, down: 0, latency },
        rate,
        conditions: Conditions { loss, ..Conditions::default() },
        seed,
        window: Duration::from_secs(10),
    }
}

/// Run twice, a point writes the same row, bit for bit, also past what the committee keeps up with (1% of
/// the datagrams lost: QUIC's congestion control holds each path far below the offered load): its workers push
/// back on the client, and a worker's connection is then reading transactions and writing acknowledgements at
/// the same moments (an unbiased `select!` between the two, which polls in a
/// random order, made such points differ from run to run).
#[test]
fn a_point_replays_bit_for_bit_from_its_seed() {
    let seed = seed(5);
    let stressed = point(seed, Latency::Uniform(Duration::from_millis(25)), 10_000, 0.01);
    let first = expect_ok(stressed.run(), seed, "experiment");
    let second = expect_ok(stressed.run(), seed, "experiment");
    assert!(first.executed_tps > 0.0 && !first.latencies.is_empty(), "seed {seed}: nothing executed");
    let rows = [&first, &second].map(|measured| report(&[(&stressed, measured)]).csv());
    assert_eq!(rows[0], rows[1], "seed {seed}: two runs of one point differ");
    assert!(first == second, "seed {seed}: two runs of one point differ in their latencies");
}

/// Between regions 35 to 127 ms one way, and a certificate takes three trips (header, votes, certificate):
/// the p50 must be well above the same committee's on 0 ms paths.
#[test]
fn regions_add_their_latency() {
    let seed = seed(5);
    let regions = expect_ok(point(seed, Latency::Regions, 800, 0.0).run(), seed, "experiment");
    let local = expect_ok(point(seed, Latency::Uniform(Duration::ZERO), 800, 0.0).run(), seed, "experiment");
    assert!(
        regions.latency_ms(0.5) > local.latency_ms(0.5) + 150.0,
        "seed {seed}: p50 {:.0} ms over regions against {:.0} ms locally",
        regions.latency_ms(0.5),
        local.latency_ms(0.5)
    );
}

/// The cause of the test above, ruled out everywhere: every `tokio::select!` in the workspace's sources is
/// `biased` (tokio seeds an unbiased one's order from the process's randomness, which turmoil's seed does not
/// reach without `--cfg tokio_unstable`).
#[test]
fn every_select_in_the_workspace_is_biased() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace");
    let mut unbiased = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).expect("a readable folder").flatten() {
            let path = entry.path();
            let name = entry.file_name();
            if path.is_dir() && name != "target" && !name.to_string_lossy().starts_with('.') {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).expect("a readable source file");
                let lines: Vec<&str> = text.lines().collect();
                for (i, line) in lines.iter().enumerate() {
                    if line.contains(concat!("select", "! {")) && !line.trim_start().starts_with("//") {
                        let next = lines.get(i + 1).map_or("", |l| l.trim());
                        if !next.starts_with("biased;") {
                            unbiased.push(format!("{}:{}", path.display(), i + 1));
                        }
                    }
                }
            }
        }
    }
    assert!(unbiased.is_empty(), "unbiased select! (add `biased;`): {unbiased:#?}");
}
