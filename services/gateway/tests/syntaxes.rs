//! The gateway accepts exactly the transfer syntaxes preprocess decodes (the contracts list):
//! DCMTK's storescu sends a JPEG-LS instance (written by dcmcjpls) and a deflated one (storescu
//! deflates on the fly), both refused before the list was shared; each is stored in the syntax
//! that was negotiated and published. MPEG2 stays refused.

mod support;

use std::collections::HashMap;

use cxrflow_common::blob::BlobStore;
use cxrflow_testkit::Broker;
use support::*;

const JPEG_LS_LOSSLESS: &str = "1.2.840.10008.1.2.4.80";
const DEFLATED: &str = "1.2.840.10008.1.2.1.99";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn jpeg_ls_and_deflated_instances_are_stored_and_published() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&kafka, dir.path());
    let blob_url = cfg.blob_store.clone().unwrap();
    let gw = Running::start(cfg).await;
    let port = gw.dicom.to_string();

    let jls = fixture(1, Kind::Cr12);
    let plain = jls.write(dir.path(), EXPLICIT_LE);
    let jls_file = dir.path().join("jls.dcm");
    let (ok, out) = run_tool({
        let mut c = dcmtk("dcmcjpls");
        c.arg("+el").arg(&plain).arg(&jls_file);
        c
    })
    .await;
    assert!(ok, "dcmcjpls failed: {out}");
    let deflated = fixture(2, Kind::Dx16);
    let deflated_file = deflated.write(dir.path(), EXPLICIT_LE);

    // -xt: propose JPEG-LS lossless (the file's own syntax); -xd: propose deflated, which
    // storescu then uses for an uncompressed file. One association each.
    for (flag, file) in [("-xt", &jls_file), ("-xd", &deflated_file)] {
        let (ok, out) = run_tool({
            let mut c = dcmtk("storescu");
            c.args(["-aet", "MODALITY1", "-aec", AE, flag, "127.0.0.1", &port])
                .arg(file);
            c
        })
        .await;
        assert!(ok, "storescu {flag} failed: {out}");
    }

    let events = scan_events(&kafka, &codec, 2, WAIT).await;
    let blobs = BlobStore::open(&blob_url, &[]).unwrap();
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
    gw.stop().await;
}
