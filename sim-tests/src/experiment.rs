//! `mako-sim-tests experiment`: `mako bench`'s experiment (issue 17, item 5) under the simulator. The same
//! sweep (committee size × leader schedule × validators down from the start × one-way latency between
//! validators × offered rate) runs the same validator assembly, with the testnet's mempool parameters, on
//! turmoil hosts instead of processes, so that it reaches committees and latencies one machine cannot: up to 50
//! validators, spread over five regions of a WAN ([`Latency::Regions`]).
//!
//! A point is a function of its seed: run again, it gives the same row, bit for bit (its `trace` column, a hash
//! of everything every validator delivered, committed and executed, says so at a glance). Simulated time does
//! not pass while a validator computes, so the figures are what the protocol and the network allow — rounds,
//! timeouts, batching, latency — and never what a CPU does: set them beside `mako bench`'s for that.
//!
//! Each point also checks what every simulated run checks: the running validators agree on every sub-DAG
//! (§9.1, §9.2) and executed to equal state roots (§9.4).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mako_report::{Column, Curve, Report};
use mako_types::{ProtocolParameters, ScheduleKind};

use crate::harness::{
    add_crashed, add_validators, advance, check_execution, commits, highest, host_name, load_client, records,
    run_until, sim_protocol, udp_capacity, Options, Sample, Tuning,
};
use crate::invariants::{check_records, trace_hash, Checks};

/// Bytes per transaction, as `mako client`'s default.
pub const TRANSACTION_SIZE: usize = 512;
/// The validator whose executions the latency is measured at (it is never down).
const OBSERVER: usize = 0;
/// How long the committee gets to commit its first sub-DAG.
const WARMUP_LIMIT: Duration = Duration::from_secs(60);
/// Load before the measured window: latencies settle once the first batches and rounds are behind.
const WARMUP: Duration = Duration::from_secs(5);

/// The one-way latency of the paths between validators (a client and the worker it sends to are 1 ms apart).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Latency {
    /// The same on every path.
    Uniform(Duration),
    /// Validators spread round-robin over five regions, [`REGIONS`]; a path's latency is half the round trip
    /// between its ends' regions ([`ROUND_TRIP_MS`]).
    Regions,
}

/// The regions of [`Latency::Regions`], in the order validators are placed in them.
pub const REGIONS: [&str; 5] = ["us-east", "us-west", "eu-west", "ap-northeast", "ap-southeast"];

/// Round trips between [`REGIONS`], in ms: rounded medians of the kind public cloud latency tables give for
/// N. Virginia, Oregon, Ireland, Tokyo and Sydney (approximate, not measured here).
pub const ROUND_TRIP_MS: [[u64; 5]; 5] = [
    [2, 70, 70, 150, 200],
    [70, 2, 125, 100, 140],
    [70, 125, 2, 210, 255],
    [150, 100, 210, 2, 105],
    [200, 140, 255, 105, 2],
];

impl Latency {
    /// The one-way latency from validator `a` to validator `b`.
    pub fn one_way(self, a: usize, b: usize) -> Duration {
        match self {
            Latency::Uniform(latency) => latency,
            Latency::Regions => Duration::from_millis(ROUND_TRIP_MS[a % REGIONS.len()][b % REGIONS.len()] / 2),
        }
    }

    /// As a table cell: the latency in ms, or `regions`.
    pub fn cell(self) -> String {
        match self {
            Latency::Uniform(latency) => latency.as_millis().to_string(),
            Latency::Regions => "regions".into(),
        }
    }
}

impl std::str::FromStr for Latency {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "regions" => Ok(Latency::Regions),
            other => humantime::parse_duration(other)
                .map(Latency::Uniform)
                .map_err(|e| format!("{text:?}: a duration (25ms) or regions: {e}")),
        }
    }
}

/// Everything about a point but its offered rate and seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Configuration {
    pub validators: usize,
    pub schedule: ScheduleKind,
    /// The last `down` validators never start.
    pub down: usize,
    pub latency: Latency,
}

