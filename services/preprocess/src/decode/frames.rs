//! JPEG Extended (1.2.840.10008.1.2.4.51) frames with 12-bit samples (Process 4), which
//! dicom-rs's JPEG decoder refuses: decoded here by libjpeg-turbo ([`super::jpeg12`]) and put
//! back as native pixel data, so rescale, VOI and MONOCHROME1 go through the same dicom-pixeldata
//! path as every other transfer syntax. 8-bit Process 1/2 streams are left to dicom-rs.

use std::borrow::Cow;

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use super::reduced::{self, Geometry};
use super::{jpeg12, DecodeError};

/// The compressed bytes of the first frame. One frame: all fragments, in order (a frame may be
/// split across fragments). Several frames: one fragment each, as PS3.5 A.4 requires when the
/// offset table is empty; anything else cannot be split without the offset table's help, and
/// cxrflow decodes single-frame radiographs only, so it is refused by name.
pub(super) fn first_frame(
    obj: &DefaultDicomObject,
    frames: u32,
) -> Result<Cow<'_, [u8]>, DecodeError> {
    let corrupt = |detail: String| DecodeError::CorruptStream {
        codec: "JPEG",
        detail,
    };
    let element = obj
        .element(tags::PIXEL_DATA)
        .map_err(|_| DecodeError::NotAnImage("no pixel data (7FE0,0010)".into()))?;
    let fragments = element
        .value()
        .fragments()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| corrupt("pixel data is not encapsulated or has no fragments".into()))?;
    match (frames, fragments) {
        (1, [one]) => Ok(Cow::Borrowed(one.as_slice())),
        (1, many) => Ok(Cow::Owned(many.concat())),
        (n, [first, ..]) if fragments.len() == n as usize => Ok(Cow::Borrowed(first.as_slice())),
        (n, _) => Err(corrupt(format!(
            "{n} frames in {} fragments: cannot tell the first frame's fragments apart",
            fragments.len()
        ))),
    }
}

/// Whether a single-component JPEG 2000 codestream's samples are signed, from its SIZ marker
/// segment ([`reduced::j2k_siz`]). `None` for anything else (a JP2 wrapper, a cut or damaged
/// header, several components, a precision over 16 bits): the decoder then says what it says
/// about the stream.
pub(super) fn j2k_signed(obj: &DefaultDicomObject) -> Option<bool> {
    let element = obj.element(tags::PIXEL_DATA).ok()?;
    let first = element
        .value()
        .fragments()?
        .iter()
        .find(|f| !f.is_empty())?;
    let siz = reduced::j2k_siz(first)?;
    (siz.precision <= 16).then_some(siz.signed)
}

/// If `obj` is JPEG Extended with 12-bit samples, its first frame decoded into native 16-bit
/// samples; `None` for an 8-bit stream (left to dicom-rs). The geometry is the header's, already
/// checked against the limits.
pub(super) fn decode_12bit(
    obj: &DefaultDicomObject,
    g: &Geometry,
) -> Result<Option<Vec<u16>>, DecodeError> {
    let stream = first_frame(obj, g.frames)?;
    let header = jpeg12::header(&stream)?;
    if header.precision != 12 {
        return Ok(None);
    }
    if g.bits_allocated != 16 {
        return Err(DecodeError::InvalidAttribute(format!(
            "BitsAllocated (0028,0100) {} for a 12-bit JPEG stream, must be 16",
            g.bits_allocated
        )));
    }
    if g.samples != 1 {
        return Err(DecodeError::UnsupportedImage(format!(
            "12-bit JPEG with {} samples per pixel; grayscale only",
            g.samples
        )));
    }
    jpeg12::decode_gray12(&stream, g.cols, g.rows).map(Some)
}

/// If `obj` is lossless JPEG (Process 14) with 9- to 16-bit grayscale samples, its first frame
/// decoded by libjpeg-turbo into native 16-bit samples; `None` for anything else (8 bits or
/// fewer, colour, a BitsAllocated other than 16), which dicom-rs's jpeg-decoder refuses or
/// decodes as before.
pub(super) fn decode_lossless(
    obj: &DefaultDicomObject,
    g: &Geometry,
) -> Result<Option<Vec<u16>>, DecodeError> {
    if g.bits_allocated != 16 || g.samples != 1 {
        return Ok(None);
    }
    let stream = first_frame(obj, g.frames)?;
    jpeg12::decode_gray_lossless(&stream, g.cols, g.rows)
}

/// The first frame's decoded samples as the object's native pixel data (explicit VR little
/// endian, one frame).
pub(super) fn replace_with_native(obj: &mut DefaultDicomObject, pixels: Vec<u16>) {
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OW,
        PrimitiveValue::U16(pixels.into()),
    ));
    // Only the first frame was decoded; the native object must not claim more.
    obj.put(DataElement::new(
        tags::NUMBER_OF_FRAMES,
        VR::IS,
        PrimitiveValue::from("1"),
    ));
    obj.meta_mut()
        .set_transfer_syntax(&EXPLICIT_VR_LITTLE_ENDIAN);
}
