//! DICOM through dicom-object + dicom-pixeldata (pure-Rust codecs only).
//!
//! Order matters for safety: every declared length is first checked against the file's size
//! (dicom_lengths), then the transfer syntax is checked from the file meta group
//! (an unsupported one is named in the error), then only the header up to PixelData is parsed
//! and Rows × Columns × Samples × BitsAllocated × Frames is checked against the limits, and
//! only then is the pixel data read and decoded.
//!
//! The display pipeline follows PS3.3 C.11: modality LUT (rescale slope/intercept), then the
//! first VOI LUT (table if present, else window center/width with its VOI LUT function, else a
//! min-max window over the image), then MONOCHROME1 inversion.

use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTable, OpenFileOptions};
use dicom_pixeldata::{DecodedPixelData, PixelDecoder, VoiLutFunction, WindowLevel};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

use super::{unit_to_u16, Container, DecodeError, DecodeLimits, Decoded, DecodedImage};
use crate::eligibility::{DicomHeader, EligibilityRules};

/// Transfer syntaxes this build decodes (UID, name). Everything else is refused by name.
pub const SUPPORTED_TRANSFER_SYNTAXES: &[(&str, &str)] = &[
    ("1.2.840.10008.1.2", "Implicit VR Little Endian"),
    ("1.2.840.10008.1.2.1", "Explicit VR Little Endian"),
    ("1.2.840.10008.1.2.2", "Explicit VR Big Endian (retired)"),
    (
        "1.2.840.10008.1.2.1.99",
        "Deflated Explicit VR Little Endian",
    ),
    ("1.2.840.10008.1.2.4.50", "JPEG Baseline (Process 1)"),
    ("1.2.840.10008.1.2.4.51", "JPEG Extended (Process 2 & 4)"),
    (
        "1.2.840.10008.1.2.4.57",
        "JPEG Lossless, Non-Hierarchical (Process 14)",
    ),
    (
        "1.2.840.10008.1.2.4.70",
        "JPEG Lossless, Non-Hierarchical, First-Order Prediction",
    ),
    ("1.2.840.10008.1.2.5", "RLE Lossless"),
    (
        "1.2.840.10008.1.2.4.90",
        "JPEG 2000 Image Compression (Lossless Only)",
    ),
    ("1.2.840.10008.1.2.4.91", "JPEG 2000 Image Compression"),
];

fn read_err(e: dicom_object::ReadError) -> DecodeError {
    DecodeError::from_decoder(&e)
}

fn pixel_err(e: dicom_pixeldata::Error) -> DecodeError {
    match DecodeError::from_decoder(&e) {
        // openjpeg-sys reports any refusal as a null pointer: say what it means.
        DecodeError::Corrupt(text) if text.to_ascii_lowercase().contains("openjpeg") => {
            DecodeError::Jpeg2000(text)
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
            DecodeError::BadAttribute(format!("{name} {tag} is not a number: {err}"))
        }),
        _ => default.ok_or_else(|| DecodeError::MissingAttribute(format!("{name} {tag}"))),
    }
}

