//! The ingest processor: one scan event → at most one ingested-image record.
//!
//! Delivery: at-least-once, through the stage runtime (offsets stored only after the output or
//! the dead letter is acknowledged). The catch: a crash after the SOP ledger row is written but
//! before the output is acknowledged re-delivers the event; the ledger recognises the same
//! event id and emits again, so nothing is lost, and downstream is idempotent by study key.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use cxrflow_common::blob::{sha256_hex, BlobError, BlobStore};
use cxrflow_common::time::now_millis;
use cxrflow_common::{Inbound, Outbound, Processor, StageError};
use cxrflow_contracts::{Codec, IngestedImage, ScanEvent};
use tracing::Instrument;

use crate::error::IngestError;
use crate::fetch::{too_large, Fetcher};
use crate::ledger::{Claim, LedgerError, SopLedger};
use crate::metrics::{BlobOutcome, IngestMetrics};
use crate::validate::{check_content, check_size, validate, ImageRef, Limits};

/// Turns `cxr.scan.v1` records into `cxr.ingested.v1` records.
pub struct Ingest {
    pub codec: Arc<Codec>,
    pub blobs: BlobStore,
    pub ledger: SopLedger,
    pub fetcher: Fetcher,
    pub limits: Limits,
    pub metrics: IngestMetrics,
    pub unreachable: Unreachable,
}

/// Since when each event's image source has not answered: a source that stays silent past the
/// give-up time turns the transient failure into a dead letter, so one dead URL holds back
/// neither its partition's commits nor the study's place on the worklist for ever.
pub struct Unreachable {
    give_up: std::time::Duration,
    since: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

impl Unreachable {
    pub fn new(give_up: std::time::Duration) -> Self {
        Unreachable {
            give_up,
            since: Default::default(),
        }
    }

    /// Passes `result` through, forgetting the event once it is no longer a source failure,
    /// and turning a source failure older than the give-up time into poison.
    fn judge<T>(&self, event_id: &str, result: Result<T, IngestError>) -> Result<T, IngestError> {
        let mut since = self.since.lock().expect("unreachable map lock");
        match result {
            Err(IngestError::FetchUnavailable { uri, detail }) => {
                let first = *since
                    .entry(event_id.to_string())
                    .or_insert_with(Instant::now);
                let waited = first.elapsed();
                if waited >= self.give_up {
                    since.remove(event_id);
                    Err(IngestError::SourceUnreachable {
                        uri,
                        detail,
                        waited_s: waited.as_secs(),
                    })
                } else {
                    Err(IngestError::FetchUnavailable { uri, detail })
                }
            }
            // The blob store or the ledger: ours to fix, retried without end; the source
            // answered, so its clock restarts if it fails again later.
            other => {
                since.remove(event_id);
                other
            }
        }
    }
}

impl From<LedgerError> for IngestError {
    fn from(e: LedgerError) -> Self {
        IngestError::Ledger(e.to_string())
    }
}

fn blob_error(e: BlobError) -> IngestError {
    IngestError::BlobStoreUnavailable(e.to_string())
}

impl Ingest {
    async fn obtain(&self, scan: &mut ScanEvent, source: &ImageRef) -> Result<Bytes, IngestError> {
        let started = Instant::now();
        let bytes = match source {
            ImageRef::Inline => {
                return Ok(Bytes::from(scan.image_inline.take().unwrap_or_default()))
            }
            ImageRef::File(path) => self.fetcher.file(path).await,
            ImageRef::Http(url) => self.fetcher.http(url).await,
            ImageRef::S3 { bucket, key } => self.fetcher.s3(bucket, key).await,
        };
        self.metrics.fetched(source.kind(), started.elapsed());
        bytes
    }

    /// Whether the event names the content address `sha256` has in our store (the gateway's
    /// file, when gateway and ingest share a store): such an image is referenced, not copied.
    fn names_own_address(&self, scan: &ScanEvent, sha256: &str) -> bool {
        scan.image_uri.as_deref() == Some(self.blobs.content_uri(sha256).as_str())
    }

