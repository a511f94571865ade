//! What the drift bench reads back from each run's `report.json` (the simulator's report, only
//! the fields it needs), what it keeps per scenario, and the markdown table for the README.

use cxrflow_sim::replay::PopulationMix;
use serde::{Deserialize, Serialize};

/// The parts of the simulator's `Report` the bench reads; unknown fields are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct RunReport {
    pub studies_published: usize,
    pub studies_on_worklist: usize,
    pub dead_letters: usize,
    pub duration_s: f64,
    pub published_studies_per_s: f64,
    pub e2e_latency: Latency,
    pub drift: DriftPart,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p95_ms: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct DriftPart {
    pub change_point: Option<ChangeMark>,
    pub before: PopulationMix,
    pub after: PopulationMix,
    pub shortfall: usize,
    pub alerts: Vec<Alert>,
    pub alerts_raised_before_change: usize,
    pub first_alert_after_change: Option<Alert>,
    pub studies_to_detection: Option<usize>,
    pub seconds_to_detection: Option<f64>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChangeMark {
    pub index: usize,
    pub t_s: f64,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Alert {
    pub t_s: f64,
    pub state: String,
    pub channel: String,
    pub signal: String,
    pub statistic: String,
    pub site_id: Option<String>,
    pub severity: String,
}

impl Alert {
    fn is_raise(&self) -> bool {
        self.state.eq_ignore_ascii_case("raised")
    }
}

/// One scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub scenario: String,
    /// Whether an alert was raised after the change point (for `none`: not applicable).
    pub detected: Option<bool>,
    pub studies_to_detection: Option<usize>,
    pub seconds_to_detection: Option<f64>,
    pub first_alert: Option<Alert>,
    /// Alerts raised before the change point (for `none`: every alert raised): false alarms.
    pub false_alarms: usize,
    /// Studies without drift that the false alarms are counted over (`none`: all of them).
    pub clean_studies: usize,
    /// Every channel that raised an alert after the change, in order of first raise.
    pub channels_raised_after_change: Vec<String>,
    pub alerts_raised: usize,
    pub studies_published: usize,
    pub studies_on_worklist: usize,
    pub dead_letters: usize,
    pub change_at_study: Option<usize>,
    pub change_at_s: Option<f64>,
    /// Scenario draws that fell back to the natural mix (sub-population exhausted).
    pub shortfall: usize,
    pub before: PopulationMix,
    pub after: PopulationMix,
    pub published_studies_per_s: f64,
    /// Scan published → triage decision, so the studies counted to detection include the
    /// pipeline's lag of about rate × latency.
    pub e2e_latency_p50_ms: f64,
    pub e2e_latency_p95_ms: f64,
    pub run_s: f64,
    pub report: String,
}

impl ScenarioResult {
    pub fn from_report(scenario: &str, r: &RunReport, run_s: f64, report: String) -> Self {
        let d = &r.drift;
        let none = d.change_point.is_none();
        let raises: Vec<&Alert> = d.alerts.iter().filter(|a| a.is_raise()).collect();
        let change_t = d.change_point.as_ref().map(|c| c.t_s);
        let mut channels: Vec<String> = Vec::new();
        for a in raises
            .iter()
            .filter(|a| change_t.is_some_and(|t| a.t_s >= t))
        {
            if !channels.contains(&a.channel) {
                channels.push(a.channel.clone());
            }
        }
        ScenarioResult {
            scenario: scenario.to_string(),
            detected: (!none).then_some(d.first_alert_after_change.is_some()),
            studies_to_detection: d.studies_to_detection,
            seconds_to_detection: d.seconds_to_detection,
            first_alert: d.first_alert_after_change.clone(),
            false_alarms: if none {
                raises.len()
            } else {
                d.alerts_raised_before_change
            },
            clean_studies: d
                .change_point
                .as_ref()
                .map_or(r.studies_published, |c| c.index),
            channels_raised_after_change: channels,
            alerts_raised: raises.len(),
            studies_published: r.studies_published,
            studies_on_worklist: r.studies_on_worklist,
            dead_letters: r.dead_letters,
            change_at_study: d.change_point.as_ref().map(|c| c.index),
            change_at_s: change_t,
            shortfall: d.shortfall,
            before: d.before.clone(),
            after: d.after.clone(),
            published_studies_per_s: r.published_studies_per_s,
            e2e_latency_p50_ms: r.e2e_latency.p50_ms,
            e2e_latency_p95_ms: r.e2e_latency.p95_ms,
            run_s: run_s.max(r.duration_s),
            report,
        }
    }

    /// The mix figure the scenario changes, before → after.
    fn mix_change(&self) -> String {
        let (b, a) = (&self.before, &self.after);
        let pct = |x: f64| format!("{:.0}%", x * 100.0);
        match self.scenario.as_str() {
            "portable-ap" => format!("AP {} → {}", pct(b.ap_fraction), pct(a.ap_fraction)),
            "lateral-leak" => format!(
                "lateral {} → {}",
                pct(b.lateral_fraction),
                pct(a.lateral_fraction)
            ),
            "site-demographics" => format!(
                "female {} → {}, age {:.0} → {:.0}",
                pct(b.female_fraction),
                pct(a.female_fraction),
                b.mean_age,
                a.mean_age
            ),
            "prevalence-rise" => format!(
                "prevalence {} → {}",
                pct(b.finding_prevalence),
                pct(a.finding_prevalence)
            ),
            "intensity-shift" => format!(
                "shifted images {} → {} of {}",
                b.intensity_shifted, a.intensity_shifted, a.studies
            ),
            _ => "-".to_string(),
        }
    }
}

/// False alarms per 10,000 clean studies.
pub fn per_10k(alarms: usize, studies: usize) -> Option<f64> {
    (studies > 0).then(|| alarms as f64 * 1e4 / studies as f64)
}

pub fn markdown(results: &[ScenarioResult]) -> String {
    let mut s = String::from(
        "| scenario | detected | studies to detection | seconds to detection | first alert: channel / signal / statistic / site | false alarms (clean studies) | studies published (change at) | mix before → after |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in results {
        let detected = match r.detected {
            None => "n/a".to_string(),
            Some(true) => "yes".to_string(),
            Some(false) => "**no**".to_string(),
        };
        let first = r.first_alert.as_ref().map_or("-".to_string(), |a| {
            format!(
                "{} / {} / {} / {}",
                a.channel,
                a.signal,
                a.statistic,
                a.site_id.as_deref().unwrap_or("all")
            )
        });
        let alarms = match per_10k(r.false_alarms, r.clean_studies) {
            Some(rate) if r.detected.is_none() => format!(
                "{} in {} ({rate:.1} / 10k)",
                r.false_alarms, r.clean_studies
            ),
            _ => format!("{} in {}", r.false_alarms, r.clean_studies),
        };
        s.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} ({}) | {} |\n",
            r.scenario,
            detected,
            r.studies_to_detection
                .map_or("-".to_string(), |n| n.to_string()),
            r.seconds_to_detection
                .map_or("-".to_string(), |t| format!("{t:.1}")),
            first,
            alarms,
            r.studies_published,
            r.change_at_study
                .map_or("none".to_string(), |c| c.to_string()),
            r.mix_change()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(change: Option<usize>, alerts: &[(f64, &str)]) -> RunReport {
        let alerts: Vec<serde_json::Value> = alerts
            .iter()
            .map(|(t, state)| {
                serde_json::json!({"t_s": t, "raised_at": 0, "partition": 0, "offset": 0,
                    "state": state, "channel": "INPUT", "signal": "mean", "statistic": "ks",
                    "site_id": null, "severity": "WARNING"})
            })
            .collect();
        let first = change.and_then(|_| alerts.iter().find(|a| a["t_s"].as_f64() >= Some(10.0)));
        serde_json::from_value(serde_json::json!({
            "studies_published": 100, "studies_on_worklist": 100, "dead_letters": 0,
            "duration_s": 5.0, "published_studies_per_s": 20.0, "unknown": 1,
            "e2e_latency": {"n": 100, "p50_ms": 40.0, "p95_ms": 90.0},
            "drift": {
                "change_point": change.map(|c| serde_json::json!({"index": c, "published_at": 0, "t_s": 10.0})),
                "before": {"studies": 50, "ap_fraction": 0.8, "lateral_fraction": 0.0,
                    "female_fraction": 0.4, "mean_age": 60.0, "finding_prevalence": 0.1,
                    "intensity_shifted": 0},
                "after": {"studies": 50, "ap_fraction": 1.0, "lateral_fraction": 0.0,
                    "female_fraction": 0.4, "mean_age": 60.0, "finding_prevalence": 0.1,
                    "intensity_shifted": 0},
                "shortfall": 0, "alerts": alerts,
                "alerts_raised_before_change": alerts.iter().filter(|a| a["t_s"].as_f64() < Some(10.0)).count(),
                "first_alert_after_change": first,
                "studies_to_detection": first.map(|_| 7), "seconds_to_detection": first.map(|_| 1.5)
            }
        }))
        .unwrap()
    }

    #[test]
    fn no_drift_counts_every_raise_as_a_false_alarm() {
        let r = report(None, &[(3.0, "Raised"), (4.0, "Updated"), (12.0, "Raised")]);
        let s = ScenarioResult::from_report("none", &r, 6.0, String::new());
        assert_eq!(s.detected, None);
        assert_eq!((s.false_alarms, s.clean_studies), (2, 100));
        assert_eq!(per_10k(s.false_alarms, s.clean_studies), Some(200.0));
    }

    #[test]
    fn a_drift_run_reads_detection_and_alarms_before_the_change() {
        let r = report(
            Some(50),
            &[(3.0, "Raised"), (11.0, "Raised"), (12.0, "Resolved")],
        );
        let s = ScenarioResult::from_report("portable-ap", &r, 6.0, String::new());
        assert_eq!(s.detected, Some(true));
        assert_eq!(s.studies_to_detection, Some(7));
        assert_eq!((s.false_alarms, s.clean_studies), (1, 50));
        assert_eq!(s.channels_raised_after_change, vec!["INPUT".to_string()]);
        assert!(markdown(&[s]).contains("AP 80% → 100%"));
        let quiet =
            ScenarioResult::from_report("lateral-leak", &report(Some(50), &[]), 1.0, "".into());
        assert_eq!(quiet.detected, Some(false));
    }
}
