//! The report of an experiment, as `mako bench` (real processes) and `mako-sim-tests experiment` (the
//! simulator) both write it, so that their figures read the same: `results.csv`, `results.md` (a markdown table
//! under a caption naming what produced it) and a PNG plot of latency against throughput, one line per
//! configuration. And the vocabulary of the sweep both run.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context;
use plotters::prelude::*;

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
    pub fn of(self, nodes: usize) -> usize {
        match self {
            Down::Count(n) => n,
            Down::F => nodes.saturating_sub(1) / 3,
        }
    }
}

/// Every configuration of a sweep, each once, sizes outermost then schedules, validators down and latencies:
/// `make(size, schedule, down, latency)` with `down` resolved for the size (so `--down-sweep 0,f` at n = 1
/// gives one configuration, not two).
pub fn configurations<S: Copy, L: Copy, C: PartialEq>(
    sizes: &[usize],
    schedules: &[S],
    down: &[Down],
    latencies: &[L],
    make: impl Fn(usize, S, usize, L) -> C,
) -> Vec<C> {
    let mut configurations = Vec::new();
    for &size in sizes {
        for &schedule in schedules {
            for down in down {
                for &latency in latencies {
                    let configuration = make(size, schedule, down.of(size), latency);
                    if !configurations.contains(&configuration) {
                        configurations.push(configuration);
                    }
                }
            }
        }
    }
    configurations
}

/// A table column: its title in the markdown table and its name in the CSV header.
pub type Column = (&'static str, &'static str);

/// One configuration's points on the plot: its sweep as a line, its overload points as crosses of the same
/// colour.
pub struct Curve {
    pub label: String,
    pub sweep: Vec<(f64, f64)>,
    pub overload: Vec<(f64, f64)>,
}

/// Everything a report holds.
pub struct Report<'a> {
    /// What produced the figures (commit, machine, parameters); its first `"; "` splits it over two lines under
    /// the plot.
    pub caption: &'a str,
    pub columns: &'a [Column],
    /// Cells in the order of `columns`.
    pub rows: &'a [Vec<String>],
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub curves: &'a [Curve],
}

impl Report<'_> {
    pub fn markdown(&self) -> String {
        let titles: Vec<&str> = self.columns.iter().map(|(title, _)| *title).collect();
        let mut text = format!("{}\n\n| {} |\n", self.caption, titles.join(" | "));
        let _ = writeln!(text, "|{}", "---|".repeat(self.columns.len()));
        for row in self.rows {
            let _ = writeln!(text, "| {} |", row.join(" | "));
        }
        text
    }

    pub fn csv(&self) -> String {
        let names: Vec<&str> = self.columns.iter().map(|(_, name)| *name).collect();
        let mut csv = format!("{}\n", names.join(","));
        for row in self.rows {
            let _ = writeln!(csv, "{}", row.join(","));
        }
        csv
    }

    /// Writes `results.csv`, `results.md` and the plot `plot` into `out`.
    pub fn write(&self, out: &Path, plot: &str) -> anyhow::Result<()> {
        std::fs::write(out.join("results.csv"), self.csv()).context("cannot write results.csv")?;
        std::fs::write(out.join("results.md"), self.markdown()).context("cannot write results.md")?;
        self.plot(&out.join(plot)).map_err(|e| anyhow::anyhow!("cannot draw {plot}: {e}"))
    }

    /// The curves, the caption under the chart. The font (DejaVu Sans) is compiled in, so the plot draws the
    /// same on a machine without fonts.
    fn plot(&self, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
        static FONT: std::sync::Once = std::sync::Once::new();
        FONT.call_once(|| {
            // A font that does not parse only loses the labels; `register_font` cannot fail on DejaVu.
            let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, dejavu::sans::regular());
        });
        let all = || self.curves.iter().flat_map(|c| c.sweep.iter().chain(&c.overload)).filter(|(_, y)| y.is_finite());
        let max_x = all().map(|(x, _)| *x).fold(1.0, f64::max) * 1.1;
        let max_y = all().map(|(_, y)| *y).fold(1.0, f64::max) * 1.2;
        let lines = caption_lines(self.caption);
        let caption_height = 10 + 18 * lines.len() as u32;
        let root = BitMapBackend::new(path, (1000, 630 + caption_height)).into_drawing_area();
        root.fill(&WHITE)?;
        let (upper, lower) = root.split_vertically(630);
        for (line, text) in lines.iter().enumerate() {
            lower.draw_text(text, &("sans-serif", 13).into_text_style(&lower), (15, 5 + 18 * line as i32))?;
        }
        let mut chart = ChartBuilder::on(&upper)
            .caption(self.title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..max_x, 0.0..max_y)?;
        chart
            .configure_mesh()
            .x_desc(self.x_label)
            .y_desc(self.y_label)
            .x_label_formatter(&|x| format!("{x:.0}"))
            .y_label_formatter(&|y| format!("{y:.0}"))
            .draw()?;
        for (i, curve) in self.curves.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let finite = |points: &[(f64, f64)]| points.iter().copied().filter(|(_, y)| y.is_finite()).collect();
            let sweep: Vec<(f64, f64)> = finite(&curve.sweep);
            let overload: Vec<(f64, f64)> = finite(&curve.overload);
            chart
                .draw_series(LineSeries::new(sweep.clone(), color.stroke_width(2)))?
                .label(curve.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2)));
            chart.draw_series(sweep.into_iter().map(|p| Circle::new(p, 4, color.filled())))?;
            chart.draw_series(overload.into_iter().map(|p| Cross::new(p, 6, color.stroke_width(2))))?;
        }
        // Lower right: throughput-latency curves rise to the right, so that corner is usually empty.
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        root.present()?;
        Ok(())
    }
}

