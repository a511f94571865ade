//! Decoding at the resolution the model needs, not the resolution the detector had. A 224²
//! model gets nothing from the 2500×3000 samples of a CR: JPEG 2000 can stop the inverse
//! wavelet transform early (OpenJPEG's `reduce`, each level halves both sides) and baseline
//! JPEG can run a smaller IDCT (1/2, 1/4, 1/8). The smallest level whose both sides are still
//! ≥ the model's input is decoded; the result becomes native pixel data with the reduced
//! Rows/Columns, so rescale, VOI and MONOCHROME1 go through dicom-pixeldata as for every other
//! syntax. dicom-pixeldata's adapters expose neither knob, hence the direct codec calls.
//!
//! Only an image that states its display window (WindowCenter/WindowWidth, the VOI every
//! presentation CR/DX carries) is reduced: without one the display mapping is a min-max window
//! over the samples, and the extremes of a full-resolution image (noise, collimator edges) are
//! not those of its averaged reduced level, so the model's input would change contrast.
//!
//! Anything unusual (several frames or samples, a codestream whose size disagrees with the
//! header, a codec error) leaves the object untouched: the full-resolution path then decodes it
//! or refuses it with the reason it always gave, so no check or reason code changes here.
//!
//! Every plane not reduced here (other syntaxes, no window) is reduced after its
//! full-resolution decode instead, by the same number of halvings: the display mapping averages
//! 2ⁿ×2ⁿ blocks of display values as it maps the samples (`display::box_reduce`), with the
//! window from the extremes of every stored sample when there is none. So is a JPEG 2000 level
//! still twice or more the model's side (a codestream with fewer decomposition levels than
//! halvings wanted), for the halvings left.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN;

use super::frames::first_frame;
use super::syntax::{is_jpeg2000, JPEG_BASELINE, JPEG_EXTENDED};

/// The header's geometry, already checked against the limits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub rows: u32,
    pub cols: u32,
    pub frames: u32,
    pub bits_allocated: u32,
    /// BitsStored (checked against BitsAllocated) and PixelRepresentation 1.
    pub bits_stored: u32,
    pub signed: bool,
    pub samples: u32,
}

/// How a reduced plane samples the stored image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reduction {
    /// Stored pixels per decoded pixel along each side (2, 4, 8, ...).
    pub factor: u32,
    /// Where the stored image's left (and top) edge lies on the decoded grid, in decoded pixels.
    /// A JPEG 2000 level's sample k is the low-pass around stored sample k·factor, so the edge
    /// is at ½ − ½/factor; a scaled IDCT's sample k averages block k, so the edge is at 0.
    pub offset: f64,
}

/// How many halvings keep both sides ≥ `need` (JPEG 2000 reduced sizes round up).
pub(crate) fn halvings(cols: u32, rows: u32, need: u32) -> u32 {
    let mut r = 0;
    while r < 31 && cols.div_ceil(1 << (r + 1)) >= need && rows.div_ceil(1 << (r + 1)) >= need {
        r += 1;
    }
    r
}

