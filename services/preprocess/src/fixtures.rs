//! Generated test images (no binary blobs in git): PNG/JPEG in 8 and 16 bits and DICOM files
//! shaped like real chest radiographs (CR: MONOCHROME1, 12 bits stored in 16 allocated,
//! ~2500×3000 at 0.15 mm; DX: MONOCHROME2), in several transfer syntaxes, plus a corpus of
//! broken inputs. Every function returns the file's bytes. Public so that the simulator and
//! end-to-end tests can make the same images.

use std::io::Cursor;

use dicom_core::value::{PixelFragmentSequence, PrimitiveValue, C};
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
use dicom_pixeldata::Transcode;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use image::{DynamicImage, ImageBuffer, ImageFormat};

/// Transfer syntax UIDs used by the fixtures.
pub mod ts {
    pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
    pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
    pub const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
    pub const JPEG_BASELINE: &str = "1.2.840.10008.1.2.4.50";
    pub const RLE_LOSSLESS: &str = "1.2.840.10008.1.2.5";
    /// MPEG2 Main Profile: a real transfer syntax (video) that preprocess refuses by name.
    pub const MPEG2_MAIN: &str = "1.2.840.10008.1.2.4.100";
}

/// A synthetic frontal chest film in display orientation (0 = black, 1 = white): dark air
/// around, a soft-tissue body, two darker lung fields, a bright spine and a bright marker
/// square in the top-left corner (so tests can find a known bright region).
pub fn phantom(width: u32, height: u32) -> Vec<f64> {
    let (w, h) = (f64::from(width), f64::from(height));
    let mut out = Vec::with_capacity(width as usize * height as usize);
    for y in 0..height {
        for x in 0..width {
            let (fx, fy) = ((f64::from(x) + 0.5) / w, (f64::from(y) + 0.5) / h);
            let inside = |cx: f64, cy: f64, rx: f64, ry: f64| {
                ((fx - cx) / rx).powi(2) + ((fy - cy) / ry).powi(2) <= 1.0
            };
            let mut v = 0.05;
            if inside(0.5, 0.55, 0.45, 0.48) {
                v = 0.6;
            }
            if inside(0.32, 0.5, 0.13, 0.3) || inside(0.68, 0.5, 0.13, 0.3) {
                v = 0.25 + 0.05 * (fy * 12.0).sin();
            }
            if (fx - 0.5).abs() < 0.03 && fy > 0.1 {
                v = 0.85;
            }
            if fx < 0.1 && fy < 0.1 {
                v = 1.0;
            }
            out.push(v);
        }
    }
    out
}

fn quantize(v: f64, max: u32) -> u32 {
    (v.clamp(0.0, 1.0) * f64::from(max)).round() as u32
}

fn encode(img: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, format)
        .expect("encoding an in-memory image cannot fail");
    out.into_inner()
}

/// 8-bit grayscale PNG of the phantom.
pub fn png_gray8(width: u32, height: u32) -> Vec<u8> {
    let px: Vec<u8> = phantom(width, height)
        .iter()
        .map(|&v| quantize(v, 255) as u8)
        .collect();
    encode(
        DynamicImage::ImageLuma8(ImageBuffer::from_raw(width, height, px).expect("sized buffer")),
        ImageFormat::Png,
    )
}

/// 16-bit grayscale PNG of the phantom (full 16-bit range).
pub fn png_gray16(width: u32, height: u32) -> Vec<u8> {
    let px: Vec<u16> = phantom(width, height)
        .iter()
        .map(|&v| quantize(v, 65535) as u16)
        .collect();
    encode(
        DynamicImage::ImageLuma16(ImageBuffer::from_raw(width, height, px).expect("sized buffer")),
        ImageFormat::Png,
    )
}

/// 8-bit grayscale JPEG of the phantom (CheXpert's downsampled images are 8-bit JPEGs).
pub fn jpeg_gray8(width: u32, height: u32) -> Vec<u8> {
    let px: Vec<u8> = phantom(width, height)
        .iter()
        .map(|&v| quantize(v, 255) as u8)
        .collect();
    encode(
        DynamicImage::ImageLuma8(ImageBuffer::from_raw(width, height, px).expect("sized buffer")),
        ImageFormat::Jpeg,
    )
}

