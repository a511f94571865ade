//! Checks of the image pixel module and of encapsulated headers that dicom-rs trusts: each
//! runs before dicom-rs allocates from, or indexes by, the value it checks.

use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

use super::DecodeError;

/// dicom-pixeldata builds a lookup table of 2^BitsStored entries (and panics above 32 bits),
/// and decodes only 8- and 16-bit samples: refuse anything else before it gets there.
/// A value the standard forbids is an invalid attribute (tag in the words); 1- and 32-bit
/// samples are valid DICOM that this build does not decode: unsupported precision.
pub(super) fn check_pixel_description(
    bits_allocated: u32,
    bits_stored: u32,
    high_bit: u32,
    samples: u32,
) -> Result<(), DecodeError> {
    let bad = |what: String| Err(DecodeError::InvalidAttribute(what));
    match bits_allocated {
        8 | 16 => {}
        1 | 32 => {
            return Err(DecodeError::UnsupportedPrecision(format!(
                "BitsAllocated (0028,0100) {bits_allocated}; 8 and 16 are decoded"
            )))
        }
        _ => {
            return bad(format!(
                "BitsAllocated (0028,0100) {bits_allocated}, must be 8 or 16"
            ))
        }
    }
    if bits_stored == 0 || bits_stored > bits_allocated.min(16) {
        return bad(format!(
            "BitsStored (0028,0101) {bits_stored} with BitsAllocated {bits_allocated}"
        ));
    }
    // DICOM says HighBit = BitsStored - 1; some older archives write BitsAllocated - 1.
    // dicom-pixeldata ignores HighBit, so accept both ends of that range, nothing outside it.
    if high_bit + 1 < bits_stored || high_bit >= bits_allocated {
        return bad(format!(
            "HighBit (0028,0102) {high_bit} with BitsStored {bits_stored} and BitsAllocated {bits_allocated}"
        ));
    }
    if !matches!(samples, 1 | 3) {
        return bad(format!(
            "SamplesPerPixel (0028,0002) {samples}, must be 1 or 3"
        ));
    }
    Ok(())
}

/// Which way up a grayscale image is shown: Photometric Interpretation says it (MONOCHROME1:
/// the lowest value is white), and Presentation LUT Shape (2050,0020), where present, says it
/// again: the General Image module wants IDENTITY with MONOCHROME2 and INVERSE with MONOCHROME1.
/// Where the two disagree, viewers disagree: DCMTK follows the shape, pydicom and others the
/// photometric interpretation. Scored the wrong way up, a radiograph's probabilities mean
/// nothing, so such an image is refused (not assessable, read in arrival order) rather than
/// guessed. Other shapes (LIN OD, for film) and an absent one leave the photometric
/// interpretation alone.
pub(super) fn check_polarity(
    photometric: Option<&str>,
    presentation_lut_shape: Option<&str>,
) -> Result<(), DecodeError> {
    let (Some(photometric), Some(shape)) = (photometric, presentation_lut_shape) else {
        return Ok(());
    };
    let expected = match photometric {
        "MONOCHROME1" => "INVERSE",
        "MONOCHROME2" => "IDENTITY",
        _ => return Ok(()),
    };
    if matches!(shape, "IDENTITY" | "INVERSE") && shape != expected {
        return Err(DecodeError::InvalidAttribute(format!(
            "Presentation LUT Shape (2050,0020) {shape} contradicts Photometric Interpretation \
             (0028,0004) {photometric}, which goes with {expected}: the image's display polarity \
             is ambiguous (viewers disagree on which way up it is shown)"
        )));
    }
    Ok(())
}

