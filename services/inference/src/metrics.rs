//! The inference service's own metrics, beside the stage runtime's, and the notable events that
//! log and count together.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::placement::ProviderVerdict;

pub type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct InferenceMetrics {
    pub batch_size: Histogram,
    pub session_run_seconds: Histogram,
    pub predictions: Family<Labels, Counter>,
    pub provider_info: Family<Labels, Gauge>,
    pub provider_nodes: Family<Labels, Gauge>,
    pub nan_outputs: Family<Labels, Counter>,
    pub out_of_distribution: Family<Labels, Counter>,
    pub looks_lateral: Family<Labels, Counter>,
    pub model_loads: Family<Labels, Counter>,
    pub rollouts: Family<Labels, Counter>,
    pub auto_rollbacks: Family<Labels, Counter>,
    pub drift_alerts: Family<Labels, Counter>,
}

impl Default for InferenceMetrics {
    fn default() -> Self {
        InferenceMetrics {
            batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 8)),
            session_run_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            predictions: Family::default(),
            provider_info: Family::default(),
            provider_nodes: Family::default(),
            nan_outputs: Family::default(),
            out_of_distribution: Family::default(),
            looks_lateral: Family::default(),
            model_loads: Family::default(),
            rollouts: Family::default(),
            auto_rollbacks: Family::default(),
            drift_alerts: Family::default(),
        }
    }
}

