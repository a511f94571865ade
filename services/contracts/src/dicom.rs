//! The DICOM transfer syntaxes cxrflow decodes. One list for two services: the gateway offers
//! and accepts exactly these, and preprocess decodes exactly these (its tests decode a file of
//! each, written by DCMTK, pydicom, Pillow's OpenJPEG, GDCM, OpenJPEG or OpenJPH). Accepting a
//! syntax preprocess cannot decode would only move the failure downstream, after the sender was
//! told "stored"; refusing one it decodes loses images for nothing.

/// (UID, name), in the gateway's order of preference: uncompressed first, then lossless
/// compression, then lossy.
pub const DECODABLE_TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    // Retired, still sent by old modalities.
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    (
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction",
    ),
    (
        "1.2.840.10008.1.2.4.57",
        "JPEG Lossless, Non-Hierarchical (Process 14)",
    ),
    ("1.2.840.10008.1.2.4.80", "JPEG-LS Lossless"),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    ("1.2.840.10008.1.2.4.90", "JPEG 2000 (Lossless Only)"),
    (
        "1.2.840.10008.1.2.4.201",
        "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
    ),
    (
        "1.2.840.10008.1.2.4.202",
        "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)",
    ),
    ("1.2.840.10008.1.2.4.81", "JPEG-LS Near-Lossless"),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1, 8-bit)"),
    (
        "1.2.840.10008.1.2.4.51",
        "JPEG Extended (Process 2 & 4, 8- and 12-bit)",
    ),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000"),
    (
        "1.2.840.10008.1.2.4.203",
        "High-Throughput JPEG 2000 Image Compression",
    ),
];

/// UIDs in DICOM values are padded with NUL (or, wrongly, spaces) to even length.
pub fn trim_uid(uid: &str) -> &str {
    uid.trim_matches(|c: char| c == '\0' || c.is_whitespace())
}

/// Whether cxrflow decodes transfer syntax `uid` (padding ignored).
pub fn is_decodable_transfer_syntax(uid: &str) -> bool {
    let uid = trim_uid(uid);
    DECODABLE_TRANSFER_SYNTAXES.iter().any(|(u, _)| *u == uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_uids_match_and_others_do_not() {
        assert!(is_decodable_transfer_syntax("1.2.840.10008.1.2.4.80\0"));
        assert!(is_decodable_transfer_syntax("1.2.840.10008.1.2.1.99"));
        assert!(!is_decodable_transfer_syntax("1.2.840.10008.1.2.4.100"));
        assert!(!is_decodable_transfer_syntax("1.2.840.10008.1.2.4.8"));
    }

    #[test]
    fn no_uid_is_listed_twice() {
        let mut uids: Vec<_> = DECODABLE_TRANSFER_SYNTAXES.iter().map(|(u, _)| u).collect();
        uids.sort();
        uids.dedup();
        assert_eq!(uids.len(), DECODABLE_TRANSFER_SYNTAXES.len());
    }
}
