//! The results service's own metrics and its notable events, each logging and counting in one
//! place so the two never disagree.

use cxrflow_common::metrics::Labels;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct ResultsMetrics {
    deliveries: Family<Labels, Counter>,
    decisions: Family<Labels, Counter>,
    pending: Family<Labels, Gauge>,
    oldest_pending: Family<Labels, Gauge>,
    latency: Family<Labels, Histogram>,
}

impl Default for ResultsMetrics {
    fn default() -> Self {
        ResultsMetrics {
            deliveries: Family::default(),
            decisions: Family::default(),
            pending: Family::default(),
            oldest_pending: Family::default(),
            // 50 ms .. ~14 h: a destination down for hours still lands in a bucket.
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.05, 2.5, 14))
            }),
        }
    }
}

fn dest(d: &str) -> Labels {
    vec![("destination", d.to_string())]
}

impl ResultsMetrics {
    pub fn register(&self, reg: &mut Registry) {
        let reg = reg.sub_registry_with_prefix("cxrflow_results");
        reg.register(
            "deliveries",
            "Delivery attempts per destination and outcome (delivered, refused, retried)",
            self.deliveries.clone(),
        );
        reg.register(
            "decisions",
            "Triage decisions read, by what was done (queued, duplicate, skipped_<why>)",
            self.decisions.clone(),
        );
        reg.register(
            "pending_deliveries",
            "Deliveries queued and not yet delivered, per destination",
            self.pending.clone(),
        );
        reg.register(
            "oldest_pending_age_seconds",
            "Age of the oldest pending delivery per destination (0 when none)",
            self.oldest_pending.clone(),
        );
        reg.register(
            "delivery_latency_seconds",
            "From queued to delivered, per destination",
            self.latency.clone(),
        );
        // Series exist from the start, so alerts and dashboards see zeros, not gaps.
        for d in ["dicom", "stow", "fhir"] {
            for o in ["delivered", "refused", "retried"] {
                let _ = self.outcome(d, o);
            }
        }
    }

    fn outcome(&self, destination: &str, outcome: &str) -> Counter {
        let mut l = dest(destination);
        l.push(("outcome", outcome.to_string()));
        self.deliveries.get_or_create(&l).clone()
    }

    pub fn decision(&self, action: &str) {
        self.decisions
            .get_or_create(&vec![("action", action.to_string())])
            .inc();
    }

    pub fn queue(&self, destination: &str, pending: usize, oldest_age_s: f64) {
        self.pending
            .get_or_create(&dest(destination))
            .set(pending as i64);
        self.oldest_pending
            .get_or_create(&dest(destination))
            .set(oldest_age_s.round() as i64);
    }

    pub fn delivered(&self, destination: &str, key: &str, latency_s: f64) {
        self.outcome(destination, "delivered").inc();
        self.latency
            .get_or_create(&dest(destination))
            .observe(latency_s);
        tracing::info!(destination, key, latency_s, "result delivered");
    }

    pub fn retried(&self, destination: &str, key: &str, why: &str, retry_in_ms: u128) {
        self.outcome(destination, "retried").inc();
        tracing::warn!(
            destination,
            key,
            why,
            retry_in_ms,
            "destination unavailable; retrying"
        );
    }

    pub fn refused(&self, destination: &str, key: &str, answer: &str) {
        self.outcome(destination, "refused").inc();
        tracing::error!(
            destination,
            key,
            answer,
            "destination refused the result; dead-lettered"
        );
    }
}
