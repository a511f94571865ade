//! Alert hygiene: hysteresis and a cool-down per (model, channel, test), so a persistent drift
//! raises one RAISED alert, then UPDATED at most once per cool-down, then RESOLVED — not one
//! alert per evaluation.
//!
//! Every test reduces to a *strength* (e.g. `-log10` of a corrected p-value, a z-score, the
//! unified score) compared with a raise level and a lower resolve level.

use std::collections::{BTreeMap, HashMap};

use cxrflow_contracts::{AlertState, DriftAlert, DriftWindow, RecommendedAction, Severity};

use crate::observation::Channel;

/// One test's outcome in one evaluation, reduced for the state machine.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalReading {
    pub channel: Channel,
    /// Which test of the channel (several per channel: `KS`, `MMD`, …); part of the alert key.
    pub test: &'static str,
    pub signal: String,
    pub statistic: String,
    pub value: f64,
    pub p_value: Option<f64>,
    /// The threshold named on the alert (in the statistic's or p-value's units).
    pub threshold: f64,
    pub strength: f64,
    pub raise_at: f64,
    pub resolve_at: f64,
    pub action: RecommendedAction,
    pub details: BTreeMap<String, String>,
}

/// What every alert of one evaluation shares.
#[derive(Debug, Clone, PartialEq)]
pub struct EvaluationContext {
    pub model_name: String,
    pub model_version: String,
    pub site_id: Option<String>,
    /// The site a per-site detector watches (`None`: all traffic of the model version). Part
    /// of the alert id, so a site's alert never collides with the all-traffic one.
    pub scope: Option<String>,
    pub reference_window: DriftWindow,
    pub detection_window: DriftWindow,
    /// Event time of the evaluation (end of the detection window).
    pub at: i64,
}

#[derive(Debug, Clone)]
struct Active {
    alert_id: String,
    raised_at: i64,
    last_emitted: i64,
    severity: Severity,
    action: RecommendedAction,
}

