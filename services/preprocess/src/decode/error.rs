//! Why an image could not be decoded. Every variant is poison: the same bytes fail the same way.

use std::error::Error as StdError;
use std::io;

/// Every variant maps to one stable reason code (see [`DecodeError::reason`]), each listed with
/// its cause and what a PACS administrator can do about it in the README ("Why an image is
/// refused"). The words carry the specifics: the tag, the codec, the transfer syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the image is empty (zero bytes)")]
    Empty,
    /// Not a picture: no PNG/JPEG/DICOM signature, or a DICOM object without pixel data (a
    /// structured report, a presentation state, a key object selection).
    #[error("not an image: {0}")]
    NotAnImage(String),
    #[error("image too large: {0}")]
    TooLarge(String),
    #[error("image is truncated: {0}")]
    Truncated(String),
    /// The bytes of one codec (or of the DICOM encoding itself) break its rules.
    #[error("corrupt {codec} stream: {detail}")]
    CorruptStream { codec: &'static str, detail: String },
    #[error(
        "unsupported DICOM transfer syntax {uid} ({name}); supported: {}",
        supported_names()
    )]
    UnsupportedTransferSyntax { uid: String, name: String },
    /// A bit depth no decoder here handles (BitsAllocated 1 or 32, a JPEG sample precision
    /// its process does not define).
    #[error("unsupported precision: {0}")]
    UnsupportedPrecision(String),
    /// A well-formed image of a kind the model cannot read (photometric interpretation,
    /// samples per pixel, a codec feature).
    #[error("unsupported image: {0}")]
    UnsupportedImage(String),
    /// A Type 1 attribute the pixel module needs is absent; the words name it and its tag.
    #[error("DICOM object has no {0}")]
    MissingAttribute(String),
    /// An attribute is there but its value is not what the standard allows (a NumberOfFrames
    /// that is not a number, BitsStored above BitsAllocated); the words name it and its tag.
    #[error("invalid DICOM attribute: {0}")]
    InvalidAttribute(String),
    #[error("the decoder panicked: {0}")]
    Panicked(String),
}

fn supported_names() -> String {
    super::SUPPORTED_TRANSFER_SYNTAXES
        .iter()
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

impl DecodeError {
    /// A short, stable reason for dead letters and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "decode.empty",
            DecodeError::NotAnImage(_) => "decode.not_an_image",
            DecodeError::TooLarge(_) => "decode.too_large",
            DecodeError::Truncated(_) => "decode.truncated",
            DecodeError::CorruptStream { .. } => "decode.corrupt_stream",
            DecodeError::UnsupportedTransferSyntax { .. } => "decode.unsupported_transfer_syntax",
            DecodeError::UnsupportedPrecision(_) => "decode.unsupported_precision",
            DecodeError::UnsupportedImage(_) => "decode.unsupported_image",
            DecodeError::MissingAttribute(_) => "decode.missing_attribute",
            DecodeError::InvalidAttribute(_) => "decode.invalid_attribute",
            DecodeError::Panicked(_) => "decode.panic",
        }
    }

    /// A broken DICOM encoding (element lengths, items, meta group), as opposed to a broken
    /// compressed pixel stream inside it.
    pub(crate) fn corrupt_dicom(detail: impl Into<String>) -> DecodeError {
        DecodeError::CorruptStream {
            codec: "DICOM",
            detail: detail.into(),
        }
    }

    /// Classifies a decoder's error: running out of input is truncation, a sample precision
    /// the decoder refuses is unsupported precision, anything else a corrupt `codec` stream.
    /// Decoders report EOF in different shapes (an `io::Error` somewhere in the source chain,
    /// or only in the message), so both are checked.
    pub(crate) fn from_decoder(codec: &'static str, e: &(dyn StdError + 'static)) -> DecodeError {
        if is_eof(e) {
            return DecodeError::Truncated(chain_text(e));
        }
        DecodeError::from_codec(codec, chain_text(e))
    }

    /// As [`DecodeError::from_decoder`], for a decoder that reports only words.
    pub(crate) fn from_codec(codec: &'static str, text: String) -> DecodeError {
        if looks_truncated(&text) {
            DecodeError::Truncated(text)
        } else if looks_like_precision(&text) {
            DecodeError::UnsupportedPrecision(format!("{codec}: {text}"))
        } else {
            DecodeError::CorruptStream {
                codec,
                detail: text,
            }
        }
    }
}

/// jpeg-decoder: "unsupported JPEG feature: SamplePrecision(16)"; libjpeg-turbo: "Unsupported
/// JPEG data precision 16"; CharLS: "bit_per_sample ... invalid".
fn looks_like_precision(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("sampleprecision") || t.contains("data precision") || t.contains("bits_per_sample")
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
        "premature end",
        "no more data",
        "not enough data",
    ]
    .iter()
    .any(|needle| t.contains(needle))
}
