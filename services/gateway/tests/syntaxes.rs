//! The gateway accepts exactly the transfer syntaxes preprocess decodes (the contracts list):
//! DCMTK's storescu sends a JPEG-LS instance (written by dcmcjpls) and a deflated one (storescu
//! deflates on the fly), both refused before the list was shared; each is stored in the syntax
//! that was negotiated and published; so is an HTJ2K one that pynetdicom proposes in its own
//! syntax (OpenJPH wrote it). MPEG2 stays refused. A deflate bomb is refused by name. A data set
//! holding a sequence encoded as UN with undefined length (PS3.5 §6.2.2), which dicom-parser
//! cannot read, is stored as received and published.

mod support;

use std::collections::HashMap;

use cxrflow_common::blob::BlobStore;
use support::*;

const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

/// The file the gateway stored for the one scan event published, which must name `sop`.
async fn the_one_stored(stack: &Stack, sop: &str) -> Vec<u8> {
    let events = scan_events(&stack.kafka, &stack.codec, 1, WAIT).await;
    let (_, event) = &events[0];
    assert_eq!(event.study.sop_instance_uid, sop);
    let blobs = BlobStore::open(&stack.blob_url, &[]).unwrap();
    blobs
        .get(event.image_uri.as_deref().unwrap())
        .await
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jpeg_ls_and_deflated_instances_are_stored_and_published() {
    // Kept whole: its broker lives as long as it does.
    let stack = Stack::start().await;

    let jls = fixture(1, Kind::Cr12);
    let plain = jls.write(stack.dir.path(), EXPLICIT_LE);
    let jls_file = stack.dir.path().join("jls.dcm");
    let (ok, out) = run_tool({
        let mut c = dcmtk("dcmcjpls");
        c.arg("+el").arg(&plain).arg(&jls_file);
        c
    })
    .await;
    assert!(ok, "dcmcjpls failed: {out}");
    let deflated = fixture(2, Kind::Dx16);
    let deflated_file = deflated.write(stack.dir.path(), EXPLICIT_LE);

    // -xt: propose JPEG-LS lossless (the file's own syntax); -xd: propose deflated, which
    // storescu then uses for an uncompressed file. One association each.
    for (flag, file) in [("-xt", &jls_file), ("-xd", &deflated_file)] {
        let (ok, out) = run_tool({
            let mut c = storescu(stack.gw.dicom);
            c.arg(flag).arg(file);
            c
        })
        .await;
        assert!(ok, "storescu {flag} failed: {out}");
    }

    let events = scan_events(&stack.kafka, &stack.codec, 2, WAIT).await;
    let blobs = BlobStore::open(&stack.blob_url, &[]).unwrap();
    let mut stored: HashMap<String, String> = HashMap::new();
    for (_, e) in &events {
        let bytes = blobs.get(e.image_uri.as_deref().unwrap()).await.unwrap();
        let part = cxrflow_gateway::instance::read_part10(&bytes).unwrap();
        stored.insert(e.study.sop_instance_uid.clone(), part.transfer_syntax);
    }
    assert_eq!(
        stored.get(&jls.sop).map(String::as_str),
        Some(JPEG_LS_LOSSLESS),
        "{stored:?}"
    );
    assert_eq!(
        stored.get(&deflated.sop).map(String::as_str),
        Some(DEFLATED),
        "{stored:?}"
    );
    assert!(cxrflow_gateway::instance::is_accepted_transfer_syntax(
        JPEG_LS_LOSSLESS
    ));
    assert!(!cxrflow_gateway::instance::is_accepted_transfer_syntax(
        "1.2.840.10008.1.2.4.100"
    ));
    stack.gw.stop().await;
}

/// A CR whose private sequence a router re-encoded as UN with undefined length (GDCM's own
/// encoding of one) arrives in explicit VR little endian from a sender that forwards the bytes
/// it stored (dicom-rs's SCU here; DCMTK's storescu re-encodes the element as SQ on its way
/// out, so it cannot send this). dicom-parser alone cannot read that data set: the gateway
/// answered a failure status and the study never reached the worklist. Now it reads the
/// metadata without the element, stores the data set exactly as received, element included, and
/// publishes the scan event.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_data_set_with_a_un_sequence_of_undefined_length_is_stored_as_received() {
    // Kept whole: its broker lives as long as it does.
    let stack = Stack::start().await;

    let cr = fixture(3, Kind::Cr12);
    let plain = cr.dataset_bytes(EXPLICIT_LE);
    let un = cxrflow_testkit::gdcm_un_sequence();
    let at = plain
        .windows(4)
        .rposition(|w| w == [0xE0, 0x7F, 0x10, 0x00])
        .expect("Pixel Data header");
    let data_set = [&plain[..at], &un, &plain[at..]].concat();
    assert!(
        cxrflow_gateway::instance::read_dataset(&plain, EXPLICIT_LE).is_ok()
            && dicom_object::InMemDicomObject::read_dataset_with_ts(
                &data_set[..],
                &dicom_transfer_syntax_registry::entries::EXPLICIT_VR_LITTLE_ENDIAN.erased(),
            )
            .is_err(),
        "dicom-parser alone reads the data set with the element: this test shows nothing"
    );
    let mut assoc = associate_explicit_le(stack.gw.dicom, cr.kind.sop_class()).await;
    let status = tokio::time::timeout(
        WAIT,
        c_store(&mut assoc, 1, 1, cr.kind.sop_class(), &cr.sop, &data_set),
    )
    .await
    .expect("an answer, not a hang");
    assert_eq!(status, Some(0x0000), "C-STORE status");
    let _ = assoc.release().await;

    let stored = the_one_stored(&stack, &cr.sop).await;
    assert!(
        stored.ends_with(&data_set),
        "the stored file does not end with the data set as it was sent"
    );
    // The stored file is read back (STOW-RS and ingest read Part 10 files) without the element.
    let part = cxrflow_gateway::instance::read_part10(&stored).unwrap();
    assert_eq!(part.transfer_syntax, EXPLICIT_LE);
    assert_eq!(stack.gw.rejected("dataset_unreadable").await, 0.0);
    stack.gw.stop().await;
}

