//! The preprocess service's own metrics, each bumped from one event function that also logs,
//! so the log line and the metric never disagree. Labels are bounded (container, photometric,
//! bit depth), never a study UID.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
pub struct PreprocessMetrics {
    decode_seconds: Family<Labels, Histogram>,
    images: Family<Labels, Counter>,
    lateral: Counter,
    view_unknown: Counter,
    age_unknown: Counter,
    panics: Counter,
    ineligible: Family<Labels, Counter>,
    disagreements: Family<Labels, Counter>,
}

impl Default for PreprocessMetrics {
    fn default() -> Self {
        PreprocessMetrics {
            decode_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            images: Family::default(),
            lateral: Counter::default(),
            view_unknown: Counter::default(),
            age_unknown: Counter::default(),
            panics: Counter::default(),
            ineligible: Family::default(),
            disagreements: Family::default(),
        }
    }
}

impl PreprocessMetrics {
    /// Registers under `cxrflow_preprocess_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cxrflow_preprocess");
        r.register(
            "decode_seconds",
            "Decode + statistics + resize time per image, by container (png, jpeg, dicom)",
            self.decode_seconds.clone(),
        );
        r.register(
            "images",
            "Images preprocessed, by photometric interpretation and bits stored",
            self.images.clone(),
        );
        r.register(
            "lateral_images",
            "Lateral views marked not assessable",
            self.lateral.clone(),
        );
        r.register(
            "view_position_unknown_images",
            "Images without a usable view position, treated as frontal",
            self.view_unknown.clone(),
        );
        r.register(
            "age_unknown_images",
            "Images scored without a patient age in their header or scan event: the age rule could not judge them",
            self.age_unknown.clone(),
        );
        r.register(
            "decoder_panics",
            "Decoder panics caught and dead-lettered (a bug in a decoder, never a crash)",
            self.panics.clone(),
        );
        r.register(
            "ineligible_images",
            "Images the model may not score (their DICOM header, a size below the model's input, a child's age, an unknown age where the site refuses it), marked not assessable, by reason code",
            self.ineligible.clone(),
        );
        r.register(
            "header_disagreements",
            "Images whose DICOM header contradicts the scan event (the header wins), by attribute",
            self.disagreements.clone(),
        );
    }

    /// An image its own header makes ineligible: it flows on as not assessable.
    pub fn ineligible(&self, study: &str, code: &'static str, reason: &str) {
        tracing::info!(
            study,
            code,
            reason,
            "ineligible image: marked not assessable"
        );
        self.ineligible
            .get_or_create(&vec![("reason", code.to_string())])
            .inc();
    }

    /// The header says otherwise than the scan event about `attribute` (bounded: modality,
    /// view_position).
    pub fn disagreement(&self, study: &str, attribute: &'static str, event: &str, header: &str) {
        tracing::warn!(
            study,
            attribute,
            event,
            header,
            "DICOM header contradicts the scan event; the header wins"
        );
        self.disagreements
            .get_or_create(&vec![("attribute", attribute.to_string())])
            .inc();
    }

    pub fn decoded(&self, container: &str, photometric: &str, bits_stored: u16, seconds: f64) {
        self.decode_seconds
            .get_or_create(&vec![("container", container.to_string())])
            .observe(seconds);
        self.images
            .get_or_create(&vec![
                ("photometric", photometric.to_string()),
                ("bits_stored", bits_stored.to_string()),
            ])
            .inc();
    }

    pub fn lateral(&self, study: &str) {
        tracing::debug!(study, "lateral view: marked not assessable");
        self.lateral.inc();
    }

    pub fn view_unknown(&self, study: &str) {
        tracing::debug!(study, "no usable view position: treated as frontal");
        self.view_unknown.inc();
    }

    pub fn age_unknown(&self, study: &str) {
        tracing::debug!(
            study,
            "no patient age in the header or the scan event: scored"
        );
        self.age_unknown.inc();
    }

    pub fn panicked(&self, study: &str, what: &str) {
        tracing::error!(
            study,
            panic = what,
            "decoder panicked; record dead-lettered"
        );
        self.panics.inc();
    }

    /// Counts of the lateral / unknown-view / panic counters (tests, reports).
    pub fn gate_counts(&self) -> (u64, u64, u64) {
        (
            self.lateral.get(),
            self.view_unknown.get(),
            self.panics.get(),
        )
    }
}