/// 8-bit RGB JPEG of the phantom (some exports are colour JPEGs of a gray image).
pub fn jpeg_rgb8(width: u32, height: u32) -> Vec<u8> {
    let px: Vec<u8> = phantom(width, height)
        .iter()
        .flat_map(|&v| {
            let g = quantize(v, 255) as u8;
            [g, g, g]
        })
        .collect();
    encode(
        DynamicImage::ImageRgb8(ImageBuffer::from_raw(width, height, px).expect("sized buffer")),
        ImageFormat::Jpeg,
    )
}

/// How a generated DICOM file should look.
#[derive(Debug, Clone, PartialEq)]
pub struct DicomSpec {
    pub width: u32,
    pub height: u32,
    /// `MONOCHROME1` (stored values inverted: high = dark) or `MONOCHROME2`.
    pub photometric: &'static str,
    pub bits_allocated: u16,
    pub bits_stored: u16,
    pub modality: &'static str,
    pub view_position: Option<&'static str>,
    pub pixel_spacing_mm: f64,
    pub transfer_syntax: &'static str,
    pub rescale: Option<(f64, f64)>,
    /// Window (center, width) in modality units.
    pub window: Option<(f64, f64)>,
    pub with_pixel_data: bool,
}

impl DicomSpec {
    /// Computed radiography as archives hold it: MONOCHROME1, 12 bits stored in 16, 0.15 mm,
    /// PA, explicit VR little endian. Real size is about 2500×3000; tests use smaller.
    pub fn cr(width: u32, height: u32) -> Self {
        DicomSpec {
            width,
            height,
            photometric: "MONOCHROME1",
            bits_allocated: 16,
            bits_stored: 12,
            modality: "CR",
            view_position: Some("PA"),
            pixel_spacing_mm: 0.15,
            transfer_syntax: ts::EXPLICIT_VR_LE,
            rescale: None,
            window: None,
            with_pixel_data: true,
        }
    }

    /// Digital radiography: MONOCHROME2, 14 bits stored in 16, with a window, AP.
    pub fn dx(width: u32, height: u32) -> Self {
        DicomSpec {
            photometric: "MONOCHROME2",
            bits_stored: 14,
            modality: "DX",
            view_position: Some("AP"),
            pixel_spacing_mm: 0.143,
            window: Some((8192.0, 16384.0)),
            ..DicomSpec::cr(width, height)
        }
    }

    /// 8-bit MONOCHROME2 (secondary-capture-like; JPEG baseline needs 8 bits).
    pub fn gray8(width: u32, height: u32) -> Self {
        DicomSpec {
            photometric: "MONOCHROME2",
            bits_allocated: 8,
            bits_stored: 8,
            modality: "DX",
            ..DicomSpec::cr(width, height)
        }
    }

    pub fn view(mut self, v: Option<&'static str>) -> Self {
        self.view_position = v;
        self
    }

    pub fn transfer_syntax(mut self, uid: &'static str) -> Self {
        self.transfer_syntax = uid;
        self
    }

    /// Stored values of the phantom (MONOCHROME1: bright display = low stored value).
    pub fn stored_values(&self) -> Vec<u32> {
        let max = (1u32 << self.bits_stored) - 1;
        phantom(self.width, self.height)
            .into_iter()
            .map(|v| {
                let v = if self.photometric == "MONOCHROME1" {
                    1.0 - v
                } else {
                    v
                };
                quantize(v, max)
            })
            .collect()
    }
}

const CR_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.1";
const DX_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.1.1";

fn put(obj: &mut InMemDicomObject, tag: dicom_core::Tag, vr: VR, value: impl Into<PrimitiveValue>) {
    obj.put(DataElement::new(tag, vr, value.into()));
}

