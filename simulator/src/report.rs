//! The run report, as a hospital would read it: throughput, end-to-end latency (scan published →
//! first triage decision), time-to-read with AI triage against the FIFO counterfactual (mean,
//! p90 and max: the max is what anti-starvation protects), consumer lag, online AUROC, dead
//! letters, and drift alerts against the injected change point. Written as JSON and as a
//! self-contained HTML page with inline SVG charts.
//!
//! [`series`] puts the run on one time axis, [`auroc`] scores predictions against the readers'
//! ground truth, [`drift`] measures detection, [`plots`] and `html` draw the page.

pub mod auroc;
pub mod drift;
mod html;
pub mod plots;
pub mod series;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Serialize;

use crate::replay::{ArrivalConfig, ChangePoint, DriftPlan, PopulationMix, Published};
use crate::run::lag::LagPoint;
use crate::run::readers::{fifo_waits, ReadEvent};
use auroc::{AurocReport, ScoredStudy};
use drift::{AlertFact, DriftReport};
use series::Series;

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
    /// How studies arrived (`None`: not recorded).
    pub arrival: Option<ArrivalConfig>,
    pub published_studies_per_s: f64,
    pub studies_per_site: BTreeMap<String, usize>,
    pub series: Series,
    pub auroc: AurocReport,
    pub drift: DriftReport,
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
    /// Every published study (time, site, before/after the change).
    pub publications: Vec<Published>,
    /// (published at, first decided at) per published study with a triage decision.
    pub decisions: Vec<(i64, i64)>,
    pub lag: Vec<LagPoint>,
    /// Read studies with the production model's scores.
    pub scored: Vec<ScoredStudy>,
    /// Every record of `cxr.drift.v1`.
    pub alerts: Vec<AlertFact>,
    pub arrival: Option<ArrivalConfig>,
    pub drift_plan: DriftPlan,
    pub change: Option<ChangePoint>,
    pub before_change: PopulationMix,
    pub after_change: PopulationMix,
    pub shortfall: usize,
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
    let published_at: Vec<i64> = facts.publications.iter().map(|p| p.published_at).collect();
    let mut studies_per_site = BTreeMap::new();
    for p in &facts.publications {
        *studies_per_site.entry(p.site.clone()).or_default() += 1;
    }
    // The time axis runs from the first publication to the last thing observed.
    let start_ms = published_at.iter().copied().min().unwrap_or(0);
    let end_ms = published_at
        .iter()
        .copied()
        .chain(facts.decisions.iter().map(|d| d.1))
        .chain(facts.scored.iter().map(|s| s.at_ms))
        .chain(facts.lag.iter().map(|l| l.at_ms))
        .chain(facts.alerts.iter().map(|a| a.raised_at))
        .filter(|t| *t >= start_ms)
        .max()
        .unwrap_or(start_ms);
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
        arrival: facts.arrival,
        published_studies_per_s: published_rate(&published_at),
        studies_per_site,
        series: series::build(&series::SeriesInput {
            start_ms,
            end_ms,
            published_at: &published_at,
            decisions: &facts.decisions,
            lag: &facts.lag,
            scored: &facts.scored,
        }),
        auroc: auroc::final_auroc(&facts.scored),
        drift: drift::build(&drift::DriftInput {
            start_ms,
            plan: facts.drift_plan,
            change: facts.change,
            before: facts.before_change.clone(),
            after: facts.after_change.clone(),
            shortfall: facts.shortfall,
            published_at: &published_at,
            alerts: &facts.alerts,
        }),
    }
}

/// Studies per second between the first and the last publication.
fn published_rate(published_at: &[i64]) -> f64 {
    let (Some(first), Some(last)) = (published_at.iter().min(), published_at.iter().max()) else {
        return 0.0;
    };
    if last > first {
        (published_at.len() - 1) as f64 / ((last - first) as f64 / 1e3)
    } else {
        0.0
    }
}

