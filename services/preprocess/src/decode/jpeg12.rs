//! 12-bit JPEG Extended (Process 4, transfer syntax 1.2.840.10008.1.2.4.51 with sample precision
//! 12) and 9- to 16-bit lossless JPEG (Process 14, 1.2.840.10008.1.2.4.57 and .70) through
//! libjpeg-turbo 3's TurboJPEG API.
//!
//! Lossless JPEG: jpeg-decoder (dicom-rs's adapter) decodes it too, but libjpeg-turbo took half
//! the time on a full-size 12-bit CR (147 → 78 ms with statistics and resize, one run). A cut
//! stream is refused as truncated by both (`tests/codecs.rs`).
//!
//! Why not dicom-rs: its JPEG adapter is jpeg-decoder, which stops at "unsupported JPEG feature:
//! SamplePrecision(12)", and zune-jpeg parses 8-bit only. libjpeg-turbo is the reference
//! implementation (IJG lineage) that most PACS encoders themselves use; turbojpeg-sys builds the
//! version it bundles, and its safe `turbojpeg` wrapper has no 12-bit entry point. So this module
//! is the second place in the workspace allowed `unsafe`: a handful of FFI calls, each with its
//! invariants written beside it, and nothing else.
#![allow(unsafe_code)]

use std::borrow::Cow;
use std::ffi::CStr;

use turbojpeg_sys as tj;

use super::DecodeError;

/// What the frame header (SOF) of a JPEG stream says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    pub width: u32,
    pub height: u32,
    pub precision: u32,
    pub lossless: bool,
}

/// A TurboJPEG decompressor handle, destroyed on drop.
struct Handle(tj::tjhandle);

impl Handle {
    fn new() -> Result<Handle, DecodeError> {
        // SAFETY: tj3Init has no preconditions; it returns NULL on failure, checked below.
        let h = unsafe { tj::tj3Init(tj::TJINIT_TJINIT_DECOMPRESS as i32) };
        if h.is_null() {
            // Only an allocation failure makes tj3Init fail: not the image's fault, but there is
            // no transient retry that would help either, so it is reported as a decoder error.
            return Err(DecodeError::CorruptStream {
                codec: "JPEG",
                detail: "libjpeg-turbo could not create a decompressor".into(),
            });
        }
        Ok(Handle(h))
    }

    fn get(&self, param: tj::TJPARAM) -> i32 {
        // SAFETY: self.0 is a live handle (non-null, not yet destroyed); tj3Get only reads it.
        unsafe { tj::tj3Get(self.0, param as i32) }
    }

    fn set(&self, param: tj::TJPARAM, value: i32) -> Result<(), DecodeError> {
        // SAFETY: as in `get`; tj3Set validates `param` and `value` itself.
        if unsafe { tj::tj3Set(self.0, param as i32, value) } != 0 {
            return Err(self.error());
        }
        Ok(())
    }

