//! PNG plots of the summary: per scenario, one bar per scheduler and
//! subject (the median over trials) with its 95% interval as a whisker.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::report::{Row, find};

const PALETTE: [RGBColor; 4] = [
    RGBColor(0xd6, 0x27, 0x28), // critical
    RGBColor(0x1f, 0x77, 0xb4), // normal
    RGBColor(0x7f, 0x7f, 0x7f), // batch
    RGBColor(0x2c, 0xa0, 0x2c),
];

/// Bars of `metric` for each (scheduler, subject) of `scenario`, written to
/// `path`. Latencies on a log axis (they span microseconds to seconds).
pub fn bars(
    path: &Path,
    rows: &[Row],
    scenario: &str,
    schedulers: &[String],
    subjects: &[String],
    metric: &str,
) -> Result<()> {
    let get = |s: &str, su: &str| find(rows, s, scenario, su, metric);
    let present: Vec<&String> = schedulers
        .iter()
        .filter(|s| subjects.iter().any(|su| get(s, su).is_some()))
        .collect();
    if present.is_empty() {
        return Err(anyhow!("nothing to plot for {scenario}"));
    }
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
            format!("{scenario}: wakeup latency p99 (us), median over trials, 95% CI"),
            "p99 us (log)",
            true,
        )
    };
    let root =
        BitMapBackend::new(path, (200 + 150 * present.len() as u32, 560)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| anyhow!("{e}"))?;
    let n = present.len() as f64;
    let mut builder = ChartBuilder::on(&root);
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
    root.present().map_err(|e| anyhow!("{e}"))?;
    Ok(())
}