/// Alert states of one model's channels.
#[derive(Debug, Clone, Default)]
pub struct AlertBook {
    active: HashMap<(Channel, &'static str), Active>,
    pending: HashMap<(Channel, &'static str), u32>,
}

fn severity(action: RecommendedAction) -> Severity {
    match action {
        RecommendedAction::Retrain => Severity::Critical,
        RecommendedAction::Investigate => Severity::Warning,
    }
}

impl AlertBook {
    /// Whether a (channel, test) is currently raised.
    pub fn is_active(&self, channel: Channel, test: &'static str) -> bool {
        self.active.contains_key(&(channel, test))
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    /// Feeds one evaluation's readings; returns the alerts to publish. A reading must be above
    /// its raise level in `raise_after` consecutive evaluations before it raises.
    pub fn observe(
        &mut self,
        readings: &[SignalReading],
        ctx: &EvaluationContext,
        cooldown_ms: i64,
        raise_after: u32,
    ) -> Vec<DriftAlert> {
        let mut out = Vec::new();
        for r in readings {
            let key = (r.channel, r.test);
            match self.active.get_mut(&key) {
                None => {
                    if r.strength >= r.raise_at {
                        let n = self.pending.entry(key).or_insert(0);
                        *n += 1;
                        if *n >= raise_after.max(1) {
                            self.pending.remove(&key);
                            let scope = ctx
                                .scope
                                .as_deref()
                                .map(|s| format!("/site:{s}"))
                                .unwrap_or_default();
                            let alert_id = uuid::Uuid::new_v5(
                                &uuid::Uuid::NAMESPACE_OID,
                                format!(
                                    "cxrflow-drift/{}/{}/{}/{}/{}{scope}",
                                    ctx.model_name,
                                    ctx.model_version,
                                    r.channel.as_str(),
                                    r.test,
                                    ctx.at
                                )
                                .as_bytes(),
                            )
                            .to_string();
                            let a = Active {
                                alert_id,
                                raised_at: ctx.at,
                                last_emitted: ctx.at,
                                severity: severity(r.action),
                                action: r.action,
                            };
                            out.push(alert(&a, AlertState::Raised, r, ctx));
                            self.active.insert(key, a);
                        }
                    } else {
                        self.pending.remove(&key);
                    }
                }
                Some(a) => {
                    if r.strength <= r.resolve_at {
                        let mut a = self.active.remove(&key).expect("present");
                        a.severity = Severity::Info;
                        out.push(alert(&a, AlertState::Resolved, r, ctx));
                    } else {
                        // Escalation (INVESTIGATE → RETRAIN) is news: publish it at once.
                        let escalated = r.action == RecommendedAction::Retrain
                            && a.action != RecommendedAction::Retrain;
                        if escalated {
                            a.action = r.action;
                            a.severity = severity(r.action);
                        }
                        if escalated || ctx.at - a.last_emitted >= cooldown_ms {
                            a.last_emitted = ctx.at;
                            out.push(alert(a, AlertState::Updated, r, ctx));
                        }
                    }
                }
            }
        }
        out
    }
}

fn alert(a: &Active, state: AlertState, r: &SignalReading, ctx: &EvaluationContext) -> DriftAlert {
    let mut details = r.details.clone();
    details.insert("first_raised_at".into(), a.raised_at.to_string());
    details.insert("strength".into(), format!("{:.3}", r.strength));
    details.insert("raise_at".into(), format!("{:.3}", r.raise_at));
    details.insert("resolve_at".into(), format!("{:.3}", r.resolve_at));
    DriftAlert {
        alert_id: a.alert_id.clone(),
        state,
        channel: r.channel.as_str().to_string(),
        signal: r.signal.clone(),
        statistic: r.statistic.clone(),
        value: r.value,
        p_value: r.p_value,
        threshold: r.threshold,
        reference_window: ctx.reference_window.clone(),
        detection_window: ctx.detection_window.clone(),
        site_id: ctx.site_id.clone(),
        model_name: ctx.model_name.clone(),
        model_version: ctx.model_version.clone(),
        severity: a.severity,
        action: a.action,
        details,
        raised_at: ctx.at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(strength: f64) -> SignalReading {
        SignalReading {
            channel: Channel::Input,
            test: "KS",
            signal: "stats.mean".into(),
            statistic: "KS".into(),
            value: 0.3,
            p_value: Some(10f64.powf(-strength)),
            threshold: 1e-4,
            strength,
            raise_at: 4.0,
            resolve_at: 2.0,
            action: RecommendedAction::Investigate,
            details: BTreeMap::new(),
        }
    }

    fn ctx(at: i64) -> EvaluationContext {
        let w = DriftWindow {
            start: 0,
            end: at,
            count: 300,
        };
        EvaluationContext {
            model_name: "m".into(),
            model_version: "1".into(),
            site_id: None,
            scope: None,
            reference_window: w.clone(),
            detection_window: w,
            at,
        }
    }

    #[test]
    fn persistent_drift_raises_once_updates_after_cooldown_then_resolves() {
        let mut book = AlertBook::default();
        let cooldown = 1_000;
        // strength over time: quiet, drift for a while (including a dip between the levels),
        // then back to quiet.
        let series = [1.0, 5.0, 6.0, 3.0, 7.0, 8.0, 9.0, 6.0, 1.0, 1.0];
        let mut states = Vec::new();
        let mut ids = Vec::new();
        for (i, s) in series.iter().enumerate() {
            for a in book.observe(&[reading(*s)], &ctx(i as i64 * 400), cooldown, 1) {
                states.push(a.state);
                ids.push(a.alert_id);
            }
        }
        // Raised at t=400; updates at most every 1000 ms: t=1600 (≥1400) and t=2800; resolved at 3200.
        assert_eq!(
            states,
            vec![
                AlertState::Raised,
                AlertState::Updated,
                AlertState::Updated,
                AlertState::Resolved
            ]
        );
        assert!(
            ids.iter().all(|i| *i == ids[0]),
            "one alert id for one episode"
        );
        assert_eq!(book.active_count(), 0);
    }

    #[test]
    fn raise_after_requires_consecutive_evaluations() {
        let mut book = AlertBook::default();
        assert!(book.observe(&[reading(5.0)], &ctx(0), 0, 2).is_empty());
        assert!(book.observe(&[reading(1.0)], &ctx(1), 0, 2).is_empty());
        assert!(book.observe(&[reading(5.0)], &ctx(2), 0, 2).is_empty());
        let a = book.observe(&[reading(5.0)], &ctx(3), 0, 2);
        assert_eq!(a.len(), 1);
        assert_eq!(a[0].state, AlertState::Raised);
    }
}