/// Decodes `obj`'s first frame at a reduced resolution when its syntax allows it and a
/// reduction gains anything; says how, when it replaced the pixel data.
pub(super) fn decode(
    obj: &mut DefaultDicomObject,
    syntax: &str,
    g: Geometry,
    need: u32,
) -> Option<Reduction> {
    if g.frames != 1 || g.samples != 1 || !states_a_window(obj) {
        return None;
    }
    let reduced = match syntax.trim_end_matches('\0') {
        // Lossy JPEG 2000 too: its wavelet level moved the model's outputs on held-out images
        // with devices only while the full-resolution reference wrapped its overshoot (fixed in
        // the display mapping, `OutOfRange::Clamp`); since, at most 0.038 on 100 of them.
        // HTJ2K too: OpenJPEG's `reduce` skips the discarded levels' HT code-blocks as well.
        s if is_jpeg2000(s) => j2k(obj, g, need),
        JPEG_BASELINE | JPEG_EXTENDED if g.bits_allocated == 8 => jpeg8(obj, g, need),
        // 12-bit extended: libjpeg-turbo's scaled IDCT (jpeg-decoder has no 12-bit path).
        JPEG_EXTENDED if g.bits_allocated == 16 => jpeg12(obj, g, need),
        _ => None,
    };
    let (width, height, value, reduction) = reduced?;
    let vr = if g.bits_allocated == 8 {
        VR::OB
    } else {
        VR::OW
    };
    obj.put(DataElement::new(tags::PIXEL_DATA, vr, value));
    obj.put(DataElement::new(
        tags::ROWS,
        VR::US,
        PrimitiveValue::from(height as u16),
    ));
    obj.put(DataElement::new(
        tags::COLUMNS,
        VR::US,
        PrimitiveValue::from(width as u16),
    ));
    obj.meta_mut()
        .set_transfer_syntax(&EXPLICIT_VR_LITTLE_ENDIAN);
    Some(reduction)
}

/// A usable first window (positive, finite width), as the display mapping will read it.
fn states_a_window(obj: &DefaultDicomObject) -> bool {
    let first = |tag| {
        obj.element_opt(tag)
            .ok()
            .flatten()
            .and_then(|e| e.to_multi_float64().ok())
            .and_then(|v| v.first().copied())
    };
    matches!(
        (first(tags::WINDOW_CENTER), first(tags::WINDOW_WIDTH)),
        (Some(c), Some(w)) if c.is_finite() && w.is_finite() && w > 0.0
    )
}

fn be16(s: &[u8], at: usize) -> Option<usize> {
    Some(usize::from(u16::from_be_bytes(
        s.get(at..at + 2)?.try_into().ok()?,
    )))
}

fn be32(s: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(s.get(at..at + 4)?.try_into().ok()?))
}

/// A single-component J2K codestream's SIZ marker segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Siz {
    pub width: u32,
    pub height: u32,
    /// XOsiz, YOsiz: where the image starts on the reference grid.
    pub offset: (u32, u32),
    /// Ssiz bit 7.
    pub signed: bool,
    /// Ssiz bits 0–6, plus one.
    pub precision: u32,
}

/// The SIZ marker segment of a raw J2K codestream, which the standard puts right after SOC,
/// when it describes one component (Lsiz = 38 + 3 × Csiz, Csiz = 1). None for anything else (a
/// JP2 wrapper, a cut or damaged header, several components).
pub(super) fn j2k_siz(s: &[u8]) -> Option<Siz> {
    // SOC, SIZ, Lsiz Rsiz Xsiz Ysiz XOsiz YOsiz XTsiz YTsiz XTOsiz YTOsiz Csiz, then per
    // component Ssiz XRsiz YRsiz.
    if s.get(..4)? != [0xFF, 0x4F, 0xFF, 0x51] || be16(s, 4)? != 41 || be16(s, 40)? != 1 {
        return None;
    }
    let ssiz = *s.get(42)?;
    let offset = (be32(s, 16)?, be32(s, 20)?);
    Some(Siz {
        width: be32(s, 8)?.checked_sub(offset.0)?,
        height: be32(s, 12)?.checked_sub(offset.1)?,
        offset,
        signed: ssiz & 0x80 != 0,
        precision: u32::from(ssiz & 0x7F) + 1,
    })
}

