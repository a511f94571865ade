//! Prometheus metrics of the stage runtime, and the notable events that log and count together
//! (one place per event, so the log line and the metric never disagree).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

pub type Labels = Vec<(&'static str, String)>;

/// Metrics every stage has, under `cxrflow_<service>_…`.
#[derive(Clone)]
pub struct StageMetrics {
    service: &'static str,
    consumed: Family<Labels, Counter>,
    produced: Family<Labels, Counter>,
    dead_lettered: Family<Labels, Counter>,
    transient_errors: Family<Labels, Counter>,
    processing_seconds: Histogram,
    pub(crate) consumer_lag: Family<Labels, Gauge>,
    in_flight: Gauge,
    assigned_partitions: Gauge,
    unowned_records: Gauge,
    consumer_recoveries: Family<Labels, Counter>,
}

impl StageMetrics {
    pub fn register(registry: &mut Registry, service: &'static str) -> Self {
        let m = StageMetrics {
            service,
            consumed: Family::default(),
            produced: Family::default(),
            dead_lettered: Family::default(),
            transient_errors: Family::default(),
            processing_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 18)),
            consumer_lag: Family::default(),
            in_flight: Gauge::default(),
            assigned_partitions: Gauge::default(),
            unowned_records: Gauge::default(),
            consumer_recoveries: Family::default(),
        };
        let r = registry.sub_registry_with_prefix(format!("cxrflow_{service}"));
        r.register(
            "consumed_records",
            "Records consumed, by topic",
            m.consumed.clone(),
        );
        r.register(
            "produced_records",
            "Records produced and acknowledged, by topic",
            m.produced.clone(),
        );
        r.register(
            "dead_lettered_records",
            "Records sent to the dead-letter topic, by reason",
            m.dead_lettered.clone(),
        );
        r.register(
            "transient_errors",
            "Transient failures retried (not committed), by kind",
            m.transient_errors.clone(),
        );
        r.register(
            "processing_seconds",
            "Time from a record's arrival to its outputs being acknowledged",
            m.processing_seconds.clone(),
        );
        r.register(
            "consumer_lag_records",
            "Records between the consumer's position and the partition end",
            m.consumer_lag.clone(),
        );
        r.register(
            "in_flight_records",
            "Records being processed now",
            m.in_flight.clone(),
        );
        r.register(
            "assigned_partitions",
            "Partitions this instance's consumer holds now",
            m.assigned_partitions.clone(),
        );
        r.register(
            "unowned_records",
            "Records past the group's committed offsets while this instance holds no partitions (probed only then; 0 while it holds some)",
            m.unowned_records.clone(),
        );
        r.register(
            "consumer_recoveries",
            "Ownership watchdog actions (rejoin, recreate, give_up) after holding no partitions while records waited",
            m.consumer_recoveries.clone(),
        );
        m
    }

    pub fn service(&self) -> &'static str {
        self.service
    }

    pub fn consumed(&self, topic: &str) {
        self.consumed
            .get_or_create(&vec![("topic", topic.to_string())])
            .inc();
    }

    pub fn produced(&self, topic: &str) {
        self.produced
            .get_or_create(&vec![("topic", topic.to_string())])
            .inc();
    }

    pub fn processed(&self, seconds: f64) {
        self.processing_seconds.observe(seconds);
    }

    pub fn in_flight(&self) -> &Gauge {
        &self.in_flight
    }

    pub fn assigned_partitions(&self) -> &Gauge {
        &self.assigned_partitions
    }

    pub fn unowned_records(&self) -> &Gauge {
        &self.unowned_records
    }

    /// The ownership watchdog acts: the consumer held no partitions for `stalled_for` while
    /// `pending` records waited and nobody committed.
    pub fn consumer_recovery(
        &self,
        action: &'static str,
        group: &str,
        pending: i64,
        stalled_for: std::time::Duration,
        attempt: usize,
    ) {
        tracing::warn!(
            service = self.service,
            group,
            action,
            pending,
            stalled_ms = stalled_for.as_millis() as u64,
            attempt,
            "consumer holds no partitions while records wait; recovering"
        );
        self.consumer_recoveries
            .get_or_create(&vec![("action", action.to_string())])
            .inc();
    }

    /// A revoked partition's lag is no longer this instance's to report.
    pub fn forget_lag(&self, topic: &str, partition: i32) {
        self.consumer_lag.remove(&vec![
            ("topic", topic.to_string()),
            ("partition", partition.to_string()),
        ]);
    }

    /// A record went to the dead-letter topic.
    pub fn dead_lettered(
        &self,
        reason: &str,
        error: &str,
        topic: &str,
        partition: i32,
        offset: i64,
        study: Option<&str>,
    ) {
        tracing::warn!(
            service = self.service,
            reason,
            error,
            topic,
            partition,
            offset,
            study = study.unwrap_or("-"),
            "record dead-lettered"
        );
        self.dead_lettered
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// A transient failure that will be retried without committing.
    pub fn transient(&self, kind: &str, error: &str, attempt: u32) {
        tracing::warn!(
            service = self.service,
            kind,
            error,
            attempt,
            "transient failure, retrying"
        );
        self.transient_errors
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc();
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
    }
    out
}
