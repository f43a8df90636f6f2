//! PNG plots of the summary: per scenario, one bar per scheduler and
//! subject (the median over trials) with its 95% interval as a whisker, and
//! beside the bars of a latency scenario its distribution: one CDF per
//! scheduler.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::report::{Row, find};
use prism_testkit::latency::{CDF_PER_MILLE, cdf_metric};

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

const HEIGHT: u32 = 560;
const CDF_WIDTH: u32 = 680;

const PALETTE: [RGBColor; 4] = [
    RGBColor(0xd6, 0x27, 0x28), // critical
    RGBColor(0x1f, 0x77, 0xb4), // normal
    RGBColor(0x7f, 0x7f, 0x7f), // batch
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// The plot of `scenario`, written to `path`: bars of `metric` for each
/// (scheduler, subject), and where `cdf_of` names a subject whose latency
/// distribution was measured, its CDFs beside them.
pub fn scenario(
    path: &Path,
    rows: &[Row],
    scenario: &str,
    schedulers: &[String],
    subjects: &[String],
    metric: &str,
    cdf_of: Option<&str>,
) -> Result<()> {
    let present: Vec<&String> = schedulers
        .iter()
        .filter(|s| {
            subjects
                .iter()
                .any(|su| find(rows, s, scenario, su, metric).is_some())
        })
        .collect();
    if present.is_empty() {
        return Err(anyhow!("nothing to plot for {scenario}"));
    }
    let cdfs: Vec<(&String, Vec<(f64, f64)>)> = cdf_of
        .map(|su| {
            present
                .iter()
                .map(|s| (*s, cdf_points(rows, s, scenario, su)))
                .filter(|(_, pts)| pts.len() >= 2)
                .collect()
        })
        .unwrap_or_default();
    let bars_width = 200 + 150 * present.len() as u32;
    let width = bars_width + if cdfs.is_empty() { 0 } else { CDF_WIDTH };
    let root = BitMapBackend::new(path, (width, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let (left, right) = root.split_horizontally(bars_width);
    bars(&left, rows, scenario, &present, subjects, metric)?;
    if let Some(su) = cdf_of
        && !cdfs.is_empty()
    {
        cdf(&right, scenario, su, &cdfs)?;
    }
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// (latency us, fraction of samples at or below) of one scheduler's
/// distribution: each point the median over trials.
fn cdf_points(rows: &[Row], s: &str, scenario: &str, subject: &str) -> Vec<(f64, f64)> {
    CDF_PER_MILLE
        .iter()
        .filter_map(|&pm| {
            find(rows, s, scenario, subject, &cdf_metric(pm))
                .map(|r| (r.median.max(1.0), pm as f64 / 1000.0))
        })
        .collect()
}

/// One line per scheduler: latency on a log axis, the fraction of samples.
fn cdf(
    area: &Area,
    scenario: &str,
    subject: &str,
    cdfs: &[(&String, Vec<(f64, f64)>)],
) -> Result<()> {
    let lats = cdfs.iter().flat_map(|(_, p)| p.iter().map(|(l, _)| *l));
    let lo = lats.clone().fold(f64::INFINITY, f64::min);
    let hi = lats.fold(1.0f64, f64::max);
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("{scenario}: {subject} latency CDF (us), medians over trials"),
            ("sans-serif", 18),
        )
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(60)
        .build_cartesian_2d((lo / 1.5..hi * 1.5).log_scale(), 0.0..1.0)
        .map_err(|e| anyhow!("{e}"))?;
    chart
        .configure_mesh()
        .x_desc("latency us (log)")
        .y_desc("fraction of samples")
        .x_label_formatter(&|v: &f64| format!("{v:.0}"))
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    for (i, (s, pts)) in cdfs.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series([PathElement::new(pts.clone(), color.stroke_width(2))])
            .map_err(|e| anyhow!("{e}"))?
            .label(s.as_str())
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| anyhow!("{e}"))?;
    Ok(())
}

/// Bars of `metric` for each (scheduler, subject). Latencies on a log axis
/// (they span microseconds to seconds).
fn bars(
    root: &Area,
    rows: &[Row],
    scenario: &str,
    present: &[&String],
    subjects: &[String],
    metric: &str,
) -> Result<()> {
    let get = |s: &str, su: &str| find(rows, s, scenario, su, metric);
    let top = present
        .iter()
        .flat_map(|s| subjects.iter().filter_map(|su| get(s, su)))
        .map(|r| r.ci_hi.max(r.median))
        .fold(1.0f64, f64::max);
    let (title, y_desc, log) = if metric == "cpu_share_pct" {
        (format!("{scenario}: CPU share (%)"), "CPU share %", false)
    } else if metric == "seconds" {
        (
            format!("{scenario}: seconds to finish (lower is better), median, 95% CI"),
            "seconds",
            false,
        )
    } else {
        (
            format!("{scenario}: latency p99 (us), median over trials, 95% CI"),
            "p99 us (log)",
            true,
        )
    };
    let n = present.len() as f64;
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(60)
        .y_label_area_size(70);
    let width = 0.8 / subjects.len() as f64;
    let label = |x: &f64| -> String {
        let i = x.round() as usize;
        if (x - x.round()).abs() < 1e-6 && i < present.len() {
            present[i].clone()
        } else {
            String::new()
        }
    };
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart;
            chart
                .configure_mesh()
                .disable_x_mesh()
                .x_labels(present.len() * 2 + 1)
                .x_label_formatter(&label)
                .y_desc(y_desc)
                .y_label_formatter(&|v: &f64| format!("{v:.0}"))
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
            for (k, su) in subjects.iter().enumerate() {
                let color = PALETTE[k % PALETTE.len()];
                let mut first = true;
                for (i, s) in present.iter().enumerate() {
                    let Some(r) = get(s, su) else { continue };
                    let x0 = i as f64 - 0.4 + k as f64 * width;
                    let floor = if log { 10.0 } else { 0.0 };
                    let bar = Rectangle::new(
                        [(x0, floor), (x0 + width * 0.9, r.median.max(floor))],
                        color.filled(),
                    );
                    let mid = x0 + width * 0.45;
                    let whisker = PathElement::new(
                        vec![(mid, r.ci_lo.max(floor)), (mid, r.ci_hi.max(floor))],
                        BLACK.stroke_width(2),
                    );
                    let series = chart.draw_series([bar]).map_err(|e| anyhow!("{e}"))?;
                    if first {
                        series.label(su.as_str()).legend(move |(x, y)| {
                            Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled())
                        });
                        first = false;
                    }
                    chart.draw_series([whisker]).map_err(|e| anyhow!("{e}"))?;
                }
            }
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| anyhow!("{e}"))?;
        }};
    }
    let xs = -0.5..n - 0.5;
    if log {
        draw!(
            builder
                .build_cartesian_2d(xs, (10.0..top * 6.0).log_scale())
                .map_err(|e| anyhow!("{e}"))?
        );
    } else {
        draw!(
            builder
                .build_cartesian_2d(xs, 0.0..(top * 1.3).max(1.0))
                .map_err(|e| anyhow!("{e}"))?
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(s: &str, su: &str, m: &str, v: f64) -> Row {
        Row {
            scheduler: s.into(),
            scenario: "hungry".into(),
            subject: su.into(),
            metric: m.into(),
            median: v,
            ci_lo: v * 0.9,
            ci_hi: v * 1.1,
            trials: 5,
            vs_eevdf: f64::NAN,
        }
    }

    fn png_width(path: &Path) -> u32 {
        let b = std::fs::read(path).unwrap();
        assert_eq!(&b[1..4], b"PNG");
        u32::from_be_bytes(b[16..20].try_into().unwrap())
    }

    #[test]
    fn a_latency_scenario_gets_its_cdfs_beside_the_bars() {
        let scheds = ["EEVDF".to_string(), "scx_prism".to_string()];
        let mut rows = Vec::new();
        for (k, s) in scheds.iter().enumerate() {
            rows.push(row(s, "service", "p99_us", 1000.0 * (k + 1) as f64));
            for (i, &pm) in CDF_PER_MILLE.iter().enumerate() {
                rows.push(row(
                    s,
                    "service",
                    &cdf_metric(pm),
                    100.0 * (i + k + 1) as f64,
                ));
            }
        }
        assert_eq!(
            cdf_points(&rows, "scx_prism", "hungry", "service").len(),
            17
        );
        let dir = std::env::temp_dir().join(format!("prism-plot-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let subjects = ["service".to_string()];
        let both = dir.join("both.png");
        scenario(
            &both,
            &rows,
            "hungry",
            &scheds,
            &subjects,
            "p99_us",
            Some("service"),
        )
        .unwrap();
        assert_eq!(png_width(&both), 200 + 2 * 150 + CDF_WIDTH);
        // no distribution measured (a probe without one): the bars alone
        let bare: Vec<Row> = rows
            .iter()
            .filter(|r| r.metric == "p99_us")
            .cloned()
            .collect();
        let alone = dir.join("alone.png");
        scenario(
            &alone,
            &bare,
            "hungry",
            &scheds,
            &subjects,
            "p99_us",
            Some("service"),
        )
        .unwrap();
        assert_eq!(png_width(&alone), 200 + 2 * 150);
        assert!(scenario(&alone, &bare, "timer", &scheds, &subjects, "p99_us", None).is_err());
        std::fs::remove_dir_all(dir).unwrap();
    }
}
