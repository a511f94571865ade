//! The self-contained HTML page: the numbers, and the charts inline as SVG.

use std::fmt::Write;

use super::plots::{self, color, html_escape, Line, Markers};
use super::{Report, Summary};

fn row(s: &Summary) -> String {
    format!(
        "<td>{}</td><td>{:.0}</td><td>{:.0}</td><td>{:.0}</td>",
        s.n, s.mean_ms, s.p90_ms, s.max_ms
    )
}

fn opt(x: Option<f64>, digits: usize) -> String {
    x.map_or_else(|| "–".to_string(), |v| format!("{v:.digits$}"))
}

fn time_to_read(report: &Report) -> String {
    let mut waits = String::new();
    for w in &report.time_to_read {
        let scale = w.ai_triage.mean_ms.max(w.fifo.mean_ms).max(1.0);
        let _ = write!(
            waits,
            "<tr><th>{}</th>{}{}<td><div class=bar style='width:{:.0}px;background:#2a7'></div><div class=bar style='width:{:.0}px;background:#999'></div></td></tr>",
            html_escape(&w.group),
            row(&w.ai_triage),
            row(&w.fifo),
            200.0 * w.ai_triage.mean_ms / scale,
            200.0 * w.fifo.mean_ms / scale
        );
    }
    let bars = |f: fn(&Summary) -> f64| -> Vec<(String, f64, f64)> {
        report
            .time_to_read
            .iter()
            .map(|w| (w.group.clone(), f(&w.ai_triage), f(&w.fifo)))
            .collect()
    };
    format!(
        "<h2>Time to read: AI triage vs FIFO (same studies, same read times)</h2>
<table><tr><th></th><th colspan=4>AI triage (n, mean, p90, max ms)</th><th colspan=4>FIFO</th><th>mean (green AI, grey FIFO)</th></tr>{waits}</table>
{}{}",
        plots::paired_bars("Mean wait before a read", "ms", &bars(|s| s.mean_ms)),
        plots::paired_bars("p90 wait before a read", "ms", &bars(|s| s.p90_ms)),
    )
}

fn drift_section(report: &Report) -> String {
    let d = &report.drift;
    let mut s = format!(
        "<h2>Drift</h2><p>Scenario <b>{}</b>",
        html_escape(&d.plan.scenario.to_string())
    );
    match &d.change_point {
        Some(c) => {
            let _ = write!(
                s,
                ", injected after {} studies (t = {:.1} s). First alert after the change: {}; studies to detection: {}; seconds to detection: {}.",
                c.index,
                c.t_s,
                d.first_alert_after_change.as_ref().map_or_else(
                    || "none".to_string(),
                    |a| format!(
                        "{} / {} at t = {:.1} s (partition {}, offset {})",
                        html_escape(&a.alert.channel),
                        html_escape(&a.alert.signal),
                        a.t_s,
                        a.alert.partition,
                        a.alert.offset
                    )
                ),
                d.studies_to_detection
                    .map_or_else(|| "–".to_string(), |n| n.to_string()),
                opt(d.seconds_to_detection, 1),
            );
        }
        None => s.push_str(", no change point in this run."),
    }
    let _ = write!(
        s,
        " {} alerts raised before the change point.</p>",
        d.alerts_raised_before_change
    );
    let mix = |name: &str, m: &crate::replay::PopulationMix| {
        format!(
            "<tr><th>{name}</th><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.1}</td><td>{:.2}</td><td>{}</td></tr>",
            m.studies, m.ap_fraction, m.lateral_fraction, m.female_fraction, m.mean_age, m.finding_prevalence, m.intensity_shifted
        )
    };
    let _ = write!(
        s,
        "<table><tr><th></th><th>studies</th><th>AP</th><th>lateral</th><th>female</th><th>mean age</th><th>{} prevalence</th><th>pixels shifted</th></tr>{}{}</table>",
        html_escape(d.plan.finding.name()),
        mix("before the change", &d.before),
        mix("after the change", &d.after)
    );
    if !d.alerts.is_empty() {
        s.push_str("<table><tr><th>t (s)</th><th>state</th><th>channel</th><th>signal</th><th>statistic</th><th>site</th><th>severity</th><th>partition/offset</th></tr>");
        for a in d.alerts.iter().take(100) {
            let _ = write!(
                s,
                "<tr><td>{:.1}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}/{}</td></tr>",
                a.t_s,
                html_escape(&a.alert.state),
                html_escape(&a.alert.channel),
                html_escape(&a.alert.signal),
                html_escape(&a.alert.statistic),
                html_escape(a.alert.site_id.as_deref().unwrap_or("all")),
                html_escape(&a.alert.severity),
                a.alert.partition,
                a.alert.offset
            );
        }
        s.push_str("</table>");
    }
    s
}

