//! From decoded DICOM samples to one display-oriented plane, following PS3.3 C.11: modality LUT
//! (rescale slope/intercept), then the first VOI LUT (table if present, else window
//! center/width with its VOI LUT function, else a min-max window over the image), then
//! MONOCHROME1 inversion. Pixel padding (PS3.3 C.7.5.1.1.2: Pixel Padding Value, with Pixel
//! Padding Range Limit) is no part of the picture: it is left out of the min-max window and shown
//! black, whatever its value.
//!
//! A single-sample image of 8 or 16 bits allocated (every radiograph) takes one pass over its
//! stored samples to count them and one to map them through a table of 2^BitsStored entries
//! (dicom-pixeldata's [`Lut`]) holding the whole chain above, so no sample goes through floating
//! point and the statistics come from the counts ([`DecodedImage::histogram`]). Other images
//! (RGB, 32 bits allocated) take the general path: every sample in `f64`.

use std::borrow::Cow;

use dicom_pixeldata::{
    DecodedPixelData, Lut, PixelRepresentation, Rescale, VoiLutFunction, WindowLevel,
};

use super::{unit_to_u16, Container, DecodeError, DecodedImage, Reduction};

/// A dicom-pixeldata error after the pixel data was decoded (LUT and window attributes).
fn attr_err(e: dicom_pixeldata::Error) -> DecodeError {
    DecodeError::InvalidAttribute(e.to_string())
}

/// How a decoded sample outside BitsStored's range is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OutOfRange {
    /// Bits above HighBit are not part of the value (PS3.5 8.1.1): every sample is masked to
    /// BitsStored. Stored samples (native pixel data, and lossless codecs, which give back
    /// exactly what was stored) are read so.
    Mask,
    /// A lossy codec's reconstruction overshoots its input beside sharp edges, and nothing
    /// clips it to BitsStored when its codestream declares a higher precision (Pillow's OpenJPEG
    /// writes 16 for 12-bit samples): the sample saturates at the stored range's ends. Masked,
    /// 4115 under BitsStored 12 would read as 19, and a saturated device would turn black.
    Clamp,
}

/// The stored values that pad an image to its rectangle (or mark samples without meaning):
/// Pixel Padding Value (0028,0120) alone, or the inclusive range it spans with Pixel Padding
/// Range Limit (0028,0121), in the stored values' own representation (PS3.3 C.7.5.1.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Padding {
    lo: i64,
    hi: i64,
}

impl Padding {
    /// From the two attributes as read. Both are US or SS as Pixel Representation says, but an
    /// implicit VR file cannot say which, so each is taken as the 16 bits it holds, read signed
    /// when the samples are.
    pub(crate) fn new(value: i64, range_limit: Option<i64>, signed: bool) -> Padding {
        let as_stored = |v: i64| {
            if signed {
                i64::from(v as u16 as i16)
            } else {
                i64::from(v as u16)
            }
        };
        let (a, b) = (as_stored(value), as_stored(range_limit.unwrap_or(value)));
        Padding {
            lo: a.min(b),
            hi: a.max(b),
        }
    }

    fn contains(self, v: i64) -> bool {
        (self.lo..=self.hi).contains(&v)
    }
}

/// What the display mapping takes from the header besides what dicom-pixeldata reads.
#[derive(Debug, Clone, Default)]
pub(super) struct HeaderExtras {
    pub(super) view_position: Option<String>,
    pub(super) padding: Option<Padding>,
}

pub(super) fn to_display(
    pd: &DecodedPixelData<'_>,
    extras: HeaderExtras,
    reduce_to: Option<u32>,
    range: OutOfRange,
) -> Result<DecodedImage, DecodeError> {
    if is_integer_gray(pd) {
        let data = pd
            .frame_data(0)
            .map_err(|e| DecodeError::from_decoder("DICOM pixel data", &e))?;
        integer_display(
            pd,
            data,
            (pd.columns(), pd.rows()),
            extras,
            reduce_to,
            range,
        )
    } else {
        float_display(pd, extras.view_position)
    }
}

