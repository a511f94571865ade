//! The intensity scenario's pixels: a dataset image as a new detector would have produced it.
//!
//! The dataset's images are already rendered, so the change is applied to the decoded image
//! in display space, the same order [`crate::synth::render`] applies its [`Drift`]: gamma on the
//! normalised intensity, then gain and offset, then extra noise for a noise factor above 1
//! (the renderer's base noise level times the excess). The result is re-encoded as PNG in the
//! source's sample format, 12 bits in 16 kept as such.

use std::io::Cursor;

use image::{DynamicImage, ImageReader, Limits};
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

use crate::synth::render::{Drift, PixelFormat, Radiograph};

/// The renderer's base quantum-noise level in display units.
const BASE_NOISE: f32 = 0.011;

#[derive(Debug, thiserror::Error)]
pub enum PixelError {
    #[error("decoding the image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("reading the image: {0}")]
    Io(#[from] std::io::Error),
}

/// Applies `drift` to the encoded image `bytes` (PNG or JPEG, grayscale or not) and returns a
/// grayscale PNG. `seed` keys the added noise, so the same image shifts the same way.
pub fn shift_intensity(bytes: &[u8], drift: Drift, seed: u64) -> Result<Vec<u8>, PixelError> {
    let mut reader = ImageReader::new(Cursor::new(bytes)).with_guessed_format()?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(1 << 30);
    reader.limits(limits);
    let img = reader.decode()?;
    let (width, height) = (img.width(), img.height());
    let (pixels, max): (Vec<u16>, u16) = match img {
        DynamicImage::ImageLuma16(buf) => {
            let px = buf.into_raw();
            // The synthetic detector images hold 12 bits in 16 (their sBIT chunk says so).
            let max = if px.iter().all(|p| *p <= 4095) {
                4095
            } else {
                u16::MAX
            };
            (px, max)
        }
        other => (
            other
                .into_luma8()
                .into_raw()
                .into_iter()
                .map(u16::from)
                .collect(),
            255,
        ),
    };
    let shifted = shift_samples(&pixels, max, drift, seed);
    match max {
        255 | 4095 => {
            let format = if max == 255 {
                PixelFormat::Gray8
            } else {
                PixelFormat::Gray16
            };
            Ok(Radiograph {
                width,
                height,
                format,
                pixels: shifted,
            }
            .encode_png()?)
        }
        _ => {
            let buf = image::ImageBuffer::<image::Luma<u16>, _>::from_raw(width, height, shifted)
                .ok_or_else(|| std::io::Error::other("image buffer size mismatch"))?;
            let mut out = Cursor::new(Vec::new());
            DynamicImage::ImageLuma16(buf).write_to(&mut out, image::ImageFormat::Png)?;
            Ok(out.into_inner())
        }
    }
}

/// `drift` on samples in `0..=max`.
pub fn shift_samples(pixels: &[u16], max: u16, drift: Drift, seed: u64) -> Vec<u16> {
    let maxf = f32::from(max.max(1));
    let extra_noise = BASE_NOISE * (drift.noise - 1.0).max(0.0);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let noise = Normal::new(0.0f32, extra_noise.max(f32::MIN_POSITIVE)).ok();
    pixels
        .iter()
        .map(|&p| {
            let d = (f32::from(p) / maxf).clamp(0.0, 1.0).powf(drift.gamma);
            let mut d = d * drift.gain + drift.offset;
            if extra_noise > 0.0 {
                if let Some(n) = &noise {
                    d += n.sample(&mut rng);
                }
            }
            (d.clamp(0.0, 1.0) * maxf).round() as u16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_drift_changes_nothing() {
        let px: Vec<u16> = (0..=255).collect();
        assert_eq!(shift_samples(&px, 255, Drift::NONE, 1), px);
    }

    #[test]
    fn gain_and_offset_move_the_mean_and_the_png_round_trips() {
        let r = Radiograph {
            width: 16,
            height: 16,
            format: PixelFormat::Gray16,
            pixels: (0..256).map(|i| (i * 16) as u16).collect(),
        };
        let png = r.encode_png().unwrap();
        let drift = Drift {
            gain: 0.5,
            offset: 0.25,
            gamma: 1.0,
            noise: 1.0,
        };
        let out = shift_intensity(&png, drift, 3).unwrap();
        let img = image::load_from_memory(&out).unwrap();
        let DynamicImage::ImageLuma16(buf) = img else {
            panic!("16-bit stays 16-bit")
        };
        let px = buf.into_raw();
        assert!(px.iter().all(|p| *p <= 4095), "12 bits stay 12 bits");
        let mean = |v: &[u16]| v.iter().map(|p| f64::from(*p)).sum::<f64>() / v.len() as f64;
        let (before, after) = (mean(&r.pixels), mean(&px));
        // mean' = 0.5 * mean + 0.25 * 4095
        assert!(
            (after - (0.5 * before + 0.25 * 4095.0)).abs() < 2.0,
            "{before} -> {after}"
        );
    }
}
