//! One `cxr.preprocessed.v1` record → its `cxr.predictions.v1` record(s).
//!
//! Delivery is the stage runtime's at-least-once (outputs acknowledged before the offset is
//! stored, in partition order, even though records finish out of order across micro-batches).
//! The catch: a replay re-scores a study and publishes a second, identical-keyed Prediction;
//! consumers are idempotent by study key. Poison: a profile id other than the model's
//! (`inference.profile_mismatch`), a tensor whose size is not the model's
//! (`inference.tensor_size`). A NaN/Inf output is not poison but a fact about the study: it is
//! published as a not-assessable prediction (`model.invalid_output`, counted and logged), so
//! triage lists the study for a person instead of losing it; the rest of its batch succeeds.
//! A failed model call is transient (retried, not committed).

use std::sync::Arc;
use std::time::{Duration, Instant};

use cxrflow_common::kafka::stage::{Inbound, Outbound, Processor, StageError};
use cxrflow_common::time::now_millis;
use cxrflow_contracts::view::View;
use cxrflow_contracts::{Codec, FindingScore, ModelRole, Prediction, PreprocessedImage};

use crate::manifest::FindingTier;

use crate::auto_rollback::{AutoRollback, Outcome};
use crate::batcher::BatchInfo;
use crate::error::InferenceError;
use crate::metrics::InferenceMetrics;
use crate::ood::Judgement;
use crate::registry::{LoadedModel, ModelRegistry, Row};
use crate::rollout;

pub struct InferenceProcessor {
    pub codec: Arc<Codec>,
    pub registry: Arc<ModelRegistry>,
    pub metrics: InferenceMetrics,
    /// The candidates' automatic rollback rules, fed with every candidate outcome.
    pub auto: Arc<AutoRollback>,
}

type Scored = Result<Result<Prediction, String>, InferenceError>;

fn outcome(s: &Scored) -> Outcome {
    match s {
        Ok(Ok(p)) => Outcome::Served(Duration::from_secs_f64(p.inference_ms.max(0.0) / 1e3)),
        _ => Outcome::Failed,
    }
}

fn role_name(r: ModelRole) -> &'static str {
    match r {
        ModelRole::Production => "PRODUCTION",
        ModelRole::Canary => "CANARY",
        ModelRole::Shadow => "SHADOW",
    }
}

fn prediction(img: &PreprocessedImage, model: &LoadedModel, role: ModelRole) -> Prediction {
    Prediction {
        study: img.study.clone(),
        blob_uri: img.blob_uri.clone(),
        model_name: model.name().to_string(),
        model_version: model.version().to_string(),
        model_role: role,
        execution_provider: model.session.provider.clone(),
        assessable: false,
        findings: vec![],
        batch_size: 0,
        inference_ms: 0.0,
        predicted_at: now_millis(),
        embedding: None,
        // Drift's input channel reads the image statistics from here, not from the tensors. An
        // image refused before decoding has none.
        input_stats: (!img.pixels.is_empty()).then(|| img.stats.clone()),
        not_assessable_reason: None,
        not_assessable_code: None,
        ood_distance: None,
    }
}

impl InferenceProcessor {
    /// Scores one image with `model`: `Ok(Ok(prediction))`, `Ok(Err(why))` for a NaN/Inf output
    /// (published as a not-assessable prediction, not dead-lettered), `Err` for a session
    /// failure (transient).
    async fn score(
        &self,
        img: &PreprocessedImage,
        model: &Arc<LoadedModel>,
        role: ModelRole,
    ) -> Scored {
        let started = Instant::now();
        let (row, info): (Row, BatchInfo) = model.batcher.submit(img.pixels.clone()).await?;
        if let Some((k, v)) = row
            .probabilities
            .iter()
            .enumerate()
            .find(|(_, p)| !p.is_finite())
        {
            self.metrics
                .nan_output(model.name(), model.version(), &img.study.study_instance_uid);
            return Ok(Err(format!(
                "{}/{} output for {:?} is {v}",
                model.name(),
                model.version(),
                cxrflow_contracts::FINDINGS[k]
            )));
        }
        let manifest = &model.session.model.manifest;
        let mut p = prediction(img, model, role);
        p.assessable = true;
        p.findings = manifest
            .findings
            .iter()
            .zip(row.probabilities)
            .map(|(f, prob)| FindingScore {
                finding: f.name.clone(),
                probability: prob as f64,
                threshold: f.threshold,
                critical: f.tier() == FindingTier::Critical,
                urgent: f.tier() == FindingTier::Urgent,
            })
            .collect();
        p.batch_size = info.size as i32;
        p.inference_ms = started.elapsed().as_secs_f64() * 1e3;
        p.embedding = row
            .features
            .as_deref()
            .filter(|f| f.iter().all(|x| x.is_finite()))
            .map(|f| model.embed(f));
        // The OOD gate: a score is trusted only for an image like the training data. The
        // scores stay on the record for audit; triage does not rank a non-assessable one.
        // A film whose view nothing names (no View Position, view code or orientation in its
        // header, none in its scan event) is also asked whether it looks lateral: the model
        // reads frontal films only. An image the gate cannot judge is refused, not scored.
        if let Some(reference) = &manifest.ood {
            let x = crate::ood::features(&img.stats, p.embedding.as_deref());
            let named = View::classify(img.study.view_position.as_deref()) != View::Unknown;
            let judgement = crate::ood::judge(reference, x.as_deref(), named);
            p.ood_distance = judgement.relative();
            let (name, version, uid) =
                (model.name(), model.version(), &img.study.study_instance_uid);
            match judgement {
                Judgement::Passed { .. } => {}
                Judgement::Distant { relative } => self
                    .metrics
                    .out_of_distribution(name, version, uid, relative),
                Judgement::LooksLateral { ratio, .. } => {
                    self.metrics.looks_lateral(name, version, uid, ratio)
                }
                Judgement::Unjudged => self.metrics.ood_unjudged(name, version, uid),
            }
            if let Some((code, reason)) = judgement.refusal() {
                p.assessable = false;
                p.not_assessable_code = Some(code.into());
                p.not_assessable_reason = Some(reason);
            }
        }
        self.metrics
            .predicted(model.name(), model.version(), role_name(role));
        Ok(Ok(p))
    }
}

