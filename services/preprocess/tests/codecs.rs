//! Every transfer syntax preprocess decodes, on files other programs wrote: pydicom writes a
//! 12-bit CR and an 8-bit image from pixels generated here; DCMTK (`dcmconv`, `dcmcrle`,
//! `dcmcjpeg`, `dcmcjpls`, `img2dcm`), pydicom (RLE, deflate) and Pillow's OpenJPEG (JPEG 2000,
//! wrapped by pydicom) re-encode them. Each must decode
//! to the original's picture, exactly for lossless codecs and within the codec's declared loss
//! for lossy ones; damaged or unsupported files must dead-letter with the exact reason.
//!
//! DCMTK and the tools venv come from scripts/prereqs.sh; a missing tool fails the test with
//! its name, never skips it.

use std::path::{Path, PathBuf};
use std::process::Command;

use cxrflow_preprocess::decode::{decode, DecodeLimits, SUPPORTED_TRANSFER_SYNTAXES};
use cxrflow_testkit::{convert, run_tool, tools_python};

fn python(script: &str, dir: &Path) {
    let mut c = Command::new(tools_python());
    c.args(["-c", script]).arg(dir);
    run_tool(c);
}

/// The originals, from `support/synthetic_cr.py`: a 12-bit MONOCHROME1 CR and the same picture in
/// 8 bits MONOCHROME2, then pydicom's and Pillow's own re-encodings of the 12-bit one.
const WRITE_ORIGINALS: &str = concat!(
    include_str!("support/synthetic_cr.py"),
    r#"
make(12, 256, 320, "MONOCHROME1").save_as(d + "/orig12.dcm", enforce_file_format=True)
make(8, 256, 320, "MONOCHROME2").save_as(d + "/orig8.dcm", enforce_file_format=True)
ds = pydicom.dcmread(d + "/orig12.dcm")
ds.compress(pydicom.uid.RLELossless)
ds.save_as(d + "/pydicom-rle.dcm", enforce_file_format=True)
ds = pydicom.dcmread(d + "/orig12.dcm")
ds.file_meta.TransferSyntaxUID = pydicom.uid.DeflatedExplicitVRLittleEndian
ds.save_as(d + "/pydicom-deflate.dcm", enforce_file_format=True)
# Reversible JPEG 2000 by Pillow's OpenJPEG (16-bit samples), wrapped by pydicom.
import io
from PIL import Image
from pydicom.encaps import encapsulate
ds = pydicom.dcmread(d + "/orig12.dcm")
out = io.BytesIO()
Image.frombytes("I;16", (ds.Columns, ds.Rows), ds.PixelData).save(
    out, format="JPEG2000", irreversible=False, no_jp2=True)
ds.PixelData = encapsulate([out.getvalue()])
ds["PixelData"].VR = "OB"
ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
ds.save_as(d + "/pillow-j2k.dcm", enforce_file_format=True)
"#
);

fn picture(path: &Path) -> Result<Vec<u16>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    decode(&bytes, &DecodeLimits::default())
        .map(|i| i.pixels)
        .map_err(|e| format!("{} {e}", e.reason()))
}