/// From a raw J2K codestream's main header: its SIZ ([`j2k_siz`]) and the fewest decomposition
/// levels any COD/COC declares (reducing past them is an OpenJPEG error). None for anything
/// else (a JP2 wrapper, a truncated header).
fn j2k_main_header(s: &[u8]) -> Option<(Siz, u32)> {
    let siz = j2k_siz(s)?;
    let (mut pos, mut levels) = (2usize, None::<u32>);
    loop {
        let marker = be16(s, pos)?;
        let len = be16(s, pos + 2)?;
        match marker {
            // COD: Lcod Scod SGcod(4) then SPcod's decomposition levels.
            0xFF52 => {
                let l = u32::from(*s.get(pos + 9)?);
                levels = Some(levels.map_or(l, |m| m.min(l)));
            }
            // COC (one component, so Ccoc is one byte): Lcoc Ccoc Scoc then the levels.
            0xFF53 => {
                let l = u32::from(*s.get(pos + 6)?);
                levels = Some(levels.map_or(l, |m| m.min(l)));
            }
            // SOT: the main header is over.
            0xFF90 => break,
            _ => {}
        }
        pos += 2 + len;
    }
    Some((siz, levels?))
}

/// A reduced plane: its size, its samples, and how it samples the stored image.
type Plane = (u32, u32, PrimitiveValue, Reduction);

fn j2k(obj: &DefaultDicomObject, g: Geometry, need: u32) -> Option<Plane> {
    let stream = first_frame(obj, 1).ok()?;
    let (siz, levels) = j2k_main_header(&stream)?;
    // A codestream larger than the header says was never checked against the limits.
    if (siz.width, siz.height) != (g.cols, g.rows) {
        return None;
    }
    // A level's samples lie on the reference grid's multiples of 2^reduce. An image offset
    // (XOsiz, YOsiz) that is not such a multiple moves them off the stored pixels the display
    // mapping takes them for, by up to 2^reduce − 1 of them (`opj_compress -d 7,13`: the model
    // input moved by up to 15 of 255), so the codec reduces only as far as both offsets allow
    // and the box does the rest.
    let aligned = |o: u32| if o == 0 { 31 } else { o.trailing_zeros() };
    let reduce = halvings(g.cols, g.rows, need)
        .min(levels)
        .min(aligned(siz.offset.0))
        .min(aligned(siz.offset.1));
    if reduce == 0 {
        return None;
    }
    let params = jpeg2k::DecodeParameters::new().reduce(reduce);
    let image = jpeg2k::Image::from_bytes_with(&stream, params).ok()?;
    let [c] = image.components() else {
        return None;
    };
    let (cw, ch) = (c.width(), c.height());
    let expected = (g.cols.div_ceil(1 << reduce), g.rows.div_ceil(1 << reduce));
    if (cw, ch) != expected || c.data().len() != cw as usize * ch as usize {
        return None;
    }
    // A reduced level is the low-pass of the levels below it, and the 5/3 and 9/7 low-pass
    // filters have negative taps: beside a sharp edge of a region clipped at 0 or at the top of
    // the range (direct-exposure background, a dense device) a sample lands outside the stored
    // range, where a reversible codestream's full-resolution output never goes (an irreversible
    // one's does too; the display mapping clamps those, `OutOfRange::Clamp`). Unclamped, 4097 keeps only its
    // low 12 bits under BitsStored 12 and a white edge turns black (held-out renderings: |Δ| up
    // to 217 of 255 on the model input). So clamp to the stored range first (BitsStored: an
    // encoder may well declare 16-bit precision for 12-bit samples, as Pillow's does).
    let prec = g.bits_stored.min(c.precision()).clamp(1, 16);
    let (lo, hi) = if g.signed {
        (-(1i32 << (prec - 1)), (1i32 << (prec - 1)) - 1)
    } else {
        (0, (1i32 << prec) - 1)
    };
    let clamped = c.data().iter().map(|&v| v.clamp(lo, hi));
    // Samples as dicom-pixeldata's adapter stores them: the low bytes of each i32 (two's
    // complement keeps signed samples signed under PixelRepresentation 1).
    let value = match g.bits_allocated {
        8 => PrimitiveValue::U8(clamped.map(|v| v as u8).collect()),
        16 => PrimitiveValue::U16(clamped.map(|v| v as u16).collect()),
        _ => return None,
    };
    let factor = 1 << reduce;
    let offset = 0.5 - 0.5 / f64::from(factor);
    Some((cw, ch, value, Reduction { factor, offset }))
}

