//! The fault scenarios of issue 7 and the one runner they share.
//!
//! Every scenario runs four validators (a worker, a primary, Bullshark and the execution pipeline each) and a
//! load client on turmoil hosts, in four phases of simulated time:
//!
//! 1. **warm-up**: under load until every honest validator has committed;
//! 2. **fault**: [`FAULT`] of the scenario's fault (or none);
//! 3. **heal**: the fault is undone; every honest validator that runs must commit [`LIVENESS_COMMITS`] new
//!    sub-DAGs within [`LIVENESS_LIMIT`] (§9.6);
//! 4. **quiet**: the load stops, and every batch a quorum acknowledged must be committed within
//!    [`QUIET_LIMIT`] (§9.3).
//!
//! Every scenario runs under both leader schedules: the seed picks round-robin, or the reputation schedule
//! with a window of 1, 2 or 10 commits ([`protocol`]), so a sweep covers every pairing of fault and schedule.
//!
//! Then the [`invariants`](crate::invariants) checker judges every item of DESIGN.md §9 over the honest
//! validators. An [`Outcome`] holds the verdict, a hash of the trace (two runs of one seed must give the same),
//! and the command that replays the run.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mako_types::{ProtocolParameters, ScheduleKind};

use crate::harness::{
    add_crashed, add_validators, commits, highest, host_name, load_client, records, run_until, simulation, store_dir,
    Options, Records,
};
use crate::invariants::{check_records, check_stores, execution_caught_up, trace_hash, Checks, Summary, Violation};

/// Validators in every scenario: f = 1.
pub const VALIDATORS: usize = 4;
/// How long the fault lasts.
pub const FAULT: Duration = Duration::from_secs(10);
/// New sub-DAGs every running honest validator must commit after the heal...
pub const LIVENESS_COMMITS: usize = 3;
/// ...within this long.
pub const LIVENESS_LIMIT: Duration = Duration::from_secs(30);
/// How long acknowledged batches get to be committed once the load stops.
pub const QUIET_LIMIT: Duration = Duration::from_secs(30);
const WARMUP_LIMIT: Duration = Duration::from_secs(30);
/// Transactions per validator every 100 ms.
const LOAD: usize = 5;

/// The faults of issue 7.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scenario {
    NoFaults,
    /// 10% of the messages between validators lost.
    MessageLoss,
    /// Latency up to 1.2 s on every link, most messages slower than the 500 ms leader timeout, and a steady
    /// 1 s on one link.
    Jitter,
    /// One validator cut off from the others, then healed.
    MinorityPartition,
    /// Two against two: no quorum anywhere, so no commits until the heal.
    NoQuorumSplit,
    /// f validators crashed from the start.
    CrashedF,
    /// One validator crashed and restarted from its store, three times; the second crash is a machine crash
    /// (power lost: every write not synced is gone).
    CrashRestart,
    /// The author of the latest committed anchor cut off from the others.
    LeaderIsolation,
    /// One validator of four Byzantine ([`crate::byzantine`]).
    Byzantine,
    /// One validator starts with an empty store only once the others have checkpointed and deleted the history
    /// it would replay: it must state-sync from a checkpoint f+1 vouch for, then keep up.
    StateSync,
}

/// The validator that joins late in [`Scenario::StateSync`].
const LATE: usize = VALIDATORS - 1;
/// Sub-DAGs the others commit before it starts: several checkpoint intervals, so that they have deleted what
/// their previous checkpoints cover.
const LATE_AFTER_COMMITS: usize = 5 * crate::harness::CHECKPOINT_INTERVAL as usize;

impl Scenario {
    pub const ALL: [Scenario; 10] = [
        Scenario::NoFaults,
        Scenario::MessageLoss,
        Scenario::Jitter,
        Scenario::MinorityPartition,
        Scenario::NoQuorumSplit,
        Scenario::CrashedF,
        Scenario::CrashRestart,
        Scenario::LeaderIsolation,
        Scenario::Byzantine,
        Scenario::StateSync,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::NoFaults => "no-faults",
            Scenario::MessageLoss => "message-loss",
            Scenario::Jitter => "jitter",
            Scenario::MinorityPartition => "minority-partition",
            Scenario::NoQuorumSplit => "no-quorum-split",
            Scenario::CrashedF => "crashed-f",
            Scenario::CrashRestart => "crash-restart",
            Scenario::LeaderIsolation => "leader-isolation",
            Scenario::Byzantine => "byzantine",
            Scenario::StateSync => "state-sync",
        }
    }

    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// The validators that are not Byzantine (a crashed one is honest, and judged on what it did).
    fn honest(self) -> Vec<usize> {
        match self {
            Scenario::Byzantine | Scenario::CrashedF => (0..VALIDATORS - 1).collect(),
            _ => (0..VALIDATORS).collect(),
        }
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The verdict of one run.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub scenario: Scenario,
    pub seed: u64,
    pub result: Result<Summary, Violation>,
    /// Everything the honest validators delivered, committed and executed, hashed in order.
    pub trace: blake3::Hash,
    pub simulated: Duration,
}

