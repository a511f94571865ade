//! The drift service's own metrics, and the notable events that log and count together.

use std::sync::atomic::AtomicU64;

use cxrflow_contracts::DriftAlert;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::observation::Exclusion;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Default)]
pub struct DriftMetrics {
    score: Family<Labels, Gauge<f64, AtomicU64>>,
    alerts: Family<Labels, Counter>,
    excluded: Family<Labels, Counter>,
    evaluations: Family<Labels, Counter>,
    reference_studies: Family<Labels, Gauge>,
}

impl DriftMetrics {
    /// Registers under `cxrflow_drift_…`.
    pub fn register(&self, reg: &mut Registry) {
        let r = reg.sub_registry_with_prefix("cxrflow_drift");
        r.register(
            "score",
            "Unified drift score of the latest evaluation, by model",
            self.score.clone(),
        );
        r.register(
            "alerts",
            "Drift alerts published, by channel and state",
            self.alerts.clone(),
        );
        r.register(
            "excluded_inputs",
            "Feature values left out of the tests (missing, NaN, unknown category), by feature and reason",
            self.excluded.clone(),
        );
        r.register(
            "evaluations",
            "Detection-window evaluations, by model",
            self.evaluations.clone(),
        );
        r.register(
            "reference_studies",
            "Studies in the reference window (collecting or complete), by model",
            self.reference_studies.clone(),
        );
    }

    fn model(name: &str, version: &str) -> Labels {
        vec![
            ("model", name.to_string()),
            ("model_version", version.to_string()),
        ]
    }

    pub fn excluded(&self, ex: &[Exclusion]) {
        for e in ex {
            tracing::debug!(
                feature = e.feature,
                reason = e.reason,
                "input excluded from drift tests"
            );
            self.excluded
                .get_or_create(&vec![
                    ("feature", e.feature.to_string()),
                    ("reason", e.reason.to_string()),
                ])
                .inc();
        }
    }

    /// A study's site has no detector of its own (the per-site limit is reached): it still
    /// counts in the all-traffic detector.
    pub fn site_not_watched(&self) {
        self.excluded(&[Exclusion {
            feature: "site_detector",
            reason: "max_sites_reached",
        }]);
    }

    pub fn evaluated(&self, name: &str, version: &str, score: Option<f64>) {
        self.evaluations
            .get_or_create(&Self::model(name, version))
            .inc();
        if let Some(s) = score {
            self.score.get_or_create(&Self::model(name, version)).set(s);
        }
    }

    pub fn reference(&self, name: &str, version: &str, n: usize) {
        self.reference_studies
            .get_or_create(&Self::model(name, version))
            .set(n as i64);
    }

    /// An alert is about to be published.
    pub fn alert(&self, a: &DriftAlert) {
        tracing::warn!(alert_id = %a.alert_id, state = ?a.state, channel = %a.channel, signal = %a.signal,
            statistic = %a.statistic, value = a.value, p_value = ?a.p_value, threshold = a.threshold,
            model = %a.model_name, model_version = %a.model_version, site = a.site_id.as_deref().unwrap_or("-"),
            action = ?a.action, severity = ?a.severity, "drift alert");
        self.alerts
            .get_or_create(&vec![
                ("channel", a.channel.clone()),
                ("state", format!("{:?}", a.state).to_uppercase()),
            ])
            .inc();
    }
}
