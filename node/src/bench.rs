//! `mako bench`: a paper's experiment in one command (issue 17, item 5). It sweeps offered rates over every
//! configuration (committee size × leader schedule × validators down from the start × emulated one-way
//! latency between validators, through `mako relay`), one local testnet
//! ([`crate::testnet`]) per point, and writes the report: `results.csv`, `results.md` (a markdown table under a
//! caption naming the commit, the machine and the parameters) and `throughput_latency.png` (p50 end-to-end
//! latency against end-to-end throughput, one line per configuration).
//!
//! After each configuration's sweep come its overload points (issue 16, item 6): offered `factor` × the
//! sweep's peak executed rate, to show what the committee keeps executing when offered more than it can take
//! (a system that collapses past saturation executes far less than its peak there). Each such row gives its
//! executed rate as a share of the peak.

use std::path::Path;

use anyhow::Context;
use mako_report::{Column, Curve, Down, Report};
use mako_types::ScheduleKind;

use crate::testnet::{self, TestnetOptions, TestnetReport};

const PLOT: &str = "throughput_latency.png";

/// What the bench sweeps.
pub struct Sweep {
    pub rates: Vec<u64>,
    pub sizes: Vec<usize>,
    pub schedules: Vec<ScheduleKind>,
    pub down: Vec<Down>,
    /// One-way latencies between validators (zero with no jitter or loss: no relay).
    pub latencies: Vec<std::time::Duration>,
    pub overload: Vec<f64>,
}

/// One line of the experiment: everything about a point but its offered rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Configuration {
    nodes: usize,
    schedule: ScheduleKind,
    down: usize,
    latency: std::time::Duration,
}

impl Configuration {
    fn label(&self) -> String {
        let latency = match self.latency.is_zero() {
            true => String::new(),
            false => format!(", {} ms one-way", self.latency.as_millis()),
        };
        format!("{} validators, {}, {} down{latency}", self.nodes, self.schedule.name(), self.down)
    }
}

/// One run of the bench, its configuration, and whether it was an overload point.
struct Point {
    configuration: Configuration,
    report: TestnetReport,
    /// `factor` × `peak`, the best executed tx/s of the same configuration's sweep.
    overload: Option<Overload>,
}

#[derive(Clone, Copy)]
struct Overload {
    factor: f64,
    peak: f64,
}

/// Runs every configuration's sweep and overload points, and writes the report into `out`.
pub async fn run(base: &TestnetOptions, sweep: &Sweep, out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let configurations = mako_report::configurations(
        &sweep.sizes,
        &sweep.schedules,
        &sweep.down,
        &sweep.latencies,
        |nodes, schedule, down, latency| Configuration { nodes, schedule, down, latency },
    );
    let caption = caption(base);
    println!("bench: {caption}");
    let mut points: Vec<Point> = Vec::new();
    let total = (sweep.rates.len() + sweep.overload.len()) * configurations.len();
    for configuration in configurations {
        let mut peak = 0f64;
        for &rate in &sweep.rates {
            let report = run_point(base, configuration, rate, points.len() + 1, total, out).await?;
            peak = peak.max(report.end_to_end_tps);
            points.push(Point { configuration, report, overload: None });
        }
        for &factor in &sweep.overload {
            let rate = (peak * factor).round() as u64;
            if rate == 0 {
                println!(
                    "bench: no overload point at {factor}× for {}: the sweep executed nothing",
                    configuration.label()
                );
                continue;
            }
            let report = run_point(base, configuration, rate, points.len() + 1, total, out).await?;
            let overload = Overload { factor, peak };
            println!("  {:.0}% of the sweep's peak ({:.0} tx/s)", 100.0 * report.end_to_end_tps / peak, peak);
            points.push(Point { configuration, report, overload: Some(overload) });
        }
    }
    report(&points, &caption, |report| {
        report.write(out, PLOT)?;
        println!("\n{}", report.markdown());
        Ok(())
    })?;
    println!("wrote results.csv, results.md and {PLOT} to {}", out.display());
    Ok(())
}

async fn run_point(
    base: &TestnetOptions,
    configuration: Configuration,
    rate: u64,
    index: usize,
    total: usize,
    out: &Path,
) -> anyhow::Result<TestnetReport> {
    let Configuration { nodes, schedule, down, latency } = configuration;
    let protocol = mako_types::ProtocolParameters { leader_schedule: schedule, ..base.protocol };
    let network = testnet::EmulatedNetwork { latency, ..base.network.clone() };
    let options =
        TestnetOptions { nodes, rate, down, protocol, network, dir: out.join("testnet"), live: false, ..base.clone() };
    println!("bench [{index}/{total}]: {} at {rate} tx/s for {:?} ...", configuration.label(), base.duration);
    let report = testnet::run(&options).await?;
    println!("  {}", row(&report));
    Ok(report)
}

