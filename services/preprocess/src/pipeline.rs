//! The CPU part of preprocessing for one image, synchronous and pure: decode → statistics →
//! letterboxed tensor. The processor runs it on the blocking pool; [`prepare_guarded`] is the
//! last line of defence that turns a decoder panic into a dead letter instead of a crash.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use cxrflow_contracts::ImageStats;

use crate::decode::{
    decode_eligible, decode_reduced, Container, DecodeError, DecodeLimits, Decoded, DecodedImage,
};
use crate::eligibility::{DicomHeader, EligibilityRules, Ineligible};
use crate::profile::Profile;
use crate::stats::image_stats;

/// A preprocessed image, before the frontal gate and the record around it.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    pub profile: Profile,
    /// `side * side` 8-bit grayscale bytes, row-major.
    pub tensor: Vec<u8>,
    pub stats: ImageStats,
    /// The file's own view position (DICOM ViewPosition), when it has one.
    pub view_position: Option<String>,
    pub container: Container,
    pub photometric: String,
    pub bits_stored: u16,
    /// Decode + statistics + resize, in seconds.
    pub seconds: f64,
    /// The DICOM header's eligibility attributes (None for PNG/JPEG).
    pub header: Option<DicomHeader>,
}

/// A prepared image, or one its own DICOM header makes ineligible (not decoded).
#[derive(Debug, Clone, PartialEq)]
pub enum Gated {
    Prepared(Box<Prepared>),
    Ineligible {
        header: Box<DicomHeader>,
        why: Ineligible,
    },
}

/// Decode → statistics → tensor, without the eligibility gate (benches, tools).
pub fn prepare(
    bytes: &[u8],
    limits: &DecodeLimits,
    profile: Profile,
) -> Result<Prepared, DecodeError> {
    let start = Instant::now();
    let img = decode_reduced(bytes, limits, profile.side())?;
    finish(img, profile, start)
}

/// [`prepare`] behind the eligibility gate: a DICOM object its header makes ineligible is not
/// decoded at all.
pub fn prepare_gated(
    bytes: &[u8],
    limits: &DecodeLimits,
    profile: Profile,
    rules: &EligibilityRules,
) -> Result<Gated, DecodeError> {
    let start = Instant::now();
    match decode_eligible(bytes, limits, rules, Some(profile.side()))? {
        Decoded::Image(img) => Ok(Gated::Prepared(Box::new(finish(img, profile, start)?))),
        Decoded::Ineligible { header, why } => Ok(Gated::Ineligible {
            header: Box::new(header),
            why,
        }),
    }
}

fn finish(img: DecodedImage, profile: Profile, start: Instant) -> Result<Prepared, DecodeError> {
    let stats = image_stats(&img, profile.side());
    let tensor = profile
        .render(&img)
        .map_err(|e| DecodeError::UnsupportedImage(format!("resize to {profile}: {e}")))?;
    Ok(Prepared {
        profile,
        tensor,
        stats,
        view_position: img.view_position,
        container: img.container,
        photometric: img.photometric,
        bits_stored: img.bits_stored,
        seconds: start.elapsed().as_secs_f64(),
        header: img.header,
    })
}

/// [`prepare`], with a panic anywhere inside it caught and reported as [`DecodeError::Panicked`].
pub fn prepare_guarded(
    bytes: &[u8],
    limits: &DecodeLimits,
    profile: Profile,
    rules: &EligibilityRules,
) -> Result<Gated, DecodeError> {
    catch_unwind(AssertUnwindSafe(|| {
        prepare_gated(bytes, limits, profile, rules)
    }))
    .unwrap_or_else(|payload| Err(DecodeError::Panicked(panic_message(payload.as_ref()))))
}

pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".into())
}