impl Outcome {
    /// The command that replays this run alone.
    pub fn replay(&self) -> String {
        format!("cargo run --release -p mako-sim-tests -- sweep --scenario {} --seed {}", self.scenario, self.seed)
    }

    /// `Ok` or a message with the seed, the scenario and the replay command.
    pub fn verdict(&self) -> Result<Summary, String> {
        self.result.clone().map_err(|violation| {
            format!(
                "scenario {} seed {}: {violation}\nreplay: {}\n   or: MAKO_SEED={} cargo test -p mako-sim-tests --test scenarios {}",
                self.scenario,
                self.seed,
                self.replay(),
                self.seed,
                self.scenario.name().replace('-', "_"),
            )
        })
    }
}

fn hosts(nodes: impl IntoIterator<Item = usize>) -> Vec<String> {
    nodes.into_iter().map(host_name).collect()
}

/// Runs `scenario` with `seed`, in a fresh folder for the validators' stores.
pub fn run(scenario: Scenario, seed: u64) -> Outcome {
    let root = tempfile::tempdir().expect("a temporary folder");
    let records = records();
    let (result, simulated) = simulate(scenario, seed, root.path(), &records);
    let checks = Checks { honest: scenario.honest(), validity: true };
    let result = result.and_then(|summary| {
        let executed_blocks = check_stores(root.path(), &records, &checks)?;
        Ok(Summary { executed_blocks, ..summary })
    });
    Outcome { scenario, seed, result, trace: trace_hash(&records), simulated }
}

/// The protocol parameters of a run: the seed picks the leader schedule (CI's seeds 1 and 2 run round-robin
/// and the default reputation schedule), the GC depth stays the default.
pub fn protocol(seed: u64) -> ProtocolParameters {
    let reputation = |reputation_window| ProtocolParameters {
        leader_schedule: ScheduleKind::Reputation,
        reputation_window,
        ..crate::harness::sim_protocol()
    };
    match seed % 4 {
        0 => reputation(1),
        1 => crate::harness::sim_protocol(),
        2 => reputation(ProtocolParameters::default().reputation_window),
        _ => reputation(2),
    }
}

/// Phases 1 to 4 (the stores are closed when it returns).
fn simulate(scenario: Scenario, seed: u64, root: &Path, records: &Records) -> (Result<Summary, Violation>, Duration) {
    // The late start of state sync waits for the others to commit for up to another warm-up.
    let budget = WARMUP_LIMIT * 2 + FAULT + LIVENESS_LIMIT + QUIET_LIMIT;
    let mut sim = simulation(seed, budget);
    let options = Options::new(VALIDATORS, seed).with_worker().protocol(protocol(seed));
    let honest = scenario.honest();
    let late_start = Arc::new(AtomicBool::new(false));
    match scenario {
        Scenario::Byzantine => {
            add_validators(&mut sim, honest.clone(), options, root, records);
            let node = VALIDATORS - 1;
            sim.host(host_name(node), move || crate::byzantine::run(node, VALIDATORS, seed));
        }
        Scenario::CrashedF => {
            add_validators(&mut sim, honest.clone(), options, root, records);
            add_crashed(&mut sim, VALIDATORS - 1);
        }
        Scenario::StateSync => {
            add_validators(&mut sim, 0..LATE, options, root, records);
            add_late_validator(&mut sim, LATE, options, root, records, Arc::clone(&late_start));
        }
        _ => add_validators(&mut sim, 0..VALIDATORS, options, root, records),
    }
    let done = Arc::new(AtomicBool::new(false));
    sim.client("client", load_client(honest.clone(), LOAD, 0, Arc::clone(&done)));
    let checks = Checks { honest: honest.clone(), validity: false };
    let mut result = phases(scenario, &mut sim, root, records, &honest, &checks, &done, &late_start);
    let simulated = sim.elapsed();
    done.store(true, Ordering::SeqCst);
    drop(sim);
    if result.is_ok() {
        result = check_records(records, &Checks { validity: true, ..checks });
    }
    if scenario == Scenario::Byzantine && result.is_ok() {
        result = flood_bounded(records, &honest).map(|()| result.expect("checked just above"));
    }
    if scenario == Scenario::StateSync && result.is_ok() {
        let synced = records.lock().expect("records lock").get(&LATE).map(|r| r.synced.clone()).unwrap_or_default();
        if synced.is_empty() {
            result = Err(Violation::new(
                "state sync (issue 17, item 3)",
                format!("node {LATE} joined after {LATE_AFTER_COMMITS} sub-DAGs without installing a checkpoint"),
            ));
        }
    }
    (result, simulated)
}

