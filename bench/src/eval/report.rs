//! From raw records to what people read: the summary (median over trials,
//! bootstrap 95% interval, ratio to EEVDF), `raw.csv`, `summary.csv` and
//! `report.md`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::Record;
use super::scenarios::SCHEDULER_COST;
use super::schedulers::{self, EEVDF};
use prism_testkit::stats::{Estimate, bootstrap_median};

/// One figure summarised over trials.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub scheduler: String,
    pub scenario: String,
    pub subject: String,
    pub metric: String,
    pub median: f64,
    pub ci_lo: f64,
    pub ci_hi: f64,
    pub trials: usize,
    /// median / EEVDF's median of the same figure (NaN without a baseline).
    pub vs_eevdf: f64,
}

/// Keys in first-seen order (the run's order is the report's order).
pub fn ordered<'a>(it: impl Iterator<Item = &'a str>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    it.filter(|k| seen.insert(*k)).map(str::to_string).collect()
}

fn seed(key: &str) -> u64 {
    // FNV-1a: a stable seed per figure, so a report is reproducible.
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

pub fn summarize(records: &[Record]) -> Vec<Row> {
    let mut rows = Vec::new();
    let figures: Vec<(String, String, String, String)> = {
        let mut seen = BTreeSet::new();
        records
            .iter()
            .map(|r| {
                (
                    r.scheduler.clone(),
                    r.scenario.clone(),
                    r.subject.clone(),
                    r.metric.clone(),
                )
            })
            .filter(|k| seen.insert(k.clone()))
            .collect()
    };
    let values = |s: &str, sc: &str, su: &str, m: &str| -> Vec<f64> {
        records
            .iter()
            .filter(|r| r.scheduler == s && r.scenario == sc && r.subject == su && r.metric == m)
            .map(|r| r.value)
            .collect()
    };
    for (s, sc, su, m) in figures {
        let e: Estimate = bootstrap_median(
            &values(&s, &sc, &su, &m),
            seed(&format!("{s}/{sc}/{su}/{m}")),
        );
        let base = prism_testkit::stats::median(&values(EEVDF, &sc, &su, &m));
        rows.push(Row {
            vs_eevdf: e.median / base,
            scheduler: s,
            scenario: sc,
            subject: su,
            metric: m,
            median: e.median,
            ci_lo: e.lo,
            ci_hi: e.hi,
            trials: e.n,
        });
    }
    rows
}

pub fn find<'a>(rows: &'a [Row], s: &str, sc: &str, su: &str, m: &str) -> Option<&'a Row> {
    rows.iter()
        .find(|r| r.scheduler == s && r.scenario == sc && r.subject == su && r.metric == m)
}