/// A deflate bomb over DIMSE: a CR's data set with 300 MiB of zeros in a private element,
/// deflated to about 300 KiB, well under the instance limit. dicom-object inflated all of it
/// (and would zero-fill as much for every declared length) before the gateway could refuse it,
/// so a few such uploads could exhaust the gateway's memory. It is refused as unreadable, by
/// name, once 256 MiB are out, nothing is stored or published, and the next sender is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_deflate_bomb_is_refused_by_name_and_the_gateway_keeps_serving() {
    use std::io::Read;
    // Kept whole: its broker lives as long as it does.
    let stack = Stack::start().await;
    let cr = fixture(4, Kind::Cr12);
    let zeros: u32 = 300 << 20;
    // (7FE1,1010) OB after the pixel data: a private element, in tag order.
    let mut element = vec![0xE1, 0x7F, 0x10, 0x10, b'O', b'B', 0, 0];
    element.extend(zeros.to_le_bytes());
    let plain = [cr.dataset_bytes(EXPLICIT_LE), element].concat();
    let mut bomb = Vec::new();
    flate2::read::DeflateEncoder::new(
        plain.chain(std::io::repeat(0).take(u64::from(zeros))),
        flate2::Compression::best(),
    )
    .read_to_end(&mut bomb)
    .unwrap();
    assert!(bomb.len() < 2 << 20, "{} bytes", bomb.len());

    let mut assoc = dicom_ul::ClientAssociationOptions::new()
        .calling_ae_title("MODALITY1")
        .called_ae_title(AE)
        .with_presentation_context(cr.kind.sop_class(), vec![DEFLATED])
        .establish_async(("127.0.0.1", stack.gw.dicom))
        .await
        .expect("association");
    let status = tokio::time::timeout(
        WAIT,
        c_store(&mut assoc, 1, 1, cr.kind.sop_class(), &cr.sop, &bomb),
    )
    .await
    .expect("an answer, not a hang");
    assert_eq!(
        status,
        Some(0xC000),
        "cannot understand: resending will not help"
    );
    let _ = assoc.release().await;
    assert_eq!(stack.gw.rejected("dataset_unreadable").await, 1.0);

    // The next sender's instance is stored and published; the bomb never was.
    let good = fixture(5, Kind::Cr12);
    let mut cmd = storescu(stack.gw.dicom);
    cmd.arg(good.write(stack.dir.path(), EXPLICIT_LE));
    let (ok, out) = run_tool(cmd).await;
    assert!(ok, "storescu failed: {out}");
    let events = scan_events(&stack.kafka, &stack.codec, 1, WAIT).await;
    let sops: Vec<&str> = (events.iter())
        .map(|(_, e)| e.study.sop_instance_uid.as_str())
        .collect();
    assert_eq!(sops, [good.sop.as_str()]);
    stack.gw.stop().await;
}

