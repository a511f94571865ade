//! The gateway's metrics, and the notable events that log and count together (one place per
//! event, so the log line and the metric never disagree). Labels are bounded: the protocol
//! (`dimse`, `stow`) and the refusal [`Reason`], never a UID or an AE title. Log lines carry SOP
//! instance UIDs and peer AE titles, never a patient name, id or birth date.

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// How an instance reached the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// DICOM upper layer, C-STORE.
    Dimse,
    /// DICOMweb STOW-RS.
    Stow,
}

impl Protocol {
    pub fn label(self) -> &'static str {
        match self {
            Protocol::Dimse => "dimse",
            Protocol::Stow => "stow",
        }
    }
}

/// Why the gateway refused or gave up on a connection, an association, a presentation context,
/// a request or an instance. The metric label set is exactly these values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// All association slots busy (A-ASSOCIATE-RJ transient / HTTP 503).
    Busy,
    /// No complete A-ASSOCIATE-RQ within the association timeout.
    AssociationTimeout,
    /// An established association sent nothing within the idle timeout.
    IdleTimeout,
    /// Bytes that are not a DICOM upper-layer PDU, or a PDU out of place.
    MalformedPdu,
    /// A PDU longer than the advertised maximum.
    PduTooLarge,
    /// DIMSE messages that break the protocol (data without a command, unknown operation).
    ProtocolViolation,
    CalledAeMismatch,
    CallingAeNotAllowed,
    /// A presentation context for an abstract syntax the gateway does not serve.
    AbstractSyntaxNotSupported,
    TransferSyntaxNotSupported,
    SopClassNotSupported,
    /// The data set contradicts its command, its file meta or the SOP class (missing UIDs).
    DatasetMismatch,
    DatasetUnreadable,
    InstanceTooLarge,
    /// A STOW-RS instance whose study differs from the study in the URL.
    StudyMismatch,
    /// A STOW-RS request that is not `multipart/related; type="application/dicom"`.
    MediaTypeUnsupported,
    /// A STOW-RS body that is not valid multipart.
    RequestMalformed,
    RequestTooLarge,
    BlobStoreUnavailable,
    PublishFailed,
    /// DICOM TLS: the peer spoke plain DICOM, presented no or an untrusted certificate, or the
    /// handshake failed otherwise.
    TlsHandshake,
}

impl Reason {
    pub fn label(self) -> &'static str {
        match self {
            Reason::Busy => "busy",
            Reason::AssociationTimeout => "association_timeout",
            Reason::IdleTimeout => "idle_timeout",
            Reason::MalformedPdu => "malformed_pdu",
            Reason::PduTooLarge => "pdu_too_large",
            Reason::ProtocolViolation => "protocol_violation",
            Reason::CalledAeMismatch => "called_ae_mismatch",
            Reason::CallingAeNotAllowed => "calling_ae_not_allowed",
            Reason::AbstractSyntaxNotSupported => "abstract_syntax_not_supported",
            Reason::TransferSyntaxNotSupported => "transfer_syntax_not_supported",
            Reason::SopClassNotSupported => "sop_class_not_supported",
            Reason::DatasetMismatch => "dataset_mismatch",
            Reason::DatasetUnreadable => "dataset_unreadable",
            Reason::InstanceTooLarge => "instance_too_large",
            Reason::StudyMismatch => "study_mismatch",
            Reason::MediaTypeUnsupported => "media_type_unsupported",
            Reason::RequestMalformed => "request_malformed",
            Reason::RequestTooLarge => "request_too_large",
            Reason::BlobStoreUnavailable => "blob_store_unavailable",
            Reason::PublishFailed => "publish_failed",
            Reason::TlsHandshake => "tls_handshake",
        }
    }
}

fn ack_histogram() -> Histogram {
    // 1 ms … ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// `cxrflow_gateway_…` metrics beside the Host's.
#[derive(Clone)]
pub struct GatewayMetrics {
    associations: Counter,
    associations_active: Gauge,
    instances: Family<Labels, Counter>,
    published: Family<Labels, Counter>,
    bytes: Family<Labels, Counter>,
    rejected: Family<Labels, Counter>,
    contexts_refused: Family<Labels, Counter>,
    producer_rebuilds: Counter,
    ack_seconds: Family<Labels, Histogram, fn() -> Histogram>,
    clock_off: Family<Labels, Counter>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        GatewayMetrics {
            associations: Counter::default(),
            associations_active: Gauge::default(),
            instances: Family::default(),
            published: Family::default(),
            clock_off: Family::default(),
            bytes: Family::default(),
            rejected: Family::default(),
            contexts_refused: Family::default(),
            producer_rebuilds: Counter::default(),
            ack_seconds: Family::new_with_constructor(ack_histogram),
        }
    }
}

