//! HTTPS listeners: a service started with a certificate and key (generated here with rcgen)
//! answers over TLS only, and its session cookie is marked `Secure`.

use std::collections::BTreeSet;

use cxrflow_common::auth::{keys, AuthArgs, Role, Routes};
use cxrflow_common::tls::{TlsArgs, TlsError};
use cxrflow_common::{Host, KafkaArgs, ServiceArgs};
use serde_json::json;

#[tokio::test]
async fn a_service_with_a_certificate_serves_https_only_and_marks_its_cookie_secure() {
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let roles: BTreeSet<Role> = [Role::Reader].into_iter().collect();
    let (plain, line) = keys::generate("ui", &roles);
    std::fs::write(dir.path().join("keys"), format!("{line}\n")).unwrap();

    let mut svc = ServiceArgs::local();
    svc.auth = AuthArgs::with_keys(vec![dir.path().join("keys")]);
    svc.tls = TlsArgs {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key.clone()),
    };
    // No broker is needed to start the endpoint: the producer connects lazily.
    let host = Host::start(
        "tls-test",
        &KafkaArgs::for_bootstrap("127.0.0.1:1"),
        &svc,
        |_| {},
        Routes::new(),
    )
    .await
    .unwrap();
    let port = host.http_addr.port();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(ck.cert.pem().as_bytes()).unwrap())
        .resolve("localhost", host.http_addr)
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let r = https.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["strict-transport-security"], "max-age=31536000");
    let r = https
        .post(format!("{base}/auth/login"))
        .json(&json!({"credential": plain}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(cookie.contains("; Secure"), "{cookie}");
    // Plain HTTP on the HTTPS port gets no answer a client could take for one.
    let plain_http = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await;
    assert!(
        plain_http.map_or(true, |r| !r.status().is_success()),
        "plain HTTP answered on the TLS port"
    );
    // A client that does not trust the certificate refuses the connection.
    assert!(reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
    // Dropping the host stops its endpoint.
    drop(host);
}

#[test]
fn broken_tls_files_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a pem").unwrap();
    let args = TlsArgs {
        tls_cert: Some(junk.clone()),
        tls_key: Some(junk.clone()),
    };
    let e = args.server_config().unwrap_err();
    assert!(matches!(e, TlsError::Cert { .. }), "{e}");
    assert!(e.to_string().contains("junk.pem"), "{e}");
    let half = TlsArgs {
        tls_cert: Some(junk),
        tls_key: None,
    };
    assert!(matches!(
        half.server_config(),
        Err(TlsError::Incomplete("tls"))
    ));
}

#[test]
fn option_triples_need_their_parts_and_say_which_flags() {
    use cxrflow_common::tls::{client_config_from, server_config_from};
    let dir = tempfile::tempdir().unwrap();
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, ck.cert.pem()).unwrap();
    std::fs::write(&key, ck.key_pair.serialize_pem()).unwrap();
    let (c, k) = (Some(cert.as_path()), Some(key.as_path()));

    // Client: no CA is a plain connection; a CA alone or with a whole identity is TLS.
    assert!(client_config_from("db-tls", None, None, None)
        .unwrap()
        .is_none());
    assert!(client_config_from("db-tls", c, None, None)
        .unwrap()
        .is_some());
    assert!(client_config_from("db-tls", c, c, k).unwrap().is_some());
    let half = client_config_from("db-tls", c, c, None).unwrap_err();
    assert_eq!(
        half.to_string(),
        "--db-tls-cert and --db-tls-key go together"
    );
    assert!(matches!(
        client_config_from("db-tls", None, c, k),
        Err(TlsError::Incomplete("db-tls"))
    ));

    // Server: no certificate is plain TCP; a client CA needs the certificate and key.
    assert!(server_config_from("x-tls", None, None, None)
        .unwrap()
        .is_none());
    assert!(server_config_from("x-tls", c, k, None).unwrap().is_some());
    assert!(server_config_from("x-tls", c, k, c).unwrap().is_some());
    assert!(matches!(
        server_config_from("x-tls", None, None, c),
        Err(TlsError::Incomplete("x-tls"))
    ));
    assert!(matches!(
        server_config_from("x-tls", c, None, None),
        Err(TlsError::Incomplete("x-tls"))
    ));
}
