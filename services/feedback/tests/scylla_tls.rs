//! The ScyllaDB session speaks TLS with the configured CA. No ScyllaDB (or Cassandra) can be
//! installed here, so the peer is a real TLS server (rustls) in front of nothing: it records
//! whether the driver completed the handshake and what it sent first inside the session (the CQL
//! frame a driver opens with). A client given another CA must not complete the handshake.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_feedback::{ScyllaArgs, ScyllaStore};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca(name: &str) -> Ca {
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let key = KeyPair::generate().unwrap();
    let cert = p.self_signed(&key).unwrap();
    Ca { cert, key }
}

#[derive(Default, Debug)]
struct Seen {
    handshakes: usize,
    failed_handshakes: usize,
    first_frame: Option<Vec<u8>>,
}

/// A TLS server with a certificate for 127.0.0.1 issued by `issuer`.
async fn tls_server(issuer: &Ca) -> (u16, Arc<Mutex<Seen>>) {
    let mut p = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    p.distinguished_name.push(DnType::CommonName, "scylla-node");
    let key = KeyPair::generate().unwrap();
    let cert = p.signed_by(&key, &issuer.cert, &issuer.key).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(cxrflow_common::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (acceptor, s) = (acceptor.clone(), s.clone());
            tokio::spawn(async move {
                match acceptor.accept(socket).await {
                    Ok(mut tls) => {
                        s.lock().unwrap().handshakes += 1;
                        let mut header = [0u8; 9];
                        if tls.read_exact(&mut header).await.is_ok() {
                            s.lock().unwrap().first_frame.get_or_insert(header.to_vec());
                        }
                    }
                    Err(_) => s.lock().unwrap().failed_handshakes += 1,
                }
            });
        }
    });
    (port, seen)
}

async fn try_connect(port: u16, args: &ScyllaArgs) {
    let nodes = vec![format!("127.0.0.1:{port}")];
    let attempt = ScyllaStore::connect(&nodes, "cxrflow_tls_test", 1, args);
    if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(20), attempt).await {
        panic!("a server that answers nothing cannot be a store");
    }
}

/// Waits until the server has recorded what `done` looks for (its accept task runs on its own).
async fn settled(seen: &Arc<Mutex<Seen>>, done: impl Fn(&Seen) -> bool) {
    let what = "the TLS server to record the connection's outcome";
    cxrflow_testkit::eventually(Duration::from_secs(10), what, || {
        let ready = done(&seen.lock().unwrap());
        async move { ready }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_opens_cql_inside_tls_with_the_configured_ca_only() {
    let dir = tempfile::tempdir().unwrap();
    let hospital = ca("hospital CA");
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, hospital.cert.pem()).unwrap();
    let (port, seen) = tls_server(&hospital).await;
    let args = ScyllaArgs {
        scylla_user: Some("cxrflow".into()),
        scylla_password: Some("secret".into()),
        scylla_tls_ca: Some(ca_file),
        ..Default::default()
    };
    try_connect(port, &args).await;
    settled(&seen, |s| {
        s.first_frame.is_some() || s.failed_handshakes > 0
    })
    .await;
    {
        let seen = seen.lock().unwrap();
        assert!(seen.handshakes >= 1, "no TLS handshake completed: {seen:?}");
        let frame = seen
            .first_frame
            .clone()
            .expect("a frame inside the session");
        // CQL v4/v5 request header: version byte (direction bit clear), flags, stream (2 bytes),
        // opcode: OPTIONS (0x05) or STARTUP (0x01).
        assert!(matches!(frame[0], 0x03..=0x05), "{frame:02x?}");
        assert!(matches!(frame[4], 0x01 | 0x05), "{frame:02x?}");
    }

    let stranger = ca("another CA");
    let other_file = dir.path().join("other.pem");
    std::fs::write(&other_file, stranger.cert.pem()).unwrap();
    let (port, seen) = tls_server(&hospital).await;
    let args = ScyllaArgs {
        scylla_tls_ca: Some(other_file),
        ..Default::default()
    };
    try_connect(port, &args).await;
    // The client gives up first; the server records the failed handshake when it sees the
    // alert or the close, which can come after the connect attempt has returned.
    settled(&seen, |s| s.handshakes + s.failed_handshakes > 0).await;
    let seen = seen.lock().unwrap();
    assert_eq!(seen.handshakes, 0, "a server the CA did not sign: {seen:?}");
    assert!(seen.failed_handshakes >= 1, "{seen:?}");
}

#[test]
fn credentials_and_certificates_are_checked_before_connecting() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        scylla: ScyllaArgs,
    }
    assert!(
        Cli::try_parse_from(["x", "--scylla-user", "u"]).is_err(),
        "a user without a password"
    );
    assert!(
        Cli::try_parse_from(["x", "--scylla-tls-cert", "c.pem"]).is_err(),
        "a client certificate without its key and CA"
    );
    let args = ScyllaArgs {
        scylla_tls_ca: Some("/nonexistent/ca.pem".into()),
        ..Default::default()
    };
    let err = args.tls().unwrap_err().to_string();
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");
    let shown = ScyllaArgs {
        scylla_user: Some("u".into()),
        scylla_password: Some("hunter2".into()),
        ..Default::default()
    }
    .describe();
    assert!(!shown.contains("hunter2"), "{shown}");
}
