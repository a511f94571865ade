//! Ingest's own metrics, and the notable events that log and count together (one place per
//! event, so the log line and the metric never disagree). Labels are bounded: the source kind
//! (`inline`, `file`, `http`, `s3`), never a UID.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

fn fetch_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// What storing an ingested image did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    Written,
    AlreadyPresent,
    Referenced,
}

impl BlobOutcome {
    pub fn label(self) -> &'static str {
        match self {
            BlobOutcome::Written => "written",
            BlobOutcome::AlreadyPresent => "present",
            BlobOutcome::Referenced => "referenced",
        }
    }
}

/// `cxrflow_ingest_…` metrics beside the stage runtime's.
#[derive(Clone)]
pub struct IngestMetrics {
    images: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    duplicates: Counter,
    blobs: Family<Labels, Counter>,
    fetch_seconds: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for IngestMetrics {
    fn default() -> Self {
        IngestMetrics {
            images: Family::default(),
            bytes: Family::default(),
            duplicates: Counter::default(),
            blobs: Family::default(),
            fetch_seconds: Family::new_with_constructor(fetch_histogram),
        }
    }
}

impl IngestMetrics {
    /// Registers under `cxrflow_ingest_` (the Host's registry is the root).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cxrflow_ingest");
        r.register(
            "images",
            "Images ingested (emitted downstream), by source kind",
            self.images.clone(),
        );
        r.register(
            "image_bytes",
            "Bytes of images ingested, by source kind",
            self.bytes.clone(),
        );
        r.register(
            "duplicates",
            "Resends of an already ingested SOP instance with the same content, skipped",
            self.duplicates.clone(),
        );
        r.register(
            "blobs",
            "What an ingested image cost the blob store: written (a new copy), present (the same content was already stored) or referenced (the event pointed at the image's own content address in this store, e.g. the gateway's file when gateway and ingest share a store: no copy)",
            self.blobs.clone(),
        );
        r.register(
            "fetch_seconds",
            "Time to obtain an image from its source (file, HTTP, S3), by source kind",
            self.fetch_seconds.clone(),
        );
    }

    pub fn fetched(&self, kind: &'static str, took: Duration) {
        self.fetch_seconds
            .get_or_create(&vec![("source", kind.to_string())])
            .observe(took.as_secs_f64());
    }

    /// An image was stored and its record is about to be emitted.
    pub fn image_ingested(
        &self,
        kind: &'static str,
        sop: &str,
        sha256: &str,
        size: u64,
        blob: BlobOutcome,
    ) {
        // One line per record: debug (the counter is the run's record).
        tracing::debug!(
            source = kind,
            sop,
            sha256,
            size,
            blob = blob.label(),
            "image ingested"
        );
        self.blobs
            .get_or_create(&vec![("outcome", blob.label().to_string())])
            .inc();
        let l = vec![("source", kind.to_string())];
        self.images.get_or_create(&l).inc();
        self.bytes.get_or_create(&l).inc_by(size);
    }

    /// A resend of an already ingested SOP instance was skipped.
    pub fn duplicate_skipped(&self, sop: &str, event_id: &str, first_event_id: &str) {
        tracing::info!(
            sop,
            event_id,
            first_event_id,
            "duplicate SOP instance skipped"
        );
        self.duplicates.inc();
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates.get()
    }
}