impl Configuration {
    pub fn label(&self) -> String {
        let latency = match self.latency {
            Latency::Uniform(latency) if latency.is_zero() => String::new(),
            Latency::Uniform(latency) => format!(", {} ms one-way", latency.as_millis()),
            Latency::Regions => format!(", {} regions", REGIONS.len()),
        };
        format!("{} validators, {}, {} down{latency}", self.validators, self.schedule.name(), self.down)
    }
}

/// What the network does besides latency, on every path between validators.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Conditions {
    /// Each datagram's latency is drawn from the path's latency ± this.
    pub jitter: Duration,
    /// Share of datagrams dropped, 0 to 1.
    pub loss: f64,
}

/// One point: a configuration at an offered rate, with a seed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Point {
    pub configuration: Configuration,
    pub rate: u64,
    pub conditions: Conditions,
    pub seed: u64,
    /// The measured window, after [`WARMUP`].
    pub window: Duration,
}

/// What a point measured, in simulated time.
#[derive(Clone, Debug, PartialEq)]
pub struct Measured {
    /// What the client sent: the offered rate rounded to whole transactions per tick and validator.
    pub offered_tps: f64,
    /// Transactions the observer executed in the window, per second.
    pub executed_tps: f64,
    /// Client send → executed at the observer, of every transaction it executed in the window, sorted.
    pub latencies: Vec<Duration>,
    pub rounds_per_second: f64,
    /// Sub-DAGs the observer committed in the window.
    pub commits: usize,
    /// Blocks every running validator executed, to equal roots.
    pub agreed_blocks: u64,
    /// Everything every validator delivered, committed and executed, hashed in order.
    pub trace: blake3::Hash,
}

impl Measured {
    /// The `q` quantile of the latencies, in ms (NaN if nothing was executed).
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let at = ((self.latencies.len() - 1) as f64 * q).round() as usize;
        self.latencies[at].as_secs_f64() * 1e3
    }
}

impl Point {
    /// Runs the point in a fresh folder for the validators' stores. An error names what broke: a stall before
    /// the first commit, or a violated invariant.
    pub fn run(&self) -> Result<Measured, String> {
        let root = tempfile::tempdir().map_err(|e| format!("a temporary folder: {e}"))?;
        self.simulate(root.path())
    }

    fn running(&self) -> usize {
        self.configuration.validators - self.configuration.down
    }

