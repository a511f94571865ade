//! Renders one synthetic radiograph for one label row.
//!
//! The image is built in attenuation units (0 = air outside the body, higher = brighter on
//! the film) from float layers, then mapped through a per-image exposure curve. Anatomy is
//! drawn from a random stream keyed by (seed, image), and each finding from its own stream, so
//! toggling one label changes only that finding's pixels: that is what makes the findings
//! learnable and the tests exact.

use crate::dataset::labels::ViewKind;
use crate::dataset::ChexpertRow;
use crate::rng::{mix64, stable_hash, Rng};
use crate::synth::anatomy::Chest;
use crate::synth::canvas::{box_blur, ValueNoise};
use crate::synth::layers::Layers;
use crate::synth::lungs::{parametric_frontal, parametric_lateral, LungField};
use crate::synth::masks::LungMaskLibrary;
use crate::synth::{devices, findings, thorax};
use serde::Serialize;
use std::sync::Arc;

// Attenuation weights of the layers.
const SOFT: f32 = 0.7;
const AIR: f32 = 0.42;
/// On a lateral both lungs and the mediastinum overlap: less net air.
const AIR_LATERAL: f32 = 0.34;
const LUCENT: f32 = 0.12;
const VESSEL: f32 = 0.16;
const BONE: f32 = 0.15;
/// Ribs and spine are thin bone seen edge-on less than the clavicles: fainter.
const RIBS: f32 = 0.45;
const SPINE: f32 = 0.22;
const METAL: f32 = 0.6;
const AIRWAY: f32 = 0.09;

/// Sample format of the written images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PixelFormat {
    /// 8-bit grayscale, like CheXpert-small's JPEGs.
    Gray8,
    /// 16-bit grayscale container with 12 bits stored (0..=4095), like a detector's output.
    Gray16,
}

/// Size and format of the synthesized images.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ImageSpec {
    /// Width; the height is 1.17–1.25 times it, varying per image, as in CheXpert.
    pub short_side: u32,
    pub format: PixelFormat,
}

impl ImageSpec {
    /// CheXpert-small: 320 px wide, 8-bit.
    pub const SMALL: ImageSpec = ImageSpec {
        short_side: 320,
        format: PixelFormat::Gray8,
    };
    /// Detector-sized images (about 2500 × 3000), 12 bits in 16, for load tests.
    pub const FULL_SIZE: ImageSpec = ImageSpec {
        short_side: 2500,
        format: PixelFormat::Gray16,
    };
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec::SMALL
    }
}

/// Global acquisition changes applied to every image, the hook for drift scenarios (e.g. a
/// new detector or processing at a site). [`Drift::NONE`] changes nothing.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Drift {
    /// Multiplies the display intensity (0..1).
    pub gain: f32,
    /// Added to the display intensity.
    pub offset: f32,
    /// Multiplies each image's gamma.
    pub gamma: f32,
    /// Multiplies each image's noise level.
    pub noise: f32,
}

impl Drift {
    pub const NONE: Drift = Drift {
        gain: 1.0,
        offset: 0.0,
        gamma: 1.0,
        noise: 1.0,
    };
}

impl Default for Drift {
    fn default() -> Self {
        Drift::NONE
    }
}

/// A rendered grayscale image; samples are 0..=255 or 0..=4095 by `format`.
#[derive(Debug, Clone, PartialEq)]
pub struct Radiograph {
    pub width: u32,
    pub height: u32,
    pub format: PixelFormat,
    pub pixels: Vec<u16>,
}

impl Radiograph {
    /// Encodes as a grayscale PNG (8- or 16-bit by `format`).
    pub fn encode_png(&self) -> Result<Vec<u8>, image::ImageError> {
        use image::codecs::png::{CompressionType, FilterType, PngEncoder};
        use image::{ExtendedColorType, ImageEncoder};
        let mut out = Vec::new();
        let enc = PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Up);
        match self.format {
            PixelFormat::Gray8 => {
                let bytes: Vec<u8> = self.pixels.iter().map(|&p| p.min(255) as u8).collect();
                enc.write_image(&bytes, self.width, self.height, ExtendedColorType::L8)?;
            }
            PixelFormat::Gray16 => {
                let bytes: Vec<u8> = self.pixels.iter().flat_map(|p| p.to_ne_bytes()).collect();
                enc.write_image(&bytes, self.width, self.height, ExtendedColorType::L16)?;
                insert_sbit(&mut out, 12);
            }
        }
        Ok(out)
    }

    /// Mean sample value over a rectangle given in fractions of width and height.
    pub fn mean_in(&self, (x0, y0): (f32, f32), (x1, y1): (f32, f32)) -> f64 {
        let (w, h) = (self.width as f32, self.height as f32);
        let (xa, xb) = (
            (x0 * w) as usize,
            ((x1 * w) as usize).min(self.width as usize),
        );
        let (ya, yb) = (
            (y0 * h) as usize,
            ((y1 * h) as usize).min(self.height as usize),
        );
        let mut sum = 0u64;
        for y in ya..yb {
            for x in xa..xb {
                sum += u64::from(self.pixels[y * self.width as usize + x]);
            }
        }
        sum as f64 / ((xb - xa) * (yb - ya)).max(1) as f64
    }
}