fn dataset(spec: &DicomSpec, stored: Option<Vec<u32>>) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    // The storage class each modality's objects are written with (MR and CT for the
    // eligibility gate's tests).
    let sop_class = match spec.modality {
        "DX" => DX_STORAGE,
        "MR" => "1.2.840.10008.5.1.4.1.1.4",
        "CT" => "1.2.840.10008.5.1.4.1.1.2",
        _ => CR_STORAGE,
    };
    put(&mut obj, tags::SOP_CLASS_UID, VR::UI, sop_class);
    put(
        &mut obj,
        tags::SOP_INSTANCE_UID,
        VR::UI,
        "2.25.1234567890123456789",
    );
    put(&mut obj, tags::STUDY_INSTANCE_UID, VR::UI, "2.25.42");
    put(&mut obj, tags::SERIES_INSTANCE_UID, VR::UI, "2.25.42.1");
    put(&mut obj, tags::MODALITY, VR::CS, spec.modality);
    put(&mut obj, tags::BODY_PART_EXAMINED, VR::CS, "CHEST");
    if let Some(v) = spec.view_position {
        put(&mut obj, tags::VIEW_POSITION, VR::CS, v);
    }
    put(&mut obj, tags::SAMPLES_PER_PIXEL, VR::US, 1u16);
    put(
        &mut obj,
        tags::PHOTOMETRIC_INTERPRETATION,
        VR::CS,
        spec.photometric,
    );
    put(&mut obj, tags::ROWS, VR::US, spec.height as u16);
    put(&mut obj, tags::COLUMNS, VR::US, spec.width as u16);
    let spacing = format!("{:.3}", spec.pixel_spacing_mm);
    put(
        &mut obj,
        tags::PIXEL_SPACING,
        VR::DS,
        PrimitiveValue::Strs(C::from_vec(vec![spacing.clone(), spacing])),
    );
    put(&mut obj, tags::BITS_ALLOCATED, VR::US, spec.bits_allocated);
    put(&mut obj, tags::BITS_STORED, VR::US, spec.bits_stored);
    put(&mut obj, tags::HIGH_BIT, VR::US, spec.bits_stored - 1);
    put(&mut obj, tags::PIXEL_REPRESENTATION, VR::US, 0u16);
    if let Some((slope, intercept)) = spec.rescale {
        put(&mut obj, tags::RESCALE_SLOPE, VR::DS, format!("{slope}"));
        put(
            &mut obj,
            tags::RESCALE_INTERCEPT,
            VR::DS,
            format!("{intercept}"),
        );
    }
    if let Some((center, width)) = spec.window {
        put(&mut obj, tags::WINDOW_CENTER, VR::DS, format!("{center}"));
        put(&mut obj, tags::WINDOW_WIDTH, VR::DS, format!("{width}"));
    }
    if let Some(stored) = stored {
        if spec.bits_allocated == 8 {
            let bytes: Vec<u8> = stored.into_iter().map(|v| v as u8).collect();
            put(
                &mut obj,
                tags::PIXEL_DATA,
                VR::OB,
                PrimitiveValue::U8(C::from_vec(bytes)),
            );
        } else {
            let words: Vec<u16> = stored.into_iter().map(|v| v as u16).collect();
            put(
                &mut obj,
                tags::PIXEL_DATA,
                VR::OW,
                PrimitiveValue::U16(C::from_vec(words)),
            );
        }
    }
    obj
}

fn write(obj: InMemDicomObject, transfer_syntax: &str) -> Vec<u8> {
    let file = obj
        .with_meta(FileMetaTableBuilder::new().transfer_syntax(transfer_syntax))
        .expect("complete file meta");
    let mut out = Vec::new();
    file.write_all(&mut out).expect("writing to memory");
    out
}

/// A DICOM file per `spec`. Native transfer syntaxes are written directly; JPEG baseline is
/// transcoded with dicom-pixeldata's encoder (8-bit only); RLE lossless is encoded here.
pub fn dicom(spec: &DicomSpec) -> Vec<u8> {
    let stored = spec.with_pixel_data.then(|| spec.stored_values());
    match spec.transfer_syntax {
        ts::RLE_LOSSLESS => {
            let frame = rle_encode(&stored.unwrap_or_default(), spec.bits_allocated);
            rle_file(spec, frame)
        }
        ts::JPEG_BASELINE => {
            let obj = dataset(spec, stored);
            let mut file = obj
                .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts::EXPLICIT_VR_LE))
                .expect("complete file meta");
            let target = TransferSyntaxRegistry
                .get(ts::JPEG_BASELINE)
                .expect("JPEG baseline is registered");
            file.transcode(target)
                .expect("8-bit JPEG baseline encoding");
            let mut out = Vec::new();
            file.write_all(&mut out).expect("writing to memory");
            out
        }
        other => write(dataset(spec, stored), other),
    }
}

/// An RLE lossless file per `spec` whose only fragment is `frame`.
fn rle_file(spec: &DicomSpec, frame: Vec<u8>) -> Vec<u8> {
    let mut obj = dataset(spec, None);
    obj.put(DataElement::new(
        tags::PIXEL_DATA,
        VR::OB,
        PixelFragmentSequence::new(C::<u32>::new(), vec![frame]),
    ));
    write(obj, ts::RLE_LOSSLESS)
}

