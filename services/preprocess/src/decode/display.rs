//! From decoded DICOM samples to one display-oriented plane, following PS3.3 C.11: modality LUT
//! (rescale slope/intercept), then the first VOI LUT (table if present, else window
//! center/width with its VOI LUT function, else a min-max window over the image), then
//! MONOCHROME1 inversion.

use dicom_pixeldata::{DecodedPixelData, VoiLutFunction, WindowLevel};

use super::{unit_to_u16, Container, DecodeError, DecodedImage};

/// A dicom-pixeldata error after the pixel data was decoded (LUT and window attributes).
fn attr_err(e: dicom_pixeldata::Error) -> DecodeError {
    DecodeError::InvalidAttribute(e.to_string())
}

pub(super) fn to_display(
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
        original_width: width,
        original_height: height,
        reduction: None,
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

    #[test]
    fn min_max_of_a_flat_image_is_black_not_nan() {
        let voi = Voi::min_max(&[7.0, 7.0]);
        assert_eq!(voi.apply(7.0), 0.0);
    }
}