/// Declares the significant bits of a grayscale PNG (its `sBIT` chunk, which must come before
/// the image data: right after the 33 bytes of signature and `IHDR`), as DICOM's Bits Stored
/// does, so readers know a 16-bit sample holds 12 bits.
fn insert_sbit(png: &mut Vec<u8>, bits: u8) {
    const AFTER_IHDR: usize = 8 + 4 + 4 + 13 + 4;
    if png.len() < AFTER_IHDR || &png[12..16] != b"IHDR" {
        return;
    }
    let mut crc = flate2::Crc::new();
    crc.update(b"sBIT");
    crc.update(&[bits]);
    let mut chunk = Vec::with_capacity(13);
    chunk.extend_from_slice(&1u32.to_be_bytes());
    chunk.extend_from_slice(b"sBIT");
    chunk.push(bits);
    chunk.extend_from_slice(&crc.sum().to_be_bytes());
    png.splice(AFTER_IHDR..AFTER_IHDR, chunk);
}

/// Renders rows into images; cheap to share across threads.
#[derive(Debug, Clone)]
pub struct Renderer {
    seed: u64,
    masks: Option<Arc<LungMaskLibrary>>,
    spec: ImageSpec,
    drift: Drift,
}

impl Renderer {
    pub fn new(
        seed: u64,
        masks: Option<Arc<LungMaskLibrary>>,
        spec: ImageSpec,
        drift: Drift,
    ) -> Self {
        Self {
            seed,
            masks: masks.filter(|m| !m.is_empty()),
            spec,
            drift,
        }
    }

    /// Renders the image for `row`; the same (seed, row) always gives the same pixels.
    pub fn render(&self, row: &ChexpertRow) -> Radiograph {
        let key = image_key(&row.path);
        let seed = self.seed;
        self.with_chest(row, |chest, rng| {
            let mut layers = Layers::new(chest.w, chest.h);
            thorax::draw(chest, &mut layers, rng);
            findings::overlay(chest, &mut layers, row, seed, key);
            devices::overlay(chest, &mut layers, row, seed, key);
            compose(
                chest,
                &layers,
                &mut Rng::new(stable_hash(seed, "exposure", key)),
                self.spec.format,
                self.drift,
            )
        })
    }

    /// Lays out the image's geometry (size, lung field, anatomy, findings that reshape it) and
    /// hands it to `then` with the anatomy's random stream.
    pub(crate) fn with_chest<T>(
        &self,
        row: &ChexpertRow,
        then: impl FnOnce(&Chest, &mut Rng) -> T,
    ) -> T {
        let key = image_key(&row.path);
        let seed = self.seed;
        let w = self.spec.short_side.max(64) as usize;
        let stretch = 1.17 + 0.08 * crate::rng::unit(stable_hash(seed, "size", key)) as f32;
        let h = (w as f32 * stretch).round() as usize;

        let mut rng = Rng::new(stable_hash(seed, "anatomy", key));
        let owned: LungField;
        let field = match (&self.masks, row.view) {
            (Some(lib), ViewKind::Frontal) => {
                let i = (stable_hash(seed, "mask", key) % lib.len() as u64) as usize;
                &lib.frontal[i]
            }
            (None, ViewKind::Frontal) => {
                owned = parametric_frontal(&mut rng);
                &owned
            }
            (_, ViewKind::Lateral) => {
                owned = parametric_lateral(&mut rng);
                &owned
            }
        };
        let mut chest = Chest::new(row, field, (w, h), &mut rng);
        findings::reshape(&mut chest, row, seed, key);
        then(&chest, &mut rng)
    }
}