/// One sample of 8 or 16 bits allocated and at most 16 stored, MONOCHROME1 or MONOCHROME2:
/// what the table path takes.
pub(super) fn is_integer_gray(pd: &DecodedPixelData<'_>) -> bool {
    let photometric = pd.photometric_interpretation().as_str();
    (photometric == "MONOCHROME1" || photometric == "MONOCHROME2")
        && pd.samples_per_pixel() == 1
        && matches!(pd.bits_allocated(), 8 | 16)
        && (1..=16).contains(&pd.bits_stored())
}

/// [`to_display`] with every sample in `f64`: RGB, 32 bits allocated (and, in the tests, the
/// reference the integer path is checked against). Pixel padding is not looked for here: its
/// attributes are 16-bit values, for the 8- and 16-bit samples the table path takes.
fn float_display(
    pd: &DecodedPixelData<'_>,
    view_position: Option<String>,
) -> Result<DecodedImage, DecodeError> {
    let photometric = pd.photometric_interpretation().as_str().to_string();
    let (width, height) = (pd.columns(), pd.rows());
    let n = width as usize * height as usize;
    // Modality LUT (rescale) applied, VOI not yet: values in modality units.
    let raw: Vec<f64> = pd
        .to_vec_frame::<f64>(0)
        .map_err(|e| DecodeError::from_decoder("DICOM pixel data", &e))?;
    let values: Vec<f64> = match pd.samples_per_pixel() {
        1 => raw,
        3 if pd.photometric_interpretation().as_str() == "RGB" => raw
            .chunks_exact(3)
            .map(|p| 0.299 * p[0] + 0.587 * p[1] + 0.114 * p[2])
            .collect(),
        s => {
            return Err(DecodeError::UnsupportedImage(format!(
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
        return Err(DecodeError::UnsupportedImage(format!(
            "photometric interpretation (0028,0004) {photometric}"
        )));
    }
    let voi = Voi::for_image(pd, || Voi::min_max(&values[..n]))?;
    let pixels = values[..n]
        .iter()
        .map(|&v| {
            let y = voi.apply(v);
            unit_to_u16(if monochrome1 { 1.0 - y } else { y })
        })
        .collect();
    Ok(DecodedImage {
        view_position,
        ..DecodedImage::plane(
            width,
            height,
            pixels,
            pd.bits_stored(),
            photometric,
            Container::Dicom,
        )
    })
}

/// [`to_display`] for an image [`is_integer_gray`] accepts: the frame's samples (`data`, in the
/// machine's byte order; `size` = Columns × Rows), as `u8` or `u16`, go to [`display_samples`].
/// `pd` supplies only the display attributes: samples already in memory (read in place from
/// the file, or decoded by libjpeg-turbo) come with a `pd` decoded from the header alone
/// (`dicom::display_decoded`).
pub(super) fn integer_display(
    pd: &DecodedPixelData<'_>,
    data: &[u8],
    (width, height): (u32, u32),
    extras: HeaderExtras,
    reduce_to: Option<u32>,
    range: OutOfRange,
) -> Result<DecodedImage, DecodeError> {
    let n = width as usize * height as usize;
    let wide = pd.bits_allocated() == 16;
    let samples = if wide { data.len() / 2 } else { data.len() };
    if samples < n {
        return Err(DecodeError::Truncated(format!(
            "pixel data holds {samples} samples, {width}×{height} needs {n}"
        )));
    }
    let plane = Plane {
        width: width as usize,
        height: height as usize,
        reduce_to,
        range,
    };
    if wide {
        // dicom-pixeldata holds the samples in the machine's byte order; a buffer that does
        // not start on a 2-byte boundary is copied once.
        let words: Cow<'_, [u16]> = match bytemuck::try_cast_slice(&data[..2 * n]) {
            Ok(w) => Cow::Borrowed(w),
            Err(_) => Cow::Owned(bytemuck::pod_collect_to_vec(&data[..2 * n])),
        };
        display_samples(pd, &words, plane, extras)
    } else {
        display_samples(pd, &data[..n], plane, extras)
    }
}

/// The frame's geometry, and the model's input side when the plane may be box-reduced.
#[derive(Debug, Clone, Copy)]
struct Plane {
    width: usize,
    height: usize,
    reduce_to: Option<u32>,
    range: OutOfRange,
}

/// Every sample goes through one table (indexed by the raw sample, which the table masks to
/// BitsStored) and is counted on the way. A file without a VOI LUT or window needs the range
/// of its values first: one counting pass, then the mapping pass.
///
/// With `reduce_to`, a plane whose sides both stay ≥ that side when halved comes out
/// box-averaged over blocks of 2, 4, 8, … stored pixels (the most halvings that keep both
/// sides ≥ `reduce_to`, as the JPEG 2000 and JPEG reduced decodes choose): the display values
/// of each block are averaged, so rescale, VOI and MONOCHROME1 apply to every stored sample as
/// at full resolution. The full-resolution plane, which nothing but the resize would read, is
/// never written; the statistics are the reduced plane's ([`crate::stats::image_stats`]), so
/// the plane hands over no counts.
fn display_samples<T: Sample>(
    pd: &DecodedPixelData<'_>,
    samples: &[T],
    plane: Plane,
    extras: HeaderExtras,
) -> Result<DecodedImage, DecodeError> {
    let bits_stored = pd.bits_stored();
    let signed = pd.pixel_representation() == PixelRepresentation::Signed;
    let rescale: Rescale = pd
        .rescale()
        .map_err(attr_err)?
        .first()
        .copied()
        .unwrap_or(Rescale {
            slope: 1.0,
            intercept: 0.0,
        });
    let mask = (1usize << bits_stored) - 1;
    // The masked stored sample a raw sample stands for: its low BitsStored bits, or, clamped,
    // those of the nearest value in the stored range (raw samples being `T`'s width, two's
    // complement when signed).
    let wide = std::mem::size_of::<T>() == 2;
    // A raw sample as the whole word it is.
    let word = |raw: usize| -> i64 {
        match (signed, wide) {
            (true, true) => i64::from(raw as u16 as i16),
            (true, false) => i64::from(raw as u8 as i8),
            (false, _) => raw as i64,
        }
    };
    let stored = |raw: usize| -> usize {
        match plane.range {
            OutOfRange::Mask => raw & mask,
            OutOfRange::Clamp => {
                let v = word(raw);
                let (lo, hi) = if signed {
                    (-((mask as i64 + 1) / 2), mask as i64 / 2)
                } else {
                    (0, mask as i64)
                };
                (v.clamp(lo, hi) & mask as i64) as usize
            }
        }
    };
    // The stored value a masked sample stands for (two's complement when signed).
    let value_of = |i: usize| -> i64 {
        if signed && i > mask / 2 {
            i as i64 - (mask + 1) as i64
        } else {
            i as i64
        }
    };
    // Padding by its stored value, or by its whole word where the padding value lies beyond
    // BitsStored's range (a device that fills the bits above HighBit too).
    let is_padding = |raw: usize| {
        extras
            .padding
            .is_some_and(|p| p.contains(value_of(stored(raw))) || p.contains(word(raw)))
    };
    let mut counted = None;
    let voi = Voi::for_image(pd, || {
        let counts = count(samples, None).1;
        // The extremes of the modality values present, padding left out.
        let (min, max) = (0..counts.len())
            .filter(|&raw| counts[raw] > 0 && !is_padding(raw))
            .map(|raw| rescale.apply(value_of(stored(raw)) as f64))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        counted = Some(counts);
        Voi::MinMax { min, max }
    })?;
    let monochrome1 = pd.photometric_interpretation().as_str() == "MONOCHROME1";
    let lut: Lut<u16> = Lut::new_with_fn(bits_stored, signed, |x| {
        let y = voi.apply(rescale.apply(x));
        f64::from(unit_to_u16(if monochrome1 { 1.0 - y } else { y }))
    })
    .map_err(|e| DecodeError::InvalidAttribute(format!("display table: {e}")))?;
    // The table over every raw sample value (masking or clamping included), so indexing it
    // needs no check. Padding is black.
    let table: Vec<u16> = (0..=u16::MAX)
        .map(usize::from)
        .map(|raw| {
            if is_padding(raw) {
                0
            } else {
                lut.get(stored(raw) as u16)
            }
        })
        .collect();
    let table: &[u16; 1 << 16] = table.as_slice().try_into().expect("65536 entries");
    let halvings = plane.reduce_to.map_or(0, |need| {
        super::reduced::halvings(plane.width as u32, plane.height as u32, need)
    });
    let (pixels, counts, reduction) = if halvings > 0 {
        let factor = 1usize << halvings;
        let pixels = box_reduce(samples, plane.width, factor, table);
        let reduction = Reduction {
            factor: factor as u32,
            // Decoded pixel k averages stored pixels k·factor ..< (k+1)·factor.
            offset: 0.0,
        };
        (pixels, None, Some(reduction))
    } else {
        let (pixels, counts) = match counted {
            Some(counts) => (
                samples
                    .iter()
                    .map(|&s| table[usize::from(s.raw())])
                    .collect(),
                counts,
            ),
            None => count(samples, Some(table)),
        };
        (pixels, Some(counts), None)
    };
    // The same counts, by display value: the statistics need no pass over the pixels.
    let histogram = counts.map(|counts| {
        let mut histogram = vec![0u64; 1 << 16];
        for (raw, &c) in counts.iter().enumerate() {
            if c > 0 {
                histogram[usize::from(table[raw])] += c;
            }
        }
        histogram
    });
    let factor = reduction.map_or(1, |r| r.factor as usize);
    let (width, height) = (plane.width.div_ceil(factor), plane.height.div_ceil(factor));
    Ok(DecodedImage {
        histogram,
        view_position: extras.view_position,
        reduction,
        ..DecodedImage::plane(
            width as u32,
            height as u32,
            pixels,
            bits_stored,
            pd.photometric_interpretation().as_str().to_string(),
            Container::Dicom,
        )
    })
}

/// Counters for each raw sample value (`u8` and `u16` samples alike index 65536 of them).
/// Four interleaved sets keep runs of equal samples (flat regions, the collimated border) from
/// waiting on one counter. Fixed-size, so indexing by a 16-bit value needs no bounds check.
struct Counter {
    lanes: Box<[[u32; 1 << 16]; 4]>,
}

impl Counter {
    fn new() -> Counter {
        let zeroed: Box<[[u32; 1 << 16]]> = vec![[0u32; 1 << 16]; 4].into_boxed_slice();
        Counter {
            lanes: zeroed.try_into().expect("four sets"),
        }
    }

    #[inline(always)]
    fn quad(&mut self, [a, b, c, d]: [u16; 4]) {
        let [l0, l1, l2, l3] = &mut *self.lanes;
        l0[usize::from(a)] += 1;
        l1[usize::from(b)] += 1;
        l2[usize::from(c)] += 1;
        l3[usize::from(d)] += 1;
    }

    fn add<T: Sample>(&mut self, samples: &[T]) {
        let mut quads = samples.chunks_exact(4);
        for q in &mut quads {
            self.quad([q[0].raw(), q[1].raw(), q[2].raw(), q[3].raw()]);
        }
        for &s in quads.remainder() {
            self.lanes[0][usize::from(s.raw())] += 1;
        }
    }

    /// Counts per raw value, as long as `T`'s range.
    fn finish<T>(self) -> Vec<u64> {
        let size = 1usize << (8 * std::mem::size_of::<T>()).min(16);
        let [l0, l1, l2, l3] = &*self.lanes;
        (0..size)
            .map(|i| u64::from(l0[i]) + u64::from(l1[i]) + u64::from(l2[i]) + u64::from(l3[i]))
            .collect()
    }
}

/// A stored sample: `u8` or `u16`.
trait Sample: Copy {
    fn raw(self) -> u16;
}

impl Sample for u8 {
    #[inline(always)]
    fn raw(self) -> u16 {
        u16::from(self)
    }
}

impl Sample for u16 {
    #[inline(always)]
    fn raw(self) -> u16 {
        self
    }
}

/// Counts each raw sample value ([`Counter`]) and, with `table`, maps every sample through it
/// in the same pass.
fn count<T: Sample>(samples: &[T], table: Option<&[u16; 1 << 16]>) -> (Vec<u16>, Vec<u64>) {
    let mut counter = Counter::new();
    let Some(t) = table else {
        counter.add(samples);
        return (Vec::new(), counter.finish::<T>());
    };
    let mut pixels = Vec::with_capacity(samples.len());
    let mut quads = samples.chunks_exact(4);
    for q in &mut quads {
        let quad = [q[0].raw(), q[1].raw(), q[2].raw(), q[3].raw()];
        counter.quad(quad);
        pixels.extend_from_slice(&quad.map(|raw| t[usize::from(raw)]));
    }
    counter.add(quads.remainder());
    pixels.extend(quads.remainder().iter().map(|&s| t[usize::from(s.raw())]));
    (pixels, counter.finish::<T>())
}

/// The display plane of `samples` (rows of `width`) averaged over `factor`×`factor` blocks,
/// rounded to nearest; the blocks of the last column and row average the stored pixels they
/// hold. One pass: each row is summed into its band's blocks while it is in cache.
fn box_reduce<T: Sample>(
    samples: &[T],
    width: usize,
    factor: usize,
    table: &[u16; 1 << 16],
) -> Vec<u16> {
    let height = samples.len() / width;
    let (out_width, out_height) = (width.div_ceil(factor), height.div_ceil(factor));
    let mut pixels = Vec::with_capacity(out_width * out_height);
    let mut sums = vec![0u64; out_width];
    // One row's display values: mapped in one sequential pass, then summed by block from L1.
    let mut mapped = vec![0u16; width];
    for band in samples[..width * height].chunks(width * factor) {
        sums.fill(0);
        for row in band.chunks_exact(width) {
            for (m, &s) in mapped.iter_mut().zip(row) {
                *m = table[usize::from(s.raw())];
            }
            for (sum, block) in sums.iter_mut().zip(mapped.chunks(factor)) {
                // A block row holds at most 65535 samples (Columns is 16 bits): 32 bits hold it.
                let row_sum: u32 = block.iter().map(|&v| u32::from(v)).sum();
                *sum += u64::from(row_sum);
            }
        }
        let rows = (band.len() / width) as u64;
        for (block, &sum) in sums.iter().enumerate() {
            let n = rows * factor.min(width - block * factor) as u64;
            pixels.push(((sum + n / 2) / n) as u16);
        }
    }
    pixels
}

/// A display plane (rows of `width`) averaged over `factor`×`factor` blocks, exactly as the
/// box reduction averages a frame's display values: a plane decoded in full, reduced this way,
/// is the plane the reduced path produces.
pub(crate) fn box_average(plane: &[u16], width: usize, factor: usize) -> Vec<u16> {
    let identity: Vec<u16> = (0..=u16::MAX).collect();
    let identity: &[u16; 1 << 16] = identity.as_slice().try_into().expect("65536 entries");
    box_reduce(plane, width, factor, identity)
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
    /// The first VOI LUT or window the file declares, else `min_max` (a window over the
    /// image's own range).
    fn for_image(
        pd: &DecodedPixelData<'_>,
        min_max: impl FnOnce() -> Voi,
    ) -> Result<Voi, DecodeError> {
        if let Some(lut) = pd
            .voi_lut_sequence()
            .map_err(attr_err)?
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
            .map_err(attr_err)?
            .and_then(|w| w.first().copied())
        {
            let function = pd
                .voi_lut_function()
                .map_err(attr_err)?
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
        Ok(min_max())
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
    fn padding_attributes_are_read_as_the_samples_are() {
        // An implicit VR file's 0xFFFF, read as US, is -1 where the samples are signed.
        assert_eq!(
            Padding::new(65535, None, true),
            Padding::new(-1, None, true)
        );
        assert!(Padding::new(65535, None, true).contains(-1));
        assert!(Padding::new(65535, None, false).contains(65535));
        assert!(!Padding::new(65535, None, false).contains(-1));
        // The range spans both values, whichever is the larger.
        let range = Padding::new(199, Some(0), false);
        assert!(range.contains(0) && range.contains(199) && !range.contains(200));
        assert_eq!(range, Padding::new(0, Some(199), false));
    }

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

    /// The integer path gives exactly the pixels and statistics of the float path, on files
    /// DCMTK wrote (big endian, RLE, JPEG lossless, JPEG-LS) and on signed, rescaled, windowed,
    /// unwindowed, MONOCHROME1/2, 8- and 16-bit images.
    #[test]
    fn the_table_path_matches_every_sample_in_floating_point() {
        use crate::fixtures::{dicom, signed_samples, DicomSpec};
        use crate::stats::image_stats;
        use dicom_object::OpenFileOptions;
        use dicom_pixeldata::PixelDecoder;
        let mut files: Vec<(&str, Vec<u8>)> = vec![
            (
                "windowed CR",
                dicom(&DicomSpec {
                    window: Some((2048.0, 4096.0)),
                    ..DicomSpec::cr(90, 110)
                }),
            ),
            ("CR without a window", dicom(&DicomSpec::cr(90, 110))),
            (
                "rescaled, negative slope",
                dicom(&DicomSpec {
                    rescale: Some((-2.0, 5000.0)),
                    ..DicomSpec::cr(64, 70)
                }),
            ),
            (
                "rescaled and windowed",
                dicom(&DicomSpec {
                    rescale: Some((0.5, -100.0)),
                    window: Some((800.0, 1500.0)),
                    ..DicomSpec::cr(64, 70)
                }),
            ),
            ("DX", dicom(&DicomSpec::dx(70, 64))),
            ("8-bit", dicom(&DicomSpec::gray8(50, 60))),
            (
                "8-bit windowed",
                dicom(&DicomSpec {
                    window: Some((100.0, 120.0)),
                    ..DicomSpec::gray8(50, 60)
                }),
            ),
        ];
        let signed_cr = signed_samples(&dicom(&DicomSpec {
            rescale: Some((1.0, -1024.0)),
            ..DicomSpec::cr(64, 70)
        }));
        files.push(("signed (two's complement of a CR's samples)", signed_cr));
        for (what, bytes) in files {
            let body = crate::decode::part10::normalize(&bytes).unwrap();
            let obj = OpenFileOptions::new()
                .read_preamble(dicom_object::file::ReadPreamble::Never)
                .from_reader(&body[..])
                .unwrap();
            let pd = obj.decode_pixel_data_frame(0).unwrap();
            let table = to_display(&pd, HeaderExtras::default(), None, OutOfRange::Mask).unwrap();
            let float = float_display(&pd, None).unwrap();
            assert!(table.pixels == float.pixels, "{what}: pixels differ");
            assert!(table.histogram.is_some() && float.histogram.is_none());
            assert_eq!(image_stats(&table, 224), image_stats(&float, 224), "{what}");
        }
    }

    /// Each output pixel is the rounded mean of its block's display values (the right column
    /// and bottom row of blocks hold fewer samples); averaging a plane decoded in full gives
    /// the same plane.
    #[test]
    fn box_reduce_averages_blocks() {
        let (width, height, factor) = (10usize, 7usize, 4usize);
        let samples: Vec<u16> = (0..width * height)
            .map(|i| (i * 37 % 4096) as u16)
            .collect();
        let table: Vec<u16> = (0..=u16::MAX)
            .map(|raw| (u32::from(raw & 0x0FFF) * 13 % 65536) as u16)
            .collect();
        let table: &[u16; 1 << 16] = table.as_slice().try_into().unwrap();
        let mut expected = Vec::new();
        for by in 0..height.div_ceil(factor) {
            for bx in 0..width.div_ceil(factor) {
                let mut values = Vec::new();
                for y in by * factor..((by + 1) * factor).min(height) {
                    for x in bx * factor..((bx + 1) * factor).min(width) {
                        values.push(f64::from(table[usize::from(samples[y * width + x])]));
                    }
                }
                let mean = values.iter().sum::<f64>() / values.len() as f64;
                expected.push(mean.round() as u16);
            }
        }
        let pixels = box_reduce(&samples, width, factor, table);
        assert_eq!((pixels.len(), &pixels), (3 * 2, &expected));
        let full: Vec<u16> = samples.iter().map(|&s| table[usize::from(s)]).collect();
        assert_eq!(box_average(&full, width, factor), expected);
        // 8-bit samples index the same table.
        let bytes: Vec<u8> = (0..=255u8).collect();
        let reduced = box_reduce(&bytes, 16, 2, table);
        assert_eq!(reduced.len(), 64);
        assert_eq!(
            reduced[0],
            ((u32::from(table[0])
                + u32::from(table[1])
                + u32::from(table[16])
                + u32::from(table[17])
                + 2)
                / 4) as u16
        );
    }

    /// Samples beyond BitsStored's range: masked, they read as their low bits (4115 as 19 under
    /// 12 bits, 2048 as -2048 when signed); clamped, as the nearest end of the range, for the
    /// display value and for the min-max window alike.
    #[test]
    fn out_of_range_samples_are_masked_or_clamped() {
        use crate::fixtures::{dicom, signed_samples, DicomSpec};
        use dicom_object::OpenFileOptions;
        use dicom_pixeldata::PixelDecoder;
        let display = |file: &[u8], samples: &[u16], range| {
            let body = crate::decode::part10::normalize(file).unwrap();
            let obj = OpenFileOptions::new()
                .read_preamble(dicom_object::file::ReadPreamble::Never)
                .from_reader(&body[..])
                .unwrap();
            let pd = obj.decode_pixel_data_frame(0).unwrap();
            let data: &[u8] = bytemuck::cast_slice(samples);
            let size = (samples.len() as u32, 1);
            integer_display(&pd, data, size, HeaderExtras::default(), None, range)
                .unwrap()
                .pixels
        };
        // Unsigned, 12 of 16 bits, MONOCHROME2, no window (min-max over the samples).
        let unsigned = dicom(&DicomSpec {
            photometric: "MONOCHROME2",
            ..DicomSpec::cr(4, 1)
        });
        let over = [100, 2000, 4115, 4096];
        let inside = [100, 2000, 4095, 4095];
        let masked = [100, 2000, 19, 0];
        use OutOfRange::{Clamp, Mask};
        assert_eq!(
            display(&unsigned, &over, Clamp),
            display(&unsigned, &inside, Mask)
        );
        assert_eq!(
            display(&unsigned, &over, Mask),
            display(&unsigned, &masked, Mask)
        );
        // Signed, 12 of 16 bits: -2049 and 2048 are out of range.
        let signed = signed_samples(&unsigned);
        let twos = |v: [i16; 4]| v.map(|x| x as u16);
        let over = twos([-2049, -5, 7, 2048]);
        let inside = twos([-2048, -5, 7, 2047]);
        let masked = twos([2047, -5, 7, -2048]);
        let clamped = display(&signed, &over, Clamp);
        assert_eq!(clamped, display(&signed, &inside, Mask));
        assert_eq!(clamped[0], 0, "the lowest value is black");
        assert_eq!(clamped[3], u16::MAX, "the highest value is white");
        assert_eq!(
            display(&signed, &over, Mask),
            display(&signed, &masked, Mask)
        );
    }

    #[test]
    fn min_max_of_a_flat_image_is_black_not_nan() {
        let voi = Voi::min_max(&[7.0, 7.0]);
        assert_eq!(voi.apply(7.0), 0.0);
    }
}