/// What produced the figures: the commit (if the bench runs in a git checkout), the machine, the date and
/// the parameters every point shares.
fn caption(base: &TestnetOptions) -> String {
    let git = |args: &[&str]| {
        let output = std::process::Command::new("git").args(args).current_dir(".").output().ok()?;
        output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
    };
    let commit = git(&["rev-parse", "--short", "HEAD"]).map_or("an unknown commit".into(), |c| format!("commit {c}"));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            Some(info.lines().find(|l| l.starts_with("model name"))?.split_once(':')?.1.trim().to_string())
        })
        .unwrap_or_else(|| "an unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    format!(
        "mako at {commit}, {cores} cores ({cpu}), {date}; each point {} after a {} warm-up, {}-byte \
         transactions ({} workload) over {} accounts, {} worker(s) per validator{}, GC depth {}, checkpoints every {} \
         sub-DAGs, headers at least {} ms apart{}",
        humantime::format_duration(base.duration),
        humantime::format_duration(base.warmup),
        base.size,
        clap::ValueEnum::to_possible_value(&base.workload).map_or("?".into(), |v| v.get_name().to_string()),
        base.accounts,
        base.workers,
        if base.workers_apart { " in their own processes" } else { "" },
        base.protocol.gc_depth,
        base.protocol.checkpoint_interval,
        base.min_header_delay
            .unwrap_or(mako_mempool::config::MempoolParameters::default().min_header_delay)
            .as_millis(),
        match base.network.jitter.is_zero() && base.network.loss_percent == 0.0 && base.network.partitions.is_empty() {
            true => String::new(),
            false => format!(
                "; between validators (relay) jitter ± {} ms, loss {}%",
                base.network.jitter.as_millis(),
                base.network.loss_percent
            ),
        },
    )
}

fn ms(report: &TestnetReport, q: f64) -> f64 {
    report.latency.quantile(q).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
}

fn row(report: &TestnetReport) -> String {
    format!(
        "client sent {} tx/s; end-to-end {:.0} tx/s, latency p50 {:.0} ms, p95 {:.0} ms; CPU per executed \
         transaction {}; {} blocks agreed",
        report.sent_text(),
        report.end_to_end_tps,
        ms(report, 0.5),
        ms(report, 0.95),
        report.cpu_us_per_tx.text(),
        report.agreed_blocks
    )
}

/// One point's columns, in the order of [`COLUMNS`].
fn cells(point: &Point) -> [String; 22] {
    let r = &point.report;
    let c = &point.configuration;
    let us = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.1}"));
    let (kind, of_peak) = match point.overload {
        None => ("sweep".to_string(), "-".to_string()),
        Some(o) => (format!("{}x peak", o.factor), format!("{:.0}", 100.0 * r.end_to_end_tps / o.peak)),
    };
    [
        r.nodes.to_string(),
        c.schedule.name().to_string(),
        c.down.to_string(),
        c.latency.as_millis().to_string(),
        kind,
        r.rate.to_string(),
        r.sent_text(),
        format!("{:.0}", r.end_to_end_tps),
        of_peak,
        format!("{:.0}", ms(r, 0.5)),
        format!("{:.0}", ms(r, 0.95)),
        us(r.cpu_us_per_tx.total()),
        us(r.cpu_us_per_tx.validators),
        us(r.cpu_us_per_tx.split.map(|s| s.crypto)),
        us(r.cpu_us_per_tx.split.map(|s| s.storage)),
        us(r.cpu_us_per_tx.split.map(|s| s.execution)),
        us(r.cpu_us_per_tx.split.map(|s| s.rest)),
        us(r.cpu_us_per_tx.client),
        us(r.cpu_us_per_tx.relay),
        format!("{:.1}", r.rounds_per_second),
        r.latency.count().to_string(),
        r.agreed_blocks.to_string(),
    ]
}

const COLUMNS: [Column; 22] = [
    ("validators", "validators"),
    ("leader schedule", "leader_schedule"),
    ("down", "validators_down"),
    ("one-way latency (ms)", "latency_ms"),
    ("point", "point"),
    ("offered tx/s", "offered_tps"),
    ("client sent tx/s", "sent_tps"),
    ("end-to-end tx/s", "end_to_end_tps"),
    ("% of peak", "percent_of_peak"),
    ("latency p50 (ms)", "latency_p50_ms"),
    ("latency p95 (ms)", "latency_p95_ms"),
    ("CPU µs/tx", "cpu_us_per_tx"),
    ("of which validators", "validators_cpu_us_per_tx"),
    ("validators: crypto", "crypto_cpu_us_per_tx"),
    ("validators: storage", "storage_cpu_us_per_tx"),
    ("validators: execution", "execution_cpu_us_per_tx"),
    ("validators: rest", "rest_cpu_us_per_tx"),
    ("of which client", "client_cpu_us_per_tx"),
    ("network relay (apart)", "relay_cpu_us_per_tx"),
    ("rounds/s", "rounds_per_second"),
    ("samples", "samples"),
    ("blocks agreed", "blocks_agreed"),
];

/// The report of `points`: the table and one curve per configuration, p50 latency against throughput.
fn report(points: &[Point], caption: &str, write: impl FnOnce(&Report) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let rows: Vec<Vec<String>> = points.iter().map(|p| cells(p).to_vec()).collect();
    let mut configurations: Vec<Configuration> = Vec::new();
    for point in points {
        if !configurations.contains(&point.configuration) {
            configurations.push(point.configuration);
        }
    }
    let xy = |p: &Point| (p.report.end_to_end_tps, ms(&p.report, 0.5));
    let curves: Vec<Curve> = configurations
        .iter()
        .map(|configuration| {
            let mine = || points.iter().filter(|p| p.configuration == *configuration);
            Curve {
                label: configuration.label(),
                sweep: mine().filter(|p| p.overload.is_none()).map(xy).collect(),
                overload: mine().filter(|p| p.overload.is_some()).map(xy).collect(),
            }
        })
        .collect();
    write(&Report {
        caption,
        columns: &COLUMNS,
        rows: &rows,
        title: "mako: end-to-end latency (p50) against throughput",
        x_label: "end-to-end tx/s (executed)",
        y_label: "latency p50 (ms)",
        curves: &curves,
    })
}
