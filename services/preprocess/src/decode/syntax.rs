//! Which transfer syntaxes are decoded, and the codec each one names in an error.

use dicom_object::FileMetaTable;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use super::DecodeError;

/// Transfer syntaxes this build decodes (UID, name): the list the gateway accepts too.
/// Everything else is refused by name.
pub use cxrflow_contracts::dicom::DECODABLE_TRANSFER_SYNTAXES as SUPPORTED_TRANSFER_SYNTAXES;

pub(super) const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
pub(super) const JPEG_EXTENDED: &str = "1.2.840.10008.1.2.4.51";
/// JPEG-LS near-lossless.
pub(super) const JPEG_LS_NEAR: &str = "1.2.840.10008.1.2.4.81";
/// JPEG 2000, lossless only.
pub(super) const J2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.90";
/// JPEG 2000, irreversible allowed.
pub(super) const J2K_LOSSY: &str = "1.2.840.10008.1.2.4.91";
/// High-Throughput JPEG 2000 (Part 15): the same codestream with a faster block coder, decoded by
/// the same OpenJPEG. 201 and 202 are lossless only; 203 may be lossy.
pub(super) const HTJ2K_LOSSLESS: &str = "1.2.840.10008.1.2.4.201";
pub(super) const HTJ2K_RPCL_LOSSLESS: &str = "1.2.840.10008.1.2.4.202";
pub(super) const HTJ2K: &str = "1.2.840.10008.1.2.4.203";
/// JPEG Lossless, Non-Hierarchical (Process 14), any predictor.
pub(super) const JPEG_LOSSLESS: &str = "1.2.840.10008.1.2.4.57";
/// JPEG Lossless, Non-Hierarchical, First-Order Prediction (Process 14, selection value 1).
pub(super) const JPEG_LOSSLESS_SV1: &str = "1.2.840.10008.1.2.4.70";

/// Whether a transfer syntax's codec may give back other samples than were stored: JPEG
/// baseline and extended, JPEG-LS near-lossless, JPEG 2000 (irreversible allowed).
pub(super) fn is_lossy(uid: &str) -> bool {
    matches!(
        uid.trim_end_matches('\0'),
        JPEG_BASELINE | JPEG_EXTENDED | JPEG_LS_NEAR | J2K_LOSSY | HTJ2K
    )
}

/// JPEG 2000, lossless only or not.
pub(super) fn is_jpeg2000(uid: &str) -> bool {
    matches!(
        uid.trim_end_matches('\0'),
        J2K_LOSSLESS | J2K_LOSSY | HTJ2K_LOSSLESS | HTJ2K_RPCL_LOSSLESS | HTJ2K
    )
}

/// The codec a transfer syntax's pixel data is compressed with, for error words.
pub(super) fn codec_of(uid: &str) -> &'static str {
    match uid.trim_end_matches('\0') {
        JPEG_BASELINE | JPEG_EXTENDED | JPEG_LOSSLESS | JPEG_LOSSLESS_SV1 => "JPEG",
        "1.2.840.10008.1.2.4.80" | JPEG_LS_NEAR => "JPEG-LS",
        J2K_LOSSLESS | J2K_LOSSY => "JPEG 2000",
        HTJ2K_LOSSLESS | HTJ2K_RPCL_LOSSLESS | HTJ2K => "HTJ2K",
        "1.2.840.10008.1.2.5" => "RLE",
        "1.2.840.10008.1.2.1.99" => "deflate",
        _ => "DICOM pixel data",
    }
}

/// Reads the transfer syntax from the file meta group and refuses, by UID and name, one that
/// is not on the shared list or that this build of dicom-rs cannot decode (the two agree; a test
/// checks it, this keeps a mismatch from reaching the decoder).
pub(super) fn check(body: &[u8]) -> Result<String, DecodeError> {
    let meta = FileMetaTable::from_reader(body).map_err(|e| {
        match DecodeError::from_decoder("DICOM", &e) {
            DecodeError::Truncated(t) => DecodeError::Truncated(format!("file meta group: {t}")),
            other => DecodeError::corrupt_dicom(format!("file meta group: {other}")),
        }
    })?;
    let uid = meta.transfer_syntax().trim_end_matches('\0').to_string();
    let listed = SUPPORTED_TRANSFER_SYNTAXES.iter().any(|(u, _)| *u == uid);
    match TransferSyntaxRegistry.get(&uid) {
        None => Err(DecodeError::UnsupportedTransferSyntax {
            uid,
            name: "unknown transfer syntax".into(),
        }),
        Some(ts) if !listed || !ts.can_decode_all() => {
            Err(DecodeError::UnsupportedTransferSyntax {
                uid,
                name: ts.name().to_string(),
            })
        }
        Some(_) => Ok(uid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared list promises what dicom-rs (with this crate's features) can decode; the
    /// 12-bit JPEG Extended path on top of it is tested on DCMTK files in tests/codecs.rs.
    #[test]
    fn every_listed_syntax_is_decodable_by_this_build() {
        for (uid, name) in SUPPORTED_TRANSFER_SYNTAXES {
            let ts = TransferSyntaxRegistry.get(uid);
            assert!(
                ts.is_some_and(|t| t.can_decode_all()),
                "{uid} ({name}) is listed but this build cannot decode it"
            );
        }
    }
}
