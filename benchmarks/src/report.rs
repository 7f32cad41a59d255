//! Tables for people, JSON lines for machines.

use std::fmt::Write as _;

use serde_json::json;

use crate::scenarios::{ClientKind, Metric, Sample, Scenario};

/// All runs of one client in one scenario.
pub struct Outcome {
    pub kind: ClientKind,
    pub runs: Vec<Result<Sample, String>>,
}

impl Outcome {
    fn ok(&self) -> impl Iterator<Item = &Sample> {
        self.runs.iter().filter_map(|r| r.as_ref().ok())
    }

    pub fn samples(&self, metric: usize) -> Vec<f64> {
        self.ok().map(|s| s.values[metric]).collect()
    }

    pub fn median(&self, metric: usize) -> Option<f64> {
        median(self.samples(metric))
    }

    fn median_ops(&self) -> Option<f64> {
        median(self.ok().map(|s| s.ops as f64).collect())
    }

    fn by_time(&self) -> usize {
        self.ok().filter(|s| s.by_time).count()
    }
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

pub fn fmt_num(x: f64) -> String {
    if !x.is_finite() {
        "-".into()
    } else if x.abs() >= 1000.0 {
        format!("{x:.0}")
    } else if x.abs() >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.2}")
    }
}

fn ratio(ours: Option<f64>, theirs: Option<f64>) -> Option<f64> {
    match (ours, theirs) {
        (Some(a), Some(b)) if b.abs() > f64::EPSILON => Some(a / b),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

/// The table of one metric of one scenario.
pub fn table(scenario: Scenario, metric_ix: usize, outcomes: &[Outcome], repeat: usize) -> String {
    let metric: &Metric = &scenario.metrics()[metric_ix];
    let ours: Vec<&Outcome> = outcomes.iter().filter(|o| o.kind.is_ours()).collect();
    let direction = if metric.higher_is_better {
        "higher is better; ours/x > 1 means ours is better"
    } else {
        "lower is better; ours/x < 1 means ours is better"
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} — {} ({}, {}, median of {})",
        scenario.name(),
        metric.title,
        metric.unit,
        direction,
        repeat
    );
    let _ = write!(out, "  {:<18}{:>12}", "client", "median");
    for o in &ours {
        let _ = write!(out, "{:>16}", format!("{}/x", o.kind.name()));
    }
    let _ = writeln!(out, "{:>12}  stopped by", scenario.op_name());
    for o in outcomes {
        let m = o.median(metric_ix);
        let _ = write!(
            out,
            "  {:<18}{:>12}",
            o.kind.name(),
            m.map_or("ERROR".into(), fmt_num)
        );
        for our in &ours {
            let cell = if o.kind.is_ours() {
                String::new()
            } else {
                fmt_ratio(ratio(our.median(metric_ix), m))
            };
            let _ = write!(out, "{cell:>16}");
        }
        let ok = o.ok().count();
        let stop = match o.by_time() {
            0 => "count".to_string(),
            n => format!("time ({n}/{ok} runs)"),
        };
        let _ = writeln!(
            out,
            "{:>12}  {}",
            o.median_ops().map_or("-".into(), |x| format!("{x:.0}")),
            stop
        );
    }
    if metric_ix == 0 {
        for o in outcomes {
            for (i, r) in o.runs.iter().enumerate() {
                if let Err(e) = r {
                    let _ = writeln!(out, "  ! {} run {}: {e}", o.kind.name(), i + 1);
                }
            }
        }
    }
    out
}

/// One JSON object per scenario × client × metric.
pub fn json_lines(
    scenario: Scenario,
    outcomes: &[Outcome],
    repeat: usize,
    smoke: bool,
) -> Vec<String> {
    let find = |k: ClientKind| outcomes.iter().find(|o| o.kind == k);
    let mut lines = Vec::new();
    for (ix, metric) in scenario.metrics().iter().enumerate() {
        for o in outcomes {
            let m = o.median(ix);
            let vs = |k: ClientKind| {
                if o.kind.is_ours() {
                    ratio(m, find(k).and_then(|t| t.median(ix)))
                } else {
                    None
                }
            };
            let line = json!({
                "name": format!("{}/{}/{}", scenario.name(), o.kind.name(), metric.key),
                "scenario": scenario.name(),
                "client": o.kind.name(),
                "metric": metric.key,
                "unit": metric.unit,
                "higher_is_better": metric.higher_is_better,
                "median": m,
                "samples": o.samples(ix),
                "ops": o.ok().map(|s| s.ops).collect::<Vec<_>>(),
                "stopped_by": o.ok().map(|s| if s.by_time { "time" } else { "count" }).collect::<Vec<_>>(),
                "errors": o.runs.iter().filter_map(|r| r.as_ref().err()).collect::<Vec<_>>(),
                "ours_over_jsonrpsee": vs(ClientKind::Jsonrpsee),
                "ours_over_raw": vs(ClientKind::Raw),
                "ours_over_raw_awc": vs(ClientKind::RawAwc),
                "repeat": repeat,
                "smoke": smoke,
            });
            lines.push(line.to_string());
        }
    }
    lines
}
