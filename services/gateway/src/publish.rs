//! From a received instance to an acknowledged scan event, shared by both front doors.
//!
//! Delivery: the Part-10 file is written once to the blob store under its sha256, then the
//! `cxr.scan.v1` event that references it is produced with acks=all and the broker's
//! acknowledgement is awaited. Only then does the caller answer "stored" to the sender. The
//! catch: a crash between the acknowledgement and the answer makes the sender resend, which
//! publishes a second event for the same SOP instance UID; ingest deduplicates on that UID, so
//! downstream sees one. The blob write itself is idempotent (content address).
//!
//! A producer that keeps failing is replaced: librdkafka's idempotent producer can enter a
//! state it never leaves (a fatal error, or a broker that refuses the epoch bump after a timed
//! out in-flight message, as the embedded broker does), and a front door that answers "out of
//! resources" forever is worse than a fresh client. Instances whose events were pending on the
//! old producer are answered with a failure and resent.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use bytes::Bytes;
use cxrflow_common::blob::BlobStore;
use cxrflow_common::kafka::Producer;
use cxrflow_common::telemetry;
use cxrflow_common::time::now_millis;
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::{Codec, ScanEvent, StudyContext};

use crate::error::InstanceError;
use crate::instance::{modality_of, InstanceMeta};
use crate::metrics::{GatewayMetrics, Protocol};
use crate::pseudonym::Pseudonymizer;

/// 1990-01-01T00:00:00Z: ingest refuses earlier acquisition times as a broken clock.
const EARLIEST_PLAUSIBLE_MS: i64 = 631_152_000_000;
/// Ingest refuses acquisition times further ahead than this.
const MAX_FUTURE_SKEW_MS: i64 = 24 * 60 * 60 * 1000;

pub const MEDIA_TYPE: &str = "application/dicom";

/// Where a published instance went.
#[derive(Debug, Clone)]
pub struct Published {
    pub event_id: String,
    pub blob_uri: String,
    pub sha256: String,
}

/// Consecutive failed deliveries after which the producer is rebuilt.
pub const REBUILD_AFTER_FAILURES: u32 = 3;

pub struct Publisher {
    blobs: BlobStore,
    producer: RwLock<Producer>,
    kafka: KafkaArgs,
    failures: AtomicU32,
    codec: Arc<Codec>,
    pseudonyms: Pseudonymizer,
    pub(crate) metrics: GatewayMetrics,
    site: Site,
}

/// The site a gateway serves: its id on every scan event, and the zone its modality clocks
/// keep (`--gateway-timezone`).
#[derive(Debug, Clone, PartialEq)]
pub struct Site {
    pub id: String,
    pub zone: chrono_tz::Tz,
}

impl Publisher {
    pub fn new(
        blobs: BlobStore,
        producer: Producer,
        kafka: KafkaArgs,
        codec: Arc<Codec>,
        pseudonyms: Pseudonymizer,
        metrics: GatewayMetrics,
        site: Site,
    ) -> Self {
        Publisher {
            blobs,
            producer: RwLock::new(producer),
            kafka,
            failures: AtomicU32::new(0),
            codec,
            pseudonyms,
            metrics,
            site,
        }
    }