    /// libjpeg-turbo's own words for the last failure, as a corrupt JPEG stream (a truncated
    /// one when the words say so).
    fn error(&self) -> DecodeError {
        // SAFETY: tj3GetErrorStr returns a pointer to a NUL-terminated string owned by the
        // handle (or a static one), valid until the next call on this handle; it is copied
        // before any other call is made.
        let text = unsafe {
            let p = tj::tj3GetErrorStr(self.0);
            if p.is_null() {
                "unknown libjpeg-turbo error".to_string()
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        DecodeError::from_codec("JPEG", text)
    }

    fn read_header(&self, stream: &[u8]) -> Result<Header, DecodeError> {
        // SAFETY: `stream` is a live slice; libjpeg-turbo reads at most stream.len() bytes from
        // it (its source manager is bounded by jpegSize and reports a premature end instead of
        // reading past it) and keeps no pointer to it after the call returns.
        let rc =
            unsafe { tj::tj3DecompressHeader(self.0, stream.as_ptr(), stream.len() as tj::size_t) };
        if rc != 0 {
            return Err(self.error());
        }
        let dim = |p| u32::try_from(self.get(p)).unwrap_or(0);
        let header = Header {
            width: dim(tj::TJPARAM_TJPARAM_JPEGWIDTH),
            height: dim(tj::TJPARAM_TJPARAM_JPEGHEIGHT),
            precision: dim(tj::TJPARAM_TJPARAM_PRECISION),
            lossless: self.get(tj::TJPARAM_TJPARAM_LOSSLESS) == 1,
        };
        // libjpeg-turbo takes a stream that ends before any frame header for a "tables-only"
        // stream and reports success with a 0×0 image.
        if header.width == 0 || header.height == 0 {
            return Err(DecodeError::CorruptStream {
                codec: "JPEG",
                detail: "no frame header (SOF) in the stream".into(),
            });
        }
        Ok(header)
    }
}

impl Handle {
    /// Decompresses the stream whose header this handle has just read into `out` with
    /// `decompress` (`tj3Decompress12` or `tj3Decompress16`), one (GRAY) sample per pixel and
    /// `pitch` samples per row.
    ///
    /// # Safety
    /// `out` must hold every sample libjpeg-turbo writes for the image as this handle will
    /// decode it: `pitch` × its (scaled) height, with `pitch` ≥ its (scaled) width.
    unsafe fn decompress<T>(
        &self,
        decompress: Decompress<T>,
        stream: &[u8],
        out: &mut [T],
        pitch: i32,
    ) -> Result<(), DecodeError> {
        // SAFETY: `out`'s size is the caller's promise above; self.0 is a live handle; `stream`
        // is read within its length and not kept.
        let rc = unsafe {
            decompress(
                self.0,
                stream.as_ptr(),
                stream.len() as tj::size_t,
                out.as_mut_ptr(),
                pitch,
                tj::TJPF_TJPF_GRAY,
            )
        };
        if rc != 0 {
            return Err(self.error());
        }
        Ok(())
    }
}

/// `tj3Decompress12` (`T` = i16) or `tj3Decompress16` (`T` = u16).
type Decompress<T> = unsafe extern "C" fn(
    tj::tjhandle,
    *const u8,
    tj::size_t,
    *mut T,
    std::os::raw::c_int,
    std::os::raw::c_int,
) -> std::os::raw::c_int;

/// The stream's own size must be the DICOM header's (already checked against the limits), so
/// no buffer is sized by the stream.
fn same_size(h: &Header, width: u32, height: u32) -> Result<(), DecodeError> {
    if (h.width, h.height) != (width, height) {
        return Err(DecodeError::CorruptStream {
            codec: "JPEG",
            detail: format!(
                "stream is {}×{} but the DICOM header says {width}×{height}",
                h.width, h.height
            ),
        });
    }
    Ok(())
}

impl Drop for Handle {
    fn drop(&mut self) {
        // SAFETY: self.0 came from tj3Init, is non-null, and is destroyed exactly once here.
        unsafe { tj::tj3Destroy(self.0) }
    }
}

/// Reads the frame header of a JPEG stream (no pixel is decoded).
pub(super) fn header(stream: &[u8]) -> Result<Header, DecodeError> {
    Handle::new()?.read_header(stream)
}

/// Decodes one 12-bit grayscale JPEG frame into row-major samples (0..=4095). The stream's own
/// size must be `width`×`height` (what the DICOM header declared, already checked against the
/// limits), so the buffer allocated here is never larger than the header promised.
pub(super) fn decode_gray12(
    stream: &[u8],
    width: u32,
    height: u32,
) -> Result<Vec<u16>, DecodeError> {
    decode_gray12_scaled(stream, width, height, 8).map(|(_, _, pixels)| pixels)
}

/// [`decode_gray12`] through a scaled IDCT: `eighths`/8 of each side (1, 2, 4 or 8), each side
/// rounded up as libjpeg-turbo's `TJSCALED` does. Returns the decoded size and its samples.
pub(super) fn decode_gray12_scaled(
    stream: &[u8],
    width: u32,
    height: u32,
    eighths: u32,
) -> Result<(u32, u32, Vec<u16>), DecodeError> {
    if ![1, 2, 4, 8].contains(&eighths) {
        return Err(DecodeError::UnsupportedImage(format!(
            "IDCT scale {eighths}/8"
        )));
    }
    let stream = &*with_sequential_scan_end(stream);
    let handle = Handle::new()?;
    let h = handle.read_header(stream)?;
    if h.precision != 12 || h.lossless {
        return Err(DecodeError::UnsupportedPrecision(format!(
            "JPEG stream of {}-bit {} samples where 12-bit lossy was expected",
            h.precision,
            if h.lossless { "lossless" } else { "lossy" }
        )));
    }
    same_size(&h, width, height)?;
    // A damaged stream is an error, not a picture libjpeg-turbo patched up with grey blocks.
    handle.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
    if eighths != 8 {
        let factor = tj::tjscalingfactor {
            num: eighths as i32,
            denom: 8,
        };
        // SAFETY: handle.0 is a live decompressor whose header was read above (the factor is
        // checked against the supported list by tj3SetScalingFactor itself); the struct is
        // passed by value.
        if unsafe { tj::tj3SetScalingFactor(handle.0, factor) } != 0 {
            return Err(handle.error());
        }
    }
    // TJSCALED: ceil(side · eighths / 8), what tj3Decompress12 writes for the whole image.
    let (sw, sh) = (
        (width * eighths).div_ceil(8),
        (height * eighths).div_ceil(8),
    );
    let n = sw as usize * sh as usize;
    let mut out = vec![0i16; n];
    let pitch = i32::try_from(sw).map_err(|_| DecodeError::TooLarge(format!("{width} columns")))?;
    // SAFETY: `out` holds exactly sw×sh samples and the pitch is `sw`, so libjpeg-turbo writes
    // within it: the stream's size was checked equal to width×height above, on the same handle,
    // the scaling factor set on it gives TJSCALED(width)×TJSCALED(height) = sw×sh, and
    // tj3Decompress12 decodes the header it has just read again from the same bytes.
    unsafe { handle.decompress(tj::tj3Decompress12, stream, &mut out, pitch)? };
    // 12-bit samples are 0..=4095 (the IDCT output is range-limited at every scale), so the
    // sign bit of i16 is never set.
    Ok((sw, sh, out.into_iter().map(|s| s.max(0) as u16).collect()))
}

/// Where a sequential DCT frame's first scan header (SOS) has all zeroes in its spectral
/// selection and successive approximation bytes (Ss = Se = Ah = Al = 0) instead of 0, 63, 0, 0,
/// a copy of the stream with Se = 63; any other stream as it is.
///
/// These fields mean nothing in a sequential scan. libjpeg says why it only warns about them
/// (jdhuff.c: "there are some baseline files out there with all zeroes in these bytes"), and
/// DCMTK's `dcmdjpeg` decodes such files with that warning; jpeg-decoder, which decodes 8-bit
/// JPEG here, takes Se = 0 for 63 in a sequential scan. The 12-bit path sets
/// TJPARAM_STOPONWARNING, so that damaged entropy data is refused rather than patched with grey,
/// and would refuse these files for a header byte alone (pydicom's `JPEG-lossy.dcm`, from
/// GDCM's test data, is one). Writing the value the field must hold keeps every other warning
/// fatal; any other value in these bytes is still refused.
fn with_sequential_scan_end(stream: &[u8]) -> Cow<'_, [u8]> {
    match zeroed_sequential_scan_end(stream) {
        Some(se) => {
            let mut fixed = stream.to_vec();
            fixed[se] = 63;
            Cow::Owned(fixed)
        }
        None => Cow::Borrowed(stream),
    }
}

/// The offset of the first scan's Se byte, when the frame is sequential DCT (SOF0, SOF1 or
/// SOF9) and that scan's Ss, Se, Ah and Al are all zero.
fn zeroed_sequential_scan_end(stream: &[u8]) -> Option<usize> {
    if !stream.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let (mut i, mut sequential) = (2usize, false);
    loop {
        // Fill bytes (0xFF) may precede a marker.
        while stream.get(i..i + 2)? == [0xFF, 0xFF] {
            i += 1;
        }
        let [0xFF, marker, hi, lo] = *stream.get(i..i + 4)? else {
            return None;
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        let segment = stream.get(i + 4..(i + 2).checked_add(len)?)?;
        match marker {
            0xC0 | 0xC1 | 0xC9 => sequential = true,
            0xDA => {
                let components = usize::from(*segment.first()?);
                let at = 1 + 2 * components;
                let fields = segment.get(at..at + 3)?;
                return (sequential && fields == [0, 0, 0]).then_some(i + 4 + at + 1);
            }
            // No standalone marker belongs between SOI and the first SOS.
            0x01 | 0xD0..=0xD9 => return None,
            _ => {}
        }
        i += 2 + len;
    }
}

/// Decodes one lossless grayscale JPEG frame (Process 14, SOF3) of 9 to 16 bits into
/// row-major samples (0..2^precision). The stream's own size must be `width`×`height` (the DICOM
/// header's, already checked against the limits), so the buffer allocated here is never larger
/// than the header promised. `Ok(None)`: a stream this function leaves to jpeg-decoder (lossy, or
/// 8 bits or fewer).
pub(super) fn decode_gray_lossless(
    stream: &[u8],
    width: u32,
    height: u32,
) -> Result<Option<Vec<u16>>, DecodeError> {
    let handle = Handle::new()?;
    let h = handle.read_header(stream)?;
    if !h.lossless || !(9..=16).contains(&h.precision) {
        return Ok(None);
    }
    same_size(&h, width, height)?;
    handle.set(tj::TJPARAM_TJPARAM_STOPONWARNING, 1)?;
    let n = width as usize * height as usize;
    let pitch =
        i32::try_from(width).map_err(|_| DecodeError::TooLarge(format!("{width} columns")))?;
    // SAFETY (both calls): the output holds exactly width×height samples and the pitch is
    // `width`; a lossless image is decoded at its own size (no scaling applies), which was
    // checked equal to width×height above on the same handle, and the call decodes the header
    // it has just read again from the same bytes. `stream` is read within its length.
    if h.precision <= 12 {
        let mut out = vec![0i16; n];
        unsafe { handle.decompress(tj::tj3Decompress12, stream, &mut out, pitch)? };
        // Samples of at most 12 bits never set the sign bit.
        return Ok(Some(out.into_iter().map(|s| s as u16).collect()));
    }
    let mut out = vec![0u16; n];
    unsafe { handle.decompress(tj::tj3Decompress16, stream, &mut out, pitch)? };
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SOI, a frame header with marker `sof`, a DQT, then an SOS for one component whose last
    /// three bytes are `fields`, then two bytes of entropy data and EOI.
    fn stream(sof: u8, fields: [u8; 3]) -> Vec<u8> {
        let mut s = vec![0xFF, 0xD8, 0xFF, sof, 0, 11, 12, 0, 4, 0, 4, 1, 1, 0x11, 0];
        s.extend([0xFF, 0xFF, 0xDB, 0, 3, 0]); // a fill byte, then a (short) DQT
        s.extend([0xFF, 0xDA, 0, 8, 1, 1, 0]);
        s.extend(fields);
        s.extend([0x12, 0x34, 0xFF, 0xD9]);
        s
    }

    #[test]
    fn only_an_all_zero_sequential_scan_header_gets_its_spectral_end() {
        let zeroed = stream(0xC1, [0, 0, 0]);
        let se = zeroed_sequential_scan_end(&zeroed).expect("found");
        assert_eq!(zeroed[se - 1..se + 2], [0, 0, 0]);
        let fixed = with_sequential_scan_end(&zeroed);
        assert_eq!(&fixed[..], &stream(0xC1, [0, 63, 0])[..]);
        assert_eq!(
            zeroed_sequential_scan_end(&stream(0xC0, [0, 0, 0])),
            Some(se)
        );
        // Correct already, or wrong in a way libjpeg is right to refuse: left alone.
        for other in [[0, 63, 0], [0, 5, 0], [1, 0, 0], [0, 0, 0x10]] {
            assert_eq!(zeroed_sequential_scan_end(&stream(0xC1, other)), None);
        }
        // Lossless (Ss is the predictor, Se 0) and progressive frames are not sequential DCT.
        assert_eq!(zeroed_sequential_scan_end(&stream(0xC3, [1, 0, 0])), None);
        assert_eq!(zeroed_sequential_scan_end(&stream(0xC2, [0, 0, 0])), None);
        assert!(matches!(
            with_sequential_scan_end(&stream(0xC1, [0, 63, 0])),
            Cow::Borrowed(_)
        ));
        // Every cut of the stream is walked without a panic.
        for n in 0..zeroed.len() {
            let cut = zeroed_sequential_scan_end(&zeroed[..n]);
            assert!(cut.is_none() || n > se, "{n}");
        }
    }

    #[test]
    fn empty_cut_and_foreign_streams_are_errors_not_crashes() {
        for bytes in [
            &b""[..],
            b"\xff\xd8\xff",
            b"\xff\xd8\xff\xc1\x00",
            b"not a jpeg",
        ] {
            for e in [
                header(bytes).unwrap_err(),
                decode_gray12(bytes, 4, 4).unwrap_err(),
            ] {
                assert!(
                    matches!(e.reason(), "decode.corrupt_stream" | "decode.truncated"),
                    "{bytes:?}: {e}"
                );
            }
        }
    }
}