fn transfer_syntax(path: &Path) -> String {
    let out = Command::new("dcmdump")
        .args(["-Un", "+P", "0002,0010"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("dcmdump cannot run (DCMTK, scripts/prereqs.sh): {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let start = text.find('[').map(|i| i + 1).unwrap_or(0);
    let end = text.find(']').unwrap_or(text.len());
    text[start..end].trim_end_matches('\0').to_string()
}

/// Largest and mean absolute difference, in display units (0..=65535).
fn difference(a: &[u16], b: &[u16]) -> (u16, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0;
    let mut sum = 0u64;
    for (x, y) in a.iter().zip(b) {
        let d = x.abs_diff(*y);
        max = max.max(d);
        sum += u64::from(d);
    }
    (max, sum as f64 / a.len() as f64)
}

struct Files {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().to_path_buf();
        python(WRITE_ORIGINALS, &path);
        Files { _dir: dir, path }
    }

    fn at(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

/// One display unit per stored unit of a 12-bit image under its full-range window.
const PER_12BIT_STEP: f64 = 65535.0 / 4095.0;

#[test]
fn every_codec_decodes_another_programs_file_to_the_original_picture() {
    let f = Files::new();
    let orig12 = f.at("orig12.dcm");
    let want12 = picture(&orig12).expect("pydicom's 12-bit original");
    let orig8 = f.at("orig8.dcm");
    let want8 = picture(&orig8).expect("pydicom's 8-bit original");

    // Tool and arguments, 12- or 8-bit source, the transfer syntax it must have written, and
    // the largest difference allowed in display units: 0 for lossless codecs.
    // Near-lossless: NEAR = 2 stored units, plus one for the window's rounding.
    let near_bound = (2.0 * PER_12BIT_STEP).ceil() as u16 + 1;
    let cases = [
        ("dcmconv +tb", &orig12, "1.2.840.10008.1.2.2", 0),
        ("dcmconv +ti", &orig12, "1.2.840.10008.1.2", 0),
        ("dcmcrle", &orig12, "1.2.840.10008.1.2.5", 0),
        ("dcmcjpeg", &orig12, "1.2.840.10008.1.2.4.70", 0),
        ("dcmcjpeg +el", &orig12, "1.2.840.10008.1.2.4.57", 0),
        ("dcmcjpls +el", &orig12, "1.2.840.10008.1.2.4.80", 0),
        (
            "dcmcjpls +en +md 2",
            &orig12,
            "1.2.840.10008.1.2.4.81",
            near_bound,
        ),
        ("dcmcjpls +el", &orig8, "1.2.840.10008.1.2.4.80", 0),
    ];
    for (i, (command, source, uid, bound)) in cases.into_iter().enumerate() {
        let mut words = command.split(' ');
        let tool_name = words.next().unwrap_or_default();
        let args: Vec<&str> = words.collect();
        let out = f.at(&format!("{i}.dcm"));
        convert(tool_name, &args, source, &out);
        assert_eq!(
            &transfer_syntax(&out),
            uid,
            "{command} wrote the wrong syntax"
        );
        let got = picture(&out).unwrap_or_else(|e| panic!("{command} ({uid}): {e}"));
        let want = if *source == orig8 { &want8 } else { &want12 };
        let (max, mean) = difference(&got, want);
        assert!(
            max <= bound,
            "{command}: differs by up to {max} (mean {mean:.2}), bound {bound}"
        );
    }
    for (name, uid) in [
        ("pydicom-rle.dcm", "1.2.840.10008.1.2.5"),
        ("pydicom-deflate.dcm", "1.2.840.10008.1.2.1.99"),
        ("pillow-j2k.dcm", "1.2.840.10008.1.2.4.90"),
    ] {
        let out = f.at(name);
        assert_eq!(transfer_syntax(&out), uid, "{name}");
        assert_eq!(picture(&out).as_ref(), Ok(&want12), "{name}");
    }
}

/// A 12-bit picture with a disc saturated at 4095 and bands rising from a plateau clipped at 0,
/// compressed 10:1 by Pillow's OpenJPEG (irreversible 9/7 wavelet), whose codestream declares 16
/// bits for the 12 stored: beside the saturated edges the reconstruction overshoots 4095 and
/// nothing clips it (the script checks that it does).
const WRITE_SATURATED: &str = concat!(
    include_str!("support/synthetic_cr.py"),
    r#"
ds = make(12, 640, 768, "MONOCHROME2", grad=(0.3, 0.0), disc=0.9, bands=0.3, noise=400)
ds.save_as(d + "/saturated.dcm", enforce_file_format=True)
out = io.BytesIO()
Image.frombytes("I;16", (ds.Columns, ds.Rows), ds.PixelData).save(
    out, format="JPEG2000", irreversible=True, no_jp2=True, quality_mode="rates", quality_layers=[10])
over = int((np.asarray(Image.open(io.BytesIO(out.getvalue()))) > 4095).sum())
assert over > 0, "OpenJPEG's reconstruction no longer overshoots 4095: the test tests nothing"
print(f"{over} samples of the lossy reconstruction are over 4095")
ds.PixelData = encapsulate([out.getvalue()])
ds["PixelData"].VR = "OB"
ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000
ds.save_as(d + "/saturated-j2k-lossy.dcm", enforce_file_format=True)
"#
);

/// A lossy codec's samples beyond the stored range saturate: masked to BitsStored, 4115 read as
/// 19 and a saturated region's edge turned black (held-out renderings with devices: the model's
/// Support Devices probability moved by up to 0.59).
#[test]
fn a_lossy_codecs_overshoot_saturates_instead_of_wrapping() {
    let dir = tempfile::tempdir().expect("temp dir");
    python(WRITE_SATURATED, dir.path());
    let want = picture(&dir.path().join("saturated.dcm")).expect("the original");
    let lossy = dir.path().join("saturated-j2k-lossy.dcm");
    assert_eq!(transfer_syntax(&lossy), "1.2.840.10008.1.2.4.91");
    let got = picture(&lossy).expect("the lossy re-encoding");
    let (max, mean) = difference(&got, &want);
    eprintln!("lossy JPEG 2000, saturated: largest difference {max}, mean {mean:.1} (of 65535)");
    // A wrapped sample differs by most of the range; 10:1 loss beside a full-range edge by a
    // few percent (measured: 448, mean 69; 65535, mean 762 when masked).
    assert!(
        f64::from(max) < 0.05 * 65535.0 && mean < 0.01 * 65535.0,
        "largest difference {max}, mean {mean:.1} (of 65535): a sample left the stored range and wrapped"
    );
}

/// Pydicom's CR (a left-to-right gradient) under each photometric interpretation, with and
/// without a Presentation LUT Shape.
const WRITE_POLARITIES: &str = concat!(
    include_str!("support/synthetic_cr.py"),
    r#"
for mono in ("MONOCHROME1", "MONOCHROME2"):
    for shape in ("none", "IDENTITY", "INVERSE"):
        ds = make(12, 64, 48, mono, grad=(0.9, 0.0), disc=0.0, noise=1000)
        if shape != "none":
            ds.PresentationLUTShape = shape
        ds.save_as(f"{d}/{mono}-{shape}.dcm", enforce_file_format=True)
"#
);

/// Which way up DCMTK shows an image (`dcm2pnm`, min-max window): whether its right half is
/// brighter than its left.
fn dcmtk_right_is_brighter(dcm: &Path) -> bool {
    let pgm = dcm.with_extension("pgm");
    let mut c = Command::new("dcm2pnm");
    c.args(["--write-raw-pnm", "+Wm"]).arg(dcm).arg(&pgm);
    run_tool(c);
    let bytes = std::fs::read(&pgm).expect("dcm2pnm's output");
    // "P5\n64 48\n255\n", then the samples.
    right_is_brighter(&bytes[bytes.len() - 64 * 48..])
}

/// Whether the right half of a 64-pixel-wide plane is brighter than its left.
fn right_is_brighter<T: Copy + Into<u64>>(pixels: &[T]) -> bool {
    let half = |right: bool| -> u64 {
        pixels
            .chunks(64)
            .flat_map(|row| if right { &row[32..] } else { &row[..32] })
            .map(|&v| v.into())
            .sum()
    };
    half(true) > half(false)
}

/// A conformant Presentation LUT Shape (IDENTITY with MONOCHROME2, INVERSE with MONOCHROME1)
/// or none: the model sees the image the way up DCMTK shows it. A contradictory one: DCMTK
/// follows the shape, pydicom the photometric interpretation, so cxrflow refuses the image by
/// name rather than score it possibly upside down.
#[test]
fn the_model_sees_an_image_the_way_up_dcmtk_shows_it_or_it_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    python(WRITE_POLARITIES, dir.path());
    for mono in ["MONOCHROME1", "MONOCHROME2"] {
        for shape in ["none", "IDENTITY", "INVERSE"] {
            let file = dir.path().join(format!("{mono}-{shape}.dcm"));
            let contradicts = matches!(
                (mono, shape),
                ("MONOCHROME1", "IDENTITY") | ("MONOCHROME2", "INVERSE")
            );
            match picture(&file) {
                Ok(pixels) if !contradicts => {
                    assert_eq!(
                        right_is_brighter(&pixels),
                        dcmtk_right_is_brighter(&file),
                        "{mono} {shape}: cxrflow and DCMTK show it different ways up"
                    );
                }
                Err(e) if contradicts => {
                    assert!(
                        e.starts_with("decode.invalid_attribute")
                            && e.contains("Presentation LUT Shape (2050,0020)"),
                        "{mono} {shape}: {e}"
                    );
                    // DCMTK shows it the way the shape says, the photometric interpretation
                    // alone the other: the ambiguity is real.
                    let by_shape = shape == "IDENTITY";
                    assert_eq!(dcmtk_right_is_brighter(&file), by_shape, "{mono} {shape}");
                }
                other => panic!("{mono} {shape}: {other:?}"),
            }
        }
    }
}

/// The position of a JPEG frame header (SOFn) and the sample precision it declares.
fn sof(bytes: &[u8], marker: u8) -> Option<u8> {
    let at = bytes.windows(2).position(|w| w == [0xFF, marker])?;
    bytes.get(at + 4).copied()
}

#[test]
fn jpeg_extended_decodes_in_12_and_8_bits_within_the_codecs_loss() {
    let f = Files::new();
    let want12 = picture(&f.at("orig12.dcm")).expect("12-bit original");
    let want8 = picture(&f.at("orig8.dcm")).expect("8-bit original");
    for (source, name, want, precision) in [
        ("orig12.dcm", "ext12.dcm", &want12, 12),
        ("orig8.dcm", "ext8.dcm", &want8, 8),
    ] {
        let out = f.at(name);
        // Extended sequential (Process 2/4), quality 95: DCMTK keeps 12 bits for 12-bit data.
        convert("dcmcjpeg", &["+ee", "+q", "95"], &f.at(source), &out);
        assert_eq!(transfer_syntax(&out), "1.2.840.10008.1.2.4.51", "{name}");
        let bytes = std::fs::read(&out).expect("dcmcjpeg output");
        // SOF1 (extended sequential, Huffman) with the precision this case is about.
        assert_eq!(
            sof(&bytes, 0xC1),
            Some(precision),
            "{name} is not a {precision}-bit SOF1"
        );
        let got = picture(&out).unwrap_or_else(|e| panic!("{name}: {e}"));
        let (max, mean) = difference(&got, want);
        // Quality 95 on a noisy image, measured with DCMTK 3.6.7: 12 bits, mean 24 and largest
        // 160 (0.25 %); 8 bits, mean 218 and largest 2056 (3.1 %). The bounds leave room for
        // encoder versions, not for a decoder that gets the precision or the sample order
        // wrong (tens of percent).
        eprintln!("{name}: largest difference {max}, mean {mean:.1} (of 65535)");
        assert!(mean < 0.01 * 65535.0, "{name}: mean difference {mean:.1}");
        assert!(
            f64::from(max) < 0.05 * 65535.0,
            "{name}: largest difference {max}"
        );
    }
}

#[test]
fn img2dcm_wraps_a_jpeg_that_decodes_like_the_jpeg_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let jpeg = dir.path().join("cxr.jpg");
    let jpeg_bytes = cxrflow_preprocess::fixtures::jpeg_gray8(240, 300);
    std::fs::write(&jpeg, &jpeg_bytes).expect("write jpeg");
    let out = dir.path().join("sc.dcm");
    let mut c = Command::new("img2dcm");
    c.arg(&jpeg).arg(&out);
    run_tool(c);
    assert_eq!(transfer_syntax(&out), "1.2.840.10008.1.2.4.50");
    let as_jpeg = decode(&jpeg_bytes, &DecodeLimits::default()).expect("the JPEG itself");
    let got = picture(&out).expect("img2dcm's DICOM");
    // Two JPEG decoders (the image crate's and dicom-rs's) may round the IDCT differently by a
    // grey level or two; anything more is a different picture.
    let (max, _) = difference(&got, &as_jpeg.pixels);
    assert!(max <= 3 * 257, "largest difference {max}");
}

/// Damaged and unsupported files, each refused with the reason a PACS admin acts on.
const WRITE_REFUSALS: &str = r#"
import sys, pydicom
from pydicom.encaps import encapsulate, generate_frames
d = sys.argv[1]
# A 12-bit JPEG stream cut at two thirds (a transfer that stopped), re-wrapped whole otherwise.
ds = pydicom.dcmread(d + "/ext12.dcm")
frame = next(generate_frames(ds.PixelData, number_of_frames=1))
ds.PixelData = encapsulate([frame[: len(frame) * 2 // 3]])
ds.save_as(d + "/ext12-cut.dcm", enforce_file_format=True)
# The same cut in a lossless JPEG stream (libjpeg-turbo decodes 9- to 16-bit lossless JPEG).
ds = pydicom.dcmread(d + "/ll12.dcm")
frame = next(generate_frames(ds.PixelData, number_of_frames=1))
ds.PixelData = encapsulate([frame[: len(frame) * 2 // 3]])
ds.save_as(d + "/ll12-cut.dcm", enforce_file_format=True)
# A JPEG-LS stream whose start-of-frame marker segment is overwritten.
ds = pydicom.dcmread(d + "/jls.dcm")
frame = bytearray(next(generate_frames(ds.PixelData, number_of_frames=1)))
at = frame.find(b"\xff\xf7")
frame[at : at + 12] = b"\xff\xf7\x00\x0b\x00\x00\x00\x00\x00\x00\x00\x00"
ds.PixelData = encapsulate([bytes(frame)])
ds.save_as(d + "/jls-bad-sof.dcm", enforce_file_format=True)
# 32-bit samples: valid DICOM, a precision this build does not decode.
ds = pydicom.dcmread(d + "/orig12.dcm")
wide = ds.pixel_array.astype("uint32") << 16
ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
ds.PixelData = wide.tobytes()
ds.save_as(d + "/bits32.dcm", enforce_file_format=True)
# A structured report: no image pixel module at all.
ds = pydicom.dcmread(d + "/orig12.dcm")
for k in ("Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit", "PixelData",
          "SamplesPerPixel", "PhotometricInterpretation", "PixelRepresentation"):
    delattr(ds, k)
ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.22"
ds.save_as(d + "/report.dcm", enforce_file_format=True)
# MPEG2 video: a transfer syntax with no image decoder here.
ds = pydicom.dcmread(d + "/orig12.dcm")
ds.PixelData = encapsulate([ds.PixelData])
ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"
ds.save_as(d + "/mpeg2.dcm", enforce_file_format=True)
# Pillow's unsigned JPEG 2000 under a header edited to say signed samples.
ds = pydicom.dcmread(d + "/pillow-j2k.dcm")
ds.PixelRepresentation = 1
ds.save_as(d + "/j2k-sign-mismatch.dcm", enforce_file_format=True)
"#;

#[test]
fn damaged_and_unsupported_files_are_refused_with_the_exact_reason() {
    let f = Files::new();
    convert(
        "dcmcjpeg",
        &["+ee", "+q", "95"],
        &f.at("orig12.dcm"),
        &f.at("ext12.dcm"),
    );
    convert("dcmcjpls", &["+el"], &f.at("orig12.dcm"), &f.at("jls.dcm"));
    convert("dcmcjpeg", &["+e1"], &f.at("orig12.dcm"), &f.at("ll12.dcm"));
    python(WRITE_REFUSALS, &f.path);
    for (name, reason, words) in [
        ("ext12-cut.dcm", "decode.truncated", ""),
        ("ll12-cut.dcm", "decode.truncated", ""),
        ("jls-bad-sof.dcm", "decode.corrupt_stream", "JPEG-LS"),
        (
            "bits32.dcm",
            "decode.unsupported_precision",
            "BitsAllocated (0028,0100) 32",
        ),
        (
            "report.dcm",
            "decode.not_an_image",
            "1.2.840.10008.5.1.4.1.1.88.22",
        ),
        (
            "mpeg2.dcm",
            "decode.unsupported_transfer_syntax",
            "1.2.840.10008.1.2.4.100",
        ),
        (
            "j2k-sign-mismatch.dcm",
            "decode.invalid_attribute",
            "PixelRepresentation (0028,0103) 1 (signed) contradicts the JPEG 2000 codestream, whose samples are unsigned",
        ),
    ] {
        let err = picture(&f.at(name)).expect_err(name);
        eprintln!("{name}: {err}");
        assert!(err.starts_with(&format!("{reason} ")), "{name}: {err}");
        assert!(err.contains(words), "{name}: {err} does not say {words:?}");
    }
}

#[test]
fn the_supported_list_names_the_new_codecs() {
    for uid in [
        "1.2.840.10008.1.2.4.51",
        "1.2.840.10008.1.2.4.80",
        "1.2.840.10008.1.2.4.81",
        "1.2.840.10008.1.2.1.99",
    ] {
        assert!(
            SUPPORTED_TRANSFER_SYNTAXES.iter().any(|(u, _)| *u == uid),
            "{uid}"
        );
    }
}