/// A JPEG 2000 codestream codes its samples signed or unsigned (SIZ), and Pixel Representation
/// (0028,0103) says it again. Where they disagree, toolkits disagree: pydicom follows the
/// codestream, Horos reinterprets the codestream's samples as the header says (pydicom issue
/// 1149), and either way half the values change sign or wrap. Refused rather than guessed, as
/// for the display polarity. `None`: the codestream's header could not be read here (a JP2
/// wrapper); the decoder then says what it says.
pub(super) fn check_j2k_sign(
    codestream_signed: Option<bool>,
    signed: bool,
) -> Result<(), DecodeError> {
    match codestream_signed {
        Some(c) if c != signed => {
            let words = |s: bool| if s { "signed" } else { "unsigned" };
            Err(DecodeError::InvalidAttribute(format!(
                "PixelRepresentation (0028,0103) {} ({}) contradicts the JPEG 2000 codestream, whose \
                 samples are {}: which values are negative is ambiguous (toolkits disagree)",
                u8::from(signed),
                words(signed),
                words(c)
            )))
        }
        _ => Ok(()),
    }
}

pub(super) const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// PS3.5 G.5: an RLE frame starts with a 64-byte header, the number of segments (at most 15)
/// and their offsets. dicom-rs allocates as many offsets as the first word says and slices the
/// fragment by them unchecked, so check the header of the first frame's fragment first.
pub(super) fn check_rle_header(obj: &DefaultDicomObject) -> Result<(), DecodeError> {
    let corrupt = |what: String| {
        Err(DecodeError::CorruptStream {
            codec: "RLE",
            detail: format!("header: {what}"),
        })
    };
    let pixel_data = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| DecodeError::NotAnImage("no pixel data (7FE0,0010)".into()))?;
    let Some(fragment) = pixel_data.value().fragments().and_then(|f| f.first()) else {
        return corrupt("pixel data is not encapsulated or has no fragments".into());
    };
    let Some(header) = fragment.get(..64) else {
        return corrupt(format!(
            "fragment of {} bytes, less than 64",
            fragment.len()
        ));
    };
    let words: Vec<u32> = header
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    let segments = words[0] as usize;
    if !(1..=15).contains(&segments) {
        return corrupt(format!("{segments} segments, must be 1 to 15"));
    }
    let mut previous = 64;
    for &offset in &words[1..=segments] {
        if offset < previous || offset as usize > fragment.len() {
            return corrupt(format!(
                "segment offset {offset} outside {previous}..={} of the fragment",
                fragment.len()
            ));
        }
        previous = offset;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{decode, DecodeLimits};

    fn reason(bytes: &[u8]) -> &'static str {
        decode(bytes, &DecodeLimits::default()).map_or_else(|e| e.reason(), |_| "ok")
    }

    #[test]
    fn rle_headers_are_checked_before_dicom_rs_reads_them() {
        use crate::fixtures::{broken, dicom, ts, DicomSpec};
        let good = DicomSpec::cr(32, 32).transfer_syntax(ts::RLE_LOSSLESS);
        assert_eq!(reason(&dicom(&good)), "ok");
        // 2 segments: the 16-bit phantom's two byte planes.
        assert_eq!(reason(&broken::rle_claiming_segments(2)), "ok");
        for n in [0, 16, 1 << 31, u32::MAX] {
            assert_eq!(
                reason(&broken::rle_claiming_segments(n)),
                "decode.corrupt_stream",
                "{n}"
            );
        }
    }

    /// Each combination of Photometric Interpretation and Presentation LUT Shape (the fixtures'
    /// CR with the shape added): the contradictory ones are refused by name, the others decode,
    /// MONOCHROME1 inverted whether or not INVERSE says it again. (`tests/codecs.rs` checks the
    /// same against DCMTK's rendering of pydicom's files.)
    #[test]
    fn a_presentation_lut_shape_that_contradicts_the_photometric_interpretation_is_refused() {
        use crate::fixtures::{dicom, DicomSpec};
        use dicom_core::{DataElement, PrimitiveValue, VR};
        // The same stored samples under each photometric interpretation.
        let file = dicom(&DicomSpec {
            photometric: "MONOCHROME2",
            ..DicomSpec::cr(16, 8)
        });
        let with_shape = |photometric: &str, shape: Option<&str>| {
            let mut obj = dicom_object::OpenFileOptions::new()
                .from_reader(&file[128..])
                .unwrap();
            obj.put(DataElement::new(
                tags::PHOTOMETRIC_INTERPRETATION,
                VR::CS,
                PrimitiveValue::from(photometric),
            ));
            if let Some(shape) = shape {
                obj.put(DataElement::new(
                    tags::PRESENTATION_LUT_SHAPE,
                    VR::CS,
                    PrimitiveValue::from(shape),
                ));
            }
            let mut out = Vec::new();
            obj.write_all(&mut out).unwrap();
            out
        };
        let limits = DecodeLimits::default();
        let plain1 = decode(&with_shape("MONOCHROME1", None), &limits).unwrap();
        let plain2 = decode(&with_shape("MONOCHROME2", None), &limits).unwrap();
        assert_ne!(plain1.pixels, plain2.pixels);
        for (photometric, shape, plain) in [
            ("MONOCHROME1", "INVERSE", &plain1),
            ("MONOCHROME2", "IDENTITY", &plain2),
            ("MONOCHROME2", "LIN OD", &plain2),
        ] {
            let img = decode(&with_shape(photometric, Some(shape)), &limits).unwrap();
            assert_eq!(img.pixels, plain.pixels, "{photometric} {shape}");
        }
        for (photometric, shape) in [("MONOCHROME1", "IDENTITY"), ("MONOCHROME2", "INVERSE")] {
            let e = decode(&with_shape(photometric, Some(shape)), &limits).unwrap_err();
            assert_eq!(e.reason(), "decode.invalid_attribute");
            let words = e.to_string();
            assert!(
                words.contains(&format!("Presentation LUT Shape (2050,0020) {shape}"))
                    && words.contains(photometric),
                "{words}"
            );
        }
    }

    /// Either disagreement is refused, naming both sides; agreement, or a codestream header
    /// that could not be read, passes (`tests/codecs.rs` refuses Pillow's unsigned codestream
    /// under a header edited to say signed).
    #[test]
    fn a_jpeg2000_sign_that_contradicts_pixel_representation_is_refused() {
        for (codestream, header) in [(true, false), (false, true)] {
            let e = check_j2k_sign(Some(codestream), header).unwrap_err();
            assert_eq!(e.reason(), "decode.invalid_attribute");
            let words = e.to_string();
            assert!(
                words.contains(&format!(
                    "PixelRepresentation (0028,0103) {}",
                    u8::from(header)
                )),
                "{words}"
            );
            assert!(
                words.contains(if codestream {
                    "samples are signed"
                } else {
                    "samples are unsigned"
                }),
                "{words}"
            );
        }
        for (codestream, header) in [
            (Some(true), true),
            (Some(false), false),
            (None, true),
            (None, false),
        ] {
            assert!(check_j2k_sign(codestream, header).is_ok());
        }
    }

    #[test]
    fn impossible_bit_depths_are_refused_before_the_lut() {
        use crate::fixtures::broken::dicom_with_bits_stored;
        assert_eq!(reason(&dicom_with_bits_stored(12)), "ok");
        for bits in [0, 17, 33, 40] {
            assert_eq!(
                reason(&dicom_with_bits_stored(bits)),
                "decode.invalid_attribute",
                "BitsStored {bits}"
            );
        }
        // HighBit below BitsStored - 1 or past BitsAllocated - 1 is refused; BitsAllocated - 1
        // (older archives) is accepted.
        let err = check_pixel_description(16, 12, 10, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.invalid_attribute");
        let err = check_pixel_description(16, 12, 16, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.invalid_attribute");
        assert!(check_pixel_description(16, 12, 15, 1).is_ok());
        let err = check_pixel_description(16, 12, 11, 4).unwrap_err();
        assert_eq!(err.reason(), "decode.invalid_attribute");
        let err = check_pixel_description(12, 12, 11, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.invalid_attribute");
        assert!(check_pixel_description(8, 8, 7, 3).is_ok());
    }

    #[test]
    fn words_name_the_tag_and_valid_but_undecoded_depths_are_precision() {
        let err = check_pixel_description(16, 17, 16, 1).unwrap_err();
        assert!(err.to_string().contains("BitsStored (0028,0101)"), "{err}");
        let err = check_pixel_description(32, 32, 31, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.unsupported_precision", "{err}");
        let err = check_pixel_description(1, 1, 0, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.unsupported_precision", "{err}");
    }
}
