//! The drift part of the report: the injected scenario and its change point, every alert read
//! back from `cxr.drift.v1` (time, partition, offset), and how soon the change was detected —
//! studies-to-detection is the number of studies published from the change point up to and
//! including the first alert raised after it.

use serde::Serialize;

use crate::replay::{ChangePoint, DriftPlan, PopulationMix};

/// One alert record as read back from the topic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertFact {
    pub raised_at: i64,
    pub partition: i32,
    pub offset: i64,
    /// `Raised`, `Updated` or `Resolved`.
    pub state: String,
    pub channel: String,
    pub signal: String,
    pub statistic: String,
    pub site_id: Option<String>,
    pub severity: String,
}

impl AlertFact {
    pub fn is_raise(&self) -> bool {
        self.state.eq_ignore_ascii_case("raised")
    }
}

/// An alert on the report's time axis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertMark {
    pub t_s: f64,
    #[serde(flatten)]
    pub alert: AlertFact,
}

/// The change point on the report's time axis.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChangeMark {
    pub index: usize,
    pub published_at: i64,
    pub t_s: f64,
}

/// What a drift benchmark reads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DriftReport {
    pub plan: DriftPlan,
    pub change_point: Option<ChangeMark>,
    /// The traffic before and after the change point.
    pub before: PopulationMix,
    pub after: PopulationMix,
    /// Scenario draws that fell back to the natural mix (sub-population exhausted).
    pub shortfall: usize,
    pub alerts: Vec<AlertMark>,
    /// Alerts raised before the change point (false alarms when a scenario is injected).
    pub alerts_raised_before_change: usize,
    pub first_alert_after_change: Option<AlertMark>,
    pub studies_to_detection: Option<usize>,
    pub seconds_to_detection: Option<f64>,
}

/// The first alert raised at or after `change_at`.
pub fn first_raise_after(alerts: &[AlertFact], change_at: i64) -> Option<&AlertFact> {
    alerts
        .iter()
        .filter(|a| a.is_raise() && a.raised_at >= change_at)
        .min_by_key(|a| (a.raised_at, a.partition, a.offset))
}

/// Studies published from `change_at` up to and including `alert_at`.
pub fn studies_to_detection(published_at: &[i64], change_at: i64, alert_at: i64) -> usize {
    published_at
        .iter()
        .filter(|p| (change_at..=alert_at).contains(*p))
        .count()
}

pub struct DriftInput<'a> {
    pub start_ms: i64,
    pub plan: DriftPlan,
    pub change: Option<ChangePoint>,
    pub before: PopulationMix,
    pub after: PopulationMix,
    pub shortfall: usize,
    pub published_at: &'a [i64],
    pub alerts: &'a [AlertFact],
}

pub fn build(input: &DriftInput) -> DriftReport {
    let t_s = |at: i64| (at - input.start_ms) as f64 / 1e3;
    let mark = |a: &AlertFact| AlertMark {
        t_s: t_s(a.raised_at),
        alert: a.clone(),
    };
    let mut alerts: Vec<AlertMark> = input.alerts.iter().map(mark).collect();
    alerts.sort_by(|a, b| a.t_s.total_cmp(&b.t_s));
    let change_at = input.change.map(|c| c.published_at);
    let first = change_at.and_then(|c| first_raise_after(input.alerts, c));
    DriftReport {
        plan: input.plan,
        change_point: input.change.map(|c| ChangeMark {
            index: c.index,
            published_at: c.published_at,
            t_s: t_s(c.published_at),
        }),
        before: input.before.clone(),
        after: input.after.clone(),
        shortfall: input.shortfall,
        alerts_raised_before_change: input
            .alerts
            .iter()
            .filter(|a| a.is_raise() && change_at.is_some_and(|c| a.raised_at < c))
            .count(),
        first_alert_after_change: first.map(mark),
        studies_to_detection: first
            .zip(change_at)
            .map(|(a, c)| studies_to_detection(input.published_at, c, a.raised_at)),
        seconds_to_detection: first
            .zip(change_at)
            .map(|(a, c)| (a.raised_at - c) as f64 / 1e3),
        alerts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::DriftScenario;

    fn alert(at: i64, state: &str) -> AlertFact {
        AlertFact {
            raised_at: at,
            partition: 0,
            offset: at,
            state: state.into(),
            channel: "input".into(),
            signal: "mean".into(),
            statistic: "ks".into(),
            site_id: None,
            severity: "Warning".into(),
        }
    }

    #[test]
    fn detection_counts_studies_from_the_change_to_the_first_raise_after_it() {
        let published: Vec<i64> = (0..100).map(|i| i * 10).collect();
        let alerts = [
            alert(200, "Raised"),
            alert(640, "Updated"),
            alert(700, "Raised"),
            alert(900, "Raised"),
        ];
        let r = build(&DriftInput {
            start_ms: 0,
            plan: DriftPlan::after(DriftScenario::PortableAp, 50),
            change: Some(ChangePoint {
                index: 50,
                published_at: 500,
            }),
            before: PopulationMix::default(),
            after: PopulationMix::default(),
            shortfall: 0,
            published_at: &published,
            alerts: &alerts,
        });
        assert_eq!(r.alerts_raised_before_change, 1);
        assert_eq!(
            r.first_alert_after_change.as_ref().unwrap().alert.raised_at,
            700
        );
        // Studies published at 500, 510, …, 700.
        assert_eq!(r.studies_to_detection, Some(21));
        assert_eq!(r.seconds_to_detection, Some(0.2));
        assert_eq!(r.alerts.len(), 4);
    }
}
