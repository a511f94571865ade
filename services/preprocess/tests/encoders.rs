//! Encoder options the other codec tests never produce, on a 12-bit CR (1250×1500, half a
//! detector's side, MONOCHROME1, written by pydicom; decoded at two halvings to the 313×375 plane
//! a full-size CR gets at three): DCMTK's and Pillow's defaults are one way to write each
//! syntax, and a modality or router may write it another.
//!
//! - OpenJPEG's `opj_compress` (JPEG 2000, wrapped by pydicom): tiles (also odd-sized, and cut
//!   into tile-parts by resolution), each progression order, precincts, small and unequal
//!   code-blocks, every code-block mode switch at once, SOP/EPH/PLT/TLM markers, one resolution
//!   (no wavelet) and eight, an image offset, three quality layers, an ROI upshift; lossy with
//!   tiles and with layers.
//! - GDCM's `gdcmconv`: JPEG 2000, JPEG lossless and 12-bit lossy, JPEG-LS lossless and
//!   near-lossless, RLE, implicit VR, an icon image sequence; and its lossy JPEG of 12-bit
//!   samples, which declares a DCT precision of 16 bits that no JPEG process has (refused by
//!   name, as DCMTK's `dcmdjpeg` refuses it, though GDCM reads it back). (Not deflate: `gdcmconv 3.0.21
//!   --deflated` fails an assertion part way through writing this file.)
//! - DCMTK's `dcmcjpeg`: each of the seven lossless predictors, a point transform, 64 KiB
//!   fragments.
//!
//! A lossless file must decode to the original's exact picture, and give the model the
//! original's input (exactly, or within `reduced.rs`'s tolerance where the JPEG 2000 codec
//! decodes a reduced level). A lossy one must decode to what the encoder's own toolkit decodes
//! (`gdcmconv --raw`: OpenJPEG, GDCM's IJG and CharLS) within one stored unit.
//!
//! DCMTK and the tools venv come from scripts/prereqs.sh, as do GDCM and OpenJPEG's tools
//! (`gdcmconv`, `opj_compress`: skipped and listed where missing, failed under
//! `CXRFLOW_REQUIRE_TOOLS=1`, as in CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use cxrflow_preprocess::decode::{decode, DecodeLimits};
use cxrflow_preprocess::{prepare, Profile};
use cxrflow_testkit::{convert, run_tool, tools_python};

/// The original, its big-endian raw samples for `opj_compress`, and OpenJPEG's re-encodings
/// wrapped by pydicom as `opj-NAME.dcm`.
const WRITE: &str = concat!(
    include_str!("support/synthetic_cr.py"),
    r#"
import subprocess
W, H = 1250, 1500
ds = make(12, W, H, "MONOCHROME1", grad=(0.5, 0.2), disc=0.15, bands=0.08, noise=100)
ds.save_as(d + "/orig12.dcm", enforce_file_format=True)
samples = np.frombuffer(ds.PixelData, dtype="<u2").astype(">u2").tobytes()
open(d + "/orig12.raw", "wb").write(samples)
open(d + "/orig12.pgm", "wb").write(f"P5\n{W} {H}\n4095\n".encode() + samples)
def wrap(codestream, uid, name):
    e = pydicom.dcmread(d + "/orig12.dcm")
    e.PixelData = encapsulate([open(codestream, "rb").read()])
    e["PixelData"].VR = "OB"
    e.file_meta.TransferSyntaxUID = uid
    e.save_as(f"{d}/{name}.dcm", enforce_file_format=True)
for name, opts in [line.split(" ", 1) for line in sys.argv[2].splitlines()]:
    opts = [] if opts == "-" else opts.split(" ")
    out = f"{d}/{name}.j2k"
    subprocess.run(["opj_compress", "-i", d + "/orig12.raw", "-F", f"{W},{H},1,12,u", "-o", out] + opts,
                   check=True, capture_output=True)
    wrap(out, pydicom.uid.JPEG2000 if "-I" in opts else pydicom.uid.JPEG2000Lossless, "opj-" + name)
# OpenJPH's HTJ2K; a lossy one also expanded by OpenJPH into a native copy, the reference.
for name, uid, opts in [line.split(" ", 2) for line in sys.argv[3].splitlines()]:
    out = f"{d}/{name}.j2c"
    subprocess.run(["ojph_compress", "-i", d + "/orig12.pgm", "-o", out] + opts.split(" "),
                   check=True, capture_output=True)
    wrap(out, uid, "ojph-" + name)
    if uid == "1.2.840.10008.1.2.4.203":
        subprocess.run(["ojph_expand", "-i", out, "-o", f"{d}/{name}.pgm"], check=True, capture_output=True)
        raw = open(f"{d}/{name}.pgm", "rb").read()
        e = pydicom.dcmread(d + "/orig12.dcm")
        e.PixelData = np.frombuffer(raw[len(raw) - W * H * 2:], dtype=">u2").astype("<u2").tobytes()
        e.save_as(f"{d}/ojph-{name}.ref.dcm", enforce_file_format=True)
"#
);

