//! The preprocess stage's per-record logic: `IngestedImage` → `PreprocessedImage`.
//!
//! Delivery guarantee: at-least-once, from the stage runtime (outputs acknowledged before the
//! offset is stored). The catch: a redelivered record is preprocessed again and produces a
//! second, identical `PreprocessedImage` under the same study key; inference and triage are
//! idempotent by that key. Poison (unreadable blob, undecodable image, checksum mismatch) is
//! dead-lettered with a specific reason; an unavailable blob store is transient and retried.

use std::sync::Arc;
use std::time::Instant;

use cxrflow_common::blob::{sha256_hex, BlobStore};
use cxrflow_common::time::now_millis;
use cxrflow_common::{Inbound, Outbound, Processor, StageError};
use cxrflow_contracts::{Codec, ImageStats, IngestedImage, PreprocessedImage, StudyContext};
use tracing::Instrument;

use crate::decode::{DecodeError, DecodeLimits};
use crate::eligibility::{DicomHeader, EligibilityRules};
use crate::error::PreprocessError;
use crate::gate::{GateDecision, View};
use crate::metrics::PreprocessMetrics;
use crate::pipeline::{panic_message, prepare_guarded, with_event_age, Gated, Prepared};
use crate::profile::Profile;

pub struct Preprocessor {
    pub codec: Arc<Codec>,
    pub blobs: BlobStore,
    pub profile: Profile,
    pub limits: DecodeLimits,
    pub eligibility: EligibilityRules,
    pub metrics: PreprocessMetrics,
}

enum Failure {
    Checksum { expected: String, found: String },
    Decode(DecodeError),
}

impl Preprocessor {
    /// Preprocesses one ingested image (without the Kafka envelope): the testable core.
    pub async fn preprocess(
        &self,
        rec: IngestedImage,
    ) -> Result<PreprocessedImage, PreprocessError> {
        let uid = rec.study.study_instance_uid.clone();
        let start = Instant::now();
        let bytes = self.blobs.get(&rec.blob_uri).await?;
        let (limits, profile, expected, rules, event_age) = (
            self.limits,
            self.profile,
            rec.sha256.to_ascii_lowercase(),
            self.eligibility.clone(),
            rec.study.patient_age_years,
        );
        let joined = tokio::task::spawn_blocking(move || {
            let found = sha256_hex(&bytes);
            if !expected.is_empty() && found != expected {
                return Err(Failure::Checksum { expected, found });
            }
            prepare_guarded(&bytes, &limits, profile, &rules)
                .map(|gated| with_event_age(gated, event_age, &rules))
                .map_err(Failure::Decode)
        })
        .await;
        let prepared: Prepared = match joined {
            Ok(Ok(Gated::Prepared(p))) => *p,
            Ok(Ok(Gated::Ineligible { header, why })) => {
                self.metrics.ineligible(&uid, why.code, &why.reason);
                let mut study = rec.study;
                self.header_wins(&mut study, &header);
                // Not decoded: no tensor and no statistics (drift must not learn from them).
                return Ok(PreprocessedImage {
                    study,
                    blob_uri: rec.blob_uri,
                    sha256: rec.sha256,
                    profile_id: profile.id().to_string(),
                    width: 0,
                    height: 0,
                    channels: profile.channels() as i32,
                    pixels: vec![],
                    frontal: false,
                    assessable: false,
                    not_assessable_reason: Some(why.reason),
                    stats: ImageStats {
                        mean: 0.0,
                        std: 0.0,
                        p01: 0.0,
                        p05: 0.0,
                        p50: 0.0,
                        p95: 0.0,
                        p99: 0.0,
                        histogram: vec![],
                        original_width: 0,
                        original_height: 0,
                        bits_stored: 0,
                        photometric: header.photometric.unwrap_or_default(),
                    },
                    preprocessed_at: now_millis(),
                    preprocess_ms: start.elapsed().as_secs_f64() * 1000.0,
                    not_assessable_code: Some(why.code.to_string()),
                });
            }
            Ok(Err(Failure::Checksum { expected, found })) => {
                return Err(PreprocessError::Checksum {
                    blob_uri: rec.blob_uri,
                    expected,
                    found,
                })
            }
            Ok(Err(Failure::Decode(source))) => {
                if let DecodeError::Panicked(what) = &source {
                    self.metrics.panicked(&uid, what);
                }
                return Err(PreprocessError::Decode {
                    blob_uri: rec.blob_uri,
                    media_type: rec.media_type,
                    source,
                });
            }
            Err(join) if join.is_panic() => {
                let what = panic_message(join.into_panic().as_ref());
                self.metrics.panicked(&uid, &what);
                return Err(PreprocessError::Panicked(what));
            }
            Err(join) => return Err(PreprocessError::DecodeTask(join)),
        };
        self.metrics.decoded(
            prepared.container.label(),
            &prepared.photometric,
            prepared.bits_stored,
            prepared.seconds,
        );

        let view = View::of(
            rec.study.view_position.as_deref(),
            prepared.view_position.as_deref(),
        );
        match view {
            View::Lateral => self.metrics.lateral(&uid),
            View::Unknown => self.metrics.view_unknown(&uid),
            View::Frontal => {}
        }
        let gate = GateDecision::from(view);
        let mut study = rec.study;
        if let Some(header) = &prepared.header {
            self.header_wins(&mut study, header);
        }
        // Neither the header nor the scan event gave an age (header_wins took the header's).
        if study.patient_age_years.is_none() {
            self.metrics.age_unknown(&uid);
        }
        if study
            .view_position
            .as_deref()
            .is_none_or(|v| v.trim().is_empty())
        {
            study.view_position = prepared.view_position.clone();
        }
        let side = profile.side() as i32;
        Ok(PreprocessedImage {
            study,
            blob_uri: rec.blob_uri,
            sha256: rec.sha256,
            profile_id: profile.id().to_string(),
            width: side,
            height: side,
            channels: profile.channels() as i32,
            pixels: prepared.tensor,
            frontal: gate.frontal,
            assessable: gate.assessable,
            not_assessable_reason: gate.not_assessable_reason,
            stats: prepared.stats,
            preprocessed_at: now_millis(),
            preprocess_ms: start.elapsed().as_secs_f64() * 1000.0,
            not_assessable_code: gate.not_assessable_code,
        })
    }