pub fn write_csv<T: serde::Serialize>(path: &Path, rows: &[T]) -> Result<()> {
    let mut w = csv::Writer::from_path(path).with_context(|| path.display().to_string())?;
    for r in rows {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

pub fn read_raw(path: &Path) -> Result<Vec<Record>> {
    let mut r = csv::Reader::from_path(path).with_context(|| path.display().to_string())?;
    r.deserialize()
        .collect::<Result<Vec<Record>, _>>()
        .with_context(|| format!("parsing {}", path.display()))
}

fn cell(r: Option<&Row>) -> String {
    match r {
        None => "–".into(),
        Some(r) if r.metric == "cpu_share_pct" => {
            format!("{:.1}% [{:.1}–{:.1}]", r.median, r.ci_lo, r.ci_hi)
        }
        Some(r) if r.metric == "points" => {
            format!("{:.1} [{:.1}–{:.1}]", r.median, r.ci_lo, r.ci_hi)
        }
        Some(r) if r.metric == "seconds" => {
            format!("{:.2} [{:.2}–{:.2}]", r.median, r.ci_lo, r.ci_hi)
        }
        Some(r) => format!("{:.0} [{:.0}–{:.0}]", r.median, r.ci_lo, r.ci_hi),
    }
}

fn ratio(r: Option<&Row>) -> String {
    match r {
        Some(r) if r.vs_eevdf.is_finite() => format!("{:.2}", r.vs_eevdf),
        _ => "–".into(),
    }
}

/// What the run was, for the report's head.
pub struct Head<'a> {
    pub title: &'a str,
    pub command: &'a str,
    pub environment: &'a str,
    pub scenarios: &'a [(String, String)],
    pub failures: &'a [String],
    pub plots: &'a [String],
}

/// Subjects a scenario's table does not give columns of their own: the
/// hogs' CPUs are its last column; the scheduler's cost has its own section.
const NOT_COLUMNS: [&str; 2] = ["hogs", "scheduler"];

pub fn markdown(rows: &[Row], cx: &Head) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {}\n", cx.title);
    let _ = writeln!(md, "Command: `{}`  ", cx.command);
    let _ = writeln!(md, "{}\n", cx.environment);
    let _ = writeln!(
        md,
        "Each cell: median over trials [95% bootstrap interval of the median]; latencies in \
         microseconds; `x EEVDF` is the median over EEVDF's (same scenario, same boot). \
         The bus is filled by the real prism-feeder from cgroup rules.\n"
    );
    if !cx.failures.is_empty() {
        let _ = writeln!(md, "**Did not run or failed:**\n");
        for f in cx.failures {
            let _ = writeln!(md, "- {f}");
        }
        md.push('\n');
    }
    let scheds = ordered(rows.iter().map(|r| r.scheduler.as_str()));
    for (scenario, what) in cx.scenarios {
        let in_sc: Vec<&Row> = rows.iter().filter(|r| &r.scenario == scenario).collect();
        if in_sc.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {scenario}\n\n{what}\n");
        let subjects = ordered(
            in_sc
                .iter()
                .filter(|r| !NOT_COLUMNS.contains(&r.subject.as_str()))
                .map(|r| r.subject.as_str()),
        );
        // each subject's columns follow what was measured of it
        let has = |su: &str, m: &str| in_sc.iter().any(|r| r.subject == su && r.metric == m);
        let mut head = vec!["scheduler".to_string()];
        for su in &subjects {
            if has(su, "p99_us") {
                head.extend([
                    format!("{su} p50"),
                    format!("{su} p99"),
                    format!("{su} p99.9"),
                    format!("{su} p99 x EEVDF"),
                ]);
                if has(su, "mean_us") {
                    head.extend([format!("{su} mean"), format!("{su} mean x EEVDF")]);
                }
            } else if has(su, "seconds") {
                head.extend([format!("{su} seconds"), format!("{su} x EEVDF")]);
            } else if has(su, "cpu_share_pct") {
                head.extend([format!("{su} CPU share"), format!("{su} x EEVDF")]);
            } else {
                head.push(format!("{su} (points)"));
            }
        }
        let hogs = in_sc.iter().any(|r| r.subject == "hogs");
        if hogs {
            head.push("hogs' CPUs".into());
        }
        let _ = writeln!(md, "| {} |", head.join(" | "));
        let _ = writeln!(md, "|{}", "---|".repeat(head.len()));
        for s in &scheds {
            let get = |su: &str, m: &str| find(rows, s, scenario, su, m);
            if in_sc.iter().all(|r| &r.scheduler != s) {
                continue;
            }
            let mut line = vec![s.clone()];
            for su in &subjects {
                if has(su, "p99_us") {
                    line.extend([
                        cell(get(su, "p50_us")),
                        cell(get(su, "p99_us")),
                        cell(get(su, "p999_us")),
                        ratio(get(su, "p99_us")),
                    ]);
                    if has(su, "mean_us") {
                        line.extend([cell(get(su, "mean_us")), ratio(get(su, "mean_us"))]);
                    }
                } else if has(su, "seconds") {
                    line.extend([cell(get(su, "seconds")), ratio(get(su, "seconds"))]);
                } else if has(su, "cpu_share_pct") {
                    line.extend([
                        cell(get(su, "cpu_share_pct")),
                        ratio(get(su, "cpu_share_pct")),
                    ]);
                } else {
                    line.push(cell(get(su, "points")));
                }
            }
            if hogs {
                line.push(get("hogs", "cpus").map_or("–".into(), |r| format!("{:.2}", r.median)));
            }
            let _ = writeln!(md, "| {} |", line.join(" | "));
        }
        md.push('\n');
    }
    peers_section(&mut md, rows, &scheds, cx.scenarios);
    cost_section(&mut md, rows, &scheds, cx.scenarios);
    if !cx.plots.is_empty() {
        let _ = writeln!(md, "## Plots\n");
        for p in cx.plots {
            let _ = writeln!(md, "![{p}]({p})\n");
        }
    }
    md
}

/// Ours over each peer: the critical subject's p99 (the number the product
/// is for), per latency scenario.
fn peers_section(md: &mut String, rows: &[Row], scheds: &[String], scenarios: &[(String, String)]) {
    let is_peer = |s: &str| schedulers::by_name(s).is_some_and(|x| x.is_peer());
    let peers: Vec<&String> = scheds.iter().filter(|s| is_peer(s)).collect();
    let ours: Vec<&String> = scheds
        .iter()
        .filter(|s| {
            schedulers::by_name(s).is_some_and(|x| matches!(x.launch, schedulers::Launch::Ours(..)))
        })
        .collect();
    if peers.is_empty() || ours.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Ours vs each peer\n\nThe measured service's p99 (critical, or the unlabelled service) of ours over the peer's (below 1: ours is better).\n"
    );
    let mut head = vec!["scenario".to_string()];
    for o in &ours {
        for p in &peers {
            head.push(format!("{o} / {p}"));
        }
    }
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(head.len()));
    for (sc, _) in scenarios {
        let Some(subject) = ["critical", "service"].into_iter().find(|su| {
            rows.iter()
                .any(|r| &r.scenario == sc && r.subject == *su && r.metric == "p99_us")
        }) else {
            continue;
        };
        let mut line = vec![sc.clone()];
        for o in &ours {
            for p in &peers {
                let v = match (
                    find(rows, o, sc, subject, "p99_us"),
                    find(rows, p, sc, subject, "p99_us"),
                ) {
                    (Some(a), Some(b)) => format!("{:.2}", a.median / b.median),
                    _ => "–".into(),
                };
                line.push(v);
            }
        }
        let _ = writeln!(md, "| {} |", line.join(" | "));
    }
    md.push('\n');
}