/// `opj_compress` options by name ("-" for none); `-I` is the irreversible (lossy) wavelet.
const OPENJPEG: &[(&str, &str)] = &[
    ("default", "-"),
    ("tiles", "-t 512,512"),
    ("tiles-odd", "-t 333,777"),
    ("tile-parts", "-t 512,512 -TP R"),
    ("rlcp", "-p RLCP"),
    ("rpcl", "-p RPCL"),
    ("pcrl", "-p PCRL"),
    ("cprl", "-p CPRL"),
    ("precincts", "-c [128,128],[64,64]"),
    ("blocks-16", "-b 16,16"),
    ("blocks-64x16", "-b 64,16"),
    ("block-modes", "-M 63"),
    ("markers", "-SOP -EPH -PLT -TLM"),
    ("one-resolution", "-n 1"),
    ("eight-resolutions", "-n 8"),
    ("offset", "-d 7,13"),
    ("layers", "-r 40,10,1"),
    ("roi", "-ROI c=0,U=5"),
    ("lossy-tiles", "-I -r 10 -t 512,512"),
    ("lossy-layers", "-I -r 80,20,10"),
];

/// OpenJPH's `ojph_compress` (HTJ2K, Part 15): name, transfer syntax, options. Its default
/// progression is RPCL, which 202 promises.
const OPENJPH: &[(&str, &str, &str)] = &[
    ("default", "1.2.840.10008.1.2.4.201", "-reversible true"),
    (
        "rpcl",
        "1.2.840.10008.1.2.4.202",
        "-reversible true -prog_order RPCL",
    ),
    (
        "tiles",
        "1.2.840.10008.1.2.4.201",
        "-reversible true -tile_size {512,512}",
    ),
    (
        "blocks-32",
        "1.2.840.10008.1.2.4.201",
        "-reversible true -block_size {32,32}",
    ),
    (
        "two-levels",
        "1.2.840.10008.1.2.4.201",
        "-reversible true -num_decomps 2",
    ),
    ("lossy", "1.2.840.10008.1.2.4.203", "-qstep 0.001"),
];

/// `gdcmconv` options by name, and whether the result is lossy.
const GDCM: &[(&str, &[&str], bool)] = &[
    ("j2k", &["--j2k"], false),
    ("j2k-lossy", &["--j2k", "--lossy", "-r", "10"], true),
    ("jpeg", &["--jpeg"], false),
    ("jpegls", &["--jpegls"], false),
    ("jpegls-near", &["--jpegls", "--lossy", "-e", "2"], true),
    ("rle", &["--rle"], false),
    ("implicit", &["-M"], false),
    ("icon", &["--generate-icon", "--icon-auto-minmax"], false),
];

struct Decoded {
    picture: Vec<u16>,
    tensor: Vec<u8>,
}

fn decoded(path: &Path) -> Result<Decoded, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let limits = DecodeLimits::default();
    let reason = |e: cxrflow_preprocess::decode::DecodeError| format!("{} {e}", e.reason());
    let picture = decode(&bytes, &limits).map_err(reason)?.pixels;
    let tensor = prepare(&bytes, &limits, Profile::Gray224V1)
        .map_err(|e| e.to_string())?
        .tensor;
    Ok(Decoded { picture, tensor })
}

/// Largest and mean absolute difference.
fn difference<T: Copy + Into<i64>>(a: &[T], b: &[T]) -> (i64, f64) {
    assert_eq!(a.len(), b.len());
    let mut max = 0;
    let mut sum = 0i64;
    for (&x, &y) in a.iter().zip(b) {
        let d = (x.into() - y.into()).abs();
        max = max.max(d);
        sum += d;
    }
    (max, sum as f64 / a.len().max(1) as f64)
}

/// One display unit per stored unit of a 12-bit image under its full-range window, rounded up,
/// plus one for the window's rounding.
const ONE_STORED_UNIT: i64 = 17;

/// `reduced.rs`'s tolerance on the 8-bit model input where JPEG 2000 decodes a reduced level.
const MAX_TENSOR_DELTA: i64 = 10;
const MEAN_TENSOR_DELTA: f64 = 0.6;