/// The caption as lines under the plot: a line per `"; "`-separated part, each wrapped at word boundaries to
/// fit the 1000-pixel width.
fn caption_lines(caption: &str) -> Vec<String> {
    const WIDTH: usize = 150;
    let mut lines = Vec::new();
    for part in caption.split("; ") {
        let mut line = String::new();
        for word in part.split(' ') {
            if !line.is_empty() && line.len() + 1 + word.len() > WIDTH {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
    }
    lines
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
        let sweep = configurations(&[1, 4], &['r'], &[Down::Count(0), Down::F], &[0], |n, s, d, l| (n, s, d, l));
        assert_eq!(sweep, [(1, 'r', 0, 0), (4, 'r', 0, 0), (4, 'r', 1, 0)]);
    }

    #[test]
    fn the_table_the_csv_and_the_plot_hold_every_row() {
        let columns: [Column; 2] = [("offered tx/s", "offered_tps"), ("latency p50 (ms)", "latency_p50_ms")];
        let rows = vec![vec!["1000".to_string(), "420".to_string()], vec!["2000".into(), "NaN".into()]];
        let curves = [Curve {
            label: "4 validators".into(),
            sweep: vec![(1000.0, 420.0), (2000.0, f64::NAN)],
            overload: vec![],
        }];
        let report = Report {
            caption: "mako at commit x; more",
            columns: &columns,
            rows: &rows,
            title: "t",
            x_label: "x",
            y_label: "y",
            curves: &curves,
        };
        assert_eq!(report.csv(), "offered_tps,latency_p50_ms\n1000,420\n2000,NaN\n");
        let long = format!("mako at commit x; {}", "word ".repeat(60));
        let lines = caption_lines(&long);
        assert_eq!(lines[0], "mako at commit x");
        assert!(lines.len() == 3 && lines.iter().all(|l| l.len() <= 150), "{lines:?}");
        assert!(report
            .markdown()
            .starts_with("mako at commit x; more\n\n| offered tx/s | latency p50 (ms) |\n|---|---|\n| 1000 | 420 |"));
        let out = std::env::temp_dir().join(format!("mako-report-test-{}", std::process::id()));
        std::fs::create_dir_all(&out).unwrap();
        report.write(&out, "plot.png").unwrap();
        assert!(std::fs::metadata(out.join("plot.png")).unwrap().len() > 1000);
        std::fs::remove_dir_all(&out).unwrap();
    }
}
