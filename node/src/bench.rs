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

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use mako_types::ScheduleKind;
use plotters::prelude::*;

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

/// Validators never started, per configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Down {
    Count(usize),
    /// As many as the committee tolerates, f = ⌊(n − 1) / 3⌋.
    F,
}

impl std::str::FromStr for Down {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "f" => Ok(Down::F),
            n => n.parse().map(Down::Count).map_err(|_| format!("{text:?}: a count of validators down, or f")),
        }
    }
}

impl Down {
    fn of(self, nodes: usize) -> usize {
        match self {
            Down::Count(n) => n,
            Down::F => nodes.saturating_sub(1) / 3,
        }
    }
}

/// One line of the experiment: everything about a point but its offered rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Configuration {
    nodes: usize,
    schedule: ScheduleKind,
    down: usize,
    latency: std::time::Duration,
}

fn schedule_name(schedule: ScheduleKind) -> &'static str {
    match schedule {
        ScheduleKind::RoundRobin => "round-robin",
        ScheduleKind::Reputation => "reputation",
    }
}

impl Configuration {
    fn label(&self) -> String {
        let latency = match self.latency.is_zero() {
            true => String::new(),
            false => format!(", {} ms one-way", self.latency.as_millis()),
        };
        format!("{} validators, {}, {} down{latency}", self.nodes, schedule_name(self.schedule), self.down)
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
    let mut configurations = Vec::new();
    for &nodes in &sweep.sizes {
        for &schedule in &sweep.schedules {
            for down in &sweep.down {
                for &latency in &sweep.latencies {
                    let configuration = Configuration { nodes, schedule, down: down.of(nodes), latency };
                    if !configurations.contains(&configuration) {
                        configurations.push(configuration);
                    }
                }
            }
        }
    }
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
    write_report(&points, &caption, out)?;
    println!("\n{}", markdown(&points, &caption));
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
        "mako at {commit}, {cores} cores ({cpu}), {date}; each point {} after a {} warm-up, {}-byte {} \
         transactions over {} accounts, {} worker(s) per validator{}, GC depth {}, checkpoints every {} \
         sub-DAGs{}",
        humantime::format_duration(base.duration),
        humantime::format_duration(base.warmup),
        base.size,
        clap::ValueEnum::to_possible_value(&base.workload).map_or("?".into(), |v| v.get_name().to_string()),
        base.accounts,
        base.workers,
        if base.workers_apart { " in their own processes" } else { "" },
        base.protocol.gc_depth,
        base.protocol.checkpoint_interval,
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
        schedule_name(c.schedule).to_string(),
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

const COLUMNS: [(&str, &str); 22] = [
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

fn markdown(points: &[Point], caption: &str) -> String {
    let mut text = format!("{caption}\n\n| {} |\n", COLUMNS.map(|(title, _)| title).join(" | "));
    let _ = writeln!(text, "|{}", "---|".repeat(COLUMNS.len()));
    for point in points {
        let _ = writeln!(text, "| {} |", cells(point).join(" | "));
    }
    text
}

fn write_report(points: &[Point], caption: &str, out: &Path) -> anyhow::Result<()> {
    let mut csv = format!("{}\n", COLUMNS.map(|(_, name)| name).join(","));
    for point in points {
        let _ = writeln!(csv, "{}", cells(point).join(","));
    }
    std::fs::write(out.join("results.csv"), csv).context("cannot write results.csv")?;
    std::fs::write(out.join("results.md"), markdown(points, caption)).context("cannot write results.md")?;
    plot(points, caption, &out.join(PLOT)).map_err(|e| anyhow::anyhow!("cannot draw {PLOT}: {e}"))
}

/// p50 latency against throughput: a line through each configuration's sweep, its overload points as crosses
/// of the same colour, and the caption under the chart. The font (DejaVu Sans) is compiled in, so the plot
/// draws the same on a machine without fonts.
fn plot(points: &[Point], caption: &str, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        // A font that does not parse only loses the labels; `register_font` cannot fail on DejaVu.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    let max_x = points.iter().map(|p| p.report.end_to_end_tps).fold(1.0, f64::max) * 1.1;
    let max_y = points.iter().map(|p| ms(&p.report, 0.5)).filter(|y| y.is_finite()).fold(1.0, f64::max) * 1.2;
    let root = BitMapBackend::new(path, (1000, 680)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(630);
    for (line, text) in caption.splitn(2, "; ").enumerate() {
        lower.draw_text(text, &("sans-serif", 13).into_text_style(&lower), (15, 5 + 20 * line as i32))?;
    }
    let mut chart = ChartBuilder::on(&upper)
        .caption("mako: end-to-end latency (p50) against throughput", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
    chart
        .configure_mesh()
        .x_desc("end-to-end tx/s (executed)")
        .y_desc("latency p50 (ms)")
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    let mut configurations: Vec<Configuration> = Vec::new();
    for point in points {
        if !configurations.contains(&point.configuration) {
            configurations.push(point.configuration);
        }
    }
    for (i, configuration) in configurations.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let xy = |p: &Point| (p.report.end_to_end_tps, ms(&p.report, 0.5));
        let mine = || points.iter().filter(|p| p.configuration == *configuration);
        let sweep: Vec<(f64, f64)> =
            mine().filter(|p| p.overload.is_none()).map(xy).filter(|(_, y)| y.is_finite()).collect();
        let overload: Vec<(f64, f64)> =
            mine().filter(|p| p.overload.is_some()).map(xy).filter(|(_, y)| y.is_finite()).collect();
        chart
            .draw_series(LineSeries::new(sweep.clone(), color.stroke_width(2)))?
            .label(configuration.label())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(sweep.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
        chart.draw_series(overload.into_iter().map(|p| Cross::new(p, 6, color.stroke_width(2))))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validators_down_are_a_count_or_f() {
        assert_eq!("f".parse(), Ok(Down::F));
        assert_eq!("2".parse(), Ok(Down::Count(2)));
        assert!("two".parse::<Down>().is_err());
        assert_eq!([4, 7, 10, 50].map(|n| Down::F.of(n)), [1, 2, 3, 16]);
        assert_eq!(Down::Count(0).of(4), 0);
    }
}