/// Finding 7: the Byzantine worker's flood went over every honest validator's budget of unreferenced batches,
/// and each had its worker delete what was over it (the disk bound itself is `primary::retention`'s test).
fn flood_bounded(records: &Records, honest: &[usize]) -> Result<(), Violation> {
    let records = records.lock().expect("records lock");
    for node in honest {
        let evicted =
            records.get(node).and_then(|r| r.metrics.as_ref()).map_or(0, |m| m.batches_evicted.load(Ordering::Relaxed));
        if evicted == 0 {
            return Err(Violation::new(
                "bounded batch retention (issue 15, finding 7)",
                format!("node {node} kept every batch of the Byzantine worker's flood"),
            ));
        }
        // Its frames of junk certificates, verified together with honest peers' frames, were still traced back
        // to it: it served penalties, during which its frames were dropped unverified (DESIGN.md §9.9).
        let penalized = records
            .get(node)
            .and_then(|r| r.metrics.as_ref())
            .map_or(0, |m| m.rejected().get("penalized_peer").copied().unwrap_or(0));
        if penalized == 0 {
            return Err(Violation::new(
                "bounded verification (§9.9)",
                format!("node {node} never penalized the peer that sent it junk certificates"),
            ));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn phases(
    scenario: Scenario,
    sim: &mut turmoil::Sim<'_>,
    root: &Path,
    records: &Records,
    honest: &[usize],
    checks: &Checks,
    done: &AtomicBool,
    late_start: &AtomicBool,
) -> Result<Summary, Violation> {
    // A stall is reported as such only when safety holds: a safety violation explains it better.
    let stalled = |phase: &str, error: String| match check_records(records, checks) {
        Err(violation) => violation,
        Ok(_) => Violation::liveness(format!("{phase}: {error}")),
    };
    let all_committed = |records: &Records, nodes: &[usize], at_least: &[usize]| {
        nodes.iter().zip(at_least).all(|(node, n)| commits(records, *node) >= *n)
    };

    // 1. Warm-up (of the validators that start).
    let starting: Vec<usize> =
        honest.iter().copied().filter(|n| scenario != Scenario::StateSync || *n != LATE).collect();
    let first: Vec<usize> = starting.iter().map(|_| 1).collect();
    run_until(sim, WARMUP_LIMIT, |_| all_committed(records, &starting, &first)).map_err(|e| stalled("warm-up", e))?;

    // 2. The fault.
    let validators = hosts(honest.iter().copied());
    let others = |node: usize| hosts(honest.iter().copied().filter(|n| *n != node));
    match scenario {
        Scenario::NoFaults | Scenario::CrashedF | Scenario::Byzantine => advance(sim, FAULT)?,
        Scenario::StateSync => {
            let enough: Vec<usize> = starting.iter().map(|_| LATE_AFTER_COMMITS).collect();
            run_until(sim, WARMUP_LIMIT, |_| all_committed(records, &starting, &enough))
                .map_err(|e| stalled("before the late start", e))?;
            late_start.store(true, Ordering::SeqCst);
            advance(sim, FAULT)?;
        }
        Scenario::MessageLoss => {
            for a in &validators {
                for b in validators.iter().filter(|b| *b != a) {
                    sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.1);
                }
            }
            advance(sim, FAULT)?;
            for a in &validators {
                for b in validators.iter().filter(|b| *b != a) {
                    sim.set_link_fail_rate(a.as_str(), b.as_str(), 0.0);
                }
            }
        }
        Scenario::Jitter => {
            sim.set_max_message_latency(Duration::from_millis(1_200));
            // A flat curve: two messages in three take longer than the leader timeout.
            sim.set_message_latency_curve(1.0);
            sim.set_link_latency(validators[0].as_str(), validators[1].as_str(), Duration::from_secs(1));
            advance(sim, FAULT)?;
            sim.set_link_latency(validators[0].as_str(), validators[1].as_str(), Duration::from_millis(1));
            sim.set_max_message_latency(Duration::from_millis(20));
            sim.set_message_latency_curve(5.0);
        }
        Scenario::MinorityPartition | Scenario::LeaderIsolation => {
            let isolated = if scenario == Scenario::LeaderIsolation {
                let records = records.lock().expect("records lock");
                records[&honest[0]].commits.values().next_back().map_or(0, |c| c.leader_author.as_usize())
            } else {
                0
            };
            for other in others(isolated) {
                sim.partition(host_name(isolated).as_str(), other.as_str());
            }
            advance(sim, FAULT)?;
            for other in others(isolated) {
                sim.repair(host_name(isolated).as_str(), other.as_str());
            }
        }
        Scenario::NoQuorumSplit => {
            for a in hosts([0, 1]) {
                for b in hosts([2, 3]) {
                    sim.partition(a.as_str(), b.as_str());
                }
            }
            // What was in flight may still commit; after that, nothing can.
            advance(sim, Duration::from_secs(2))?;
            let before: Vec<usize> = honest.iter().map(|n| commits(records, *n)).collect();
            advance(sim, FAULT - Duration::from_secs(2))?;
            let after: Vec<usize> = honest.iter().map(|n| commits(records, *n)).collect();
            if before != after {
                return Err(Violation::new(
                    "no commit without a quorum",
                    format!("sub-DAGs committed during a 2-2 split: {before:?} -> {after:?}"),
                ));
            }
            for a in hosts([0, 1]) {
                for b in hosts([2, 3]) {
                    sim.repair(a.as_str(), b.as_str());
                }
            }
        }
        Scenario::CrashRestart => {
            for crash in 0..3 {
                sim.crash(host_name(1).as_str());
                if crash == 1 {
                    // A machine crash: the power goes, and every write not synced to disk with it.
                    mako_storage::cut_power(&store_dir(root, 1));
                }
                advance(sim, Duration::from_millis(1_500))?;
                sim.bounce(host_name(1).as_str());
                advance(sim, FAULT / 3 - Duration::from_millis(1_500))?;
            }
        }
    }
    // Safety holds at every moment, not only at the end.
    check_records(records, checks)?;

    // 3. Heal: liveness.
    let running: Vec<usize> = honest.to_vec();
    let target: Vec<usize> = running.iter().map(|n| commits(records, *n) + LIVENESS_COMMITS).collect();
    if let Err(e) = run_until(sim, LIVENESS_LIMIT, |_| all_committed(records, &running, &target)) {
        let now: Vec<usize> = running.iter().map(|n| commits(records, *n)).collect();
        let rounds: Vec<u64> = running.iter().map(|n| highest(records, *n)).collect();
        return Err(stalled(
            "after the heal",
            format!("{e}; sub-DAGs committed per validator {now:?}, needed {target:?}; highest rounds {rounds:?}"),
        ));
    }

    // 4. Quiet: the load stops; every acknowledged batch must be committed, and what was committed executed.
    done.store(true, Ordering::SeqCst);
    let validity = Checks { validity: true, ..checks.clone() };
    // The full check is costly: run it every 100 steps (100 ms of simulated time).
    let mut steps = 0u64;
    let _ = run_until(sim, QUIET_LIMIT, |_| {
        steps += 1;
        steps.is_multiple_of(100) && execution_caught_up(records, &running) && check_records(records, &validity).is_ok()
    });
    check_records(records, &validity)
}

/// Validator `node`, whose host waits for `start` before it opens its (empty) store and runs.
fn add_late_validator(
    sim: &mut turmoil::Sim<'_>,
    node: usize,
    options: Options,
    root: &Path,
    records: &Records,
    start: Arc<AtomicBool>,
) {
    let (root, records) = (root.to_path_buf(), Arc::clone(records));
    sim.host(host_name(node), move || {
        let (root, records, start) = (root.clone(), Arc::clone(&records), Arc::clone(&start));
        async move {
            while !start.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            crate::harness::run_validator(node, options, root, records).await
        }
    });
}

/// [`crate::harness::advance`], failing as a liveness violation.
fn advance(sim: &mut turmoil::Sim<'_>, duration: Duration) -> Result<(), Violation> {
    crate::harness::advance(sim, duration).map_err(Violation::liveness)
}
