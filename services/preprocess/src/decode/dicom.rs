//! DICOM through dicom-object + dicom-pixeldata, plus libjpeg-turbo for 12-bit JPEG Extended
//! ([`super::frames`]).
//!
//! Order matters for safety: every declared length is first checked against the file's size
//! (dicom_lengths), then the transfer syntax is checked from the file meta group
//! (an unsupported one is named in the error), then only the header up to PixelData is parsed
//! and Rows × Columns × Samples × BitsAllocated × Frames is checked against the limits, and
//! only then is the pixel data read and decoded ([`super::display`] turns it into a picture).
//! Uncompressed little endian grayscale is not copied at all: the pre-scan says where its
//! samples lie and the display mapping reads them there.

use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use super::checks::{
    check_j2k_sign, check_pixel_description, check_polarity, check_rle_header, RLE_LOSSLESS,
};
use super::display::{
    integer_display, is_integer_gray, to_display, HeaderExtras, OutOfRange, Padding,
};
use super::reduced::Reduction;
use super::syntax::{self, codec_of, JPEG_EXTENDED, JPEG_LOSSLESS, JPEG_LOSSLESS_SV1};
use super::{DecodeError, DecodeLimits, Decoded, DecodedImage};
use crate::eligibility::{DicomHeader, EligibilityRules};
use crate::gate::View;

fn read_err(e: dicom_object::ReadError) -> DecodeError {
    DecodeError::from_decoder("DICOM", &e)
}

fn pixel_err(codec: &'static str, e: dicom_pixeldata::Error) -> DecodeError {
    match DecodeError::from_decoder(codec, &e) {
        // openjpeg-sys reports any refusal as a null pointer: say what it means.
        DecodeError::CorruptStream { detail, .. }
            if detail.to_ascii_lowercase().contains("openjpeg") =>
        {
            DecodeError::CorruptStream {
                codec,
                detail: format!(
                    "OpenJPEG refused the codestream (damaged or unsupported): {detail}"
                ),
            }
        }
        other => other,
    }
}

fn int_attr(
    obj: &DefaultDicomObject,
    tag: Tag,
    name: &str,
    default: Option<u32>,
) -> Result<u32, DecodeError> {
    match obj.element_opt(tag) {
        Ok(Some(e)) => e.to_int::<u32>().map_err(|err| {
            DecodeError::InvalidAttribute(format!("{name} {tag} is not a number: {err}"))
        }),
        _ => default.ok_or_else(|| DecodeError::MissingAttribute(format!("{name} {tag}"))),
    }
}

fn open(body: &[u8], until_pixel_data: bool) -> Result<DefaultDicomObject, DecodeError> {
    let opts = OpenFileOptions::new().read_preamble(ReadPreamble::Never);
    let opts = if until_pixel_data {
        opts.read_until(tags::PIXEL_DATA)
    } else {
        opts
    };
    opts.from_reader(body).map_err(read_err)
}

fn text_attr(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty())
}

/// Pixel Padding Value (0028,0120) and Pixel Padding Range Limit (0028,0121), when the header
/// has the first. One that is not a number is refused by name: which samples are picture and
/// which are not would be a guess.
fn padding(obj: &DefaultDicomObject, signed: bool) -> Result<Option<Padding>, DecodeError> {
    let value = |tag: Tag, name: &str| -> Result<Option<i64>, DecodeError> {
        match obj.element_opt(tag) {
            Ok(Some(e)) if e.value().multiplicity() > 0 => {
                e.to_int::<i64>().map(Some).map_err(|err| {
                    DecodeError::InvalidAttribute(format!("{name} {tag} is not a number: {err}"))
                })
            }
            _ => Ok(None),
        }
    };
    let Some(v) = value(tags::PIXEL_PADDING_VALUE, "PixelPaddingValue")? else {
        return Ok(None);
    };
    let limit = value(tags::PIXEL_PADDING_RANGE_LIMIT, "PixelPaddingRangeLimit")?;
    Ok(Some(Padding::new(v, limit, signed)))
}

/// An attribute of a sequence's first item (a code's meaning or value), trimmed; `None` when
/// absent or empty.
fn item_text(obj: &DefaultDicomObject, sequence: Tag, tag: Tag) -> Option<String> {
    let e = obj.element_opt(sequence).ok().flatten()?;
    let value = e.items()?.first()?.get(tag)?.to_str().ok()?;
    Some(value.trim().to_string()).filter(|s| !s.is_empty())
}

