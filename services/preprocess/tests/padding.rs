//! Pixel padding (PS3.3 C.7.5.1.1.2): the samples a device fills outside the collimated field
//! (Pixel Padding Value, or the range up to Pixel Padding Range Limit) are no part of the
//! picture. A radiograph without a window used to be windowed over them too: a MONOCHROME1 image
//! padded with 65535 came out within 6 % of white, and the out-of-distribution gate refused it.
//!
//! pydicom writes each case and numpy computes the display plane the standard's grayscale
//! pipeline gives it (`support/padded_cr.py`: the window over the samples that are not padding,
//! padding black); preprocess's full-resolution plane must match it sample for sample (±1 of
//! 65535 for rounding), for files read in place, decoded by libjpeg-turbo (DCMTK's lossless JPEG)
//! and by dicom-pixeldata (DCMTK's RLE).
//!
//! DCMTK and the tools venv come from scripts/prereqs.sh; a missing tool fails the test with its
//! name, never skips it.

use std::path::Path;
use std::process::Command;

use cxrflow_preprocess::decode::{decode, DecodeLimits};
use cxrflow_testkit::{convert, run_tool, tools_python};

const WRITE: &str = concat!(
    include_str!("support/synthetic_cr.py"),
    include_str!("support/padded_cr.py")
);

/// The plane the script computed for `name`.
fn expected(dir: &Path, name: &str) -> Vec<u16> {
    let bytes = std::fs::read(dir.join(format!("{name}.expected"))).expect("expected plane");
    bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect()
}

#[test]
fn padding_is_left_out_of_the_window_and_shown_black() {
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let mut c = Command::new(tools_python());
    c.args(["-c", WRITE]).arg(d);
    run_tool(c);
    convert(
        "dcmcjpeg",
        &["+e1"],
        &d.join("mono2-pad0.dcm"),
        &d.join("jpeg-ll.dcm"),
    );
    convert(
        "dcmcrle",
        &[],
        &d.join("mono1-16bit-pad65535.dcm"),
        &d.join("rle.dcm"),
    );
    for (file, plane) in [
        ("mono2-pad0", "mono2-pad0"),
        ("mono1-pad4095", "mono1-pad4095"),
        ("mono1-16bit-pad65535", "mono1-16bit-pad65535"),
        ("signed-rescaled", "signed-rescaled"),
        ("signed-implicit", "signed-rescaled"),
        ("range", "range"),
        ("windowed-white", "windowed-white"),
        ("above-high-bit", "above-high-bit"),
        ("jpeg-ll", "mono2-pad0"),
        ("rle", "mono1-16bit-pad65535"),
    ] {
        let bytes = std::fs::read(d.join(format!("{file}.dcm"))).expect("read");
        let img =
            decode(&bytes, &DecodeLimits::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        let want = expected(d, plane);
        assert_eq!((img.width, img.height), (500, 600), "{file}");
        assert_eq!(img.pixels.len(), want.len(), "{file}");
        let (mut worst, mut at) = (0u16, 0);
        for (i, (got, want)) in img.pixels.iter().zip(&want).enumerate() {
            if got.abs_diff(*want) > worst {
                (worst, at) = (got.abs_diff(*want), i);
            }
        }
        assert!(
            worst <= 1,
            "{file}: |Δ| {worst} of 65535 at ({}, {}): {} where the standard's pipeline gives {}",
            at % 500,
            at / 500,
            img.pixels[at],
            want[at]
        );
        eprintln!("{file}: |Δ| ≤ {worst} of 65535");
    }
}