/// RLE Lossless (PS3.5 G): one segment per byte plane, most significant first, PackBits
/// literal runs only (valid, just not small).
fn rle_encode(stored: &[u32], bits_allocated: u16) -> Vec<u8> {
    let planes = usize::from(bits_allocated / 8);
    let mut segments: Vec<Vec<u8>> = Vec::with_capacity(planes);
    for plane in 0..planes {
        let shift = 8 * (planes - 1 - plane);
        let bytes: Vec<u8> = stored.iter().map(|&v| (v >> shift) as u8).collect();
        let mut seg = Vec::with_capacity(bytes.len() + bytes.len() / 128 + 2);
        for chunk in bytes.chunks(128) {
            seg.push((chunk.len() - 1) as u8);
            seg.extend_from_slice(chunk);
        }
        if seg.len() % 2 == 1 {
            seg.push(0);
        }
        segments.push(seg);
    }
    let mut header = [0u32; 16];
    header[0] = planes as u32;
    let mut offset = 64u32;
    for (i, s) in segments.iter().enumerate() {
        header[i + 1] = offset;
        offset += s.len() as u32;
    }
    let mut out: Vec<u8> = header.iter().flat_map(|v| v.to_le_bytes()).collect();
    for s in segments {
        out.extend(s);
    }
    out
}

/// A DX For Processing image (raw detector data): the DX For Processing SOP class and
/// Presentation Intent Type FOR PROCESSING, otherwise [`DicomSpec::dx`].
pub fn dx_for_processing(width: u32, height: u32) -> Vec<u8> {
    let spec = DicomSpec::dx(width, height);
    let mut obj = dataset(&spec, Some(spec.stored_values()));
    put(
        &mut obj,
        tags::SOP_CLASS_UID,
        VR::UI,
        crate::eligibility::DX_FOR_PROCESSING,
    );
    put(
        &mut obj,
        tags::PRESENTATION_INTENT_TYPE,
        VR::CS,
        "FOR PROCESSING",
    );
    write(obj, ts::EXPLICIT_VR_LE)
}

/// Inputs that must each end in the dead-letter topic with their own reason.
pub mod broken {
    use super::*;

    pub fn zero_bytes() -> Vec<u8> {
        Vec::new()
    }

    /// A valid PNG cut in the middle of its image data.
    pub fn truncated_png() -> Vec<u8> {
        let full = png_gray8(64, 64);
        full[..full.len() / 2].to_vec()
    }

    /// Neither PNG, JPEG nor DICOM.
    pub fn wrong_magic() -> Vec<u8> {
        b"GIF89a this is not a chest x-ray".to_vec()
    }

