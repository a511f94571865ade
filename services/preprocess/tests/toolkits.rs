//! Files other toolkits wrote and other toolkits read: pydicom's own test corpus (files from
//! GDCM, DCMTK, vendors and pydicom) and pynetdicom's, shipped in the pinned wheels of the tools
//! venv, checked against what pydicom and DCMTK make of them.
//!
//! - Every file in the corpora decodes or is refused with its exact reason, none panics, and none
//!   (there is no chest radiograph among them; an RT portal image is the nearest) gets past the
//!   eligibility gate.
//! - Every grayscale picture preprocess decodes orders its pixels as pydicom's `pixel_array`
//!   does: same size, and a brighter stored value is never shown darker (a wrong byte order,
//!   sign, bit depth, row order or polarity breaks that at once).
//! - GDCM's 12-bit JPEG with all-zero scan fields decodes as DCMTK's `dcmdjpeg` decodes it.
//! - A sequence encoded as UN with undefined length (PS3.5 §6.2.2), GDCM's own encoding of one,
//!   is read the way DCMTK reads it.
//!
//! DCMTK and the tools venv come from scripts/prereqs.sh; a missing tool fails the test with
//! its name, never skips it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cxrflow_preprocess::decode::{decode, DecodeLimits};
use cxrflow_preprocess::eligibility::EligibilityRules;
use cxrflow_preprocess::pipeline::{prepare_guarded, Gated};
use cxrflow_preprocess::Profile;
use cxrflow_testkit::{
    convert, gdcm_un_sequence, package_data, pydicom_test_files as corpus, run_tool, tools_python,
};

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `decode`'s outcome: "ok" or the refusal's reason code.
fn outcome(bytes: &[u8]) -> String {
    match std::panic::catch_unwind(|| decode(bytes, &DecodeLimits::default())) {
        Err(_) => "PANIC".into(),
        Ok(Ok(_)) => "ok".into(),
        Ok(Err(e)) => e.reason().into(),
    }
}

