//! DICOM through dicom-object + dicom-pixeldata, plus libjpeg-turbo for 12-bit JPEG Extended
//! ([`super::frames`]).
//!
//! Order matters for safety: every declared length is first checked against the file's size
//! (dicom_lengths), then the transfer syntax is checked from the file meta group
//! (an unsupported one is named in the error), then only the header up to PixelData is parsed
//! and Rows × Columns × Samples × BitsAllocated × Frames is checked against the limits, and
//! only then is the pixel data read and decoded ([`super::display`] turns it into a picture).

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::PixelDecoder;

use super::checks::{check_pixel_description, check_rle_header, RLE_LOSSLESS};
use super::display::to_display;
use super::syntax::{self, codec_of, JPEG_EXTENDED};
use super::{DecodeError, DecodeLimits, Decoded};
use crate::eligibility::{DicomHeader, EligibilityRules};

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
        image_type,
        frames: int_attr(obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames", Some(1))
            .unwrap_or(1)
            .max(1),
        samples_per_pixel: int_attr(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel", Some(1))
            .unwrap_or(1)
            .min(u32::from(u16::MAX)) as u16,
        photometric: text_attr(obj, tags::PHOTOMETRIC_INTERPRETATION),
        view_position: text_attr(obj, tags::VIEW_POSITION),
    }
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
    let body = &body[..];
    // dicom-parser allocates each declared length before reading it: bound them by the file.
    super::dicom_lengths::check(body)?;
    let syntax = syntax::check(body);

    // Size check on the header alone: nothing of the pixel data is read or allocated yet.
    let header = match open(body, true) {
        Ok(h) => h,
        Err(e) => return Err(syntax.err().unwrap_or(e)),
    };
    let eligibility = eligibility_header(&header);
    if let Some(rules) = rules {
        if let Err(why) = rules.check(&eligibility) {
            return Ok(Decoded::Ineligible {
                header: eligibility,
                why,
            });
        }
    }
    let syntax = syntax?;
    let has = |tag| matches!(header.element_opt(tag), Ok(Some(_)));
    if !has(tags::ROWS) && !has(tags::COLUMNS) && !has(tags::BITS_ALLOCATED) {
        // A report, key object selection or presentation state, not an image with a gap.
        return Err(DecodeError::NotAnImage(format!(
            "no image pixel module (Rows, Columns, BitsAllocated) in a {} object",
            eligibility
                .sop_class_uid
                .as_deref()
                .unwrap_or("SOP class unknown")
        )));
    }
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
    let bytes_per_pixel =
        u64::from(bits_allocated.div_ceil(8)) * u64::from(samples) * u64::from(frames);
    limits.check(u64::from(cols), u64::from(rows), bytes_per_pixel)?;
    let view_position = header
        .element_opt(tags::VIEW_POSITION)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok().map(|s| s.trim().to_string()))
        .filter(|s| !s.is_empty());
    drop(header);

    let mut obj = open(body, false)?;
    if !matches!(obj.element_opt(tags::PIXEL_DATA), Ok(Some(_))) {
        return Err(DecodeError::NotAnImage("no pixel data (7FE0,0010)".into()));
    }
    if syntax == RLE_LOSSLESS {
        check_rle_header(&obj)?;
    }
    let mut codec = codec_of(&syntax);
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
    if reduction.is_none()
        && syntax == JPEG_EXTENDED
        && super::frames::decode_12bit(&mut obj, rows, cols, frames, bits_allocated, samples)?
    {
        // Now native: a failure from here on is about the decoded samples, not the stream.
        codec = "DICOM pixel data";
    }
    if reduction.is_some() {
        codec = "DICOM pixel data";
    }
    let pd = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| pixel_err(codec, e))?;
    let mut img = to_display(&pd, view_position)?;
    (img.original_width, img.original_height) = (cols, rows);
    img.reduction = reduction;
    img.header = Some(eligibility);
    Ok(Decoded::Image(img))
}

#[cfg(test)]
mod tests {
    use super::*;

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
