//! Hostile and broken peers: bytes that are not DICOM, oversized PDUs before and after
//! negotiation, a connection that never associates, an association that goes silent, an
//! unknown calling AE, abstract syntaxes and data sets of the wrong SOP class, and more
//! associations than allowed. Each is refused or timed out with its own metric, and afterwards
//! a normal association still stores an instance.

mod support;

use std::time::Duration;

use cxrflow_testkit::{eventually, Broker};
use dicom_ul::association::client::ClientAssociationOptions;
use dicom_ul::pdu::{AssociationRJResult, AssociationRJSource};
use dicom_ul::Pdu;
use support::*;

const SHORT: Duration = Duration::from_secs(5);

fn client(calling: &str) -> ClientAssociationOptions<'static> {
    ClientAssociationOptions::new()
        .calling_ae_title(calling.to_string())
        .called_ae_title(AE)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_peers_are_refused_with_a_metric_and_the_gateway_keeps_serving() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(&kafka, dir.path());
    cfg.calling_aes = vec!["MODALITY1".into(), "PACS".into()];
    cfg.max_associations = 3;
    cfg.max_pdu = 16_384;
    let gw = Running::start(cfg).await;
    let port = gw.dicom;

    // Not DICOM at all: an HTTP request on the DICOM port.
    let mut http = connect(port).await;
    write_raw(&mut http, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let got = read_raw_pdu(&mut http, SHORT).await;
    assert!(matches!(got, Some(Pdu::AbortRQ { .. })), "{got:?}");
    assert!(closed_within(&mut http, SHORT).await);

    // An A-ASSOCIATE-RQ header claiming 1 GiB.
    let mut huge = connect(port).await;
    write_raw(&mut huge, &[0x01, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x01]).await;
    let got = read_raw_pdu(&mut huge, SHORT).await;
    assert!(matches!(got, Some(Pdu::AbortRQ { .. })), "{got:?}");

    // An oversized P-DATA after a proper negotiation.
    let mut oversized = connect(port).await;
    write_raw(&mut oversized, &associate_rq("MODALITY1", AE, VERIFICATION)).await;
    let got = read_raw_pdu(&mut oversized, SHORT).await;
    assert!(matches!(got, Some(Pdu::AssociationAC(_))), "{got:?}");
    let mut pdu = vec![0x04, 0x00];
    pdu.extend_from_slice(&(1_000_000u32).to_be_bytes());
    pdu.extend_from_slice(&[0u8; 4096]);
    write_raw(&mut oversized, &pdu).await;
    let got = read_raw_pdu(&mut oversized, SHORT).await;
    assert!(matches!(got, Some(Pdu::AbortRQ { .. })), "{got:?}");

    // An unknown calling AE and a wrong called AE.
    let refused = client("STRANGER")
        .with_abstract_syntax(VERIFICATION)
        .establish_async(("127.0.0.1", port))
        .await;
    assert!(refused.is_err(), "unknown calling AE must be rejected");
    let refused = ClientAssociationOptions::new()
        .calling_ae_title("MODALITY1")
        .called_ae_title("SOMEONE-ELSE")
        .with_abstract_syntax(VERIFICATION)
        .establish_async(("127.0.0.1", port))
        .await;
    assert!(refused.is_err(), "wrong called AE must be rejected");

    // Only CT proposed: no presentation context is accepted.
    let ct_only = client("MODALITY1")
        .with_abstract_syntax(CT_IMAGE_STORAGE)
        .establish_async(("127.0.0.1", port))
        .await;
    assert!(ct_only.is_err(), "a CT-only association must not be usable");

    // A CR context carrying a CT data set: a DIMSE failure, never a silent success.
    let ct = fixture(9, Kind::Ct);
    let mut assoc = client("PACS")
        .with_presentation_context(
            cxrflow_gateway::instance::CR_IMAGE_STORAGE,
            vec![EXPLICIT_LE],
        )
        .establish_async(("127.0.0.1", port))
        .await
        .expect("association");
    let status = c_store(
        &mut assoc,
        1,
        1,
        cxrflow_gateway::instance::CR_IMAGE_STORAGE,
        &ct.sop,
        &ct.dataset_bytes(EXPLICIT_LE),
    )
    .await;
    assert_eq!(status, Some(0x0122), "SOP class not supported");
    // A C-STORE naming CT as its SOP class on the CR context.
    let status = c_store(
        &mut assoc,
        1,
        2,
        CT_IMAGE_STORAGE,
        &ct.sop,
        &ct.dataset_bytes(EXPLICIT_LE),
    )
    .await;
    assert_eq!(status, Some(0x0122), "SOP class not supported");

    // The association bound (3): with `assoc` and two more open, a fourth is rejected,
    // transiently, with "local limit exceeded".
    eventually(SHORT, "only the PACS association is open", || async {
        gw.metric("cxrflow_gateway_associations_active").await == Some(1.0)
    })
    .await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(
            client("MODALITY1")
                .with_abstract_syntax(VERIFICATION)
                .establish_async(("127.0.0.1", port))
                .await
                .expect("association within the bound"),
        );
    }
    let busy = client("MODALITY1")
        .with_abstract_syntax(VERIFICATION)
        .establish_async(("127.0.0.1", port))
        .await;
    match busy {
        Err(dicom_ul::association::Error::Rejected { association_rj, .. }) => {
            assert_eq!(association_rj.result, AssociationRJResult::Transient);
            assert!(matches!(
                association_rj.source,
                AssociationRJSource::ServiceProviderPresentation(_)
            ));
        }
        other => panic!("expected a transient rejection, got {other:?}"),
    }
    assoc.release().await.expect("release");
    for h in holders {
        h.release().await.expect("release");
    }

    // A connection that never associates is closed; an association that goes silent is
    // aborted.
    let mut never_associates = connect(port).await;
    let mut silent = client("MODALITY1")
        .with_abstract_syntax(VERIFICATION)
        .establish_async(("127.0.0.1", port))
        .await
        .expect("association");
    assert!(closed_within(&mut never_associates, SHORT).await);
    let got = tokio::time::timeout(SHORT, silent.receive()).await.unwrap();
    assert!(matches!(got, Ok(Pdu::AbortRQ { .. })), "{got:?}");

    for (reason, n) in [
        ("malformed_pdu", 1.0),
        ("pdu_too_large", 2.0),
        ("calling_ae_not_allowed", 1.0),
        ("called_ae_mismatch", 1.0),
        ("abstract_syntax_not_supported", 1.0),
        ("sop_class_not_supported", 2.0),
        ("busy", 1.0),
        ("association_timeout", 1.0),
        ("idle_timeout", 1.0),
    ] {
        eventually(
            SHORT,
            &format!("{n} refusals counted as {reason}"),
            || async { gw.rejected(reason).await == n },
        )
        .await;
    }

    // And a normal sender is still served.
    let good = fixture(1, Kind::Dx16);
    let mut cmd = storescu(port);
    cmd.arg(good.write(dir.path(), EXPLICIT_LE));
    let (ok, out) = run_tool(cmd).await;
    assert!(ok, "storescu failed: {out}");
    let events = scan_events(&kafka, &codec, 1, WAIT).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].1.study.sop_instance_uid, good.sop);
    eventually(SHORT, "no association left open", || async {
        gw.metric("cxrflow_gateway_associations_active").await == Some(0.0)
    })
    .await;
    gw.stop().await;
}