/// Writes `report.json` and `report.html` into `dir`.
pub fn write(report: &Report, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("report.json"), serde_json::to_vec_pretty(report)?)?;
    std::fs::write(dir.join("report.html"), html::render(report))
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

    /// A small run with every kind of fact: the JSON carries the series and the drift
    /// measurement, the HTML the charts.
    #[test]
    fn report_has_series_drift_and_inline_svg_charts() {
        use crate::replay::{ArrivalConfig, DriftScenario};
        let t0 = 1_700_000_000_000i64;
        let publications: Vec<Published> = (0..60)
            .map(|i| Published {
                uid: format!("u{i}"),
                published_at: t0 + i * 200,
                site: format!("site-0{}", 1 + i % 2),
                after_change: i >= 30,
                drifted: i >= 30,
            })
            .collect();
        let decisions: Vec<(i64, i64)> = publications
            .iter()
            .map(|p| (p.published_at, p.published_at + 300))
            .collect();
        let events: Vec<ReadEvent> = publications
            .iter()
            .enumerate()
            .map(|(i, p)| ReadEvent {
                uid: p.uid.clone(),
                tier: if i % 3 == 0 { "CRITICAL" } else { "ROUTINE" }.into(),
                critical_truth: i % 3 == 0,
                available_at: p.published_at + 300,
                read_started_at: p.published_at + 400,
                read_ended_at: p.published_at + 700,
                read_ms: 300,
                busy_ms: 320,
            })
            .collect();
        let scored = events
            .iter()
            .map(|e| ScoredStudy {
                at_ms: e.read_ended_at,
                critical: (e.critical_truth, if e.critical_truth { 0.8 } else { 0.3 }),
                findings: vec![("Edema".into(), e.critical_truth, 0.5)],
            })
            .collect();
        let lag = (0..12)
            .map(|i| LagPoint {
                at_ms: t0 + i * 1_000,
                lag: [("ingest".to_string(), i), ("triage".to_string(), 2 * i)].into(),
            })
            .collect();
        let alert = |at: i64| AlertFact {
            raised_at: at,
            partition: 0,
            offset: 3,
            state: "Raised".into(),
            channel: "metadata".into(),
            signal: "view_position".into(),
            statistic: "chi2".into(),
            site_id: None,
            severity: "Warning".into(),
        };
        let facts = RunFacts {
            published: 60,
            on_worklist: 60,
            latency_ms: vec![300.0; 60],
            events,
            readers: 2,
            duration_s: 14.0,
            decisions,
            lag,
            scored,
            alerts: vec![alert(t0 + 8_000)],
            arrival: Some(ArrivalConfig::new(crate::replay::Arrival::Poisson, 5.0)),
            drift_plan: DriftPlan::after(DriftScenario::PortableAp, 30),
            change: Some(ChangePoint {
                index: 30,
                published_at: t0 + 6_000,
            }),
            publications,
            ..RunFacts::default()
        };
        let report = build(&facts);
        assert_eq!(report.drift.studies_to_detection, Some(11));
        assert_eq!(report.studies_per_site["site-01"], 30);
        let dir = tempfile::tempdir().unwrap();
        write(&report, dir.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join("report.json")).unwrap())
                .unwrap();
        for key in [
            "throughput",
            "latency",
            "latency_histogram",
            "consumer_lag",
            "auroc",
        ] {
            assert!(
                json["series"][key]
                    .as_array()
                    .is_some_and(|a| !a.is_empty()),
                "series.{key} in {json:#}"
            );
        }
        assert_eq!(json["drift"]["plan"]["scenario"], "portable-ap");
        assert_eq!(json["drift"]["change_point"]["index"], 30);
        assert_eq!(json["drift"]["studies_to_detection"], 11);
        assert_eq!(json["auroc"]["critical"], 1.0);
        assert_eq!(json["arrival"]["kind"], "poisson");
        let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
        assert!(html.contains("Time to read"));
        assert!(
            html.matches("<svg").count() >= 7,
            "every chart is inline SVG"
        );
        for title in [
            "Throughput",
            "End-to-end latency",
            "Consumer lag per service",
            "Online AUROC",
        ] {
            assert!(html.contains(title), "{title}");
        }
        assert!(html.contains("drift injected") && html.contains("drift alert"));
        assert!(!html.contains("chart not drawn"));
    }
}