fn jpeg8(obj: &DefaultDicomObject, g: Geometry, need: u32) -> Option<Plane> {
    let stream = first_frame(obj, 1).ok()?;
    let mut dec = jpeg_decoder::Decoder::new(&stream[..]);
    dec.read_info().ok()?;
    let info = dec.info()?;
    if (u32::from(info.width), u32::from(info.height)) != (g.cols, g.rows)
        || info.pixel_format != jpeg_decoder::PixelFormat::L8
    {
        return None;
    }
    // IDCT scales are 1/1, 1/2, 1/4, 1/8 (sizes round up): the smallest with both sides ≥ need.
    let eighths = idct_eighths(g, need)?;
    let (sw, sh) = (
        (g.cols * eighths).div_ceil(8),
        (g.rows * eighths).div_ceil(8),
    );
    // jpeg-decoder takes the smallest scale reaching the request on either side; asking for
    // exactly the chosen size gets that scale, and the check below proves it.
    let (ow, oh) = dec
        .scale(u16::try_from(sw).ok()?, u16::try_from(sh).ok()?)
        .ok()?;
    let (ow, oh) = (u32::from(ow), u32::from(oh));
    if ow < need || oh < need {
        return None;
    }
    let pixels = dec.decode().ok()?;
    if pixels.len() != ow as usize * oh as usize {
        return None;
    }
    let reduction = Reduction {
        factor: 8 / eighths,
        offset: 0.0,
    };
    Some((ow, oh, PrimitiveValue::U8(pixels.into()), reduction))
}

/// The IDCT scale (eighths of each side, sizes rounded up) of the smallest plane with both sides
/// still ≥ `need`; None when only the full size reaches it.
fn idct_eighths(g: Geometry, need: u32) -> Option<u32> {
    (0..=3u32)
        .rev()
        .map(|k| 8 >> k)
        .find(|&e| (g.cols * e).div_ceil(8) >= need && (g.rows * e).div_ceil(8) >= need)
        .filter(|&e| e != 8)
}

fn jpeg12(obj: &DefaultDicomObject, g: Geometry, need: u32) -> Option<Plane> {
    let stream = first_frame(obj, 1).ok()?;
    let h = super::jpeg12::header(&stream).ok()?;
    // Anything else (8-bit, lossless, a size the header contradicts) takes the full path and
    // its checks and reason codes.
    if h.precision != 12 || h.lossless || (h.width, h.height) != (g.cols, g.rows) {
        return None;
    }
    let eighths = idct_eighths(g, need)?;
    let (w, hh, pixels) =
        super::jpeg12::decode_gray12_scaled(&stream, g.cols, g.rows, eighths).ok()?;
    if w < need || hh < need || pixels.len() != w as usize * hh as usize {
        return None;
    }
    let reduction = Reduction {
        factor: 8 / eighths,
        offset: 0.0,
    };
    Some((w, hh, PrimitiveValue::U16(pixels.into()), reduction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn halvings_stop_at_the_last_level_with_both_sides_at_least_the_target() {
        // 2500×3000 → 1250×1500 → 625×750 → 313×375; the next, 157×188, is under 224.
        assert_eq!(halvings(2500, 3000, 224), 3);
        assert_eq!(halvings(448, 1000, 224), 1);
        assert_eq!(
            halvings(447, 1000, 224),
            1,
            "224 = ceil(447 / 2) still fits"
        );
        assert_eq!(halvings(446, 4000, 224), 0);
        assert_eq!(halvings(224, 224, 224), 0);
        assert_eq!(halvings(100, 100, 224), 0);
    }

    #[test]
    fn a_jp2_wrapper_or_a_cut_header_gives_no_size() {
        assert_eq!(j2k_main_header(b"\0\0\0\x0cjP  \r\n\x87\n"), None);
        assert_eq!(j2k_main_header(&[0xFF, 0x4F, 0xFF, 0x51, 0x00]), None);
    }
}