    /// An image already in our store at its content address (`uri`): only that it is there
    /// and its size. Not read: the address is the store's own claim on the content, and
    /// preprocess hashes the bytes it decodes against the sha256 this record carries, so
    /// reading (and hashing) a full-size radiograph here as well cost about 10 CPU-ms per study
    /// for a check that is made anyway where it matters.
    async fn stored(&self, scan: &ScanEvent, uri: &str) -> Result<u64, IngestError> {
        let size = match self.blobs.size(uri).await {
            Ok(size) => size,
            Err(BlobError::NotFound(_)) => {
                return Err(IngestError::FetchNotFound {
                    uri: uri.to_string(),
                    detail: "not in the blob store".into(),
                })
            }
            Err(e) => return Err(blob_error(e)),
        };
        if size > self.limits.max_image_bytes {
            return Err(too_large(
                uri.to_string(),
                size.to_string(),
                self.limits.max_image_bytes,
            ));
        }
        check_size(scan, size)?;
        Ok(size)
    }

    /// Ingests one scan event; `Ok(None)` when it is a resend of an already ingested image.
    pub async fn ingest(&self, mut scan: ScanEvent) -> Result<Option<IngestedImage>, IngestError> {
        let source = validate(&scan, &self.limits, now_millis())?;
        // An event that names the image's own content address in our store is referenced, not
        // copied: the store keeps one copy of the identifiable original, and a content address
        // never changes. With the sha256 declared, the image is not even read; `to_copy` holds
        // the bytes only of an image that goes into the store.
        let declared = scan.image_sha256.as_deref().map(str::to_ascii_lowercase);
        let (sha256, size, to_copy) = match declared {
            Some(sha256) if self.names_own_address(&scan, &sha256) => {
                let uri = self.blobs.content_uri(&sha256);
                let size = self.stored(&scan, &uri).await?;
                (sha256, size, None)
            }
            _ => {
                let bytes = self.obtain(&mut scan, &source).await?;
                let sha256 = sha256_hex(&bytes);
                check_content(&scan, &bytes, &sha256)?;
                let size = bytes.len() as u64;
                let to_copy = (!self.names_own_address(&scan, &sha256)).then_some(bytes);
                (sha256, size, to_copy)
            }
        };
        let sop = scan.study.sop_instance_uid.clone();
        match self
            .ledger
            .claim(&sop, &sha256, &scan.event_id, now_millis())
            .await?
        {
            Claim::First | Claim::Redelivery => {}
            Claim::Duplicate { first_event_id } => {
                self.metrics
                    .duplicate_skipped(&sop, &scan.event_id, &first_event_id);
                return Ok(None);
            }
            Claim::Conflict {
                sha256: existing,
                first_event_id,
            } => {
                return Err(IngestError::SopConflict {
                    sop,
                    existing,
                    first_event: first_event_id,
                    received: sha256,
                })
            }
        }
        // From here on only transient failures are possible: the claim stays, and the retry of
        // this same event is a redelivery that finishes the job.
        let (blob_uri, outcome) = match to_copy {
            Some(bytes) => {
                let (uri, written) = self
                    .blobs
                    .put_with_sha256(bytes, &sha256)
                    .await
                    .map_err(blob_error)?;
                let outcome = if written {
                    BlobOutcome::Written
                } else {
                    BlobOutcome::AlreadyPresent
                };
                (uri, outcome)
            }
            None => (self.blobs.content_uri(&sha256), BlobOutcome::Referenced),
        };
        self.ledger
            .set_blob_uri(&sop, &scan.event_id, &blob_uri)
            .await?;
        self.metrics
            .image_ingested(source.kind(), &sop, &sha256, size, outcome);
        Ok(Some(IngestedImage {
            event_id: scan.event_id,
            study: scan.study,
            blob_uri,
            sha256,
            size_bytes: size as i64,
            media_type: scan.media_type,
            ingested_at: now_millis(),
        }))
    }
}

impl Processor for Ingest {
    async fn process(&self, msg: &Inbound) -> Result<Vec<Outbound>, StageError> {
        let scan: ScanEvent = msg.decode(&self.codec)?;
        let study = scan.study.study_instance_uid.clone();
        let event_id = scan.event_id.clone();
        let sop = scan.study.sop_instance_uid.clone();
        let span = tracing::info_span!("ingest", study = %study, event_id = %event_id);
        let result = self.ingest(scan).instrument(span).await;
        match self.unreachable.judge(&event_id, result) {
            Ok(Some(image)) => match Outbound::record(&self.codec, &image) {
                Ok(out) => Ok(vec![out]),
                Err(e) => {
                    // This event dead-letters: free its claim so a corrected resend is not skipped.
                    self.ledger
                        .release(&sop, &event_id)
                        .await
                        .map_err(IngestError::from)?;
                    Err(e.for_study(&study))
                }
            },
            Ok(None) => Ok(vec![]),
            Err(e) => Err(StageError::from(e).for_study(&study)),
        }
    }
}