/// What preprocess does with each file of pydicom 3.0.2's corpus, outside the eligibility gate.
/// Refusals of files pydicom itself reads are explained where they are not plain.
const CORPUS: &[(&str, &str)] = &[
    ("693_J2KI.dcm", "ok"),
    ("CT_small.dcm", "ok"),
    // RGB, planar configuration 1, big endian: dicom-rs reads planar RGB only in little endian.
    // Colour is never scored; the refusal's words name the cause.
    ("ExplVR_BigEnd.dcm", "decode.corrupt_stream"),
    // A bare big endian data set (no meta): an RT ion plan, no pixels.
    ("ExplVR_BigEndNoMeta.dcm", "decode.not_an_image"),
    ("ExplVR_LitEndNoMeta.dcm", "decode.not_an_image"), // an RT plan: no pixels
    ("GDCMJ2K_TextGBR.dcm", "ok"),
    ("J2K_pixelrep_mismatch.dcm", "decode.invalid_attribute"),
    ("JPEG-lossy.dcm", "ok"),
    // pydicom cannot decode it either (Pillow: "Image size exceeds"; OpenJPEG refuses).
    (
        "JPEG2000-embedded-sequence-delimiter.dcm",
        "decode.corrupt_stream",
    ),
    ("JPEG2000.dcm", "ok"),
    ("JPEGLSNearLossless_08.dcm", "ok"),
    ("JPEGLSNearLossless_16.dcm", "ok"),
    ("JPGExtended.dcm", "ok"),
    ("MR_small.dcm", "ok"),
    ("MR_small_RLE.dcm", "ok"),
    ("MR_small_bigendian.dcm", "ok"),
    ("MR_small_expb.dcm", "ok"),
    ("MR_small_implicit.dcm", "ok"),
    ("MR_small_jp2klossless.dcm", "ok"),
    ("MR_small_jpeg_ls_lossless.dcm", "ok"),
    ("MR_small_padded.dcm", "ok"),
    ("MR_truncated.dcm", "decode.truncated"),
    ("README.txt", "decode.not_an_image"),
    ("SC_jpeg_no_color_transform.dcm", "ok"),
    ("SC_jpeg_no_color_transform_2.dcm", "ok"),
    ("SC_rgb_dcmtk_+eb+cr.dcm", "ok"),
    ("SC_rgb_dcmtk_+eb+cy+n1.dcm", "ok"),
    ("SC_rgb_dcmtk_+eb+cy+n2.dcm", "ok"),
    ("SC_rgb_dcmtk_+eb+cy+np.dcm", "ok"),
    ("SC_rgb_dcmtk_+eb+cy+s2.dcm", "ok"),
    ("SC_rgb_dcmtk_+eb+cy+s4.dcm", "ok"),
    ("SC_rgb_gdcm_KY.dcm", "ok"),
    ("SC_rgb_jls_lossy_line.dcm", "ok"),
    ("SC_rgb_jls_lossy_sample.dcm", "ok"),
    // JPEG Baseline, whose data set must be explicit VR, written in implicit VR (pydicom reads
    // it with a warning): no transfer syntax says "implicit VR, encapsulated".
    ("SC_rgb_jpeg.dcm", "decode.corrupt_stream"),
    ("SC_rgb_jpeg_app14_dcmd.dcm", "ok"),
    ("SC_rgb_jpeg_dcmd.dcm", "ok"),
    ("SC_rgb_jpeg_dcmtk.dcm", "ok"),
    ("SC_rgb_jpeg_gdcm.dcm", "ok"),
    ("SC_rgb_jpeg_lossy_gdcm.dcm", "ok"),
    ("SC_rgb_rle.dcm", "ok"),
    ("SC_rgb_rle_16bit.dcm", "ok"),
    ("SC_rgb_rle_16bit_2frame.dcm", "ok"),
    ("SC_rgb_rle_2frame.dcm", "ok"),
    ("SC_rgb_rle_32bit.dcm", "decode.unsupported_precision"),
    (
        "SC_rgb_rle_32bit_2frame.dcm",
        "decode.unsupported_precision",
    ),
    ("SC_rgb_small_odd.dcm", "ok"),
    ("SC_rgb_small_odd_big_endian.dcm", "ok"),
    ("SC_rgb_small_odd_jpeg.dcm", "ok"),
    // YBR_FULL_422 stored uncompressed (two lumas to a chroma pair): dicom-rs does not unpack
    // it. Colour is never scored.
    ("SC_ybr_full_422_uncompressed.dcm", "decode.corrupt_stream"),
    // GDCM's sequence encoded as UN with undefined length, read as PS3.5 §6.2.2 says; no pixels.
    ("UN_sequence.dcm", "decode.not_an_image"),
    ("badVR.dcm", "decode.invalid_attribute"),
    ("crayons.icc", "decode.not_an_image"),
    ("empty_charset_LEI.dcm", "decode.not_an_image"),
    ("examples_jpeg2k.dcm", "ok"),
    ("examples_overlay.dcm", "ok"),
    ("examples_palette.dcm", "decode.unsupported_image"),
    ("examples_rgb_color.dcm", "ok"),
    ("examples_ybr_color.dcm", "ok"),
    ("image_dfl.dcm", "ok"),
    ("liver_1frame.dcm", "decode.unsupported_precision"), // 1-bit segmentation
    ("liver_expb_1frame.dcm", "decode.unsupported_precision"),
    ("meta_missing_tsyntax.dcm", "decode.corrupt_stream"),
    ("nested_priv_SQ.dcm", "decode.not_an_image"),
    // A bare implicit data set opening with group 0800: not the (0008,xxxx) one a bare data set
    // starts with, so not recognised as DICOM.
    ("no_meta.dcm", "decode.not_an_image"),
    ("no_meta_group_length.dcm", "decode.not_an_image"),
    ("priv_SQ.dcm", "decode.not_an_image"),
    ("reportsi.dcm", "decode.not_an_image"),
    ("reportsi_with_empty_number_tags.dcm", "decode.not_an_image"),
    ("rtdose.dcm", "decode.unsupported_precision"), // 32-bit dose grids
    ("rtdose_1frame.dcm", "decode.unsupported_precision"),
    ("rtdose_expb.dcm", "decode.unsupported_precision"),
    ("rtdose_expb_1frame.dcm", "decode.unsupported_precision"),
    ("rtdose_rle.dcm", "decode.unsupported_precision"),
    ("rtdose_rle_1frame.dcm", "decode.unsupported_precision"),
    ("rtplan.dcm", "decode.not_an_image"),
    ("rtplan.dump", "decode.not_an_image"),
    ("rtplan_truncated.dcm", "decode.truncated"),
    ("rtstruct.dcm", "decode.not_an_image"),
    ("rtstruct.dump", "decode.not_an_image"),
    ("test-SR.dcm", "decode.not_an_image"),
    ("test1.json", "decode.not_an_image"),
    ("test_PN.json", "decode.not_an_image"),
    ("waveform_ecg.dcm", "decode.not_an_image"),
    ("zipMR.gz", "decode.not_an_image"),
];

