//! Model rollout on the compacted `cxr.models.v1` topic (key = model name): which version is in
//! production and which candidates run as canary (serving a fraction of studies) or shadow
//! (scored and published with role SHADOW, never served). Promote, rollback and staging a
//! candidate are records on that topic, so every replica and the audit trail agree; replicas
//! apply the record with the highest `revision` for their model.
//!
//! Canary and shadow sampling use a stable hash of the study UID ([`study_bucket`]): a study
//! always falls into the same bucket, so it never flips between versions across replicas,
//! replays or restarts.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cxrflow_common::kafka::{read_to_end, Producer, ReadError};
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{topics, CandidateVersion, Codec, ModelRole, ModelRollout};
use rdkafka::message::Message;

use crate::manifest::{ManifestError, ModelDir};
pub use crate::rules::CanaryGuard;

/// `decided_by` of rollouts published by the automatic canary rule.
pub const AUTO_ROLLBACK: &str = "auto-rollback";

#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("producing the rollout: {0}")]
    Produce(#[from] cxrflow_common::kafka::ProduceError),
    #[error("codec: {0}")]
    Codec(#[from] cxrflow_contracts::CodecError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    Invalid(String),
}

/// A study's bucket in [0, 1): FNV-1a 64 of the UID bytes over 2^64. Fixed forever: changing it
/// would move studies between versions mid-rollout.
pub fn study_bucket(study_uid: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in study_uid.as_bytes() {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a study falls in a candidate's `fraction`.
pub fn in_fraction(study_uid: &str, fraction: f64) -> bool {
    study_bucket(study_uid) < fraction
}

/// The latest rollout record per model, reading the compacted topic from the beginning to its
/// current end (blocking; call from a blocking thread).
pub fn read_latest_blocking(
    kafka: &KafkaArgs,
    codec: &Codec,
) -> Result<HashMap<String, ModelRollout>, RolloutError> {
    let mut latest: HashMap<String, ModelRollout> = HashMap::new();
    read_to_end(kafka, topics::MODELS, Duration::from_secs(30), |m| {
        let Some(p) = m.payload() else { return };
        match codec.decode::<ModelRollout>(p) {
            Ok(r) => {
                if latest
                    .get(&r.model_name)
                    .is_none_or(|cur| r.revision > cur.revision)
                {
                    latest.insert(r.model_name.clone(), r);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, offset = m.offset(), "undecodable record on the models topic ignored")
            }
        }
    })?;
    Ok(latest)
}

/// The latest rollout of `model`, if any.
pub async fn read_latest(
    kafka: &KafkaArgs,
    codec: Arc<Codec>,
    model: &str,
) -> Result<Option<ModelRollout>, RolloutError> {
    let (k, c) = (kafka.clone(), codec);
    let all = tokio::task::spawn_blocking(move || read_latest_blocking(&k, &c))
        .await
        .map_err(|e| RolloutError::Invalid(e.to_string()))??;
    Ok(all.get(model).cloned())
}

async fn publish_next(
    kafka: &KafkaArgs,
    model: &str,
    by: &str,
    reason: &str,
    change: impl FnOnce(Option<&ModelRollout>) -> Result<(String, Vec<CandidateVersion>), RolloutError>,
) -> Result<ModelRollout, RolloutError> {
    let (codec, _) = cxrflow_common::registry::codec_for(kafka).await?;
    let current = read_latest(kafka, codec.clone(), model).await?;
    let (production_version, candidates) = change(current.as_ref())?;
    let rollout = ModelRollout {
        model_name: model.to_string(),
        revision: current.as_ref().map_or(1, |c| c.revision + 1),
        production_version,
        candidates,
        decided_by: by.to_string(),
        reason: reason.to_string(),
        decided_at: cxrflow_common::time::now_millis(),
    };
    publish(kafka, &codec, &rollout).await?;
    Ok(rollout)
}

/// Publishes a rollout record as it is.
pub async fn publish(
    kafka: &KafkaArgs,
    codec: &Codec,
    rollout: &ModelRollout,
) -> Result<(), RolloutError> {
    let producer = Producer::new(kafka)?;
    producer.send(codec, rollout, &Default::default()).await?;
    tracing::info!(model = %rollout.model_name, revision = rollout.revision, production = %rollout.production_version,
        decided_by = %rollout.decided_by, "rollout published");
    Ok(())
}

/// Makes `version` the production version of `model` (removing it from the candidates).
pub async fn promote(
    kafka: &KafkaArgs,
    model: &str,
    version: &str,
    by: &str,
    reason: &str,
) -> Result<ModelRollout, RolloutError> {
    publish_next(kafka, model, by, reason, |cur| {
        let candidates = cur
            .map(|c| {
                c.candidates
                    .iter()
                    .filter(|x| x.version != version)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        Ok((version.to_string(), candidates))
    })
    .await
}

/// Withdraws candidate `version` (canary or shadow) of `model`. Production itself is rolled
/// back by promoting the older version.
pub async fn rollback(
    kafka: &KafkaArgs,
    model: &str,
    version: &str,
    by: &str,
    reason: &str,
) -> Result<ModelRollout, RolloutError> {
    publish_next(kafka, model, by, reason, |cur| {
        let cur = cur.ok_or_else(|| {
            RolloutError::Invalid(format!("model {model} has no rollout record to roll back"))
        })?;
        if cur.production_version == version && !cur.candidates.iter().any(|c| c.version == version)
        {
            return Err(RolloutError::Invalid(format!(
                "{model}/{version} is in production; roll back by promoting the previous version"
            )));
        }
        if !cur.candidates.iter().any(|c| c.version == version) {
            return Err(RolloutError::Invalid(format!(
                "{model}/{version} is not a candidate"
            )));
        }
        let candidates = cur
            .candidates
            .iter()
            .filter(|c| c.version != version)
            .cloned()
            .collect();
        Ok((cur.production_version.clone(), candidates))
    })
    .await
}

/// Starts (or changes) a candidate: role CANARY serves `fraction` of studies, SHADOW scores
/// `fraction` of them. It replaces a candidate of the same version or role. The model must
/// already have a rollout record (promote its production version first).
pub async fn stage_candidate(
    kafka: &KafkaArgs,
    model: &str,
    candidate: CandidateVersion,
    by: &str,
    reason: &str,
) -> Result<ModelRollout, RolloutError> {
    if candidate.role == ModelRole::Production || !(0.0..=1.0).contains(&candidate.fraction) {
        return Err(RolloutError::Invalid(format!(
            "a candidate is CANARY or SHADOW with a fraction in [0, 1], got {:?} {}",
            candidate.role, candidate.fraction
        )));
    }
    publish_next(kafka, model, by, reason, |cur| {
        let cur = cur.ok_or_else(|| {
            RolloutError::Invalid(format!(
                "model {model} has no rollout record: promote its production version first"
            ))
        })?;
        let mut candidates: Vec<CandidateVersion> = cur
            .candidates
            .iter()
            .filter(|x| x.version != candidate.version && x.role != candidate.role)
            .cloned()
            .collect();
        candidates.push(candidate);
        Ok((cur.production_version.clone(), candidates))
    })
    .await
}

/// The role of a staged candidate (the CLI's `--role canary|shadow`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CandidateRole {
    /// Serves `fraction` of studies (by study UID hash) instead of production.
    Canary,
    /// Scores `fraction` of studies beside production, published with role SHADOW only.
    Shadow,
}

impl From<CandidateRole> for ModelRole {
    fn from(r: CandidateRole) -> ModelRole {
        match r {
            CandidateRole::Canary => ModelRole::Canary,
            CandidateRole::Shadow => ModelRole::Shadow,
        }
    }
}

/// Stages the model version in `model_dir` as a candidate: reads and validates its manifest
/// (name and version come from there) and publishes the decision with [`stage_candidate`].
/// The directory must follow the replicas' layout, `<models-dir>/<name>/<version>/`, so every
/// replica finds the version under its own `--models-dir`.
pub async fn stage_model_dir(
    kafka: &KafkaArgs,
    model_dir: &Path,
    role: CandidateRole,
    fraction: f64,
    by: &str,
    reason: &str,
) -> Result<ModelRollout, RolloutError> {
    let dir = ModelDir::load(model_dir)?;
    let (name, version) = (&dir.manifest.name, &dir.manifest.version);
    let abs = std::fs::canonicalize(model_dir).unwrap_or_else(|_| model_dir.to_path_buf());
    let tail: Vec<String> = abs
        .components()
        .rev()
        .take(2)
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if tail != [version.as_str(), name.as_str()] {
        return Err(RolloutError::Invalid(format!(
            "{} holds {name}/{version} but replicas load <models-dir>/{name}/{version}/: move it there first",
            model_dir.display()
        )));
    }
    let candidate = CandidateVersion {
        version: version.clone(),
        role: role.into(),
        fraction,
    };
    stage_candidate(kafka, name, candidate, by, reason).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn study_buckets_are_stable_and_spread() {
        // Pinned values: a change here moves live studies between model versions. Computed
        // outside this code, in Python: FNV-1a 64 from the spec (offset basis
        // 14695981039346656037, prime 2**40 + 2**8 + 0xb3, checked against the spec's test
        // vectors "" -> 0xcbf29ce484222325, "a" -> 0xaf63dc4c8601ec8c, "foobar" ->
        // 0x85944171f73967e8) over the UID's UTF-8 bytes, then (h >> 11) / 2**53; the literals
        // are Python's repr of those floats (exact: 53-bit integers over a power of two).
        assert_eq!(study_bucket(""), 0.7966707284832713);
        assert_eq!(study_bucket("1.2.3"), 0.2761982476679756);
        assert_eq!(study_bucket("1.2.840.113619.2.1"), 0.046686341147258115);
        assert!(in_fraction("1.2.840.113619.2.1", 0.1));
        assert!(!in_fraction("1.2.3", 0.1));
        let inside = (0..10_000)
            .filter(|i| in_fraction(&format!("1.2.826.0.1.{i}"), 0.1))
            .count();
        assert!(
            (800..1200).contains(&inside),
            "about 10% of studies in a 0.1 canary: {inside}"
        );
        // A study in a 10% canary stays in when the canary grows to 50%.
        for i in 0..1000 {
            let uid = format!("2.25.{i}");
            if in_fraction(&uid, 0.1) {
                assert!(in_fraction(&uid, 0.5));
            }
        }
    }

    #[tokio::test]
    async fn staging_a_directory_outside_the_replicas_layout_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = crate::testmodel::TestModel::default()
            .write_dir(root.path(), "m", "2.0.0", "gray224-v1")
            .unwrap();
        // Filed under another model's name: replicas of `m` would never find it.
        let moved = root.path().join("other").join("2.0.0");
        std::fs::create_dir_all(moved.parent().unwrap()).unwrap();
        std::fs::rename(&dir, &moved).unwrap();
        // Refused before any broker is contacted.
        let kafka = KafkaArgs::for_bootstrap("127.0.0.1:1");
        let err = stage_model_dir(&kafka, &moved, CandidateRole::Canary, 0.1, "ops", "")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("<models-dir>/m/2.0.0/"), "{err}");
        let err = stage_model_dir(
            &kafka,
            &root.path().join("none"),
            CandidateRole::Shadow,
            1.0,
            "ops",
            "",
        )
        .await
        .unwrap_err();
        assert!(matches!(err, RolloutError::Manifest(_)), "{err}");
        assert_eq!(ModelRole::from(CandidateRole::Shadow), ModelRole::Shadow);
    }
}
