//! DICOM shapes other writers produce, decoded to the same picture as the Part 10 original:
//! pydicom's file without preamble and magic, pydicom's meta group without its group length,
//! and DCMTK's bare data sets (`dcmconv -F`, no meta at all) in implicit and explicit VR little
//! endian and explicit VR big endian. A hostile length in such a file is still refused before
//! any allocation.

use std::path::Path;
use std::process::Command;

use cxrflow_preprocess::decode::{decode, DecodeLimits};
use cxrflow_preprocess::fixtures::{self, DicomSpec};
use cxrflow_testkit::{run_tool, tools_python};

fn pixels(path: &Path) -> Result<Vec<u16>, String> {
    let bytes = std::fs::read(path).unwrap();
    decode(&bytes, &DecodeLimits::default())
        .map(|i| i.pixels)
        .map_err(|e| format!("{} {e}", e.reason()))
}

#[test]
fn files_without_preamble_magic_group_length_or_meta_decode_like_the_original() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("cr.dcm");
    std::fs::write(&original, fixtures::dicom(&DicomSpec::cr(200, 240))).unwrap();
    let want = pixels(&original).unwrap();

    let script = r#"
import sys, pydicom
d = sys.argv[1]
ds = pydicom.dcmread(d + "/cr.dcm")
ds.preamble = None
ds.save_as(d + "/no-preamble.dcm", enforce_file_format=False)
ds = pydicom.dcmread(d + "/cr.dcm")
del ds.file_meta.FileMetaInformationGroupLength
ds.save_as(d + "/no-group-length.dcm", enforce_file_format=False)
"#;
    let mut c = Command::new(tools_python());
    c.args(["-c", script]).arg(dir.path());
    run_tool(c);
    for (flag, name) in [
        ("+ti", "bare-implicit.dcm"),
        ("+te", "bare-explicit.dcm"),
        ("+tb", "bare-big-endian.dcm"),
    ] {
        let mut c = Command::new("dcmconv");
        c.args(["-F", flag])
            .arg(&original)
            .arg(dir.path().join(name));
        run_tool(c);
    }
    for name in [
        "no-preamble.dcm",
        "no-group-length.dcm",
        "bare-implicit.dcm",
        "bare-explicit.dcm",
        "bare-big-endian.dcm",
    ] {
        let f = dir.path().join(name);
        let head = std::fs::read(&f).unwrap();
        let ordinary = head.get(128..132) == Some(b"DICM")
            && head.get(132..136) == Some(&[0x02, 0x00, 0x00, 0x00][..]);
        assert!(!ordinary, "{name} is not an ordinary Part 10 file");
        assert_eq!(pixels(&f).as_ref(), Ok(&want), "{name}");
    }
}

#[test]
fn a_bare_data_set_claiming_a_huge_length_is_refused_before_allocation() {
    // (0008,0016) SOP Class, (0008,0018) SOP Instance, then PixelData claiming 3 GiB.
    let mut ds = Vec::new();
    for (tag, value) in [
        ((0x0008u16, 0x0016u16), &b"1.2.840.10008.5.1.4.1.1.1\0"[..]),
        ((0x0008, 0x0018), &b"1.2.3.4\0"[..]),
    ] {
        ds.extend(tag.0.to_le_bytes());
        ds.extend(tag.1.to_le_bytes());
        ds.extend((value.len() as u32).to_le_bytes());
        ds.extend(value);
    }
    ds.extend([0xE0, 0x7F, 0x10, 0x00]);
    ds.extend(3_000_000_000u32.to_le_bytes());
    ds.extend([0u8; 16]);
    let err = decode(&ds, &DecodeLimits::default()).unwrap_err();
    assert_eq!(err.reason(), "decode.truncated", "{err}");
}

#[test]
fn a_jpeg2000_codestream_openjpeg_refuses_is_named_as_such() {
    // Pillow's OpenJPEG encodes the codestream, pydicom encapsulates it; then the SIZ/COD
    // marker segments are damaged.
    let dir = tempfile::tempdir().unwrap();
    let script = r#"
import sys, io
import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid
arr = (np.add.outer(np.arange(128), np.arange(128)) % 256).astype(np.uint8)
buf = io.BytesIO()
Image.fromarray(arr).save(buf, format="JPEG2000", irreversible=False, no_jp2=True)
cs = bytearray(buf.getvalue())
def write(path, codestream):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = 128
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = encapsulate([bytes(codestream)])
    ds["PixelData"].VR = "OB"
    ds.save_as(path, enforce_file_format=True)
write(sys.argv[1] + "/j2k-ok.dcm", cs)
cs[20:60] = b"\xff" * 40
write(sys.argv[1] + "/j2k-bad.dcm", cs)
"#;
    let mut c = Command::new(tools_python());
    c.args(["-c", script]).arg(dir.path());
    run_tool(c);
    assert!(pixels(&dir.path().join("j2k-ok.dcm")).is_ok());
    let err = pixels(&dir.path().join("j2k-bad.dcm")).unwrap_err();
    assert!(err.starts_with("decode.corrupt_stream "), "{err}");
    assert!(err.contains("corrupt JPEG 2000 stream"), "{err}");
    assert!(err.contains("OpenJPEG refused"), "{err}");
}