#[test]
fn other_encoders_options_decode_to_the_original_or_their_toolkits_picture() {
    let tools =
        ["gdcmconv", "opj_compress", "ojph_compress"].map(cxrflow_testkit::tools::require_tool);
    if tools.iter().any(Option::is_none) {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let at = |name: &str| -> PathBuf { dir.path().join(name) };
    let options: Vec<String> = OPENJPEG.iter().map(|(n, o)| format!("{n} {o}")).collect();
    let ht: Vec<String> = (OPENJPH.iter())
        .map(|(n, uid, o)| format!("{n} {uid} {o}"))
        .collect();
    let mut c = Command::new(tools_python());
    c.args(["-c", WRITE])
        .arg(dir.path())
        .arg(options.join("\n"))
        .arg(ht.join("\n"));
    run_tool(c);
    let orig = at("orig12.dcm");
    for (name, args, _) in GDCM {
        convert("gdcmconv", args, &orig, &at(&format!("gdcm-{name}.dcm")));
    }
    for sv in 1..=7 {
        let sv = sv.to_string();
        convert(
            "dcmcjpeg",
            &["+el", "+sv", &sv],
            &orig,
            &at(&format!("dcmtk-sv{sv}.dcm")),
        );
    }
    convert(
        "dcmcjpeg",
        &["+el", "+fs", "64"],
        &orig,
        &at("dcmtk-fragments.dcm"),
    );
    convert(
        "dcmcjpeg",
        &["+el", "+pt", "2"],
        &orig,
        &at("dcmtk-pt2.dcm"),
    );

    let want = decoded(&orig).expect("the uncompressed original");
    let mut lossless: Vec<(String, bool)> = Vec::new();
    let mut lossy: Vec<String> = Vec::new();
    for (name, opts) in OPENJPEG {
        let file = format!("opj-{name}.dcm");
        if opts.split(' ').any(|o| o == "-I") {
            lossy.push(file);
        } else {
            lossless.push((file, true));
        }
    }
    let mut ht_lossy = Vec::new();
    for (name, uid, _) in OPENJPH {
        let file = format!("ojph-{name}.dcm");
        if uid.ends_with(".203") {
            ht_lossy.push(file);
        } else {
            lossless.push((file, true));
        }
    }
    for (name, args, is_lossy) in GDCM {
        let file = format!("gdcm-{name}.dcm");
        if *is_lossy {
            lossy.push(file);
        } else {
            lossless.push((file, args.contains(&"--j2k")));
        }
    }
    for sv in 1..=7 {
        lossless.push((format!("dcmtk-sv{sv}.dcm"), false));
    }
    lossless.push(("dcmtk-fragments.dcm".into(), false));

    let mut failures = Vec::new();
    for (file, wavelet) in &lossless {
        let got = match decoded(&at(file)) {
            Ok(got) => got,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        let (max, mean) = difference(&got.picture, &want.picture);
        if max != 0 {
            failures.push(format!(
                "{file}: picture differs by up to {max} (mean {mean:.2}) from the original"
            ));
        }
        let (tmax, tmean) = difference(&got.tensor, &want.tensor);
        eprintln!("{file}: model input |Δ| max {tmax}, mean {tmean:.4}");
        let (bound, mean_bound) = if *wavelet {
            (MAX_TENSOR_DELTA, MEAN_TENSOR_DELTA)
        } else {
            (0, 0.0)
        };
        if tmax > bound || tmean > mean_bound {
            failures.push(format!(
                "{file}: model input differs by up to {tmax} (mean {tmean:.4}), bound {bound}"
            ));
        }
    }
    // A lossy file against its toolkit's own decode (`reference`, native), within one stored unit.
    let mut against = |file: &str, reference: PathBuf, by: &str| {
        let want = decoded(&reference).unwrap_or_else(|e| panic!("{by}'s decode of {file}: {e}"));
        match decoded(&at(file)) {
            Ok(got) => {
                let (max, mean) = difference(&got.picture, &want.picture);
                eprintln!("{file}: picture |Δ| against {by} max {max}, mean {mean:.3}");
                if max > ONE_STORED_UNIT {
                    failures.push(format!(
                        "{file}: differs by up to {max} (mean {mean:.2}) from {by}'s decode"
                    ));
                }
            }
            Err(e) => failures.push(format!("{file}: {e}")),
        }
    };
    for file in &lossy {
        let reference = at(&format!("{file}.raw.dcm"));
        convert("gdcmconv", &["--raw"], &at(file), &reference);
        against(file.as_str(), reference, "gdcmconv --raw");
    }
    // OpenJPEG's HTJ2K decode against OpenJPH's own.
    for file in &ht_lossy {
        against(
            file.as_str(),
            at(&file.replace(".dcm", ".ref.dcm")),
            "ojph_expand",
        );
    }
    // A point transform of 2 drops the two low bits of each stored sample (PS3.5 A.4.1: still
    // "lossless" by transfer syntax): within three stored units of the original.
    match decoded(&at("dcmtk-pt2.dcm")) {
        Ok(got) => {
            let (max, _) = difference(&got.picture, &want.picture);
            if max > 3 * ONE_STORED_UNIT {
                failures.push(format!("dcmtk-pt2.dcm: differs by up to {max}"));
            }
        }
        Err(e) => failures.push(format!("dcmtk-pt2.dcm: {e}")),
    }
    // ISO 10918-1 defines DCT precisions of 8 and 12 bits only.
    let sixteen = at("gdcm-jpeg-lossy.dcm");
    convert(
        "gdcmconv",
        &["--jpeg", "--lossy", "-q", "90"],
        &orig,
        &sixteen,
    );
    match decoded(&sixteen) {
        Err(e) if e.starts_with("decode.unsupported_precision") => {}
        Err(e) => failures.push(format!("gdcm-jpeg-lossy.dcm: {e}")),
        Ok(_) => failures.push("gdcm-jpeg-lossy.dcm: a 16-bit DCT decoded".into()),
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