    fn producer(&self) -> Producer {
        self.producer
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Counts a delivery outcome; replaces the producer after too many failures in a row.
    fn delivered(&self, ok: bool, error: &str) {
        if ok {
            self.failures.store(0, Ordering::Relaxed);
            return;
        }
        let failures = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        if failures < REBUILD_AFTER_FAILURES {
            return;
        }
        match Producer::new(&self.kafka) {
            Ok(fresh) => {
                *self
                    .producer
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
                self.failures.store(0, Ordering::Relaxed);
                self.metrics.producer_rebuilt(failures, error);
            }
            Err(e) => tracing::warn!(error = %e, "rebuilding the producer failed"),
        }
    }

    /// Flushes whatever the current producer still holds.
    pub fn flush(&self, timeout: std::time::Duration) {
        self.producer().flush(timeout);
    }

    /// When `meta` says its image was acquired, read in the site's zone where it states no
    /// offset (ms since the epoch).
    fn stated_acquisition(&self, meta: &InstanceMeta) -> Option<i64> {
        meta.acquired.and_then(|a| a.millis(self.site.zone))
    }

    /// The scan event of `meta`, its image at `uri`, acquired at `stated` (its
    /// [`Self::stated_acquisition`]; arrival when implausible). No patient name, id or birth
    /// date: the patient and the accession number travel as keyed pseudonyms only.
    pub fn scan_event(
        &self,
        meta: &InstanceMeta,
        stated: Option<i64>,
        uri: &str,
        sha256: &str,
        size: usize,
        now_ms: i64,
    ) -> ScanEvent {
        let acquired_at = stated
            .filter(|t| (EARLIEST_PLAUSIBLE_MS..=now_ms + MAX_FUTURE_SKEW_MS).contains(t))
            .unwrap_or(now_ms);
        ScanEvent {
            event_id: uuid::Uuid::new_v4().to_string(),
            study: StudyContext {
                site_id: self.site.id.clone(),
                study_instance_uid: meta.study_instance_uid.clone(),
                series_instance_uid: meta.series_instance_uid.clone(),
                sop_instance_uid: meta.sop_instance_uid.clone(),
                accession_number: self.pseudonyms.accession(meta.accession.as_deref()),
                patient_ref: self.pseudonyms.patient(meta.patient_id.as_deref()),
                modality: modality_of(&meta.sop_class_uid).to_string(),
                view_position: meta.view_position.clone(),
                patient_age_years: meta.patient_age_years,
                patient_sex: meta.patient_sex.clone(),
                acquired_at,
                published_at: now_ms,
                priority_hint: meta.priority,
            },
            media_type: MEDIA_TYPE.to_string(),
            image_inline: None,
            image_uri: Some(uri.to_string()),
            image_sha256: Some(sha256.to_string()),
            image_size_bytes: Some(size as i64),
        }
    }

    /// Counts an instance whose `stated` acquisition lies 1–24 h before its arrival at `now_ms`,
    /// or more than 5 minutes after it. One now and then is a prior or a backlog; most of a
    /// site's instances so means the zone (`--gateway-timezone`) or a modality clock is wrong,
    /// and triage would time every study from hours before it arrived (alert
    /// `CxrflowGatewayAcquisitionClockOff`).
    fn count_clock_off(&self, meta: &InstanceMeta, stated: Option<i64>, now_ms: i64) {
        const MINUTE: i64 = 60_000;
        let Some(stated) = stated else {
            return;
        };
        let lag = now_ms - stated;
        let direction = if (60 * MINUTE..=24 * 60 * MINUTE).contains(&lag) {
            "behind"
        } else if lag < -5 * MINUTE {
            "ahead"
        } else {
            return;
        };
        self.metrics
            .acquisition_clock_off(direction, &meta.sop_instance_uid, lag / MINUTE);
    }

    /// Stores `file` (a complete Part-10 file) and publishes its scan event; returns once the
    /// broker acknowledged it. `received` is when the instance was completely received.
    pub async fn publish(
        &self,
        protocol: Protocol,
        meta: &InstanceMeta,
        file: Bytes,
        received: Instant,
    ) -> Result<Published, InstanceError> {
        let size = file.len();
        let (uri, sha256, written) = self.blobs.put_content_addressed(file).await?;
        let stated = self.stated_acquisition(meta);
        let event = self.scan_event(meta, stated, &uri, &sha256, size, now_millis());
        let span =
            tracing::info_span!("scan", sop = %meta.sop_instance_uid, protocol = protocol.label());
        let mut headers = BTreeMap::new();
        if let Some(tp) = telemetry::outbound_traceparent(&span, &BTreeMap::new()) {
            headers.insert(telemetry::TRACEPARENT.to_string(), tp);
        }
        let sent = self.producer().send(&self.codec, &event, &headers).await;
        match &sent {
            Ok(_) => self.delivered(true, ""),
            Err(e) => self.delivered(false, &e.to_string()),
        }
        sent?;
        self.count_clock_off(meta, stated, event.study.published_at);
        self.metrics.event_published(
            protocol,
            &meta.sop_instance_uid,
            &sha256,
            written,
            received.elapsed(),
        );
        Ok(Published {
            event_id: event.event_id,
            blob_uri: uri,
            sha256,
        })
    }
}