    fn simulate(&self, root: &Path) -> Result<Measured, String> {
        let Configuration { validators, schedule, down, latency } = self.configuration;
        if down >= validators {
            return Err(format!("{down} of {validators} validators down: none would run"));
        }
        let running: Vec<usize> = (0..self.running()).collect();
        let per_tick = (self.rate / 10 / running.len() as u64) as usize;
        if per_tick == 0 {
            return Err(format!(
                "{} tx/s is less than one transaction per 100 ms to each of {} workers",
                self.rate,
                running.len()
            ));
        }
        let records = &records();
        let budget = WARMUP_LIMIT + WARMUP + self.window;
        let mut sim = turmoil::Builder::new()
            .rng_seed(self.seed)
            .min_message_latency(Duration::from_millis(1))
            .max_message_latency(Duration::from_millis(1))
            .simulation_duration(budget + Duration::from_secs(60))
            .udp_capacity(udp_capacity())
            .build();
        let protocol = ProtocolParameters { leader_schedule: schedule, ..sim_protocol() };
        let options = Options::new(validators, self.seed)
            .with_worker()
            .protocol(protocol)
            .tuning(Tuning::Testnet)
            .latency_at(OBSERVER);
        add_validators(&mut sim, running.clone(), options, root, records);
        for node in self.running()..validators {
            add_crashed(&mut sim, node);
        }
        let done = Arc::new(AtomicBool::new(false));
        sim.client("client", load_client(running.clone(), per_tick, TRANSACTION_SIZE, Arc::clone(&done)));
        for a in 0..validators {
            for b in a + 1..validators {
                let (host_a, host_b) = (host_name(a), host_name(b));
                let one_way = latency.one_way(a, b);
                let jitter = self.conditions.jitter.min(one_way);
                sim.set_link_latency(host_a.as_str(), host_b.as_str(), one_way - jitter);
                sim.set_link_max_message_latency(host_a.as_str(), host_b.as_str(), one_way + jitter);
                sim.set_link_fail_rate(host_a.as_str(), host_b.as_str(), self.conditions.loss);
            }
        }

        run_until(&mut sim, WARMUP_LIMIT, |_| running.iter().all(|node| commits(records, *node) >= 1))
            .map_err(|e| format!("no first commit: {e}"))?;
        advance(&mut sim, WARMUP)?;
        let (start, start_round, start_commits) =
            (sim.elapsed(), highest(records, OBSERVER), commits(records, OBSERVER));
        advance(&mut sim, self.window)?;
        let end = sim.elapsed();
        let (end_round, end_commits) = (highest(records, OBSERVER), commits(records, OBSERVER));
        done.store(true, Ordering::SeqCst);
        drop(sim);
        check_records(records, &Checks { honest: running.clone(), validity: false }).map_err(|v| v.to_string())?;
        let (agreed_blocks, _) = check_execution(root, running)?;
        let trace = trace_hash(records);

        let records = records.lock().expect("records lock");
        let observer = &records[&OBSERVER];
        if observer.unsampled_batches > 0 {
            return Err(format!(
                "{} executed batches were deleted before they were sampled",
                observer.unsampled_batches
            ));
        }
        let in_window: Vec<&Sample> =
            observer.samples.iter().filter(|s| s.executed >= start && s.executed < end).collect();
        let mut latencies: Vec<Duration> = in_window.iter().map(|s| s.executed.saturating_sub(s.sent)).collect();
        latencies.sort();
        let seconds = (end - start).as_secs_f64();
        Ok(Measured {
            offered_tps: (per_tick * 10 * self.running()) as f64,
            executed_tps: in_window.len() as f64 / seconds,
            latencies,
            rounds_per_second: end_round.saturating_sub(start_round) as f64 / seconds,
            commits: end_commits - start_commits,
            agreed_blocks,
            trace,
        })
    }
}

/// The plot's file name.
pub const PLOT: &str = "sim_throughput_latency.png";

const COLUMNS: [Column; 14] = [
    ("validators", "validators"),
    ("leader schedule", "leader_schedule"),
    ("down", "validators_down"),
    ("one-way latency (ms)", "latency_ms"),
    ("offered tx/s", "offered_tps"),
    ("executed tx/s", "executed_tps"),
    ("latency p50 (ms)", "latency_p50_ms"),
    ("latency p95 (ms)", "latency_p95_ms"),
    ("rounds/s", "rounds_per_second"),
    ("sub-DAGs", "commits"),
    ("samples", "samples"),
    ("blocks agreed", "blocks_agreed"),
    ("seed", "seed"),
    ("trace", "trace"),
];

/// The report of an experiment's points, in the form `mako bench` writes. Nothing in it depends on the
/// machine or the day: the same points with the same seeds at the same commit write the same bytes.
pub struct ExperimentReport {
    caption: String,
    rows: Vec<Vec<String>>,
    curves: Vec<Curve>,
}