    /// A well-formed PNG header claiming `width`×`height` with a tiny body: a decompression
    /// bomb's shape, refused before any pixel buffer is allocated.
    pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend(width.to_be_bytes());
        ihdr.extend(height.to_be_bytes());
        ihdr.extend([8, 0, 0, 0, 0]); // 8-bit grayscale, deflate, no filter, no interlace
        chunk(&mut out, b"IHDR", &ihdr);
        chunk(
            &mut out,
            b"IDAT",
            &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
        );
        chunk(&mut out, b"IEND", &[]);
        out
    }

    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend((data.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend(kind);
        out.extend(data);
        let crc = crc32(&out[start..]);
        out.extend(crc.to_be_bytes());
    }

    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &b in bytes {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    /// A CR header with everything but PixelData.
    pub fn dicom_without_pixel_data() -> Vec<u8> {
        dicom(&DicomSpec {
            with_pixel_data: false,
            ..DicomSpec::cr(64, 64)
        })
    }

    /// A small CR whose file meta names transfer syntax `uid` (the data set itself is
    /// explicit VR little endian; a reader must refuse before looking at it).
    pub fn dicom_with_transfer_syntax(uid: &str) -> Vec<u8> {
        let obj = dataset(
            &DicomSpec::cr(32, 32),
            Some(DicomSpec::cr(32, 32).stored_values()),
        );
        let good = write(obj.clone(), ts::EXPLICIT_VR_LE);
        let file = obj
            .clone()
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(ts::EXPLICIT_VR_LE))
            .expect("meta");
        let mut meta_good = Vec::new();
        file.write_meta(&mut meta_good).expect("meta to memory");
        let bad = obj
            .with_meta(FileMetaTableBuilder::new().transfer_syntax(uid))
            .expect("meta");
        let mut meta_bad = Vec::new();
        bad.write_meta(&mut meta_bad).expect("meta to memory");
        let mut out = good[..132].to_vec();
        out.extend(meta_bad);
        out.extend(&good[132 + meta_good.len()..]);
        out
    }

    /// A preamble and a file meta group naming `transfer_syntax`, then `data_set` verbatim:
    /// for hand-crafted headers.
    pub fn dicom_with_data_set(transfer_syntax: &str, data_set: &[u8]) -> Vec<u8> {
        let mut uid = transfer_syntax.as_bytes().to_vec();
        if uid.len() % 2 == 1 {
            uid.push(0);
        }
        let mut out = vec![0u8; 128];
        out.extend(b"DICM\x02\x00\x00\x00UL\x04\x00");
        out.extend((8 + uid.len() as u32).to_le_bytes());
        out.extend(b"\x02\x00\x10\x00UI");
        out.extend((uid.len() as u16).to_le_bytes());
        out.extend(uid);
        out.extend(data_set);
        out
    }

    /// A 1 KiB explicit VR little endian file whose first element, Encapsulated Document
    /// (0042,0011) OB, declares `len` bytes: a crafted header's shape, refused before anything
    /// allocates `len`.
    pub fn dicom_claiming_length(len: u32) -> Vec<u8> {
        let mut element = b"\x42\x00\x11\x00OB\x00\x00".to_vec();
        element.extend(len.to_le_bytes());
        let mut out = dicom_with_data_set(ts::EXPLICIT_VR_LE, &element);
        out.resize(1024, 0);
        out
    }

    /// A small RLE lossless CR whose frame header claims `segments` segments (at most 15 are
    /// allowed; dicom-rs allocates one slot per claimed segment).
    pub fn rle_claiming_segments(segments: u32) -> Vec<u8> {
        let spec = DicomSpec::cr(32, 32).transfer_syntax(ts::RLE_LOSSLESS);
        let mut frame = rle_encode(&spec.stored_values(), spec.bits_allocated);
        frame[..4].copy_from_slice(&segments.to_le_bytes());
        rle_file(&spec, frame)
    }

    /// A small CR whose header says BitsStored `bits_stored` (HighBit one less) with 16
    /// allocated; the pixel data is the usual 12-bit phantom.
    pub fn dicom_with_bits_stored(bits_stored: u16) -> Vec<u8> {
        let spec = DicomSpec::cr(32, 32);
        let mut obj = dataset(&spec, Some(spec.stored_values()));
        put(&mut obj, tags::BITS_STORED, VR::US, bits_stored);
        put(
            &mut obj,
            tags::HIGH_BIT,
            VR::US,
            bits_stored.saturating_sub(1),
        );
        write(obj, ts::EXPLICIT_VR_LE)
    }

    /// A MONOCHROME1 CR whose Presentation LUT Shape says IDENTITY (MONOCHROME1 goes with
    /// INVERSE): which way up it is shown is ambiguous, and preprocess refuses it.
    pub fn contradictory_polarity() -> Vec<u8> {
        let spec = DicomSpec::cr(64, 64);
        let mut obj = dataset(&spec, Some(spec.stored_values()));
        put(&mut obj, tags::PRESENTATION_LUT_SHAPE, VR::CS, "IDENTITY");
        write(obj, ts::EXPLICIT_VR_LE)
    }

    /// A CR file cut in the middle of its pixel data.
    pub fn truncated_dicom() -> Vec<u8> {
        let full = dicom(&DicomSpec::cr(64, 64));
        full[..full.len() - 2000].to_vec()
    }
}

/// The same Part 10 file with its samples declared signed (PixelRepresentation 1): 12 stored
/// bits then read 2048..4095 as negative.
pub fn signed_samples(file: &[u8]) -> Vec<u8> {
    let mut obj = dicom_object::OpenFileOptions::new()
        .from_reader(&file[128..])
        .expect("a fixture file");
    obj.put(DataElement::new(
        tags::PIXEL_REPRESENTATION,
        VR::US,
        PrimitiveValue::from(1u16),
    ));
    let mut out = Vec::new();
    obj.write_all(&mut out).expect("writing to memory");
    out
}

/// A study-level view position a gateway might send for a fixture (`None`: unknown).
pub fn lateral_cr(width: u32, height: u32) -> Vec<u8> {
    dicom(&DicomSpec::cr(width, height).view(Some("LL")))
}
