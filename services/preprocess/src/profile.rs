//! Preprocessing profiles: the tensor a model's manifest asks for (`preprocessing.profile_id`).
//! Inference refuses a record whose profile differs from its model's, so ids are stable and a
//! change in geometry or interpolation gets a new id.

use std::fmt;
use std::str::FromStr;

use fast_image_resize::images::{TypedImage, TypedImageRef};
use fast_image_resize::pixels::U16;
use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};

use crate::decode::DecodedImage;

/// A supported preprocessing profile: single-channel 8-bit, letterboxed (long side resized
/// with bilinear interpolation to the target, aspect kept, centred, padded with black).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Profile {
    /// 224×224 (CheXpert/TorchXRayVision-style small models).
    #[default]
    #[value(name = "gray224-v1")]
    Gray224V1,
    /// 320×320 (CheXpert competition-style models).
    #[value(name = "gray320-v1")]
    Gray320V1,
}

impl Profile {
    pub const ALL: [Profile; 2] = [Profile::Gray224V1, Profile::Gray320V1];

    /// The id carried in records and manifests.
    pub fn id(self) -> &'static str {
        match self {
            Profile::Gray224V1 => "gray224-v1",
            Profile::Gray320V1 => "gray320-v1",
        }
    }

    /// Output side length (the tensor is square).
    pub fn side(self) -> u32 {
        match self {
            Profile::Gray224V1 => 224,
            Profile::Gray320V1 => 320,
        }
    }

    pub fn channels(self) -> u32 {
        1
    }

    /// Letterboxes `img` into this profile's tensor: `side*side` bytes, row-major.
    pub fn render(self, img: &DecodedImage) -> Result<Vec<u8>, String> {
        let side = self.side();
        // The stored image's aspect: a reduced level rounds its sides up, so its own aspect can
        // be off by a fraction of a pixel.
        let geo = Letterbox::fit(img.original_width, img.original_height, side);
        let src = TypedImageRef::<U16>::from_buffer(
            img.width,
            img.height,
            bytemuck::cast_slice(&img.pixels),
        )
        .map_err(|e| e.to_string())?;
        let mut dst = TypedImage::<U16>::new(geo.width, geo.height);
        let mut opts =
            ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        if let Some(r) = img.reduction {
            // The stored image's extent on the reduced grid, so the tensor samples the same
            // places a full-resolution resize would (a JPEG 2000 level sits half a stored
            // pixel off the block centres). Where the shifted extent runs past the last decoded
            // sample (by under one), the crop stops at the plane's edge.
            let f = f64::from(r.factor);
            let extent = |stored: u32, decoded: u32| {
                (f64::from(stored) / f).min(f64::from(decoded) - r.offset)
            };
            opts = opts.crop(
                r.offset,
                r.offset,
                extent(img.original_width, img.width),
                extent(img.original_height, img.height),
            );
        }
        Resizer::new()
            .resize_typed(&src, &mut dst, &opts)
            .map_err(|e| e.to_string())?;
        let mut out = vec![0u8; (side * side) as usize];
        for (y, row) in dst.pixels().chunks_exact(geo.width as usize).enumerate() {
            let start = (geo.top as usize + y) * side as usize + geo.left as usize;
            for (o, p) in out[start..start + row.len()].iter_mut().zip(row) {
                *o = ((u32::from(p.0) + 128) / 257) as u8;
            }
        }
        Ok(out)
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Profile::ALL
            .into_iter()
            .find(|p| p.id() == s)
            .ok_or_else(|| {
                format!("unknown preprocessing profile {s:?} (known: gray224-v1, gray320-v1)")
            })
    }
}

/// Where the resized image sits inside the square canvas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Letterbox {
    pub width: u32,
    pub height: u32,
    pub left: u32,
    pub top: u32,
}

impl Letterbox {
    /// Long side to `side`, short side scaled by the same factor (at least 1 pixel), centred.
    pub fn fit(width: u32, height: u32, side: u32) -> Letterbox {
        let long = width.max(height).max(1) as f64;
        let scale = f64::from(side) / long;
        let w = ((f64::from(width) * scale).round() as u32).clamp(1, side);
        let h = ((f64::from(height) * scale).round() as u32).clamp(1, side);
        Letterbox {
            width: w,
            height: h,
            left: (side - w) / 2,
            top: (side - h) / 2,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Container;

    #[test]
    fn letterbox_keeps_aspect_and_centres() {
        // CheXpert-like portrait 320×390 into 224: height fills, width 184, 20 px bars each side.
        assert_eq!(
            Letterbox::fit(320, 390, 224),
            Letterbox {
                width: 184,
                height: 224,
                left: 20,
                top: 0
            }
        );
        assert_eq!(
            Letterbox::fit(3000, 2500, 320),
            Letterbox {
                width: 320,
                height: 267,
                left: 0,
                top: 26
            }
        );
        assert_eq!(
            Letterbox::fit(100, 100, 224).width,
            224,
            "small images are upscaled"
        );
        assert_eq!(Letterbox::fit(10_000, 1, 224).height, 1, "never zero");
    }

    #[test]
    fn rendered_tensor_has_black_bars_and_the_image_between() {
        let img = DecodedImage {
            width: 200,
            height: 400,
            original_width: 200,
            original_height: 400,
            reduction: None,
            pixels: vec![65535; 200 * 400],
            histogram: None,
            bits_stored: 16,
            photometric: "MONOCHROME2".into(),
            view_position: None,
            container: Container::Png,
            header: None,
        };
        for p in Profile::ALL {
            let t = p.render(&img).unwrap();
            let s = p.side() as usize;
            assert_eq!(t.len(), s * s);
            let g = Letterbox::fit(200, 400, p.side());
            let mid = s / 2;
            assert_eq!(t[mid * s], 0, "left bar is black");
            assert_eq!(t[mid * s + s - 1], 0, "right bar is black");
            assert_eq!(
                t[mid * s + g.left as usize + g.width as usize / 2],
                255,
                "image is white"
            );
        }
    }

    #[test]
    fn ids_round_trip() {
        for p in Profile::ALL {
            assert_eq!(p.id().parse::<Profile>().unwrap(), p);
        }
        assert!("rgb512".parse::<Profile>().is_err());
    }
}