    /// The DICOM header wins over what the scan event claims: its modality and view position
    /// replace the event's, and each disagreement is counted and logged; its patient age
    /// replaces the event's without a word (an age is not logged).
    fn header_wins(&self, study: &mut StudyContext, header: &DicomHeader) {
        let uid = study.study_instance_uid.clone();
        if header.patient_age_years.is_some() {
            study.patient_age_years = header.patient_age_years;
        }
        if let Some(m) = header.modality.as_deref().map(str::to_ascii_uppercase) {
            if !study.modality.trim().eq_ignore_ascii_case(&m) {
                self.metrics
                    .disagreement(&uid, "modality", study.modality.trim(), &m);
                study.modality = m;
            }
        }
        if let (Some(event), Some(file)) = (
            study.view_position.as_deref().map(str::trim),
            header.view_position.as_deref().map(str::trim),
        ) {
            let (e, f) = (View::classify(Some(event)), View::classify(Some(file)));
            if e != f && f != View::Unknown {
                self.metrics
                    .disagreement(&uid, "view_position", event, file);
                study.view_position = Some(file.to_ascii_uppercase());
            }
        }
    }
}

impl Processor for Preprocessor {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        let rec: IngestedImage = msg.decode(&self.codec)?;
        let uid = rec.study.study_instance_uid.clone();
        let span = tracing::debug_span!("preprocess", study = %uid);
        let out = self
            .preprocess(rec)
            .instrument(span)
            .await
            .map_err(|e| StageError::from(e).for_study(&uid))?;
        Ok(vec![
            Outbound::record(&self.codec, &out).map_err(|e| e.for_study(&uid))?
        ])
    }
}