/// The same for pynetdicom 3.0.4's test files (`pynetdicom/tests/dicom_files`, in its wheel).
const PYNETDICOM: &[(&str, &str)] = &[
    ("CTImageStorage.dcm", "ok"),
    ("CTImageStorage_bad_meta.dcm", "ok"),
    ("MRImageStorage_ExplicitVRBigEndian.dcm", "ok"),
    ("MRImageStorage_JPG2000_Lossless.dcm", "ok"),
    // An RT portal image: an X-ray projection, but not a chest radiograph (gated by modality).
    ("RTImageStorage.dcm", "ok"),
    ("SCImageStorage_Deflated.dcm", "ok"),
];

fn pynetdicom_test_files() -> PathBuf {
    package_data("pynetdicom", "tests/dicom_files")
}

#[test]
fn every_file_in_pydicoms_and_pynetdicoms_corpora_decodes_or_is_refused_by_name_and_none_is_scored()
{
    let mut wrong = Vec::new();
    for (dir, table) in [(corpus(), CORPUS), (pynetdicom_test_files(), PYNETDICOM)] {
        wrong.extend(check_corpus(&dir, table));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // The bare big endian data set is read as DICOM (an RT ion plan), not as unknown bytes.
    let e = decode(
        &read(&corpus().join("ExplVR_BigEndNoMeta.dcm")),
        &DecodeLimits::default(),
    )
    .expect_err("an RT plan");
    assert!(
        e.to_string()
            .contains("no image pixel module (Rows, Columns, BitsAllocated) in a 1.2.840.10008.5.1.4.1.1.481.8 object"),
        "{e}"
    );
}

/// Every file of `dir` against `table`: the outcomes that differ, and any file prepared for
/// scoring.
fn check_corpus(dir: &Path, table: &[(&str, &str)]) -> Vec<String> {
    let want: BTreeMap<&str, &str> = table.iter().copied().collect();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut wrong = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = read(path);
        let got = outcome(&bytes);
        match want.get(name.as_str()) {
            Some(w) if *w == got => {}
            w => wrong.push(format!("{name}: {got}, expected {w:?}")),
        }
        // Behind the gate: an MR, a CT, a colour capture, a report: never prepared for scoring,
        // and a decoder panic would show here as decode.panicked.
        match prepare_guarded(
            &bytes,
            &DecodeLimits::default(),
            Profile::default(),
            &EligibilityRules::default(),
        ) {
            Ok(Gated::Prepared(_)) => wrong.push(format!("{name}: prepared for scoring")),
            Ok(Gated::Ineligible { .. }) => {}
            Err(e) if e.reason() == "decode.panicked" => wrong.push(format!("{name}: {e}")),
            Err(_) => {}
        }
    }
    if files.len() != table.len() {
        wrong.push(format!("{}: the corpus changed: {files:?}", dir.display()));
    }
    wrong
}

/// Writes, for each grayscale file pydicom decodes with the plugins the tools venv has, its
/// first frame's stored values (int32 little endian, `<name>.raw`) and `<name>.txt`:
/// "rows columns photometric".
const PYDICOM_PIXELS: &str = r#"
import os, sys, numpy as np, pydicom
src, out = sys.argv[1], sys.argv[2]
for name in sys.argv[3:]:
    ds = pydicom.dcmread(os.path.join(src, name))
    a = ds.pixel_array
    if getattr(ds, "NumberOfFrames", 1) not in (None, "", 1, "1") and a.ndim == 3:
        a = a[0]
    assert a.ndim == 2, (name, a.shape)
    a.astype("<i4").tofile(os.path.join(out, name + ".raw"))
    with open(os.path.join(out, name + ".txt"), "w") as f:
        f.write(f"{a.shape[0]} {a.shape[1]} {ds.PhotometricInterpretation}")
"#;

