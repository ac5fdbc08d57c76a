//! `mako bench`: a sweep of offered rates over committee sizes, one local testnet ([`crate::testnet`]) per
//! point, and the report: `results.csv`, `results.md` (a markdown table) and `throughput_latency.png` (p50
//! end-to-end latency against end-to-end throughput, one line per committee size).
//!
//! After each committee size's sweep come its overload points (issue 16, item 6): offered `factor` × the
//! sweep's peak executed rate, to show what the committee keeps executing when offered more than it can take
//! (a system that collapses past saturation executes far less than its peak there). Each such row gives its
//! executed rate as a share of the peak.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

use crate::testnet::{self, TestnetOptions, TestnetReport};

const PLOT: &str = "throughput_latency.png";

/// One run of the bench, and whether it was an overload point.
struct Point {
    report: TestnetReport,
    /// `factor` × `peak`, the best executed tx/s of the same committee size's sweep.
    overload: Option<Overload>,
}

#[derive(Clone, Copy)]
struct Overload {
    factor: f64,
    peak: f64,
}

/// Runs every (nodes, rate) point, then each size's overload points, and writes the report into `out`.
pub async fn run(
    base: &TestnetOptions,
    rates: &[u64],
    nodes: &[usize],
    overload_factors: &[f64],
    out: &Path,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut points: Vec<Point> = Vec::new();
    let total = (rates.len() + overload_factors.len()) * nodes.len();
    for &n in nodes {
        let mut peak = 0f64;
        for &rate in rates {
            let report = run_point(base, n, rate, points.len() + 1, total, out).await?;
            peak = peak.max(report.end_to_end_tps);
            points.push(Point { report, overload: None });
        }
        for &factor in overload_factors {
            let rate = (peak * factor).round() as u64;
            if rate == 0 {
                println!("bench: no overload point at {factor}× for {n} validators: the sweep executed nothing");
                continue;
            }
            let report = run_point(base, n, rate, points.len() + 1, total, out).await?;
            let overload = Overload { factor, peak };
            println!("  {:.0}% of the sweep's peak ({:.0} tx/s)", 100.0 * report.end_to_end_tps / peak, peak);
            points.push(Point { report, overload: Some(overload) });
        }
    }
    write_report(&points, out)?;
    println!("\n{}", markdown(&points));
    println!("wrote results.csv, results.md and {PLOT} to {}", out.display());
    Ok(())
}

async fn run_point(
    base: &TestnetOptions,
    nodes: usize,
    rate: u64,
    index: usize,
    total: usize,
    out: &Path,
) -> anyhow::Result<TestnetReport> {
    let options = TestnetOptions { nodes, rate, dir: out.join("testnet"), live: false, ..base.clone() };
    println!("bench [{index}/{total}]: {nodes} validators at {rate} tx/s for {:?} ...", base.duration);
    let report = testnet::run(&options).await?;
    println!("  {}", row(&report));
    Ok(report)
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
fn cells(point: &Point) -> [String; 18] {
    let r = &point.report;
    let us = |value: Option<f64>| value.map_or("-".to_string(), |v| format!("{v:.1}"));
    let (kind, of_peak) = match point.overload {
        None => ("sweep".to_string(), "-".to_string()),
        Some(o) => (format!("{}x peak", o.factor), format!("{:.0}", 100.0 * r.end_to_end_tps / o.peak)),
    };
    [
        r.nodes.to_string(),
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
        format!("{:.1}", r.rounds_per_second),
        r.latency.count().to_string(),
        r.agreed_blocks.to_string(),
    ]
}

const COLUMNS: [(&str, &str); 18] = [
    ("validators", "validators"),
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
    ("rounds/s", "rounds_per_second"),
    ("samples", "samples"),
    ("blocks agreed", "blocks_agreed"),
];

fn markdown(points: &[Point]) -> String {
    let mut text = format!("| {} |\n", COLUMNS.map(|(title, _)| title).join(" | "));
    let _ = writeln!(text, "|{}", "---|".repeat(COLUMNS.len()));
    for point in points {
        let _ = writeln!(text, "| {} |", cells(point).join(" | "));
    }
    text
}

fn write_report(points: &[Point], out: &Path) -> anyhow::Result<()> {
    let mut csv = format!("{}\n", COLUMNS.map(|(_, name)| name).join(","));
    for point in points {
        let _ = writeln!(csv, "{}", cells(point).join(","));
    }
    std::fs::write(out.join("results.csv"), csv).context("cannot write results.csv")?;
    std::fs::write(out.join("results.md"), markdown(points)).context("cannot write results.md")?;
    let reports: Vec<&TestnetReport> = points.iter().map(|p| &p.report).collect();
    plot(&reports, &out.join(PLOT)).map_err(|e| anyhow::anyhow!("cannot draw {PLOT}: {e}"))
}

/// p50 latency against throughput, a line per committee size. The font (DejaVu Sans) is compiled in, so the
/// plot draws the same on a machine without fonts.
fn plot(reports: &[&TestnetReport], path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    static FONT: std::sync::Once = std::sync::Once::new();
    FONT.call_once(|| {
        // A font that does not parse only loses the labels; `register_font` cannot fail on DejaVu.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
    });
    let max_x = reports.iter().map(|r| r.end_to_end_tps).fold(1.0, f64::max) * 1.1;
    let max_y = reports.iter().map(|r| ms(r, 0.5)).filter(|y| y.is_finite()).fold(1.0, f64::max) * 1.2;
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
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
    let mut sizes: Vec<usize> = reports.iter().map(|r| r.nodes).collect();
    sizes.dedup();
    for (i, &n) in sizes.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let points: Vec<(f64, f64)> = reports
            .iter()
            .filter(|r| r.nodes == n)
            .map(|r| (r.end_to_end_tps, ms(r, 0.5)))
            .filter(|(_, y)| y.is_finite())
            .collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))?
            .label(format!("{n} validators"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
    }
    chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw()?;
    root.present()?;
    Ok(())
}