/// Each scheduler process's own CPU per 1,000 context switches, per
/// scenario: what its user-space side costs per scheduling event.
fn cost_section(md: &mut String, rows: &[Row], scheds: &[String], scenarios: &[(String, String)]) {
    let get = |s: &str, sc: &str| find(rows, s, sc, "scheduler", SCHEDULER_COST);
    let cols: Vec<&String> = scenarios
        .iter()
        .map(|(sc, _)| sc)
        .filter(|sc| scheds.iter().any(|s| get(s, sc).is_some()))
        .collect();
    if cols.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## The scheduler process's CPU per 1,000 context switches\n\n\
         Microseconds of the scheduler process's own CPU time (all its threads: for scx_prism, \
         the user-space policy loop) per 1,000 context switches on the machine during the \
         scenario; EEVDF has no process.\n"
    );
    let mut head = vec!["scheduler".to_string()];
    head.extend(cols.iter().map(|c| c.to_string()));
    let _ = writeln!(md, "| {} |", head.join(" | "));
    let _ = writeln!(md, "|{}", "---|".repeat(head.len()));
    for s in scheds {
        if cols.iter().all(|sc| get(s, sc).is_none()) {
            continue;
        }
        let mut line = vec![s.clone()];
        line.extend(cols.iter().map(|sc| cell(get(s, sc))));
        let _ = writeln!(md, "| {} |", line.join(" | "));
    }
    md.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(t: usize, s: &str, v: f64) -> Record {
        Record {
            trial: t,
            scheduler: s.into(),
            scenario: "contended-2x".into(),
            subject: "critical".into(),
            metric: "p99_us".into(),
            value: v,
        }
    }

    #[test]
    fn ratios_to_eevdf_and_round_trip_through_csv() {
        let raw = vec![
            rec(1, EEVDF, 1000.0),
            rec(2, EEVDF, 3000.0),
            rec(3, EEVDF, 2000.0),
            rec(1, "scx_prism", 100.0),
            rec(2, "scx_prism", 300.0),
            rec(3, "scx_prism", 200.0),
        ];
        let rows = summarize(&raw);
        let p = find(&rows, "scx_prism", "contended-2x", "critical", "p99_us").unwrap();
        assert_eq!(p.median, 200.0);
        assert!((p.vs_eevdf - 0.1).abs() < 1e-12);
        assert!(p.ci_lo >= 100.0 && p.ci_hi <= 300.0);
        let dir = std::env::temp_dir().join(format!("prism-eval-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("raw.csv");
        write_csv(&path, &raw).unwrap();
        assert_eq!(read_raw(&path).unwrap(), raw);
        let scen = [("contended-2x".to_string(), "what".to_string())];
        let md = markdown(
            &rows,
            &Head {
                title: "t",
                command: "c",
                environment: "e",
                scenarios: &scen,
                failures: &[],
                plots: &[],
            },
        );
        assert!(
            md.contains("| scx_prism | – | 200 [100–300] | – | 0.10 |"),
            "{md}"
        );
        assert!(!md.contains("CPU per 1,000 context switches"), "{md}");
        // the scheduler's cost: its own section, not a column of the scenario
        let mut with_cost = raw.clone();
        for (t, v) in [(1, 40.0), (2, 60.0), (3, 50.0)] {
            with_cost.push(Record {
                subject: "scheduler".into(),
                metric: SCHEDULER_COST.into(),
                ..rec(t, "scx_prism", v)
            });
        }
        let md = markdown(
            &summarize(&with_cost),
            &Head {
                title: "t",
                command: "c",
                environment: "e",
                scenarios: &scen,
                failures: &[],
                plots: &[],
            },
        );
        let (table, cost) = md
            .split_once("CPU per 1,000 context switches")
            .expect("cost section");
        assert!(!table.contains("scheduler (points)"), "{md}");
        assert!(cost.contains("| scheduler | contended-2x |"), "{md}");
        assert!(cost.contains("| scx_prism | 50 [40–60] |"), "{md}");
        assert!(!cost.contains("| EEVDF"), "{md}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
