//! Automatic rollback: the [`crate::rules`] fed with this replica's evidence (each candidate's
//! outcomes and latencies, drift alerts on `cxr.drift.v1`) and, when one trips, the candidate
//! withdrawn: at once on this replica, then as a decision on the compacted `cxr.models.v1`
//! (`decided_by = auto-rollback`, the rule and its evidence in `reason`), which every replica
//! and the audit trail follow.
//!
//! Delivery of `cxr.drift.v1`: every replica reads every alert from the beginning of the topic
//! with a throwaway group and commits nothing, so no alert is missed across restarts. The
//! catch: alerts are re-read and several replicas act on one alert. Both are harmless: an alert
//! raised before its candidate was staged is ignored, a candidate no longer serving is not
//! withdrawn twice, and a rollback of a version that is no longer a candidate on the topic
//! publishes nothing.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{topics, Codec, DriftAlert, ModelRole, ModelRollout};
use tokio_util::sync::CancellationToken;

use crate::metrics::InferenceMetrics;
use crate::registry::ModelRegistry;
use crate::rollout::{self, RolloutError, AUTO_ROLLBACK};
use crate::rules::{CanaryGuard, DriftRule, LatencyRule};

/// The rules' settings (from [`crate::Config`]).
#[derive(Debug, Clone, Copy)]
pub struct RuleSettings {
    pub bad_rate_window: Duration,
    pub max_bad_rate: f64,
    pub min_samples: usize,
    /// Zero disables the latency rule.
    pub p99_bound: Duration,
    pub p99_window: Duration,
    pub p99_sustain: Duration,
    pub drift: DriftRule,
}

/// What one record told about the version that scored it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// A finite prediction, this long after the record reached the model's batcher.
    Served(Duration),
    /// A NaN/Inf output or a failed model call.
    Failed,
}

pub struct AutoRollback {
    registry: Arc<ModelRegistry>,
    kafka: KafkaArgs,
    metrics: InferenceMetrics,
    settings: RuleSettings,
    bad_rate: Mutex<CanaryGuard>,
    latency: Mutex<LatencyRule>,
    /// One withdrawal at a time, so each reads the decision the previous one published.
    deciding: tokio::sync::Mutex<()>,
}

/// Publishing attempts of one withdrawal before it stays local to this replica.
const PUBLISH_ATTEMPTS: u32 = 5;

impl AutoRollback {
    pub fn new(
        registry: Arc<ModelRegistry>,
        kafka: KafkaArgs,
        metrics: InferenceMetrics,
        settings: RuleSettings,
    ) -> Arc<Self> {
        Arc::new(AutoRollback {
            bad_rate: Mutex::new(CanaryGuard::new(
                settings.bad_rate_window,
                settings.max_bad_rate,
                settings.min_samples,
            )),
            latency: Mutex::new(LatencyRule::new(
                settings.p99_bound,
                settings.p99_window,
                settings.p99_sustain,
                settings.min_samples as u64,
            )),
            registry,
            kafka,
            metrics,
            settings,
            deciding: tokio::sync::Mutex::new(()),
        })
    }

    /// Feeds one record's outcome for the version that scored it in `role`. A tripped rule
    /// withdraws the candidate in the background (the record itself is not held up).
    pub fn observe(self: &Arc<Self>, role: ModelRole, version: &str, outcome: Outcome) {
        if role == ModelRole::Production {
            return;
        }
        let now = Instant::now();
        let mut trips = Vec::new();
        if role == ModelRole::Canary {
            let bad = outcome == Outcome::Failed;
            let rate = self
                .bad_rate
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record(version, bad, now);
            if let Some(rate) = rate {
                trips.push((
                    "error_rate",
                    format!(
                        "canary {version}: NaN/error rate {rate:.3} above {:.3} over the last {}s",
                        self.settings.max_bad_rate,
                        self.settings.bad_rate_window.as_secs()
                    ),
                ));
            }
        }
        if let Outcome::Served(latency) = outcome {
            let mut rule = self.latency.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(b) = rule.record(version, latency, now) {
                trips.push((
                    "p99_latency",
                    format!(
                        "{role:?} {version}: p99 latency {:.1} ms above {:.1} ms for {:.0}s ({} records in the last {}s)",
                        b.p99.as_secs_f64() * 1e3,
                        self.settings.p99_bound.as_secs_f64() * 1e3,
                        b.above_for.as_secs_f64(),
                        b.samples,
                        self.settings.p99_window.as_secs()
                    ),
                ));
            }
        }
        for (rule, reason) in trips {
            let (me, version) = (self.clone(), version.to_string());
            tokio::spawn(async move { me.withdraw(&version, rule, reason).await });
        }
    }

    /// Applies the drift rule to one alert; the decision published, if it withdrew a candidate.
    pub async fn on_drift_alert(&self, alert: &DriftAlert) -> Option<ModelRollout> {
        let candidates = self.registry.serving().candidates();
        let Some((c, reason)) =
            self.settings
                .drift
                .target(alert, self.registry.name(), &candidates)
        else {
            self.metrics.drift_alert("ignored");
            return None;
        };
        self.metrics.drift_alert("rollback");
        self.withdraw(&c.version, "drift", reason).await
    }

    /// Withdraws candidate `version`: stops serving it here at once, then publishes the
    /// rollback on `cxr.models.v1` (retrying a broker failure) and applies that decision.
    pub async fn withdraw(
        &self,
        version: &str,
        rule: &str,
        reason: String,
    ) -> Option<ModelRollout> {
        let _one = self.deciding.lock().await;
        if !self.registry.withdraw_local(version) {
            return None;
        }
        let model = self.registry.name().to_string();
        let why = format!("{rule}: {reason}");
        let mut delay = Duration::from_millis(200);
        for attempt in 1..=PUBLISH_ATTEMPTS {
            match rollout::rollback(&self.kafka, &model, version, AUTO_ROLLBACK, &why).await {
                Ok(r) => {
                    self.metrics
                        .auto_rollback(version, rule, "published", &reason);
                    self.registry.apply(&r).await;
                    let serving = self.registry.serving();
                    self.latency
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .retain(&serving.versions());
                    return Some(r);
                }
                Err(RolloutError::Invalid(e)) => {
                    // No longer a candidate on the topic: another replica or an operator
                    // withdrew it first.
                    tracing::info!(version, error = %e, "candidate already withdrawn on the models topic");
                    self.metrics
                        .auto_rollback(version, rule, "duplicate", &reason);
                    return None;
                }
                Err(e) if attempt < PUBLISH_ATTEMPTS => {
                    tracing::warn!(version, attempt, error = %e, "publishing the automatic rollback failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(e) => {
                    tracing::error!(version, error = %e, "automatic rollback applied on this replica only");
                    self.metrics
                        .auto_rollback(version, rule, "unpublished", &reason);
                }
            }
        }
        None
    }
}

/// Follows `cxr.drift.v1` from the beginning (a throwaway group: every replica reads every
/// alert) and hands each alert to the drift rule.
pub async fn follow_drift(
    kafka: KafkaArgs,
    codec: Arc<Codec>,
    auto: Arc<AutoRollback>,
    shutdown: CancellationToken,
) {
    cxrflow_common::kafka::follow(
        kafka,
        &codec,
        topics::DRIFT,
        "cxrflow-inference-drift",
        shutdown,
        |a: DriftAlert| {
            let auto = auto.clone();
            async move {
                auto.on_drift_alert(&a).await;
            }
        },
    )
    .await
}