/// The part of a CheXpert path that names the image (`patient…/study…/view…`, no extension),
/// so the same image renders the same from the small or full-size label file.
pub(crate) fn image_key(path: &str) -> &str {
    let start = path
        .match_indices("patient")
        .map(|(i, _)| i)
        .filter(|&i| path[i + 7..].starts_with(|c: char| c.is_ascii_digit()))
        .last()
        .unwrap_or(0);
    let tail = &path[start..];
    match tail.rfind('.') {
        Some(dot) if !tail[dot..].contains('/') => &tail[..dot],
        _ => tail,
    }
}

/// Sums the layers, maps attenuation to display values through the image's exposure, blurs
/// slightly (focal spot and detector unsharpness) and adds quantum noise.
fn compose(
    chest: &Chest,
    layers: &Layers,
    rng: &mut Rng,
    format: PixelFormat,
    drift: Drift,
) -> Radiograph {
    let (w, h) = (chest.w, chest.h);
    let lo = 0.02 + 0.03 * rng.normal();
    let hi = 0.92 + 0.04 * rng.normal();
    let gamma = (0.1 * rng.normal()).exp() * drift.gamma;
    let portable_noise = if chest.portable { 1.3 } else { 1.0 };
    let sigma = 0.011 * (1.0 + 0.25 * rng.normal()).max(0.4) * portable_noise * drift.noise;
    let body_tex = ValueNoise::new(rng, 7, 9);
    let lung_tex = ValueNoise::new(rng, 48, 58);
    let noise_seed = rng.next_u64();

    const LUT: usize = 4096;
    let lut: Vec<f32> = (0..LUT)
        .map(|i| (i as f32 / (LUT - 1) as f32).powf(gamma))
        .collect();
    let bone_gain = BONE * chest.bone_density;
    // On a lateral the vertebral bodies are seen side-on, thick and clear.
    let spine_gain = if chest.frontal() { SPINE } else { 3.2 * SPINE };
    let air = if chest.frontal() { AIR } else { AIR_LATERAL };
    let mut out = vec![0.0f32; w * h];
    for y in 0..h {
        let py = y as f32 + 0.5;
        let vy = py / h as f32;
        for x in 0..w {
            let i = y * w + x;
            let px = x as f32 + 0.5;
            let (u, v) = chest.uv(px, py);
            let lung = chest.field.edge_at(u, v);
            let body = chest.body(px, py);
            let mut att = SOFT * body * (1.0 + 0.04 * body_tex.sample(px / w as f32, vy))
                + layers.soft.data[i]
                + bone_gain
                    * (layers.bone.data[i]
                        + RIBS * chest.ribs(px, py)
                        + spine_gain * chest.spine(px, py))
                + METAL * layers.metal.data[i].min(1.0)
                - AIRWAY * layers.airway.data[i] * body;
            if lung > 0.0 {
                let clear = 1.0 - layers.opacity.data[i].clamp(0.0, 1.0);
                let depth = chest.field.depth_at(u, v);
                att -= air * depth * clear * (1.0 + 0.06 * lung_tex.sample(u, v));
                att -= LUCENT * layers.lucency.data[i].min(1.0) * lung;
                att +=
                    VESSEL * layers.markings.data[i] * layers.marking_gain.data[i] * lung * clear;
            }
            let t = ((att - lo) / (hi - lo)).clamp(0.0, 1.0);
            out[i] = lut[(t * (LUT - 1) as f32) as usize];
        }
    }
    box_blur(&mut out, w, h, (w / 400).max(1), 1);

    let max = match format {
        PixelFormat::Gray8 => 255.0,
        PixelFormat::Gray16 => 4095.0,
    };
    let pixels = out
        .iter()
        .enumerate()
        .map(|(i, &d)| {
            let n = gaussian_hash(noise_seed, i as u64);
            let d = (d + sigma * n) * drift.gain + drift.offset;
            (d.clamp(0.0, 1.0) * max).round() as u16
        })
        .collect();
    Radiograph {
        width: w as u32,
        height: h as u32,
        format,
        pixels,
    }
}

/// Approximately standard normal noise from a hash, so noise needs no sequential stream.
#[inline]
fn gaussian_hash(seed: u64, i: u64) -> f32 {
    let z = mix64(seed ^ i.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let s: u32 = (0..4).map(|k| ((z >> (16 * k)) & 0xffff) as u32).sum();
    (s as f32 / 65535.0 - 2.0) * 1.732_050_8
}
