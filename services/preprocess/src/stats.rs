//! Image statistics for the OOD gate and drift detection, normalised to 0..1, of the image at
//! the model's scale: the display plane box-averaged over blocks of 2, 4, 8, … pixels, the most
//! halvings that keep both sides ≥ the model's input side (none for an image already near it).
//! That is the plane every path hands the resize: the box reduction of a full decode, a JPEG
//! 2000 resolution level, a scaled JPEG decode, a small image as stored. So an image's
//! statistics do not depend on its transfer syntax beyond what the codecs' own low-pass filters
//! change, and they are taken at the scale of the validation images the OOD gate was calibrated
//! on (CheXpert-small's 320×390). One pass builds an exact 65536-bin histogram, from which mean,
//! std, the percentiles (nearest rank) and the 32-bin histogram all follow; a decoder that
//! counted the plane's values on the way hands that histogram over instead.

use cxrflow_contracts::ImageStats;

use crate::decode::{box_average, halvings, DecodedImage};

/// Bins of the histogram carried in the record (equal width over 0..1).
pub const HISTOGRAM_BINS: usize = 32;

/// The statistics of `img` at the scale of a model whose input is `side` pixels square.
pub fn image_stats(img: &DecodedImage, side: u32) -> ImageStats {
    let count = |pixels: &[u16]| {
        let mut c = vec![0u64; 65536];
        for &v in pixels {
            c[usize::from(v)] += 1;
        }
        c
    };
    let counted;
    let counts = match halvings(img.width, img.height, side) {
        0 => match &img.histogram {
            Some(h) if h.len() == 65536 => h,
            _ => {
                counted = count(&img.pixels);
                &counted
            }
        },
        h => {
            counted = count(&box_average(&img.pixels, img.width as usize, 1 << h));
            &counted
        }
    };
    let n: u64 = counts.iter().sum();
    let (mut sum, mut sum_sq) = (0f64, 0f64);
    let mut histogram = vec![0i64; HISTOGRAM_BINS];
    for (v, &c) in counts.iter().enumerate() {
        if c == 0 {
            continue;
        }
        let x = v as f64 / 65535.0;
        sum += x * c as f64;
        sum_sq += x * x * c as f64;
        histogram[v * HISTOGRAM_BINS / 65536] += c as i64;
    }
    let (mean, std) = if n == 0 {
        (0.0, 0.0)
    } else {
        let mean = sum / n as f64;
        (mean, (sum_sq / n as f64 - mean * mean).max(0.0).sqrt())
    };
    let quantile = |p: f64| -> f64 {
        if n == 0 {
            return 0.0;
        }
        let rank = ((p * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for (v, &c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return v as f64 / 65535.0;
            }
        }
        1.0
    };
    ImageStats {
        mean,
        std,
        p01: quantile(0.01),
        p05: quantile(0.05),
        p50: quantile(0.50),
        p95: quantile(0.95),
        p99: quantile(0.99),
        histogram,
        original_width: img.original_width as i32,
        original_height: img.original_height as i32,
        bits_stored: i32::from(img.bits_stored),
        photometric: img.photometric.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Container;

    fn image(pixels: Vec<u16>) -> DecodedImage {
        DecodedImage {
            width: pixels.len() as u32,
            height: 1,
            original_width: pixels.len() as u32,
            original_height: 1,
            reduction: None,
            pixels,
            histogram: None,
            bits_stored: 12,
            photometric: "MONOCHROME1".into(),
            view_position: None,
            container: Container::Dicom,
            header: None,
        }
    }

    #[test]
    fn stats_of_a_known_image() {
        // 100 pixels: value i/99 for i in 0..100 (a ramp from black to white).
        let px: Vec<u16> = (0..100u32).map(|i| (i * 65535 / 99) as u16).collect();
        let s = image_stats(&image(px), 224);
        assert!((s.mean - 0.5).abs() < 1e-4, "mean {}", s.mean);
        // population std of a uniform ramp of 100 points over [0,1]: sqrt((n²-1)/12)/(n-1)
        let expected_std = ((100f64 * 100.0 - 1.0) / 12.0).sqrt() / 99.0;
        assert!(
            (s.std - expected_std).abs() < 1e-4,
            "std {} vs {}",
            s.std,
            expected_std
        );
        // nearest rank: p50 of 100 values is the 50th smallest = 49/99
        assert!((s.p50 - 49.0 / 99.0).abs() < 1e-4, "p50 {}", s.p50);
        assert!((s.p01 - 0.0).abs() < 1e-9);
        assert!((s.p99 - 98.0 / 99.0).abs() < 1e-4);
        assert_eq!(s.histogram.len(), HISTOGRAM_BINS);
        assert_eq!(s.histogram.iter().sum::<i64>(), 100);
        assert_eq!(
            s.histogram[0], 4,
            "values 0, 1/99, 2/99, 3/99 fall below 1/32"
        );
        assert_eq!(s.histogram[31], 4);
        assert_eq!((s.original_width, s.original_height), (100, 1));
        assert_eq!(s.bits_stored, 12);
        assert_eq!(s.photometric, "MONOCHROME1");
    }

    /// A plane larger than the model's scale is counted box-averaged, as the reduced paths
    /// produce it: 8×8 blocks of black and white halves average to mid-grey.
    #[test]
    fn a_large_plane_is_counted_at_the_models_scale() {
        let (width, height) = (1000usize, 900usize);
        let pixels: Vec<u16> = (0..width * height)
            .map(|i| if i % 2 == 0 { 0 } else { 65534 })
            .collect();
        let img = DecodedImage {
            width: width as u32,
            height: height as u32,
            original_width: width as u32,
            original_height: height as u32,
            ..image(pixels.clone())
        };
        // 1000×900 → 500×450 → 250×225 (both ≥ 224); the next halving is under.
        let s = image_stats(&img, 224);
        assert_eq!(s.histogram.iter().sum::<i64>(), 250 * 225);
        assert_eq!((s.p01, s.p99), (32767.0 / 65535.0, 32767.0 / 65535.0));
        assert!(s.std < 1e-12);
        // At the scale of a model with 1000-pixel inputs nothing is averaged.
        let s = image_stats(&img, 1000);
        assert_eq!(s.histogram.iter().sum::<i64>(), (width * height) as i64);
        assert_eq!((s.p01, s.p99), (0.0, 65534.0 / 65535.0));
    }

    #[test]
    fn two_level_image() {
        let mut px = vec![0u16; 90];
        px.extend(vec![65535u16; 10]);
        let s = image_stats(&image(px), 224);
        assert!((s.mean - 0.1).abs() < 1e-12);
        assert!((s.std - 0.3).abs() < 1e-12);
        assert_eq!((s.p50, s.p95, s.p99), (0.0, 1.0, 1.0));
        assert_eq!(s.histogram[0], 90);
        assert_eq!(s.histogram[31], 10);
    }
}