impl Processor for InferenceProcessor {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        let img: PreprocessedImage = msg.decode(&self.codec)?;
        let uid = img.study.study_instance_uid.clone();
        let serving = self.registry.serving();
        let prod = &serving.production;
        let manifest = &prod.session.model.manifest;
        if img.profile_id != manifest.preprocessing.profile_id {
            return Err(StageError::from(InferenceError::ProfileMismatch {
                record: img.profile_id,
                model: manifest.name.clone(),
                version: manifest.version.clone(),
                needs: manifest.preprocessing.profile_id.clone(),
            })
            .for_study(&uid));
        }
        if !img.assessable {
            self.metrics
                .predicted(prod.name(), prod.version(), "PRODUCTION");
            let mut p = prediction(&img, prod, ModelRole::Production);
            p.not_assessable_reason = img.not_assessable_reason.clone();
            p.not_assessable_code = img.not_assessable_code.clone();
            return Ok(vec![Outbound::record(&self.codec, &p)?]);
        }
        let want = manifest.input_len();
        let dims_ok = (img.width, img.height, img.channels)
            == (
                manifest.input.width as i32,
                manifest.input.height as i32,
                manifest.input.channels as i32,
            );
        if !dims_ok || img.pixels.len() != want {
            return Err(StageError::from(InferenceError::TensorSize {
                width: img.width,
                height: img.height,
                channels: img.channels,
                bytes: img.pixels.len(),
                model: manifest.name.clone(),
                version: manifest.version.clone(),
                want_width: manifest.input.width,
                want_height: manifest.input.height,
                want_channels: manifest.input.channels,
                want,
            })
            .for_study(&uid));
        }
        let (model, role) = match &serving.canary {
            Some((c, f)) if rollout::in_fraction(&uid, *f) => (c.clone(), ModelRole::Canary),
            _ => (prod.clone(), ModelRole::Production),
        };
        let shadow = serving
            .shadow
            .as_ref()
            .filter(|(_, f)| rollout::in_fraction(&uid, *f))
            .map(|(s, _)| s.clone());
        let (main, shadow) = match &shadow {
            Some(s) => {
                let (a, b) = tokio::join!(
                    self.score(&img, &model, role),
                    self.score(&img, s, ModelRole::Shadow)
                );
                self.auto
                    .observe(ModelRole::Shadow, s.version(), outcome(&b));
                (a, Some(b))
            }
            None => (self.score(&img, &model, role).await, None),
        };
        self.auto.observe(role, model.version(), outcome(&main));
        let main = match main? {
            Ok(p) => p,
            Err(e) => {
                // Published, not dropped: the study stays on the worklist, unranked, with why.
                tracing::warn!(study = %uid, error = %e, "model output not finite: published as not assessable");
                let mut p = prediction(&img, &model, role);
                p.not_assessable_code = Some("model.invalid_output".into());
                p.not_assessable_reason =
                    Some("model output invalid (non-finite probabilities)".into());
                p
            }
        };
        let mut out = vec![Outbound::record(&self.codec, &main)?];
        match shadow {
            Some(Ok(Ok(p))) => out.push(Outbound::record(&self.codec, &p)?),
            // A shadow's failure never affects the record; it is counted and logged only.
            Some(Ok(Err(e))) => tracing::warn!(error = %e, "shadow model output not finite"),
            Some(Err(e)) => tracing::warn!(error = %e, "shadow model run failed"),
            None => {}
        }
        Ok(out)
    }
}
