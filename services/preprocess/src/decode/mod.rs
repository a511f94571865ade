//! Turns the bytes of a stored image into one display-oriented grayscale plane (0 = black,
//! 65535 = white), at full resolution or (grayscale DICOM, [`decode_reduced`]) at the smallest
//! power-of-two reduction the model's input still fits in, whatever the container: PNG/JPEG through `image`, DICOM
//! through dicom-rs. Every decoder checks the declared size against [`DecodeLimits`] before it
//! allocates pixel buffers, so a header claiming 60000×60000 never reaches the allocator.

mod checks;
mod dicom;
mod dicom_lengths;
mod display;
mod error;
mod frames;
mod jpeg12;
mod part10;
mod raster;
mod reduced;
mod syntax;

pub(crate) use display::box_average;
pub use error::DecodeError;
pub(crate) use reduced::halvings;
pub use reduced::Reduction;
pub use syntax::SUPPORTED_TRANSFER_SYNTAXES;

use crate::eligibility::{DicomHeader, EligibilityRules, Ineligible};

/// How large an image may be before it is refused (decompression bombs, absurd headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeLimits {
    pub max_width: u32,
    pub max_height: u32,
    /// Bytes the decoded image may occupy (decoder output, before conversion).
    pub max_alloc: u64,
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits {
            max_width: 8192,
            max_height: 8192,
            max_alloc: 512 * 1024 * 1024,
        }
    }
}

impl DecodeLimits {
    /// Refuses `width`×`height` with `bytes_per_pixel` (per frame × frames) before any decoding.
    pub fn check(&self, width: u64, height: u64, bytes_per_pixel: u64) -> Result<(), DecodeError> {
        if width == 0 || height == 0 {
            return Err(DecodeError::InvalidAttribute(format!(
                "the image declares {width}×{height} pixels (Columns × Rows)"
            )));
        }
        if width > u64::from(self.max_width) || height > u64::from(self.max_height) {
            return Err(DecodeError::TooLarge(format!(
                "{width}×{height} exceeds the {}×{} limit",
                self.max_width, self.max_height
            )));
        }
        let bytes = width.saturating_mul(height).saturating_mul(bytes_per_pixel);
        if bytes > self.max_alloc {
            return Err(DecodeError::TooLarge(format!(
                "{width}×{height} at {bytes_per_pixel} bytes per pixel needs {bytes} bytes, over the {} byte limit",
                self.max_alloc
            )));
        }
        Ok(())
    }
}

/// The container an image came in, by its content (magic bytes), not its claimed media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Container {
    Png,
    Jpeg,
    Dicom,
}

impl Container {
    /// A bounded label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            Container::Png => "png",
            Container::Jpeg => "jpeg",
            Container::Dicom => "dicom",
        }
    }

    /// Sniffs the magic bytes. DICOM files start with a 128-byte preamble and `DICM`; some
    /// producers omit the preamble.
    pub fn sniff(bytes: &[u8]) -> Result<Container, DecodeError> {
        if bytes.is_empty() {
            return Err(DecodeError::Empty);
        }
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Ok(Container::Png)
        } else if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Ok(Container::Jpeg)
        } else if bytes.get(128..132) == Some(b"DICM")
            || bytes.starts_with(b"DICM")
            || part10::looks_like_bare_dicom(bytes)
        {
            // Some producers omit the preamble, the magic, or the whole meta group.
            Ok(Container::Dicom)
        } else {
            let head: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
            Err(DecodeError::NotAnImage(format!(
                "no PNG, JPEG or DICOM signature (first bytes {})",
                head.join(" ")
            )))
        }
    }
}

