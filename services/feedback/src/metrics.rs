//! The feedback service's own metrics, beside the stage runtime's and the online performance
//! gauges, and its notable events: each writes its log line and bumps its metric together, so
//! the two never disagree.

use cxrflow_contracts::LabeledExample;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use crate::store::{role_str, LabeledOutcome, ReportOutcome};

type Labels = Vec<(&'static str, String)>;

#[derive(Clone, Default)]
pub struct FeedbackMetrics {
    reports: Family<Labels, Counter>,
    labeled: Family<Labels, Counter>,
    expired: Counter,
}

impl FeedbackMetrics {
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cxrflow_feedback");
        r.register(
            "reports",
            "Radiologist reports stored, by outcome (inserted, superseded, duplicate, stale)",
            self.reports.clone(),
        );
        r.register(
            "labeled_examples",
            "Labeled examples built, by model role and outcome (inserted, updated, unchanged, redelivered)",
            self.labeled.clone(),
        );
        r.register(
            "unknown_study_reports",
            "Reports dead-lettered because no prediction arrived within the bound",
            self.expired.clone(),
        );
    }

    pub fn report(&self, outcome: ReportOutcome) {
        tracing::debug!(outcome = outcome.as_str(), "report stored");
        self.reports
            .get_or_create(&vec![("outcome", outcome.as_str().to_string())])
            .inc();
    }

    pub fn labeled(&self, ex: &LabeledExample, outcome: LabeledOutcome) {
        let outcome = format!("{outcome:?}").to_lowercase();
        tracing::debug!(
            model_version = %ex.model_version,
            role = role_str(ex.model_role),
            outcome,
            "labeled example"
        );
        self.labeled
            .get_or_create(&vec![
                ("role", role_str(ex.model_role).to_string()),
                ("outcome", outcome),
            ])
            .inc();
    }

    pub fn unknown_study(&self) {
        self.expired.inc();
    }
}