/// The whole page.
pub fn render(report: &Report) -> String {
    let series = &report.series;
    let markers = Markers {
        alerts: &report.drift.alerts,
        change: report.drift.change_point,
    };
    let per_s = |n: usize| n as f64 / series.bucket_s.max(1e-9);
    let throughput = plots::time_chart(
        &format!("Throughput ({} s buckets)", series.bucket_s),
        "studies/s",
        &[
            Line {
                name: "published".into(),
                color: color(0),
                points: series
                    .throughput
                    .iter()
                    .map(|p| (p.t_s, per_s(p.published)))
                    .collect(),
            },
            Line {
                name: "triaged".into(),
                color: color(1),
                points: series
                    .throughput
                    .iter()
                    .map(|p| (p.t_s, per_s(p.triaged)))
                    .collect(),
            },
        ],
        &markers,
    );
    let lat = |name: &str, i: usize, f: fn(&super::series::LatencyPoint) -> f64| Line {
        name: name.into(),
        color: color(i),
        points: series.latency.iter().map(|p| (p.t_s, f(p))).collect(),
    };
    let latency = plots::time_chart(
        "End-to-end latency by decision time",
        "ms",
        &[
            lat("p50", 0, |p| p.p50_ms),
            lat("p95", 2, |p| p.p95_ms),
            lat("p99", 3, |p| p.p99_ms),
        ],
        &markers,
    );
    let histogram = plots::histogram("End-to-end latency", &series.latency_histogram);
    let lag_lines: Vec<Line> = series
        .consumer_lag
        .iter()
        .enumerate()
        .map(|(i, l)| Line {
            name: l.service.clone(),
            color: color(i),
            points: l.points.iter().map(|(t, v)| (*t, *v as f64)).collect(),
        })
        .collect();
    let lag = if lag_lines.is_empty() {
        "<p class=note>No consumer-lag samples (sampling off, or the broker did not answer offset fetches).</p>".to_string()
    } else {
        plots::time_chart("Consumer lag per service", "records", &lag_lines, &markers)
    };
    let auroc_chart = plots::time_chart(
        "Online AUROC, any critical finding (cumulative as reads complete)",
        "AUROC",
        &[Line {
            name: "critical AUROC".into(),
            color: color(0),
            points: series
                .auroc
                .iter()
                .filter_map(|p| p.critical.map(|a| (p.t_s, a)))
                .collect(),
        }],
        &markers,
    );
    let mut per_finding = String::new();
    for (f, a) in &report.auroc.per_finding {
        let _ = write!(
            per_finding,
            "<tr><th>{}</th><td>{a:.3}</td></tr>",
            html_escape(f)
        );
    }
    let l = &report.e2e_latency;
    format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>cxrflow run report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:900px}}td,th{{padding:4px 10px;text-align:right}}th{{text-align:left}}.bar{{height:8px;margin:2px 0}}svg{{display:block;margin:1em 0}}.note{{color:#777}}</style></head>
<body><h1>cxrflow run report</h1>
<p>{} studies published, {} on the worklist ({} duplicate entries), {} read by {} simulated readers in {:.1} s
({:.2} studies/s triaged; {:.2} studies/s published). {} dead letters, {} drift alerts.</p>
<h2>Throughput</h2>{throughput}
<h2>End-to-end latency (scan published &rarr; first triage decision)</h2>
<p>p50 {:.0} ms &middot; p95 {:.0} ms &middot; p99 {:.0} ms &middot; max {:.0} ms (n = {})</p>
{latency}{histogram}
<h2>Consumer lag</h2>{lag}
{}
<h2>Online AUROC</h2>
<p>Final: any critical finding {} &middot; macro over findings {} (n = {})</p>
{auroc_chart}<table>{per_finding}</table>
{}
</body></html>"#,
        report.studies_published,
        report.studies_on_worklist,
        report.duplicate_worklist_entries,
        report.studies_read,
        report.readers,
        report.duration_s,
        report.throughput_studies_per_s,
        report.published_studies_per_s,
        report.dead_letters,
        report.drift_alerts,
        l.p50_ms,
        l.p95_ms,
        l.p99_ms,
        l.max_ms,
        l.n,
        time_to_read(report),
        opt(report.auroc.critical, 3),
        opt(report.auroc.macro_auroc, 3),
        report.auroc.n,
        drift_section(report),
    )
}