impl GatewayMetrics {
    /// Registers under `cxrflow_gateway_` (the Host's registry is the root).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cxrflow_gateway");
        r.register(
            "associations",
            "DICOM associations established",
            self.associations.clone(),
        );
        r.register(
            "associations_active",
            "DICOM associations open now",
            self.associations_active.clone(),
        );
        r.register(
            "instances_received",
            "Complete DICOM instances received, by protocol",
            self.instances.clone(),
        );
        r.register(
            "instances_published",
            "Instances stored and published as scan events (broker acknowledged), by protocol",
            self.published.clone(),
        );
        r.register(
            "received_bytes",
            "Bytes of DICOM instances received, by protocol",
            self.bytes.clone(),
        );
        r.register(
            "rejected",
            "Connections, associations, presentation contexts, requests and instances refused or failed, by reason",
            self.rejected.clone(),
        );
        r.register(
            "presentation_contexts_refused",
            "Proposed presentation contexts refused at negotiation, by reason (DCMTK's storescu alone proposes ~100 storage classes per association)",
            self.contexts_refused.clone(),
        );
        r.register(
            "producer_rebuilds",
            "Kafka producers replaced after consecutive delivery failures",
            self.producer_rebuilds.clone(),
        );
        r.register(
            "receipt_to_ack_seconds",
            "Time from an instance's complete receipt to its scan event being acknowledged by the broker, by protocol",
            self.ack_seconds.clone(),
        );
        r.register(
            "acquisition_clock_off",
            "Instances published whose stated acquisition lies 1 to 24 hours before their arrival (behind) or over 5 minutes after it (ahead): mostly so, --gateway-timezone or a modality clock is wrong",
            self.clock_off.clone(),
        );
    }

    /// An association was accepted; returns a guard that marks it closed when dropped.
    pub fn association_opened(&self, peer_ae: &str, peer: &str, contexts: usize) -> ActiveGuard {
        tracing::info!(peer_ae, peer, contexts, "association established");
        self.associations.inc();
        self.associations_active.inc();
        ActiveGuard(self.associations_active.clone())
    }

    /// Something was refused or failed; `detail` is a PHI-free explanation.
    pub fn rejected(&self, reason: Reason, peer: &str, detail: &str) {
        tracing::warn!(reason = reason.label(), peer, detail, "refused");
        self.rejected
            .get_or_create(&vec![("reason", reason.label().to_string())])
            .inc();
    }

    /// Presentation contexts refused at negotiation: `refused` lists (reason, abstract syntax).
    /// One log line per association; an association left with no usable context at all is a
    /// rejection of its own.
    pub fn contexts_refused(&self, peer: &str, accepted: usize, refused: &[(Reason, String)]) {
        if refused.is_empty() {
            return;
        }
        let sample: Vec<&str> = refused.iter().take(4).map(|(_, s)| s.as_str()).collect();
        tracing::debug!(
            peer,
            accepted,
            refused = refused.len(),
            ?sample,
            "presentation contexts refused"
        );
        for (reason, _) in refused {
            self.contexts_refused
                .get_or_create(&vec![("reason", reason.label().to_string())])
                .inc();
        }
        if accepted == 0 {
            let reason = refused[0].0;
            self.rejected(
                reason,
                peer,
                &format!(
                    "no presentation context acceptable (first proposed: {})",
                    sample[0]
                ),
            );
        }
    }

    /// A complete instance arrived (before any check).
    pub fn instance_received(&self, protocol: Protocol, bytes: u64) {
        tracing::debug!(protocol = protocol.label(), bytes, "instance received");
        let l = vec![("protocol", protocol.label().to_string())];
        self.instances.get_or_create(&l).inc();
        self.bytes.get_or_create(&l).inc_by(bytes);
    }

    /// An instance is stored and its scan event acknowledged by the broker.
    pub fn event_published(
        &self,
        protocol: Protocol,
        sop: &str,
        sha256: &str,
        blob_written: bool,
        took: Duration,
    ) {
        tracing::info!(
            protocol = protocol.label(),
            sop,
            sha256,
            blob_written,
            took_ms = took.as_millis() as u64,
            "scan event published"
        );
        let l = vec![("protocol", protocol.label().to_string())];
        self.published.get_or_create(&l).inc();
        self.ack_seconds
            .get_or_create(&l)
            .observe(took.as_secs_f64());
    }

    /// An instance's stated acquisition time lies hours before its arrival, or after it.
    pub fn acquisition_clock_off(&self, direction: &'static str, sop: &str, minutes: i64) {
        tracing::debug!(direction, sop, minutes, "acquisition time far from arrival");
        self.clock_off
            .get_or_create(&vec![("direction", direction.to_string())])
            .inc();
    }

    /// The producer failed `failures` deliveries in a row and was replaced by a fresh one.
    pub fn producer_rebuilt(&self, failures: u32, last_error: &str) {
        tracing::warn!(
            failures,
            last_error,
            "Kafka producer replaced after consecutive delivery failures"
        );
        self.producer_rebuilds.inc();
    }

    pub fn active(&self) -> i64 {
        self.associations_active.get()
    }

    pub fn rejections(&self, reason: Reason) -> u64 {
        self.rejected
            .get_or_create(&vec![("reason", reason.label().to_string())])
            .get()
    }
}

/// Decrements the active-association gauge when the association ends, however it ends.
pub struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
