//! DICOM over TLS (PS3.15 secure transport, BCP 195): DCMTK's storescu, holding a client
//! certificate from the configured CA, stores an instance over TLS and it is published; a
//! storescu without TLS, and one over TLS without a client certificate, store nothing.
//! Certificates are generated here with rcgen: a CA, the gateway's server certificate and a
//! modality's client certificate.

mod support;

use std::path::Path;

use cxrflow_testkit::Broker;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use support::*;

struct Pki {
    ca: std::path::PathBuf,
    server_cert: std::path::PathBuf,
    server_key: std::path::PathBuf,
    client_cert: std::path::PathBuf,
    client_key: std::path::PathBuf,
}

fn pki(dir: &Path) -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "cxrflow test hospital CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf = |name: &str| {
        let mut p = CertificateParams::new(vec![name.to_string(), "127.0.0.1".into()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &ca, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let write = |name: &str, pem: String| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path
    };
    let (sc, sk) = leaf("localhost");
    let (cc, ck) = leaf("modality1");
    Pki {
        ca: write("ca.pem", ca.pem()),
        server_cert: write("server.pem", sc),
        server_key: write("server.key", sk),
        client_cert: write("client.pem", cc),
        client_key: write("client.key", ck),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn storescu_over_mutual_tls_is_stored_and_plain_or_anonymous_peers_store_nothing() {
    let broker = Broker::start();
    let kafka = broker.stack().await;
    let codec = codec();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut cfg = config(&kafka, dir.path());
    cfg.dicom_tls_cert = Some(pki.server_cert.clone());
    cfg.dicom_tls_key = Some(pki.server_key.clone());
    cfg.dicom_tls_client_ca = Some(pki.ca.clone());
    let gw = Running::start(cfg).await;

    let refused = fixture(1, Kind::Cr12).write(dir.path(), EXPLICIT_LE);
    // Plain TCP to the TLS port: the association never forms.
    let (ok, out) = run_tool({
        let mut c = storescu(gw.dicom);
        c.args(["-to", "5"]).arg(&refused);
        c
    })
    .await;
    assert!(!ok, "plain storescu must fail against the TLS port: {out}");
    // TLS without a client certificate: the handshake is refused (mutual TLS).
    let (ok, out) = run_tool({
        let mut c = storescu(gw.dicom);
        c.args(["-to", "5", "+tla", "+cf"])
            .arg(&pki.ca)
            .arg(&refused);
        c
    })
    .await;
    assert!(
        !ok,
        "storescu without a client certificate must fail: {out}"
    );
    assert_eq!(
        gw.rejected("tls_handshake").await,
        2.0,
        "both refusals counted as TLS handshake failures"
    );

    let good = fixture(2, Kind::Dx16);
    let file = good.write(dir.path(), EXPLICIT_LE);
    let (ok, out) = run_tool({
        let mut c = storescu(gw.dicom);
        c.arg("+tls")
            .arg(&pki.client_key)
            .arg(&pki.client_cert)
            .arg("+cf")
            .arg(&pki.ca)
            .arg(&file);
        c
    })
    .await;
    assert!(ok, "storescu over TLS failed: {out}");

    let events = scan_events(&kafka, &codec, 1, WAIT).await;
    let sops: Vec<&str> = events
        .iter()
        .map(|(_, e)| e.study.sop_instance_uid.as_str())
        .collect();
    assert_eq!(
        sops,
        vec![good.sop.as_str()],
        "only the instance sent over mutual TLS is published"
    );
    gw.stop().await;
}

#[test]
fn a_client_ca_without_a_server_certificate_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    let mut cfg = config(
        &cxrflow_common::KafkaArgs::for_bootstrap("127.0.0.1:1"),
        dir.path(),
    );
    cfg.dicom_tls_client_ca = Some(pki.ca.clone());
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("DICOM TLS"), "{err}");
    cfg.dicom_tls_cert = Some(pki.server_cert.clone());
    cfg.dicom_tls_key = Some(dir.path().join("missing.key"));
    let err = cfg.validate().unwrap_err().to_string();
    assert!(err.contains("missing.key"), "{err}");
    cfg.dicom_tls_key = Some(pki.server_key.clone());
    cfg.validate().unwrap();
}