/// HTJ2K from a real peer: OpenJPH's `ojph_compress` (the HTJ2K reference encoder) encodes a
/// CR's samples, pydicom wraps the codestream (1.2.840.10008.1.2.4.201), and pynetdicom proposes
/// and sends the file in that syntax. The gateway accepts the context (preprocess decodes it:
/// one list), stores the instance as received and publishes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_htj2k_instance_from_pynetdicom_is_stored_and_published() {
    if cxrflow_testkit::tools::require_tool("ojph_compress").is_none() {
        return;
    }
    // Kept whole: its broker lives as long as it does.
    let stack = Stack::start().await;
    let cr = fixture(6, Kind::Cr12);
    let plain = cr.write(stack.dir.path(), EXPLICIT_LE);
    let ht = stack.dir.path().join("htj2k.dcm");
    let script = r#"
import subprocess, sys
import pydicom
from pydicom.encaps import encapsulate
src, out = sys.argv[1], sys.argv[2]
ds = pydicom.dcmread(src)
a = ds.pixel_array.astype(">u2")
pgm, j2c = out + ".pgm", out + ".j2c"
open(pgm, "wb").write(f"P5\n{ds.Columns} {ds.Rows}\n{(1 << ds.BitsStored) - 1}\n".encode() + a.tobytes())
subprocess.run(["ojph_compress", "-i", pgm, "-o", j2c, "-reversible", "true"], check=True)
ds.PixelData = encapsulate([open(j2c, "rb").read()])
ds["PixelData"].VR = "OB"
ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.201"
ds.save_as(out, enforce_file_format=True)
"#;
    let (ok, out) = run_tool({
        let mut c = std::process::Command::new(venv_python());
        c.args(["-c", script]).arg(&plain).arg(&ht);
        c
    })
    .await;
    assert!(ok, "writing the HTJ2K file failed: {out}");

    let scu = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pynetdicom_scu.py");
    let (ok, out) = run_tool({
        let mut c = std::process::Command::new(venv_python());
        c.arg(scu)
            .args(["127.0.0.1", &stack.gw.dicom.to_string(), AE])
            .arg(&ht);
        c
    })
    .await;
    assert!(ok, "pynetdicom SCU failed: {out}");
    let line = (out.lines().rev())
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let report: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(report["stores"], serde_json::json!([0]), "{out}");

    let stored = the_one_stored(&stack, &cr.sop).await;
    let part = cxrflow_gateway::instance::read_part10(&stored).unwrap();
    assert_eq!(part.transfer_syntax, "1.2.840.10008.1.2.4.201");
    stack.gw.stop().await;
}
