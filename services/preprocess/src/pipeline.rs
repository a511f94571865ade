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

/// A prepared image, or one the model may not score: its own DICOM header makes it ineligible
/// (not decoded), it is smaller than the model's input ([`too_small`]), or the scan event's age
/// is a child's ([`with_event_age`]); with its header, or an empty one for PNG/JPEG. An
/// ineligible image carries no tensor or statistics.
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

/// The code of [`too_small`]'s refusal.
pub const TOO_SMALL: &str = "eligibility.resolution";

/// An image whose longer side is shorter than the model's input side would be enlarged to fill
/// it: the model would score detail interpolated between stored pixels, which no radiograph it
/// was trained or validated on has. Measured on 60 held-out images shrunk to 40–160 pixels wide
/// (README, "The AI ranks only what it may"): the out-of-distribution gate passed nearly all of
/// them, and their probabilities moved by up to 0.95 and changed tiers.
pub fn too_small(width: u32, height: u32, profile: Profile) -> Option<Ineligible> {
    let side = profile.side();
    (width.max(height) < side).then(|| Ineligible {
        code: TOO_SMALL,
        reason: format!(
            "image {width}×{height} is smaller than the model's {side}×{side} input: it would \
             be enlarged to fill it, too little detail to score"
        ),
    })
}

/// [`prepare`] behind the eligibility gate: a DICOM object its header makes ineligible is not
/// decoded at all, and an image [`too_small`] refuses is not resized.
pub fn prepare_gated(
    bytes: &[u8],
    limits: &DecodeLimits,
    profile: Profile,
    rules: &EligibilityRules,
) -> Result<Gated, DecodeError> {
    let start = Instant::now();
    match decode_eligible(bytes, limits, rules, Some(profile.side()))? {
        Decoded::Image(img) => match too_small(img.original_width, img.original_height, profile) {
            Some(why) => Ok(Gated::Ineligible {
                header: Box::new(img.header.unwrap_or_default()),
                why,
            }),
            None => Ok(Gated::Prepared(Box::new(finish(img, profile, start)?))),
        },
        Decoded::Ineligible { header, why } => Ok(Gated::Ineligible {
            header: Box::new(header),
            why,
        }),
    }
}

/// The age rule for an image whose header gives no age (a PNG/JPEG has no header): the scan
/// event's age, which a gateway read from a header of its own or a router sent, decides. An
/// image whose header gives one was judged by it already: the header wins.
pub fn with_event_age(gated: Gated, event_age: Option<i32>, rules: &EligibilityRules) -> Gated {
    match gated {
        Gated::Prepared(p)
            if p.header
                .as_ref()
                .and_then(|h| h.patient_age_years)
                .is_none() =>
        {
            match rules.check_age(event_age) {
                Ok(()) => Gated::Prepared(p),
                Err(why) => Gated::Ineligible {
                    header: Box::new(p.header.unwrap_or_default()),
                    why,
                },
            }
        }
        judged => judged,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_an_age_in_the_header_the_scan_events_decides() {
        use crate::fixtures::{self, DicomSpec};
        let rules = EligibilityRules::default();
        let gated = |bytes: &[u8]| {
            prepare_gated(bytes, &DecodeLimits::default(), Profile::Gray224V1, &rules).unwrap()
        };
        let png = fixtures::png_gray8(320, 390);
        match with_event_age(gated(&png), Some(7), &rules) {
            Gated::Ineligible { why, .. } => assert_eq!(why.code, "eligibility.age"),
            other => panic!("a 7-year-old's PNG was {other:?}"),
        }
        assert!(matches!(
            with_event_age(gated(&png), Some(40), &rules),
            Gated::Prepared(_)
        ));
        assert!(
            matches!(
                with_event_age(gated(&png), None, &rules),
                Gated::Prepared(_)
            ),
            "an unknown age passes"
        );
        let strict = EligibilityRules {
            unknown_age: crate::eligibility::UnknownAge::NotAssessable,
            ..EligibilityRules::default()
        };
        match with_event_age(gated(&png), None, &strict) {
            Gated::Ineligible { why, .. } => assert_eq!(why.code, "eligibility.age_unknown"),
            other => panic!("a PNG of unknown age at a strict site was {other:?}"),
        }
        // A DICOM header without age or birth date: the event's age decides too.
        let cr = fixtures::dicom(&DicomSpec::cr(300, 360));
        assert!(matches!(
            with_event_age(gated(&cr), Some(7), &rules),
            Gated::Ineligible { .. }
        ));
    }

    #[test]
    fn an_image_is_too_small_when_the_letterbox_would_enlarge_it() {
        let small = too_small(223, 200, Profile::Gray224V1).expect("enlarged");
        assert_eq!(small.code, TOO_SMALL);
        assert!(small
            .reason
            .starts_with("image 223×200 is smaller than the model's 224×224"));
        // Only the long side has to fill the input: letterboxing keeps the aspect.
        assert_eq!(too_small(100, 224, Profile::Gray224V1), None);
        assert_eq!(too_small(320, 390, Profile::Gray224V1), None);
        assert!(too_small(300, 310, Profile::Gray320V1).is_some());
    }
}
