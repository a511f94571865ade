//! The run report, as a hospital would read it: throughput, end-to-end latency (scan published →
//! first triage decision), time-to-read with AI triage against the FIFO counterfactual (mean,
//! p90 and max: the max is what anti-starvation protects), dead letters and drift alerts.
//! Written as JSON and as a self-contained HTML page.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;

use crate::readers::{fifo_waits, ReadEvent};

#[derive(Debug, Clone, Serialize, Default)]
pub struct Summary {
    pub n: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

/// Nearest-rank percentiles of `xs`.
pub fn summarize(xs: &[f64]) -> Summary {
    if xs.is_empty() {
        return Summary::default();
    }
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let pct = |p: f64| v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Summary {
        n: v.len(),
        mean_ms: v.iter().sum::<f64>() / v.len() as f64,
        p50_ms: pct(0.50),
        p90_ms: pct(0.90),
        p95_ms: pct(0.95),
        p99_ms: pct(0.99),
        max_ms: v[v.len() - 1],
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct WaitComparison {
    pub group: String,
    pub ai_triage: Summary,
    pub fifo: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub studies_published: usize,
    pub studies_on_worklist: usize,
    pub studies_read: usize,
    pub duplicate_worklist_entries: usize,
    pub dead_letters: usize,
    pub drift_alerts: usize,
    pub duration_s: f64,
    pub throughput_studies_per_s: f64,
    pub e2e_latency: Summary,
    pub time_to_read: Vec<WaitComparison>,
    pub readers: usize,
}

/// What a run observed: the report's input.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub published: usize,
    /// Studies with at least one triage decision.
    pub on_worklist: usize,
    /// Studies read more than once.
    pub duplicates: usize,
    /// Per study: first triage decision time − scan published time.
    pub latency_ms: Vec<f64>,
    pub events: Vec<ReadEvent>,
    pub readers: usize,
    pub dead_letters: usize,
    pub drift_alerts: usize,
    pub duration_s: f64,
}

type Group = (&'static str, fn(&ReadEvent) -> bool);

const GROUPS: [Group; 4] = [
    ("critical finding (ground truth)", |e| e.critical_truth),
    ("no critical finding", |e| !e.critical_truth),
    ("triage tier CRITICAL", |e| e.tier == "CRITICAL"),
    ("all studies", |_| true),
];

/// Builds the report.
pub fn build(facts: &RunFacts) -> Report {
    let events = &facts.events;
    let fifo: HashMap<String, i64> = fifo_waits(events, facts.readers).into_iter().collect();
    let groups = GROUPS;
    let time_to_read = groups
        .iter()
        .map(|(name, f)| {
            let sel: Vec<&ReadEvent> = events.iter().filter(|e| f(e)).collect();
            let ai: Vec<f64> = sel
                .iter()
                .map(|e| (e.read_started_at - e.available_at) as f64)
                .collect();
            let ff: Vec<f64> = sel
                .iter()
                .filter_map(|e| fifo.get(&e.uid))
                .map(|w| *w as f64)
                .collect();
            WaitComparison {
                group: name.to_string(),
                ai_triage: summarize(&ai),
                fifo: summarize(&ff),
            }
        })
        .collect();
    Report {
        studies_published: facts.published,
        studies_on_worklist: facts.on_worklist,
        studies_read: events.len(),
        duplicate_worklist_entries: facts.duplicates,
        dead_letters: facts.dead_letters,
        drift_alerts: facts.drift_alerts,
        duration_s: facts.duration_s,
        throughput_studies_per_s: if facts.duration_s > 0.0 {
            facts.on_worklist as f64 / facts.duration_s
        } else {
            0.0
        },
        e2e_latency: summarize(&facts.latency_ms),
        time_to_read,
        readers: facts.readers,
    }
}

fn row(s: &Summary) -> String {
    format!(
        "<td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>",
        s.n, s.mean_ms, s.p90_ms, s.max_ms
    )
}

/// Writes `report.json` and `report.html` into `dir`.
pub fn write(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(report)?)?;
    let mut waits = String::new();
    for w in &report.time_to_read {
        let scale = w.ai_triage.mean_ms.max(w.fifo.mean_ms).max(1.0);
        waits.push_str(&format!(
            "<tr><th>{}</th>{}{}<td><div class=bar style='width:{:.0}px;background:#2a7'></div><div class=bar style='width:{:.0}px;background:#999'></div></td></tr>",
            w.group,
            row(&w.ai_triage),
            row(&w.fifo),
            200.0 * w.ai_triage.mean_ms / scale,
            200.0 * w.fifo.mean_ms / scale
        ));
    }
    let l = &report.e2e_latency;
    let html = format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>cxrflow run report</title>
<style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:4px 10px;text-align:right}}th{{text-align:left}}.bar{{height:8px;margin:2px 0}}</style></head>
<body><h1>cxrflow run report</h1>
<p>{} studies published, {} on the worklist ({} duplicate entries), {} read by {} simulated readers in {:.1} s
({:.2} studies/s). {} dead letters, {} drift alerts.</p>
<h2>End-to-end latency (scan published &rarr; first triage decision)</h2>
<p>p50 {:.0} ms &middot; p95 {:.0} ms &middot; p99 {:.0} ms &middot; max {:.0} ms (n = {})</p>
<h2>Time to read: AI triage vs FIFO (same studies, same read times)</h2>
<table><tr><th></th><th colspan=4>AI triage (n, mean, p90, max ms)</th><th colspan=4>FIFO</th><th>mean (green AI, grey FIFO)</th></tr>{}</table>
</body></html>"#,
        report.studies_published,
        report.studies_on_worklist,
        report.duplicate_worklist_entries,
        report.studies_read,
        report.readers,
        report.duration_s,
        report.throughput_studies_per_s,
        report.dead_letters,
        report.drift_alerts,
        l.p50_ms,
        l.p95_ms,
        l.p99_ms,
        l.max_ms,
        l.n,
        waits
    );
    std::fs::write(dir.join("report.html"), html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_by_nearest_rank() {
        let s = summarize(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!(s.p50_ms, 50.0);
        assert_eq!(s.p90_ms, 90.0);
        assert_eq!(s.max_ms, 100.0);
        assert_eq!(summarize(&[]).n, 0);
    }
}
