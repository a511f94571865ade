//! PNG and JPEG through `image`, with `image::Limits` on the decoder and a size check on the
//! header before any pixel buffer exists. Raster images are display images already: values are
//! kept as they are (8-bit scaled to 16), colour is converted to luma.

use std::io::Cursor;

use image::{ColorType, DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};

use super::{Container, DecodeError, DecodeLimits, DecodedImage};

fn map_image_error(e: ImageError, codec: &'static str) -> DecodeError {
    match e {
        ImageError::Limits(l) => DecodeError::TooLarge(l.to_string()),
        ImageError::Unsupported(u) => DecodeError::UnsupportedImage(format!("{codec}: {u}")),
        other => DecodeError::from_decoder(codec, &other),
    }
}

/// Refuses a PNG or JPEG whose stream stops before its end marker. Decoders fill in what is
/// missing of a cut-off image (grey or repeated rows) and report success: a model must never
/// score that remainder.
fn check_complete(bytes: &[u8], container: Container) -> Result<(), DecodeError> {
    match container {
        Container::Jpeg => {
            // Some writers pad after EOI with zeros; nothing else may follow it.
            let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if !bytes[..end].ends_with(&[0xFF, 0xD9]) {
                return Err(DecodeError::Truncated(format!(
                    "JPEG stream of {} bytes ends without its end-of-image marker (FFD9): truncated JPEG",
                    bytes.len()
                )));
            }
        }
        Container::Png => {
            // The IEND chunk: length 0, type, CRC; the last chunk of every complete PNG.
            let complete = bytes.len() >= 12 && &bytes[bytes.len() - 8..bytes.len() - 4] == b"IEND";
            if !complete {
                return Err(DecodeError::Truncated(format!(
                    "PNG stream of {} bytes ends without its IEND chunk: truncated PNG",
                    bytes.len()
                )));
            }
        }
        Container::Dicom => {}
    }
    Ok(())
}

pub(super) fn decode(
    bytes: &[u8],
    container: Container,
    limits: &DecodeLimits,
) -> Result<DecodedImage, DecodeError> {
    check_complete(bytes, container)?;
    let (format, codec) = match container {
        Container::Png => (ImageFormat::Png, "PNG"),
        Container::Jpeg => (ImageFormat::Jpeg, "JPEG"),
        Container::Dicom => {
            return Err(DecodeError::NotAnImage(
                "DICOM is not a raster format".into(),
            ))
        }
    };
    let mut decoder = ImageReader::with_format(Cursor::new(bytes), format)
        .into_decoder()
        .map_err(|e| map_image_error(e, codec))?;
    let (w, h) = decoder.dimensions();
    let color = decoder.color_type();
    limits.check(
        u64::from(w),
        u64::from(h),
        u64::from(color.bytes_per_pixel()),
    )?;
    let mut lim = image::Limits::default();
    lim.max_image_width = Some(limits.max_width);
    lim.max_image_height = Some(limits.max_height);
    lim.max_alloc = Some(limits.max_alloc);
    decoder
        .set_limits(lim)
        .map_err(|e| map_image_error(e, codec))?;
    let img = DynamicImage::from_decoder(decoder).map_err(|e| map_image_error(e, codec))?;
    let (bits_stored, photometric) = describe(color);
    let gray = img.into_luma16();
    let (width, height) = gray.dimensions();
    Ok(DecodedImage::plane(
        width,
        height,
        gray.into_raw(),
        bits_stored,
        photometric.to_string(),
        container,
    ))
}

fn describe(color: ColorType) -> (u16, &'static str) {
    let bits = (color.bits_per_pixel() / u16::from(color.channel_count().max(1))).max(1);
    let photometric = if color.has_color() {
        "RGB"
    } else {
        "MONOCHROME2"
    };
    (bits, photometric)
}