/// The report of `points`, in their order, one curve per configuration.
pub fn report(points: &[(&Point, &Measured)]) -> ExperimentReport {
    let rows = points
        .iter()
        .map(|(point, m)| {
            let c = point.configuration;
            vec![
                c.validators.to_string(),
                c.schedule.name().to_string(),
                c.down.to_string(),
                c.latency.cell(),
                format!("{:.0}", m.offered_tps),
                format!("{:.0}", m.executed_tps),
                format!("{:.0}", m.latency_ms(0.5)),
                format!("{:.0}", m.latency_ms(0.95)),
                format!("{:.1}", m.rounds_per_second),
                m.commits.to_string(),
                m.latencies.len().to_string(),
                m.agreed_blocks.to_string(),
                point.seed.to_string(),
                m.trace.to_hex()[..16].to_string(),
            ]
        })
        .collect();
    let mut curves: Vec<(Configuration, Curve)> = Vec::new();
    for (point, measured) in points {
        let xy = (measured.executed_tps, measured.latency_ms(0.5));
        match curves.iter_mut().find(|(c, _)| *c == point.configuration) {
            Some((_, curve)) => curve.sweep.push(xy),
            None => curves.push((
                point.configuration,
                Curve { label: point.configuration.label(), sweep: vec![xy], overload: Vec::new() },
            )),
        }
    }
    ExperimentReport {
        caption: caption(points.first().map(|(p, _)| *p)),
        rows,
        curves: curves.into_iter().map(|(_, c)| c).collect(),
    }
}

/// What produced the figures: the commit and every parameter the points share.
fn caption(point: Option<&Point>) -> String {
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .output()
        .ok()
        .filter(|output| output.status.success())
        .map_or("an unknown commit".into(), |output| {
            format!("commit {}", String::from_utf8_lossy(&output.stdout).trim())
        });
    let Some(point) = point else { return format!("mako at {commit}, simulated: no point ran") };
    let defaults = mako_mempool::config::MempoolParameters::default();
    format!(
        "mako at {commit}, simulated (turmoil: computation takes no simulated time), seed {}; each point {} of \
         simulated time after a {} warm-up, {TRANSACTION_SIZE}-byte transfers over {} accounts, testnet \
         mempool parameters (header delay {}-{}, leader timeout {}), GC depth {}, checkpoints every {} sub-DAGs, \
         latency measured at validator {OBSERVER}, client 1 ms from each worker; between validators jitter ± {} \
         ms, loss {}%",
        point.seed,
        humantime::format_duration(point.window),
        humantime::format_duration(WARMUP),
        crate::harness::ACCOUNTS,
        humantime::format_duration(defaults.min_header_delay),
        humantime::format_duration(defaults.max_header_delay),
        humantime::format_duration(defaults.leader_timeout),
        sim_protocol().gc_depth,
        sim_protocol().checkpoint_interval,
        point.conditions.jitter.as_millis(),
        point.conditions.loss * 100.0,
    )
}

impl ExperimentReport {
    fn report(&self) -> Report<'_> {
        Report {
            caption: &self.caption,
            columns: &COLUMNS,
            rows: &self.rows,
            title: "mako, simulated: end-to-end latency (p50) against throughput",
            x_label: "executed tx/s (simulated time)",
            y_label: "latency p50 (ms, simulated)",
            curves: &self.curves,
        }
    }

    pub fn markdown(&self) -> String {
        self.report().markdown()
    }

    pub fn csv(&self) -> String {
        self.report().csv()
    }

    /// Writes `results.csv`, `results.md` and [`PLOT`] into `out`.
    pub fn write(&self, out: &Path) -> anyhow::Result<()> {
        self.report().write(out, PLOT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_symmetric_and_uniform_latency_parses() {
        for (a, row) in ROUND_TRIP_MS.iter().enumerate() {
            for (b, rtt) in row.iter().enumerate() {
                assert_eq!(*rtt, ROUND_TRIP_MS[b][a]);
            }
        }
        assert_eq!(Latency::Regions.one_way(0, 4), Duration::from_millis(100));
        assert_eq!(Latency::Regions.one_way(5, 9), Duration::from_millis(100), "validator 5 is back in us-east");
        assert_eq!("25ms".parse(), Ok(Latency::Uniform(Duration::from_millis(25))));
        assert_eq!("regions".parse(), Ok(Latency::Regions));
        assert!("far".parse::<Latency>().is_err());
    }
}