/// The projection as the header states it: View Position (0018,5101) when it names one the
/// frontal gate knows; else, as `FRONTAL` or `LATERAL`, the View Code Sequence's (0054,0220) code
/// meaning ("postero-anterior", "left lateral", …), else Patient Orientation (0020,0020): rows
/// running to the patient's left or right with columns to head or feet is a frontal film, rows to
/// anterior or posterior a lateral one (either way round, so a film stored rotated still
/// counts). View Position is optional in CR and may be empty in DX, where Patient Orientation is
/// required: without this a lateral film without View Position was scored as frontal.
fn view_position(obj: &DefaultDicomObject) -> Option<String> {
    let stated = text_attr(obj, tags::VIEW_POSITION);
    if View::classify(stated.as_deref()) != View::Unknown {
        return stated;
    }
    let coded = item_text(obj, tags::VIEW_CODE_SEQUENCE, tags::CODE_MEANING);
    let from_code = coded.map(|m| m.to_ascii_lowercase()).and_then(|m| {
        if m.contains("lateral") {
            Some("LATERAL")
        } else if [
            "postero-anterior",
            "antero-posterior",
            "posteroanterior",
            "anteroposterior",
        ]
        .iter()
        .any(|f| m.contains(f))
        {
            Some("FRONTAL")
        } else {
            None
        }
    });
    let from_orientation = || {
        let e = obj.element_opt(tags::PATIENT_ORIENTATION).ok().flatten()?;
        let directions = e.to_multi_str().ok()?;
        let axis = |i: usize| directions.get(i)?.trim().chars().next();
        let (across, down) = (axis(0)?, axis(1)?);
        let lengthwise = |d: char| matches!(d, 'H' | 'F');
        match (across, down) {
            ('L' | 'R', d) | (d, 'L' | 'R') if lengthwise(d) => Some("FRONTAL"),
            ('A' | 'P', d) | (d, 'A' | 'P') if lengthwise(d) => Some("LATERAL"),
            _ => None,
        }
    };
    from_code
        .or_else(from_orientation)
        .map(str::to_string)
        .or(stated)
}

/// The attributes eligibility is decided on, as the header states them.
fn eligibility_header(obj: &DefaultDicomObject) -> DicomHeader {
    let sop_class_uid = text_attr(obj, tags::SOP_CLASS_UID)
        .or_else(|| Some(obj.meta().media_storage_sop_class_uid().to_string()))
        .map(|u| u.trim_end_matches('\0').trim().to_string())
        .filter(|u| !u.is_empty());
    let image_type = obj
        .element_opt(tags::IMAGE_TYPE)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_str().ok().map(|v| v.to_vec()))
        .unwrap_or_default();
    DicomHeader {
        modality: text_attr(obj, tags::MODALITY),
        sop_class_uid,
        body_part: text_attr(obj, tags::BODY_PART_EXAMINED),
        anatomic_region: item_text(obj, tags::ANATOMIC_REGION_SEQUENCE, tags::CODE_MEANING)
            .or_else(|| item_text(obj, tags::ANATOMIC_REGION_SEQUENCE, tags::CODE_VALUE)),
        image_type,
        frames: int_attr(obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames", Some(1))
            .unwrap_or(1)
            .max(1),
        samples_per_pixel: int_attr(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel", Some(1))
            .unwrap_or(1)
            .min(u32::from(u16::MAX)) as u16,
        photometric: text_attr(obj, tags::PHOTOMETRIC_INTERPRETATION),
        view_position: view_position(obj),
        presentation_intent: text_attr(obj, tags::PRESENTATION_INTENT_TYPE),
        patient_age_years: cxrflow_dicom::age::patient_age_years(|tag| text_attr(obj, tag)),
    }
}

/// The decoded image, with what its header says about eligibility.
fn with_header(mut img: DecodedImage, header: DicomHeader) -> Decoded {
    img.header = Some(header);
    Decoded::Image(img)
}

/// Samples of the first frame that are already in memory (`data`: read in place from the file,
/// or decoded by libjpeg-turbo; the machine's byte order) through the display mapping, with the
/// header's display attributes. `None`: an image the table path does not take.
fn display_decoded(
    header: &DefaultDicomObject,
    bits_allocated: u32,
    data: &[u8],
    (cols, rows): (u32, u32),
    extras: &HeaderExtras,
    min_side: Option<u32>,
    range: OutOfRange,
) -> Result<Option<DecodedImage>, DecodeError> {
    let attrs = display_attributes(header.clone(), bits_allocated);
    let pd = attrs
        .decode_pixel_data_frame(0)
        .map_err(|e| pixel_err("DICOM pixel data", e))?;
    if !is_integer_gray(&pd) {
        return Ok(None);
    }
    let mut img = integer_display(&pd, data, (cols, rows), extras.clone(), min_side, range)?;
    (img.original_width, img.original_height) = (cols, rows);
    Ok(Some(img))
}

/// The header (everything before Pixel Data) with a one-sample stand-in for the pixel data
/// and Rows = Columns = 1: dicom-pixeldata then reads the display attributes (rescale, VOI LUT,
/// window, VOI LUT function, photometric interpretation) by its own rules, as for every other
/// syntax, without copying samples already in memory: uncompressed ones that [`decode`] reads
/// in place from the file's bytes (copied twice before: into the object, then into the decoded
/// frame), and libjpeg-turbo's (put back into the object and copied out again before).
fn display_attributes(mut header: DefaultDicomObject, bits_allocated: u32) -> DefaultDicomObject {
    let one = |tag| DataElement::new(tag, VR::US, PrimitiveValue::from(1u16));
    header.put(one(tags::ROWS));
    header.put(one(tags::COLUMNS));
    let sample = if bits_allocated == 16 {
        DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(std::iter::once(0).collect()),
        )
    } else {
        DataElement::new(tags::PIXEL_DATA, VR::OB, PrimitiveValue::from(vec![0u8, 0]))
    };
    header.put(sample);
    // The stand-in is native whatever the file's syntax (libjpeg-turbo decoded the real samples).
    header
        .meta_mut()
        .set_transfer_syntax(&EXPLICIT_VR_LITTLE_ENDIAN);
    header
}