/// The grayscale files preprocess decodes and pydicom decodes with Pillow or numpy alone:
/// uncompressed little and big endian, implicit and explicit, deflate, RLE, JPEG 2000 reversible
/// and irreversible, signed and unsigned, 8 to 16 bits.
const GRAYSCALE: &[&str] = &[
    "693_J2KI.dcm",
    "CT_small.dcm",
    "JPEG2000.dcm",
    "MR_small.dcm",
    "MR_small_RLE.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_implicit.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_padded.dcm",
    "examples_overlay.dcm",
    "image_dfl.dcm",
];

/// Whether `shown` (0 = black) orders the pixels as the stored values `stored` do, brighter
/// meaning a higher stored value for MONOCHROME2 and a lower one for MONOCHROME1: equal stored
/// values shown equal, and a brighter one never shown darker. Err: the first pair that is not.
fn same_order(stored: &[i32], shown: &[u16], mono1: bool) -> Result<(), String> {
    let mut pairs: Vec<(i64, u16)> = stored
        .iter()
        .map(|&s| if mono1 { -i64::from(s) } else { i64::from(s) })
        .zip(shown.iter().copied())
        .collect();
    pairs.sort_unstable();
    for w in pairs.windows(2) {
        let ((s0, d0), (s1, d1)) = (w[0], w[1]);
        if (s0 == s1 && d0 != d1) || d0 > d1 {
            return Err(format!(
                "stored {s0} shown {d0}, stored {s1} shown {d1} (signs flipped for MONOCHROME1)"
            ));
        }
    }
    let distinct = |v: Vec<i64>| v.windows(2).filter(|w| w[0] != w[1]).count() + 1;
    let stored_levels = distinct(pairs.iter().map(|p| p.0).collect());
    let shown_levels = distinct(pairs.iter().map(|p| i64::from(p.1)).collect());
    if stored_levels > 1 && shown_levels < 2 {
        return Err(format!("{stored_levels} stored levels all shown as one"));
    }
    Ok(())
}

/// pynetdicom's grayscale files: CT, MR in big endian and JPEG 2000, an RT portal image, a
/// deflated secondary capture.
const PYNETDICOM_GRAYSCALE: &[&str] = &[
    "CTImageStorage.dcm",
    "CTImageStorage_bad_meta.dcm",
    "MRImageStorage_ExplicitVRBigEndian.dcm",
    "MRImageStorage_JPG2000_Lossless.dcm",
    "RTImageStorage.dcm",
    "SCImageStorage_Deflated.dcm",
];

#[test]
fn grayscale_pictures_order_their_pixels_as_pydicom_does() {
    for (dir, names) in [
        (corpus(), GRAYSCALE),
        (pynetdicom_test_files(), PYNETDICOM_GRAYSCALE),
    ] {
        same_picture_as_pydicom(&dir, names);
    }
}

