//! Why an image could not be decoded. Every variant is poison: the same bytes fail the same way.

use std::error::Error as StdError;
use std::io;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the image is empty (zero bytes)")]
    Empty,
    #[error("unknown image format: {0}")]
    UnknownFormat(String),
    #[error("image too large: {0}")]
    TooLarge(String),
    #[error("image is truncated: {0}")]
    Truncated(String),
    #[error("image is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported DICOM transfer syntax {uid} ({name}); supported: explicit/implicit VR little endian, explicit VR big endian, deflated, JPEG baseline/extended/lossless, RLE lossless, JPEG 2000")]
    UnsupportedTransferSyntax { uid: String, name: String },
    #[error("DICOM object has no pixel data (7FE0,0010)")]
    NoPixelData,
    #[error("unsupported image: {0}")]
    Unsupported(String),
    /// The image pixel module contradicts itself or DICOM (e.g. BitsStored > BitsAllocated).
    #[error("bad pixel description: {0}")]
    BadPixelDescription(String),
    #[error("the decoder panicked: {0}")]
    Panicked(String),
    /// A Type 1 attribute the pixel module needs is absent (e.g. Rows).
    #[error("DICOM object has no {0}")]
    MissingAttribute(String),
    /// An attribute is there but its value is not what the standard allows (e.g. a
    /// NumberOfFrames that is not a number).
    #[error("bad DICOM attribute: {0}")]
    BadAttribute(String),
    /// OpenJPEG refused the JPEG 2000 codestream (damaged, or a feature it does not decode).
    #[error("JPEG 2000 codestream refused by OpenJPEG (damaged or unsupported): {0}")]
    Jpeg2000(String),
}

impl DecodeError {
    /// A short, stable reason for dead letters and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "decode.empty",
            DecodeError::UnknownFormat(_) => "decode.unknown_format",
            DecodeError::TooLarge(_) => "decode.too_large",
            DecodeError::Truncated(_) => "decode.truncated",
            DecodeError::Corrupt(_) => "decode.corrupt",
            DecodeError::UnsupportedTransferSyntax { .. } => "decode.unsupported_transfer_syntax",
            DecodeError::NoPixelData => "decode.no_pixel_data",
            DecodeError::Unsupported(_) => "decode.unsupported",
            DecodeError::BadPixelDescription(_) => "decode.bad_pixel_description",
            DecodeError::Panicked(_) => "decode.panic",
            DecodeError::MissingAttribute(_) => "decode.missing_attribute",
            DecodeError::BadAttribute(_) => "decode.bad_attribute",
            DecodeError::Jpeg2000(_) => "decode.jpeg2000",
        }
    }

    /// Classifies a decoder's error: running out of input is truncation, anything else
    /// corruption. Decoders report EOF in different shapes (an `io::Error` somewhere in the
    /// source chain, or only in the message), so both are checked.
    pub(crate) fn from_decoder(e: &(dyn StdError + 'static)) -> DecodeError {
        let text = chain_text(e);
        if is_eof(e) || looks_truncated(&text) {
            DecodeError::Truncated(text)
        } else {
            DecodeError::Corrupt(text)
        }
    }
}

fn chain_text(e: &(dyn StdError + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        cur = s.source();
    }
    parts.join(": ")
}

fn is_eof(e: &(dyn StdError + 'static)) -> bool {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(e);
    while let Some(s) = cur {
        if let Some(io) = s.downcast_ref::<io::Error>() {
            if io.kind() == io::ErrorKind::UnexpectedEof {
                return true;
            }
        }
        cur = s.source();
    }
    false
}

fn looks_truncated(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "eof",
        "end of file",
        "unexpected end",
        "fill whole buffer",
        "truncated",
        "no more data",
        "not enough data",
    ]
    .iter()
    .any(|needle| t.contains(needle))
}