/// Decodes a DICOM file; with `rules`, an image its own header makes ineligible is refused
/// before its pixel data is read (an MR slice is "not a chest radiograph", whatever its
/// transfer syntax or bit depth).
pub(super) fn decode(
    bytes: &[u8],
    limits: &DecodeLimits,
    rules: Option<&EligibilityRules>,
    min_side: Option<u32>,
) -> Result<Decoded, DecodeError> {
    // Any accepted shape (no preamble, no magic, no group length, no meta at all) made Part 10.
    let body = super::part10::normalize(bytes)?;
    // dicom-parser allocates each declared length before reading it: bound them by the file
    // (and take out what it would misread).
    let (body, native) = super::dicom_lengths::readable(body)?;
    let body = &body[..];
    let syntax = syntax::check(body);

    // Size check on the header alone: nothing of the pixel data is read or allocated yet.
    let header = match open(body, true) {
        Ok(h) => h,
        Err(e) => return Err(syntax.err().unwrap_or(e)),
    };
    let eligibility = eligibility_header(&header);
    let has = |tag| matches!(header.element_opt(tag), Ok(Some(_)));
    if !has(tags::ROWS) && !has(tags::COLUMNS) && !has(tags::BITS_ALLOCATED) {
        // A report, key object selection, presentation state or plan, not an image with a
        // gap: said before any rule judges the image it does not have.
        return Err(DecodeError::NotAnImage(format!(
            "no image pixel module (Rows, Columns, BitsAllocated) in a {} object",
            eligibility
                .sop_class_uid
                .as_deref()
                .unwrap_or("SOP class unknown")
        )));
    }
    if let Some(rules) = rules {
        if let Err(why) = rules.check(&eligibility) {
            return Ok(Decoded::Ineligible {
                header: eligibility,
                why,
            });
        }
    }
    let syntax = syntax?;
    let rows = int_attr(&header, tags::ROWS, "Rows", None)?;
    let cols = int_attr(&header, tags::COLUMNS, "Columns", None)?;
    let bits_allocated = int_attr(&header, tags::BITS_ALLOCATED, "BitsAllocated", None)?;
    let samples = int_attr(&header, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel", Some(1))?;
    let frames = int_attr(&header, tags::NUMBER_OF_FRAMES, "NumberOfFrames", Some(1))?.max(1);
    let bits_stored = int_attr(&header, tags::BITS_STORED, "BitsStored", None)?;
    // Absent or unreadable: unsigned, the only value a radiograph's header is likely to carry.
    let signed = int_attr(
        &header,
        tags::PIXEL_REPRESENTATION,
        "PixelRepresentation",
        Some(0),
    )
    .unwrap_or(0)
        == 1;
    check_pixel_description(
        bits_allocated,
        bits_stored,
        int_attr(&header, tags::HIGH_BIT, "HighBit", None)?,
        samples,
    )?;
    check_polarity(
        eligibility.photometric.as_deref(),
        text_attr(&header, tags::PRESENTATION_LUT_SHAPE).as_deref(),
    )?;
    let bytes_per_pixel =
        u64::from(bits_allocated.div_ceil(8)) * u64::from(samples) * u64::from(frames);
    limits.check(u64::from(cols), u64::from(rows), bytes_per_pixel)?;
    let extras = HeaderExtras {
        // The header's, as eligibility read it above.
        view_position: eligibility.view_position.clone(),
        padding: padding(&header, signed)?,
    };
    // Uncompressed little endian samples are read where they lie (the machine's byte order must
    // be theirs); anything the table path does not take falls through to the usual decode.
    let in_place = cfg!(target_endian = "little") && samples == 1;
    if let Some(pixels) = native.filter(|_| in_place && matches!(bits_allocated, 8 | 16)) {
        let frame = (u64::from(rows) * u64::from(cols) * u64::from(bits_allocated / 8)) as usize;
        if let Some(data) = body.get(pixels.range).and_then(|d| d.get(..frame)) {
            let (size, x) = ((cols, rows), &extras);
            let mask = OutOfRange::Mask;
            let img = display_decoded(&header, bits_allocated, data, size, x, min_side, mask)?;
            if let Some(img) = img {
                return Ok(with_header(img, eligibility));
            }
        }
    }

    let mut obj = open(body, false)?;
    if !matches!(obj.element_opt(tags::PIXEL_DATA), Ok(Some(_))) {
        return Err(DecodeError::NotAnImage("no pixel data (7FE0,0010)".into()));
    }
    if syntax == RLE_LOSSLESS {
        check_rle_header(&obj)?;
    }
    if syntax::is_jpeg2000(&syntax) {
        check_j2k_sign(super::frames::j2k_signed(&obj), signed)?;
    }
    let mut codec = codec_of(&syntax);
    // A lossy codec's samples saturate at the stored range; stored ones are masked to it.
    let range = if syntax::is_lossy(&syntax) {
        OutOfRange::Clamp
    } else {
        OutOfRange::Mask
    };
    let geometry = super::reduced::Geometry {
        rows,
        cols,
        frames,
        bits_allocated,
        bits_stored,
        signed,
        samples,
    };
    // The reduced decode first: a 12-bit extended stream it decodes at a reduced IDCT scale is
    // never decoded at full size below; anything it declines takes the full path and its checks.
    let reduction =
        min_side.and_then(|need| super::reduced::decode(&mut obj, &syntax, geometry, need));
    // 12-bit JPEG at full size and 9- to 16-bit lossless JPEG: libjpeg-turbo's samples go
    // straight to the display mapping (or, for an image it does not take, back into the object
    // as native pixel data).
    let turbo = match syntax.as_str() {
        _ if reduction.is_some() => None,
        JPEG_EXTENDED => super::frames::decode_12bit(&obj, &geometry)?,
        JPEG_LOSSLESS | JPEG_LOSSLESS_SV1 => super::frames::decode_lossless(&obj, &geometry)?,
        _ => None,
    };
    if let Some(pixels) = turbo {
        // libjpeg-turbo's samples are 16-bit (`decode_12bit`/`decode_lossless` check that).
        let data: &[u8] = bytemuck::cast_slice(&pixels);
        let (size, x) = ((cols, rows), &extras);
        if let Some(img) = display_decoded(&header, 16, data, size, x, min_side, range)? {
            return Ok(with_header(img, eligibility));
        }
        super::frames::replace_with_native(&mut obj, pixels);
        // Now native: a failure from here on is about the decoded samples, not the stream.
        codec = "DICOM pixel data";
    }
    if reduction.is_some() {
        codec = "DICOM pixel data";
    }
    let pd = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| pixel_err(codec, e))?;
    // A plane the codec reduced to fewer halvings than the model's side allows is box-reduced
    // for the rest: its sample k then averages the codec's samples k·f ..< (k+1)·f.
    let mut img = to_display(&pd, extras, min_side, range)?;
    (img.original_width, img.original_height) = (cols, rows);
    img.reduction = match (reduction, img.reduction) {
        (Some(codec), Some(boxed)) => Some(Reduction {
            factor: codec.factor * boxed.factor,
            offset: codec.offset / f64::from(boxed.factor),
        }),
        (codec, boxed) => codec.or(boxed),
    };
    Ok(with_header(img, eligibility))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Uncompressed little endian samples read in place from the file give the plane and the
    /// counts dicom-pixeldata's own decode gives, on explicit and implicit VR, windowed,
    /// unwindowed, rescaled, signed, 8- and 16-bit images; big endian takes the usual path.
    #[test]
    fn samples_read_in_place_match_the_decoded_object() {
        use crate::fixtures::{dicom, signed_samples, ts, DicomSpec};
        let signed = signed_samples(&dicom(&DicomSpec {
            rescale: Some((1.0, -1024.0)),
            ..DicomSpec::cr(64, 70)
        }));
        let spec = |s: DicomSpec| {
            (
                format!("{s:?}"),
                dicom(&s),
                s.transfer_syntax != ts::EXPLICIT_VR_BE,
            )
        };
        let files = [
            spec(DicomSpec {
                window: Some((2048.0, 4096.0)),
                ..DicomSpec::cr(90, 110)
            }),
            spec(DicomSpec::cr(90, 110).transfer_syntax(ts::IMPLICIT_VR_LE)),
            spec(DicomSpec {
                rescale: Some((-2.0, 5000.0)),
                ..DicomSpec::cr(64, 70)
            }),
            ("signed CR".to_string(), signed, true),
            spec(DicomSpec::dx(70, 64)),
            spec(DicomSpec::gray8(50, 60)),
            spec(DicomSpec::cr(90, 110).transfer_syntax(ts::EXPLICIT_VR_BE)),
        ];
        for (what, bytes, expect_in_place) in files {
            let body = super::super::part10::normalize(&bytes).unwrap();
            let in_place = super::super::dicom_lengths::check(&body).unwrap().is_some();
            assert_eq!(in_place, expect_in_place, "{what}");
            let Decoded::Image(img) = decode(&bytes, &DecodeLimits::default(), None, None).unwrap()
            else {
                panic!("eligible without rules");
            };
            let obj = open(&body, false).unwrap();
            let pd = obj.decode_pixel_data_frame(0).unwrap();
            let reference =
                to_display(&pd, HeaderExtras::default(), None, OutOfRange::Mask).unwrap();
            assert!(img.pixels == reference.pixels, "{what}: pixels differ");
            assert_eq!(img.histogram, reference.histogram, "{what}");
            assert_eq!((img.width, img.height), (reference.width, reference.height));
            assert_eq!(img.reduction, None);
        }
    }

    proptest::proptest! {
        /// Damaged uncompressed files (bytes overwritten anywhere, the file cut anywhere) are
        /// refused or decoded, with or without the box reduction, never a panic: the in-place
        /// read trusts only what the length pre-scan located.
        #[test]
        fn damaged_uncompressed_files_never_panic(
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>()),
                0..8,
            ),
            cut in proptest::prelude::any::<proptest::sample::Index>(),
            implicit in proptest::prelude::any::<bool>(),
            reduce in proptest::prelude::any::<bool>(),
        ) {
            use crate::fixtures::{dicom, ts, DicomSpec};
            let syntax = if implicit { ts::IMPLICIT_VR_LE } else { ts::EXPLICIT_VR_LE };
            let mut bytes = dicom(
                &DicomSpec {
                    window: Some((2048.0, 4096.0)),
                    ..DicomSpec::cr(40, 36)
                }
                .transfer_syntax(syntax),
            );
            for (at, value) in edits {
                let i = at.index(bytes.len());
                bytes[i] = value;
            }
            bytes.truncate(cut.index(bytes.len() + 1));
            let _ = decode(&bytes, &DecodeLimits::default(), None, reduce.then_some(8));
        }
    }

    #[test]
    fn a_missing_or_unreadable_attribute_is_named_not_called_corrupt() {
        use crate::fixtures::{dicom, DicomSpec};
        use dicom_object::OpenFileOptions;
        let edit = |f: &dyn Fn(&mut DefaultDicomObject)| {
            let bytes = dicom(&DicomSpec::cr(32, 32));
            let mut obj = OpenFileOptions::new().from_reader(&bytes[128..]).unwrap();
            f(&mut obj);
            let mut out = Vec::new();
            obj.write_all(&mut out).unwrap();
            out
        };
        let no_rows = edit(&|o| {
            o.remove_element(tags::ROWS);
        });
        let e = decode(&no_rows, &DecodeLimits::default(), None, None).unwrap_err();
        assert_eq!(e.reason(), "decode.missing_attribute");
        assert!(e.to_string().contains("Rows"), "{e}");
        let frames = edit(&|o| {
            o.put(dicom_core::DataElement::new(
                tags::NUMBER_OF_FRAMES,
                dicom_core::VR::IS,
                dicom_core::PrimitiveValue::from("many"),
            ));
        });
        let e = decode(&frames, &DecodeLimits::default(), None, None).unwrap_err();
        assert_eq!(e.reason(), "decode.invalid_attribute", "{e}");
        assert!(e.to_string().contains("NumberOfFrames"), "{e}");
    }
}