fn same_picture_as_pydicom(dir: &Path, names: &[&str]) {
    let out = tempfile::tempdir().expect("temp dir");
    let mut c = Command::new(tools_python());
    c.args(["-c", PYDICOM_PIXELS])
        .arg(dir)
        .arg(out.path())
        .args(names);
    run_tool(c);
    for name in names {
        let meta = std::fs::read_to_string(out.path().join(format!("{name}.txt"))).expect("meta");
        let mut words = meta.split_whitespace();
        let rows: u32 = words.next().unwrap().parse().unwrap();
        let cols: u32 = words.next().unwrap().parse().unwrap();
        let photometric = words.next().unwrap().to_string();
        let stored: Vec<i32> = read(&out.path().join(format!("{name}.raw")))
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let img = decode(&read(&dir.join(name)), &DecodeLimits::default())
            .unwrap_or_else(|e| panic!("{name}: {} {e}", e.reason()));
        assert_eq!((img.width, img.height), (cols, rows), "{name}");
        assert_eq!(img.photometric, photometric, "{name}");
        same_order(&stored, &img.pixels, photometric == "MONOCHROME1")
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_pixel_order_check_catches_a_swapped_or_inverted_picture() {
    let stored: Vec<i32> = (0..64).map(|i| (i * 37) % 61 - 20).collect();
    let shown: Vec<u16> = stored.iter().map(|&s| ((s + 20) * 1000) as u16).collect();
    assert_eq!(same_order(&stored, &shown, false), Ok(()));
    let inverted: Vec<u16> = shown.iter().map(|&d| 65535 - d).collect();
    assert!(same_order(&stored, &inverted, false).is_err());
    assert_eq!(same_order(&stored, &inverted, true), Ok(()));
    let mut swapped = shown.clone();
    swapped.swap(3, 40);
    assert!(same_order(&stored, &swapped, false).is_err());
    assert!(same_order(&stored, &[7; 64], false).is_err());
}

fn pixels(bytes: &[u8]) -> Result<Vec<u16>, String> {
    decode(bytes, &DecodeLimits::default())
        .map(|i| i.pixels)
        .map_err(|e| format!("{} {e}", e.reason()))
}

/// GDCM's `JPEG-lossy.dcm` (a 12-bit JPEG Extended NM image) has Ss = Se = Ah = Al = 0 in its
/// scan header, where a sequential scan must have 0, 63, 0, 0. libjpeg only warns about it
/// ("there are some baseline files out there with all zeroes in these bytes"), and DCMTK decodes
/// it; preprocess, which refuses any libjpeg warning in 12-bit JPEG, decodes it to DCMTK's
/// picture. Other wrong values in those bytes are still refused.
#[test]
fn a_12_bit_jpeg_with_all_zero_scan_fields_decodes_as_dcmtk_decodes_it() {
    let src = corpus().join("JPEG-lossy.dcm");
    let dir = tempfile::tempdir().expect("temp dir");
    let dcmtk = dir.path().join("dcmdjpeg.dcm");
    convert("dcmdjpeg", &[], &src, &dcmtk);
    let bytes = read(&src);
    let got = pixels(&bytes).expect("JPEG-lossy.dcm");
    let want = pixels(&read(&dcmtk)).expect("dcmdjpeg's output");
    assert_eq!(got.len(), want.len());
    // The same integer IDCT on both sides (IJG's and libjpeg-turbo's jidctint).
    let max = got.iter().zip(&want).map(|(a, b)| a.abs_diff(*b)).max();
    assert_eq!(max, Some(0), "largest difference from DCMTK's decode");

    // SOS of one component: FF DA, length 8, Ns 1, Cs 1, Td/Ta 0, then Ss Se Ah/Al.
    let sos = [0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0, 0];
    let at = bytes
        .windows(sos.len())
        .position(|w| w == sos)
        .expect("the all-zero scan header");
    for (field, value) in [(7, 1), (8, 5), (9, 0x01)] {
        let mut bad = bytes.clone();
        bad[at + field] = value;
        let e = pixels(&bad).expect_err("a scan header libjpeg refuses");
        assert!(
            e.starts_with("decode.corrupt_stream") && e.contains("Invalid SOS parameters"),
            "byte {field} = {value}: {e}"
        );
    }
}

/// pydicom writes a 12-bit CR (explicit VR little endian) and DCMTK converts it to explicit VR
/// big endian.
const WRITE_CR: &str = concat!(
    include_str!("support/synthetic_cr.py"),
    r#"
make(12, 64, 80, "MONOCHROME2").save_as(d + "/le.dcm", enforce_file_format=True)
"#
);

/// `file` with `element` inserted before its last Pixel Data header (`pixel_header`).
fn before_pixel_data(file: &[u8], pixel_header: &[u8], element: &[u8]) -> Vec<u8> {
    let at = file
        .windows(pixel_header.len())
        .rposition(|w| w == pixel_header)
        .expect("a Pixel Data header");
    [&file[..at], element, &file[at..]].concat()
}

fn dcmdump(path: &Path) -> String {
    let out = Command::new("dcmdump")
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("dcmdump cannot run (DCMTK, scripts/prereqs.sh): {e}"));
    assert!(
        out.status.success(),
        "dcmdump {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A private sequence that passed through a node without its dictionary arrives as VR UN with
/// undefined length, its items in implicit VR whatever the transfer syntax (PS3.5 §6.2.2).
/// dicom-rs reads the items in the file's own explicit VR and fails; preprocess takes the element
/// out first, so the image decodes as DCMTK reads it: the same picture as without the element,
/// in little and big endian. An element that could change how the image is shown or gated, or
/// one inside a sequence of defined length (whose length would then be wrong), is refused by name.
#[test]
fn a_sequence_encoded_as_un_of_undefined_length_is_read_as_implicit_vr_as_dcmtk_reads_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let mut c = Command::new(tools_python());
    c.args(["-c", WRITE_CR]).arg(d);
    run_tool(c);
    convert("dcmconv", &["+tb"], &d.join("le.dcm"), &d.join("be.dcm"));
    let want = pixels(&read(&d.join("le.dcm"))).expect("the original");
    let un = gdcm_un_sequence();
    // In big endian the element's own header is big endian; its value stays implicit VR little
    // endian.
    let mut un_be = un.clone();
    un_be[..4].copy_from_slice(&[0x44, 0x53, 0x10, 0x0C]);
    for (name, pixel_header, element) in [
        ("le.dcm", &[0xE0, 0x7F, 0x10, 0x00][..], &un),
        ("be.dcm", &[0x7F, 0xE0, 0x00, 0x10][..], &un_be),
    ] {
        let spliced = d.join(format!("un-{name}"));
        std::fs::write(
            &spliced,
            before_pixel_data(&read(&d.join(name)), pixel_header, element),
        )
        .expect("write");
        // DCMTK reads the items as implicit VR: the standard attributes inside are named.
        let dump = dcmdump(&spliced);
        assert!(
            dump.contains("ReferencedSeriesSequence") && dump.contains("ReferencedSOPClassUID"),
            "{name}: {dump}"
        );
        let got = pixels(&read(&spliced)).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(got, want, "{name}");
    }

    let le = read(&d.join("le.dcm"));
    let refused = |file: Vec<u8>, words: &str| {
        let e = decode(&file, &DecodeLimits::default()).expect_err(words);
        assert_eq!(e.reason(), "decode.unsupported_image", "{e}");
        assert!(e.to_string().contains(words), "{e}");
    };
    // The same encoding of the View Code Sequence, which the frontal gate reads.
    let mut view = un.clone();
    view[..4].copy_from_slice(&[0x54, 0x00, 0x20, 0x02]);
    refused(
        before_pixel_data(&le, &[0xE0, 0x7F, 0x10, 0x00], &view),
        "ViewCodeSequence bears on how the image is shown or gated",
    );
    // Inside an item of a private sequence of defined length.
    let item = [
        &[0xFE, 0xFF, 0x00, 0xE0][..],
        &(un.len() as u32).to_le_bytes(),
        &un,
    ]
    .concat();
    let outer = [
        &[0x53, 0x44, 0x10, 0x10, b'S', b'Q', 0, 0][..],
        &(item.len() as u32).to_le_bytes(),
        &item,
    ]
    .concat();
    let nested = d.join("nested.dcm");
    std::fs::write(
        &nested,
        before_pixel_data(&le, &[0xE0, 0x7F, 0x10, 0x00], &outer),
    )
    .expect("write");
    assert!(dcmdump(&nested).contains("ReferencedSeriesSequence"));
    refused(
        read(&nested),
        "inside an item or sequence of defined length",
    );
}

/// pydicom's own writer puts an implicit VR data set after a meta group that declares explicit VR
/// little endian (what some exporters do; pydicom reads it with "Expected explicit VR, but found
/// implicit VR", DCMTK refuses it). Preprocess reads it as implicit VR: the picture of the
/// consistent file. A compressed syntax over an implicit VR data set is refused by name.
#[test]
fn a_data_set_in_implicit_vr_under_a_meta_group_saying_explicit_decodes_as_implicit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let script = concat!(
        include_str!("support/synthetic_cr.py"),
        r#"
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
ds = make(12, 64, 80, "MONOCHROME1")
ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
ds.save_as(d + "/implicit.dcm", enforce_file_format=True)
ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
fp = DicomBytesIO()
fp.write(b"\0" * 128 + b"DICM")
write_file_meta_info(fp, ds.file_meta, enforce_standard=True)
fp.is_little_endian, fp.is_implicit_VR = True, True
write_dataset(fp, ds)
open(d + "/mismatch.dcm", "wb").write(fp.getvalue())
"#
    );
    let mut c = Command::new(tools_python());
    c.args(["-c", script]).arg(d);
    run_tool(c);
    let want = pixels(&read(&d.join("implicit.dcm"))).expect("the consistent file");
    let got = pixels(&read(&d.join("mismatch.dcm"))).expect("the mismatched file");
    assert_eq!(got, want);

    let e = pixels(&read(&corpus().join("SC_rgb_jpeg.dcm"))).expect_err("JPEG in implicit VR");
    assert!(
        e.starts_with("decode.corrupt_stream")
            && e.contains("written in implicit VR, which transfer syntax 1.2.840.10008.1.2.4.50"),
        "{e}"
    );
}
