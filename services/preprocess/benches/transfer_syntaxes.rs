//! Decode + statistics + letterbox to 224² of one full-size CR (2500×3000, 12 bits stored in 16,
//! MONOCHROME1, generated here) in every transfer syntax preprocess decodes, each file written by
//! the tool a site's PACS would use: DCMTK (`dcmconv`, `dcmcrle`, `dcmcjpeg`, `dcmcjpls`) and
//! Pillow's OpenJPEG wrapped by pydicom for JPEG 2000 (DCMTK has no JPEG 2000 encoder), plus
//! the same picture as an 8-bit DX in JPEG baseline. The CR carries its window, as presentation
//! images do (reduced-resolution decoding needs one, see decode/reduced.rs). Syntaxes that
//! decode at a reduced level are measured twice in the same run: `full` is the
//! full-resolution decode + statistics + resize preprocess did before, `reduced` is `prepare`.
//! `cargo bench -p cxrflow-preprocess --bench transfer_syntaxes`; DCMTK and the tools venv come
//! from scripts/prereqs.sh.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use cxrflow_preprocess::decode::{decode, decode_reduced, DecodeLimits};
use cxrflow_preprocess::fixtures::{self, DicomSpec};
use cxrflow_preprocess::stats::image_stats;
use cxrflow_preprocess::{prepare, Profile};
use cxrflow_testkit::{run_tool, tools_python};

const JPEG2000: &str = r#"
import io, sys, pydicom
from PIL import Image
from pydicom.encaps import encapsulate
d = sys.argv[1]
ds = pydicom.dcmread(d + "/orig.dcm")
im = Image.frombytes("I;16", (ds.Columns, ds.Rows), ds.PixelData)
for name, uid, reversible in [("j2k-lossless.dcm", pydicom.uid.JPEG2000Lossless, True),
                              ("j2k.dcm", pydicom.uid.JPEG2000, False)]:
    out = io.BytesIO()
    opts = {"irreversible": not reversible, "no_jp2": True}
    if not reversible:
        opts.update(quality_mode="rates", quality_layers=[10])
    im.save(out, format="JPEG2000", **opts)
    c = pydicom.dcmread(d + "/orig.dcm")
    c.PixelData = encapsulate([out.getvalue()])
    c["PixelData"].VR = "OB"
    c.file_meta.TransferSyntaxUID = uid
    c.save_as(d + "/" + name, enforce_file_format=True)
"#;

fn files(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let orig = dir.join("orig.dcm");
    let cr = DicomSpec {
        window: Some((2048.0, 4096.0)),
        ..DicomSpec::cr(2500, 3000)
    };
    std::fs::write(&orig, fixtures::dicom(&cr)).expect("write original");
    let orig8 = dir.join("orig8.dcm");
    let dx8 = DicomSpec {
        window: Some((128.0, 256.0)),
        ..DicomSpec::gray8(2500, 3000)
    };
    std::fs::write(&orig8, fixtures::dicom(&dx8)).expect("write 8-bit original");
    let dcmtk: [(&str, &str, &[&str], &str); 10] = [
        ("explicit VR LE", "dcmconv", &["+te"], "le.dcm"),
        ("implicit VR LE", "dcmconv", &["+ti"], "implicit.dcm"),
        ("explicit VR BE", "dcmconv", &["+tb"], "be.dcm"),
        (
            "deflated explicit VR LE",
            "dcmconv",
            &["+td"],
            "deflate.dcm",
        ),
        ("RLE lossless", "dcmcrle", &[], "rle.dcm"),
        ("JPEG lossless SV1 (4.70)", "dcmcjpeg", &[], "sv1.dcm"),
        ("JPEG lossless P14 (4.57)", "dcmcjpeg", &["+el"], "p14.dcm"),
        (
            "JPEG extended 12-bit (4.51)",
            "dcmcjpeg",
            &["+ee", "+q", "90"],
            "ext12.dcm",
        ),
        ("JPEG-LS lossless (4.80)", "dcmcjpls", &["+el"], "jls.dcm"),
        (
            "JPEG-LS near-lossless (4.81)",
            "dcmcjpls",
            &["+en", "+md", "2"],
            "jls-near.dcm",
        ),
    ];
    let mut out = Vec::new();
    for (label, tool, args, name) in dcmtk {
        let mut c = Command::new(tool);
        c.args(args).arg(&orig).arg(dir.join(name));
        run_tool(c);
        out.push((label, dir.join(name)));
    }
    let mut c = Command::new("dcmcjpeg");
    c.arg("+eb").arg(&orig8).arg(dir.join("baseline.dcm"));
    run_tool(c);
    out.push(("JPEG baseline 8-bit (4.50, DX)", dir.join("baseline.dcm")));
    let mut c = Command::new(tools_python());
    c.args(["-c", JPEG2000]).arg(dir);
    run_tool(c);
    out.push(("JPEG 2000 lossless (4.90)", dir.join("j2k-lossless.dcm")));
    out.push(("JPEG 2000 lossy (4.91)", dir.join("j2k.dcm")));
    out.into_iter()
        .map(|(label, path)| (label, std::fs::read(path).expect("read re-encoded file")))
        .collect()
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = DecodeLimits::default();
    let mut group = c.benchmark_group("cr_2500x3000_to_gray224");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    for (label, bytes) in files(dir.path()) {
        // A file that does not decode is a failed bench, not a fast one.
        prepare(&bytes, &limits, Profile::Gray224V1)
            .unwrap_or_else(|e| panic!("{label}: {} {e}", e.reason()));
        let reduced = decode(&bytes, &limits).expect("decodes").width
            != decode_reduced(&bytes, &limits, 224).expect("decodes").width;
        if !reduced {
            group.bench_function(label, |b| {
                b.iter(|| prepare(&bytes, &limits, Profile::Gray224V1).expect("decodes"))
            });
            continue;
        }
        group.bench_function(format!("{label} full"), |b| {
            b.iter(|| {
                let img = decode(&bytes, &limits).expect("decodes");
                let stats = image_stats(&img, Profile::Gray224V1.side());
                (stats, Profile::Gray224V1.render(&img).expect("resizes"))
            })
        });
        group.bench_function(format!("{label} reduced"), |b| {
            b.iter(|| prepare(&bytes, &limits, Profile::Gray224V1).expect("decodes"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