impl InferenceMetrics {
    /// Registers under `cxrflow_inference_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cxrflow_inference");
        r.register(
            "batch_size",
            "Images per model call",
            self.batch_size.clone(),
        );
        r.register(
            "session_run_seconds",
            "Wall time of one model call",
            self.session_run_seconds.clone(),
        );
        r.register(
            "predictions",
            "Predictions published, by model version and role",
            self.predictions.clone(),
        );
        r.register(
            "execution_provider_info",
            "1 for each loaded model version with the execution provider proven to run it: CUDA or CPU only when every compute node ran there, else mixed",
            self.provider_info.clone(),
        );
        r.register(
            "execution_provider_nodes",
            "Compute nodes of each loaded model version's graph, by the execution provider that ran them (profiled at load)",
            self.provider_nodes.clone(),
        );
        r.register(
            "nan_outputs",
            "Images whose model output was NaN or infinite, by version",
            self.nan_outputs.clone(),
        );
        r.register(
            "out_of_distribution_images",
            "Images unlike the model's training data (OOD gate), published not assessable, by version",
            self.out_of_distribution.clone(),
        );
        r.register(
            "looks_lateral_images",
            "Films with no view position that look lateral (the OOD gate's lateral reference), published not assessable, by version",
            self.looks_lateral.clone(),
        );
        r.register(
            "model_loads",
            "Model versions loaded, by outcome",
            self.model_loads.clone(),
        );
        r.register(
            "rollout_decisions",
            "Rollout decisions applied, by who decided",
            self.rollouts.clone(),
        );
        r.register(
            "auto_rollbacks",
            "Candidates withdrawn by an automatic rollback rule, by rule and outcome",
            self.auto_rollbacks.clone(),
        );
        r.register(
            "drift_alerts",
            "Drift alerts read from cxr.drift.v1, by what the rollback rule did with them",
            self.drift_alerts.clone(),
        );
    }

    pub fn batch(&self, size: usize, seconds: f64) {
        self.batch_size.observe(size as f64);
        self.session_run_seconds.observe(seconds);
    }

    pub fn predicted(&self, model: &str, version: &str, role: &str) {
        self.predictions
            .get_or_create(&vec![
                ("model", model.into()),
                ("version", version.into()),
                ("role", role.into()),
            ])
            .inc();
    }

    /// A model version was loaded and proven to run on `placement.provider`.
    pub fn model_loaded(
        &self,
        model: &str,
        version: &str,
        placement: &ProviderVerdict,
        device: &str,
        precision: &str,
    ) {
        let provider = placement.provider.as_str();
        tracing::info!(
            model,
            version,
            provider,
            nodes = ?placement.nodes,
            device,
            precision,
            "model version loaded"
        );
        for (p, n) in &placement.nodes {
            self.provider_nodes
                .get_or_create(&vec![
                    ("model", model.into()),
                    ("version", version.into()),
                    ("provider", p.clone()),
                ])
                .set(*n as i64);
        }
        self.model_loads
            .get_or_create(&vec![("outcome", "ok".into())])
            .inc();
        self.provider_info
            .get_or_create(&vec![
                ("model", model.into()),
                ("version", version.into()),
                ("provider", provider.into()),
            ])
            .set(1);
    }

    pub fn model_load_failed(&self, model: &str, version: &str, error: &str) {
        tracing::error!(model, version, error, "model version failed to load");
        self.model_loads
            .get_or_create(&vec![("outcome", "error".into())])
            .inc();
    }

    pub fn model_unloaded(&self, model: &str, version: &str, placement: &ProviderVerdict) {
        tracing::info!(model, version, "model version unloaded");
        let provider = placement.provider.as_str();
        for p in placement.nodes.keys() {
            self.provider_nodes
                .get_or_create(&vec![
                    ("model", model.into()),
                    ("version", version.into()),
                    ("provider", p.clone()),
                ])
                .set(0);
        }
        self.provider_info
            .get_or_create(&vec![
                ("model", model.into()),
                ("version", version.into()),
                ("provider", provider.into()),
            ])
            .set(0);
    }

    pub fn nan_output(&self, model: &str, version: &str, study: &str) {
        tracing::warn!(model, version, study, "model output is NaN or infinite");
        self.nan_outputs
            .get_or_create(&vec![("model", model.into()), ("version", version.into())])
            .inc();
    }

    /// An image failed the OOD gate: its scores are kept for audit, never used for ranking.
    pub fn out_of_distribution(&self, model: &str, version: &str, study: &str, relative: f64) {
        tracing::info!(
            model,
            version,
            study,
            relative,
            "image unlike the training data: published not assessable"
        );
        self.out_of_distribution
            .get_or_create(&vec![("model", model.into()), ("version", version.into())])
            .inc();
    }

    /// An image the OOD gate could not judge (no statistics, a non-finite embedding): refused,
    /// counted with the out-of-distribution images.
    pub fn ood_unjudged(&self, model: &str, version: &str, study: &str) {
        tracing::warn!(
            model,
            version,
            study,
            "the OOD gate could not judge the image (features missing or not the reference's): published not assessable"
        );
        self.out_of_distribution
            .get_or_create(&vec![("model", model.into()), ("version", version.into())])
            .inc();
    }

    pub fn looks_lateral(&self, model: &str, version: &str, study: &str, ratio: f64) {
        tracing::info!(
            model,
            version,
            study,
            ratio,
            "no view position and the image looks lateral: published not assessable"
        );
        self.looks_lateral
            .get_or_create(&vec![("model", model.into()), ("version", version.into())])
            .inc();
    }

    pub fn rollout_applied(
        &self,
        decided_by: &str,
        revision: i64,
        production: &str,
        candidates: &str,
    ) {
        tracing::info!(
            decided_by,
            revision,
            production,
            candidates,
            "model rollout applied"
        );
        let by = if decided_by == crate::rollout::AUTO_ROLLBACK {
            "auto-rollback"
        } else {
            "operator"
        };
        self.rollouts
            .get_or_create(&vec![("decided_by", by.into())])
            .inc();
    }

    /// An automatic rule tripped for candidate `version`; `outcome` is `published`, `duplicate`
    /// (already withdrawn elsewhere) or `unpublished` (withdrawn here only).
    pub fn auto_rollback(&self, version: &str, rule: &str, outcome: &str, reason: &str) {
        tracing::warn!(
            version,
            rule,
            outcome,
            reason,
            "automatic rollback of a candidate"
        );
        self.auto_rollbacks
            .get_or_create(&vec![("rule", rule.into()), ("outcome", outcome.into())])
            .inc();
    }

    /// A drift alert was read; `effect` is `rollback` or `ignored`.
    pub fn drift_alert(&self, effect: &str) {
        self.drift_alerts
            .get_or_create(&vec![("effect", effect.into())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::placement::{serving_provider, NodePlacement};
    use crate::session::{CPU_PROVIDER, CUDA_PROVIDER};

    fn exposition(m: &InferenceMetrics) -> String {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn a_split_graph_is_labelled_mixed_with_its_nodes_counted_per_provider() {
        let m = InferenceMetrics::default();
        let node = |name: &str, op: &str, provider: &str| NodePlacement {
            node: name.into(),
            op_type: op.into(),
            provider: provider.into(),
        };
        let verdict = serving_provider(
            &[
                node("conv0", "Conv", CUDA_PROVIDER),
                node("conv1", "Conv", CUDA_PROVIDER),
                node("odd", "NonZero", CPU_PROVIDER),
            ],
            CUDA_PROVIDER,
        );
        m.model_loaded("m", "1.0.0", &verdict, "cuda:0", "fp32");
        let text = exposition(&m);
        assert!(
            text.contains(
                r#"cxrflow_inference_execution_provider_info{model="m",version="1.0.0",provider="mixed"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"cxrflow_inference_execution_provider_nodes{model="m",version="1.0.0",provider="CUDAExecutionProvider"} 2"#), "{text}");
        assert!(text.contains(r#"cxrflow_inference_execution_provider_nodes{model="m",version="1.0.0",provider="CPUExecutionProvider"} 1"#), "{text}");
        m.model_unloaded("m", "1.0.0", &verdict);
        let text = exposition(&m);
        assert!(text.contains(r#"cxrflow_inference_execution_provider_nodes{model="m",version="1.0.0",provider="CUDAExecutionProvider"} 0"#), "{text}");
    }
}