fn check_transfer_syntax(body: &[u8]) -> Result<(), DecodeError> {
    let meta =
        FileMetaTable::from_reader(body).map_err(|e| match DecodeError::from_decoder(&e) {
            DecodeError::Truncated(t) => DecodeError::Truncated(format!("file meta group: {t}")),
            other => DecodeError::Corrupt(format!("file meta group: {other}")),
        })?;
    let uid = meta.transfer_syntax().to_string();
    match TransferSyntaxRegistry.get(&uid) {
        None => Err(DecodeError::UnsupportedTransferSyntax {
            uid,
            name: "unknown transfer syntax".into(),
        }),
        Some(ts) if !ts.can_decode_all() => Err(DecodeError::UnsupportedTransferSyntax {
            uid,
            name: ts.name().to_string(),
        }),
        Some(_) => Ok(()),
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

/// dicom-pixeldata builds a lookup table of 2^BitsStored entries (and panics above 32 bits),
/// and decodes only 8- and 16-bit samples: refuse anything else before it gets there.
fn check_pixel_description(
    bits_allocated: u32,
    bits_stored: u32,
    high_bit: u32,
    samples: u32,
) -> Result<(), DecodeError> {
    let bad = |what: String| Err(DecodeError::BadPixelDescription(what));
    match bits_allocated {
        8 | 16 => {}
        1 | 32 => {
            return Err(DecodeError::Unsupported(format!(
                "BitsAllocated {bits_allocated}"
            )))
        }
        _ => return bad(format!("BitsAllocated {bits_allocated}, must be 8 or 16")),
    }
    if bits_stored == 0 || bits_stored > bits_allocated.min(16) {
        return bad(format!(
            "BitsStored {bits_stored} with BitsAllocated {bits_allocated}"
        ));
    }
    // DICOM says HighBit = BitsStored - 1; some older archives write BitsAllocated - 1.
    // dicom-pixeldata ignores HighBit, so accept both ends of that range, nothing outside it.
    if high_bit + 1 < bits_stored || high_bit >= bits_allocated {
        return bad(format!(
            "HighBit {high_bit} with BitsStored {bits_stored} and BitsAllocated {bits_allocated}"
        ));
    }
    if !matches!(samples, 1 | 3) {
        return bad(format!("SamplesPerPixel {samples}, must be 1 or 3"));
    }
    Ok(())
}

const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";

/// PS3.5 G.5: an RLE frame starts with a 64-byte header, the number of segments (at most 15)
/// and their offsets. dicom-rs allocates as many offsets as the first word says and slices the
/// fragment by them unchecked, so check the header of the first frame's fragment first.
fn check_rle_header(obj: &DefaultDicomObject) -> Result<(), DecodeError> {
    let corrupt = |what: String| Err(DecodeError::Corrupt(format!("RLE header: {what}")));
    let pixel_data = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| DecodeError::NoPixelData)?;
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
) -> Result<Decoded, DecodeError> {
    // Any accepted shape (no preamble, no magic, no group length, no meta at all) made Part 10.
    let body = super::part10::normalize(bytes)?;
    let body = &body[..];
    // dicom-parser allocates each declared length before reading it: bound them by the file.
    super::dicom_lengths::check(body)?;
    let syntax = check_transfer_syntax(body);

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
    syntax?;
    let rows = int_attr(&header, tags::ROWS, "Rows", None)?;
    let cols = int_attr(&header, tags::COLUMNS, "Columns", None)?;
    let bits_allocated = int_attr(&header, tags::BITS_ALLOCATED, "BitsAllocated", None)?;
    let samples = int_attr(&header, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel", Some(1))?;
    let frames = int_attr(&header, tags::NUMBER_OF_FRAMES, "NumberOfFrames", Some(1))?.max(1);
    check_pixel_description(
        bits_allocated,
        int_attr(&header, tags::BITS_STORED, "BitsStored", None)?,
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

    let obj = open(body, false)?;
    if !matches!(obj.element_opt(tags::PIXEL_DATA), Ok(Some(_))) {
        return Err(DecodeError::NoPixelData);
    }
    if obj.meta().transfer_syntax() == RLE_LOSSLESS {
        check_rle_header(&obj)?;
    }
    let pd = obj.decode_pixel_data_frame(0).map_err(pixel_err)?;
    let mut img = to_display(&pd, view_position)?;
    img.header = Some(eligibility);
    Ok(Decoded::Image(img))
}

fn to_display(
    pd: &DecodedPixelData<'_>,
    view_position: Option<String>,
) -> Result<DecodedImage, DecodeError> {
    let photometric = pd.photometric_interpretation().as_str().to_string();
    let (width, height) = (pd.columns(), pd.rows());
    let n = width as usize * height as usize;
    // Modality LUT (rescale) applied, VOI not yet: values in modality units.
    let raw: Vec<f64> = pd.to_vec_frame::<f64>(0).map_err(pixel_err)?;
    let values: Vec<f64> = match pd.samples_per_pixel() {
        1 => raw,
        3 if pd.photometric_interpretation().as_str() == "RGB" => raw
            .chunks_exact(3)
            .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
            .collect(),
        s => {
            return Err(DecodeError::Unsupported(format!(
                "{s} samples per pixel with photometric interpretation {photometric}"
            )))
        }
    };
    if values.len() < n {
        return Err(DecodeError::Truncated(format!(
            "pixel data holds {} samples, {width}×{height} needs {n}",
            values.len()
        )));
    }
    let monochrome1 = photometric == "MONOCHROME1";
    if !monochrome1 && photometric != "MONOCHROME2" && photometric != "RGB" {
        return Err(DecodeError::Unsupported(format!(
            "photometric interpretation {photometric}"
        )));
    }
    let voi = Voi::for_image(pd, &values[..n])?;
    let pixels = values[..n]
        .iter()
        .map(|&v| {
            let y = voi.apply(v);
            unit_to_u16(if monochrome1 { 1.0 - y } else { y })
        })
        .collect();
    Ok(DecodedImage {
        width,
        height,
        pixels,
        bits_stored: pd.bits_stored(),
        photometric,
        view_position,
        container: Container::Dicom,
        header: None,
    })
}

/// The VOI transformation of the first frame, mapping modality values onto 0..=1.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Voi {
    Table {
        first: f64,
        scale: f64,
        data: Vec<u16>,
    },
    Window {
        center: f64,
        width: f64,
        function: VoiLutFunction,
    },
    MinMax {
        min: f64,
        max: f64,
    },
}

impl Voi {
    fn for_image(pd: &DecodedPixelData<'_>, values: &[f64]) -> Result<Voi, DecodeError> {
        if let Some(lut) = pd
            .voi_lut_sequence()
            .map_err(pixel_err)?
            .and_then(|l| l.first())
        {
            if !lut.data.is_empty() {
                let max_out = ((1u64 << lut.bits_stored.clamp(1, 16)) - 1) as f64;
                return Ok(Voi::Table {
                    first: f64::from(lut.min_pixel_value),
                    scale: max_out,
                    data: lut.data.clone(),
                });
            }
        }
        if let Some(WindowLevel { center, width }) = pd
            .window()
            .map_err(pixel_err)?
            .and_then(|w| w.first().copied())
        {
            let function = pd
                .voi_lut_function()
                .map_err(pixel_err)?
                .and_then(|f| f.first().copied())
                .unwrap_or_default();
            if width > 0.0 && center.is_finite() && width.is_finite() {
                return Ok(Voi::Window {
                    center,
                    width,
                    function,
                });
            }
        }
        Ok(Voi::min_max(values))
    }

    pub(crate) fn min_max(values: &[f64]) -> Voi {
        let (min, max) = values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            });
        Voi::MinMax { min, max }
    }

    pub(crate) fn apply(&self, x: f64) -> f64 {
        match *self {
            Voi::Table {
                first,
                scale,
                ref data,
            } => {
                let idx = (x - first).round().clamp(0.0, (data.len() - 1) as f64) as usize;
                f64::from(data[idx]) / scale
            }
            Voi::Window {
                center,
                width,
                function,
            } => match function {
                // PS3.3 C.11.2.1.2.1
                VoiLutFunction::Linear => {
                    let w = (width - 1.0).max(f64::MIN_POSITIVE);
                    let c = center - 0.5;
                    if x <= c - w / 2.0 {
                        0.0
                    } else if x > c + w / 2.0 {
                        1.0
                    } else {
                        (x - c) / w + 0.5
                    }
                }
                VoiLutFunction::LinearExact => ((x - center) / width + 0.5).clamp(0.0, 1.0),
                VoiLutFunction::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - center) / width).exp()),
            },
            Voi::MinMax { min, max } => {
                if max > min {
                    (x - min) / (max - min)
                } else {
                    0.0
                }
            }
        }
        .clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_window_follows_the_standard() {
        let voi = Voi::Window {
            center: 2048.0,
            width: 4096.0,
            function: VoiLutFunction::Linear,
        };
        assert_eq!(voi.apply(-10.0), 0.0);
        assert_eq!(voi.apply(5000.0), 1.0);
        assert!((voi.apply(2047.5) - 0.5).abs() < 1e-9);
    }

    fn reason(bytes: &[u8]) -> &'static str {
        decode(bytes, &DecodeLimits::default(), None).map_or_else(|e| e.reason(), |_| "ok")
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
        let e = decode(&no_rows, &DecodeLimits::default(), None).unwrap_err();
        assert_eq!(e.reason(), "decode.missing_attribute");
        assert!(e.to_string().contains("Rows"), "{e}");
        let frames = edit(&|o| {
            o.put(dicom_core::DataElement::new(
                tags::NUMBER_OF_FRAMES,
                dicom_core::VR::IS,
                dicom_core::PrimitiveValue::from("many"),
            ));
        });
        let e = decode(&frames, &DecodeLimits::default(), None).unwrap_err();
        assert_eq!(e.reason(), "decode.bad_attribute", "{e}");
        assert!(e.to_string().contains("NumberOfFrames"), "{e}");
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
                "decode.corrupt",
                "{n}"
            );
        }
    }

    #[test]
    fn impossible_bit_depths_are_refused_before_the_lut() {
        use crate::fixtures::broken::dicom_with_bits_stored;
        assert_eq!(reason(&dicom_with_bits_stored(12)), "ok");
        for bits in [0, 17, 33, 40] {
            assert_eq!(
                reason(&dicom_with_bits_stored(bits)),
                "decode.bad_pixel_description",
                "BitsStored {bits}"
            );
        }
        // HighBit below BitsStored - 1 or past BitsAllocated - 1 is refused; BitsAllocated - 1
        // (older archives) is accepted.
        let err = check_pixel_description(16, 12, 10, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.bad_pixel_description");
        let err = check_pixel_description(16, 12, 16, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.bad_pixel_description");
        assert!(check_pixel_description(16, 12, 15, 1).is_ok());
        let err = check_pixel_description(16, 12, 11, 4).unwrap_err();
        assert_eq!(err.reason(), "decode.bad_pixel_description");
        let err = check_pixel_description(12, 12, 11, 1).unwrap_err();
        assert_eq!(err.reason(), "decode.bad_pixel_description");
        assert!(check_pixel_description(8, 8, 7, 3).is_ok());
    }

    #[test]
    fn min_max_of_a_flat_image_is_black_not_nan() {
        let voi = Voi::min_max(&[7.0, 7.0]);
        assert_eq!(voi.apply(7.0), 0.0);
    }
}
