//! Why one instance was not accepted, with what each protocol answers for it: the DIMSE status
//! of the C-STORE response (PS3.4 §B.2.3, PS3.7 §C) and the STOW-RS Failure Reason (PS3.18
//! §10.5.3). Messages never carry patient data: only UIDs, sizes and attribute names.

use cxrflow_common::blob::BlobError;
use cxrflow_common::kafka::ProduceError;

use crate::metrics::Reason;

/// DIMSE and STOW-RS status codes the gateway uses.
pub mod status {
    pub const SUCCESS: u16 = 0x0000;
    /// Refused: SOP Class not supported.
    pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
    /// Refused: Out of Resources (the sender should try again later).
    pub const OUT_OF_RESOURCES: u16 = 0xA700;
    /// Error: Data Set does not match SOP Class.
    pub const DATASET_MISMATCH: u16 = 0xA900;
    /// Error: Cannot understand.
    pub const CANNOT_UNDERSTAND: u16 = 0xC000;
    /// STOW-RS: Referenced Transfer Syntax not supported.
    pub const TRANSFER_SYNTAX_NOT_SUPPORTED: u16 = 0xC122;
    /// STOW-RS: the instance's Study Instance UID differs from the one in the URL (in the
    /// "cannot understand" range, the code dcm4chee uses for the same condition).
    pub const STUDY_MISMATCH: u16 = 0xC409;
    /// Unrecognized operation (a DIMSE command the gateway does not serve).
    pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
}

#[derive(Debug, thiserror::Error)]
pub enum InstanceError {
    #[error("SOP class {sop_class} is not accepted (CR and DX image storage only)")]
    SopClassNotSupported { sop_class: String },
    #[error("transfer syntax {0} is not accepted")]
    TransferSyntaxNotSupported(String),
    #[error("data set does not match: {0}")]
    DatasetMismatch(String),
    #[error("{attribute} is missing")]
    MissingAttribute { attribute: &'static str },
    #[error("{attribute} {value:?} is not a DICOM UID: {why}")]
    UidMalformed {
        attribute: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("data set cannot be read: {0}")]
    Unreadable(String),
    #[error("instance is larger than the {limit}-byte limit")]
    TooLarge { limit: u64 },
    #[error("instance belongs to study {found}, not to the study {expected} of the request")]
    StudyMismatch { expected: String, found: String },
    #[error("part has media type {0:?}, expected application/dicom")]
    PartMediaType(String),
    #[error("blob store: {0}")]
    BlobStore(#[from] BlobError),
    #[error("publishing the scan event: {0}")]
    Publish(#[from] ProduceError),
}

impl InstanceError {
    /// The bounded metric label.
    pub fn reason(&self) -> Reason {
        match self {
            InstanceError::SopClassNotSupported { .. } => Reason::SopClassNotSupported,
            InstanceError::TransferSyntaxNotSupported(_) => Reason::TransferSyntaxNotSupported,
            InstanceError::DatasetMismatch(_)
            | InstanceError::MissingAttribute { .. }
            | InstanceError::UidMalformed { .. } => Reason::DatasetMismatch,
            InstanceError::Unreadable(_) | InstanceError::PartMediaType(_) => {
                Reason::DatasetUnreadable
            }
            InstanceError::TooLarge { .. } => Reason::InstanceTooLarge,
            InstanceError::StudyMismatch { .. } => Reason::StudyMismatch,
            InstanceError::BlobStore(_) => Reason::BlobStoreUnavailable,
            InstanceError::Publish(_) => Reason::PublishFailed,
        }
    }

    /// Whether a resend later may succeed (the gateway, not the instance, had a problem).
    pub fn is_transient(&self) -> bool {
        match self {
            InstanceError::BlobStore(e) => e.is_transient(),
            InstanceError::Publish(_) => true,
            _ => false,
        }
    }

    /// The C-STORE response status, and the STOW-RS Failure Reason.
    pub fn status(&self) -> u16 {
        match self {
            InstanceError::SopClassNotSupported { .. } => status::SOP_CLASS_NOT_SUPPORTED,
            InstanceError::TransferSyntaxNotSupported(_) => status::TRANSFER_SYNTAX_NOT_SUPPORTED,
            InstanceError::DatasetMismatch(_)
            | InstanceError::MissingAttribute { .. }
            | InstanceError::UidMalformed { .. } => status::DATASET_MISMATCH,
            InstanceError::Unreadable(_) | InstanceError::PartMediaType(_) => {
                status::CANNOT_UNDERSTAND
            }
            InstanceError::StudyMismatch { .. } => status::STUDY_MISMATCH,
            // Out of resources: the sender keeps the instance and resends it.
            InstanceError::TooLarge { .. }
            | InstanceError::BlobStore(_)
            | InstanceError::Publish(_) => status::OUT_OF_RESOURCES,
        }
    }
}

/// Shortens a value from outside for a log line or an error comment.
pub fn clip(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        s.to_string()
    } else {
        let mut end = MAX;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    }
}

/// A PHI-free description of an upper-layer error. The library's own messages may quote whole
/// PDUs (data set bytes, user identity fields), so only fixed texts and lengths are used.
pub fn describe_ul_error(e: &dicom_ul::association::Error) -> String {
    use dicom_ul::association::Error as E;
    use dicom_ul::pdu::ReadError;
    match e {
        E::Rejected { association_rj, .. } => {
            format!("association rejected: {}", association_rj.source)
        }
        E::ReceivePdu {
            source:
                ReadError::PduTooLarge {
                    pdu_length,
                    max_pdu_length,
                    ..
                },
            ..
        } => format!("PDU of {pdu_length} bytes, limit {max_pdu_length}"),
        E::ReceivePdu { .. } => "malformed PDU".into(),
        E::UnexpectedPdu { pdu, .. } => format!("unexpected {} PDU", pdu_kind(pdu)),
        E::UnknownPdu { .. } => "unknown PDU type".into(),
        E::ConnectionClosed { .. } => "connection closed by the peer".into(),
        E::Timeout { .. } => "timed out".into(),
        E::WireRead { source, .. } | E::WireSend { source, .. } => format!("I/O error: {source}"),
        E::Aborted { .. } => "aborted".into(),
        _ => "upper-layer protocol error".into(),
    }
}

/// The kind of a PDU, never its content.
pub fn pdu_kind(pdu: &dicom_ul::Pdu) -> &'static str {
    use dicom_ul::Pdu;
    match pdu {
        Pdu::AssociationRQ(_) => "A-ASSOCIATE-RQ",
        Pdu::AssociationAC(_) => "A-ASSOCIATE-AC",
        Pdu::AssociationRJ(_) => "A-ASSOCIATE-RJ",
        Pdu::PData { .. } => "P-DATA-TF",
        Pdu::ReleaseRQ => "A-RELEASE-RQ",
        Pdu::ReleaseRP => "A-RELEASE-RP",
        Pdu::AbortRQ { .. } => "A-ABORT",
        Pdu::Unknown { .. } => "unknown",
    }
}