/// A decoded image: one grayscale plane in display orientation, normalised to the full u16
/// range (MONOCHROME1 already inverted, VOI window already applied).
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedImage {
    /// The decoded plane's size: the stored image's, or a reduced resolution level of it.
    pub width: u32,
    pub height: u32,
    /// The stored image's size (DICOM Columns × Rows): statistics report it and the letterbox
    /// takes its aspect from it, whatever resolution was decoded.
    pub original_width: u32,
    pub original_height: u32,
    /// How the plane samples the stored image when a reduced level was decoded.
    pub reduction: Option<Reduction>,
    /// Row-major, `width * height` samples, 0 = black, 65535 = white.
    pub pixels: Vec<u16>,
    /// How many of `pixels` hold each value (65536 counts), when the decoder counted them on
    /// its way ([`crate::stats::image_stats`] counts them otherwise, and ignores these for a
    /// plane larger than the model's scale).
    pub histogram: Option<Vec<u64>>,
    pub bits_stored: u16,
    /// DICOM Photometric Interpretation, or `MONOCHROME2`/`RGB` for raster images.
    pub photometric: String,
    /// DICOM ViewPosition (0018,5101) when the file carries one.
    pub view_position: Option<String>,
    pub container: Container,
    /// What a DICOM file's header says about eligibility (None for PNG/JPEG).
    pub header: Option<DicomHeader>,
}

impl DecodedImage {
    /// A decoded plane at the stored image's own resolution, no view position, header or
    /// histogram yet (the decoder fills in what it knows).
    pub(crate) fn plane(
        width: u32,
        height: u32,
        pixels: Vec<u16>,
        bits_stored: u16,
        photometric: String,
        container: Container,
    ) -> DecodedImage {
        DecodedImage {
            width,
            height,
            original_width: width,
            original_height: height,
            reduction: None,
            pixels,
            histogram: None,
            bits_stored,
            photometric,
            view_position: None,
            container,
            header: None,
        }
    }
}

/// A decoded image, or a DICOM object its own header makes ineligible (pixels not read).
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Image(DecodedImage),
    Ineligible {
        header: DicomHeader,
        why: Ineligible,
    },
}

/// Decodes any supported container, without the eligibility gate.
pub fn decode(bytes: &[u8], limits: &DecodeLimits) -> Result<DecodedImage, DecodeError> {
    match Container::sniff(bytes)? {
        c @ (Container::Png | Container::Jpeg) => raster::decode(bytes, c, limits),
        Container::Dicom => match dicom::decode(bytes, limits, None, None)? {
            Decoded::Image(img) => Ok(img),
            Decoded::Ineligible { why, .. } => Err(DecodeError::UnsupportedImage(why.to_string())),
        },
    }
}

/// [`decode`], except that a grayscale DICOM image comes out at the smallest power-of-two
/// reduction whose both sides are still ≥ `min_side` (the model's input side): decoded at that
/// level where the codec can (JPEG 2000, lossless and lossy, baseline and 12-bit JPEG, with a
/// stated window), otherwise decoded in full and box-averaged while its display values are
/// mapped (so is a JPEG 2000 level the codestream's decomposition levels left larger, for the
/// halvings left). Either way the statistics ([`crate::stats::image_stats`]) are the plane's.
pub fn decode_reduced(
    bytes: &[u8],
    limits: &DecodeLimits,
    min_side: u32,
) -> Result<DecodedImage, DecodeError> {
    match Container::sniff(bytes)? {
        c @ (Container::Png | Container::Jpeg) => raster::decode(bytes, c, limits),
        Container::Dicom => match dicom::decode(bytes, limits, None, Some(min_side))? {
            Decoded::Image(img) => Ok(img),
            Decoded::Ineligible { why, .. } => Err(DecodeError::UnsupportedImage(why.to_string())),
        },
    }
}

/// Decodes any supported container, refusing a DICOM object its header makes ineligible
/// before its pixels are read. PNG/JPEG carry no header and always decode. With `min_side`,
/// as [`decode_reduced`].
pub fn decode_eligible(
    bytes: &[u8],
    limits: &DecodeLimits,
    rules: &EligibilityRules,
    min_side: Option<u32>,
) -> Result<Decoded, DecodeError> {
    match Container::sniff(bytes)? {
        c @ (Container::Png | Container::Jpeg) => {
            raster::decode(bytes, c, limits).map(Decoded::Image)
        }
        Container::Dicom => dicom::decode(bytes, limits, Some(rules), min_side),
    }
}

/// Maps `v` in 0..=1 onto the u16 range.
pub(crate) fn unit_to_u16(v: f64) -> u16 {
    (v.clamp(0.0, 1.0) * 65535.0).round() as u16
}
