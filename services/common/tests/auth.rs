//! Access control end to end on a real HTTP endpoint: API keys, OIDC/JWT tokens (an EC key
//! generated here, served as a JWKS file), sessions with CSRF, and the start-up refusals.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use cxrflow_common::auth::keys::{self, ApiKeys};
use cxrflow_common::auth::{
    Access, AuthArgs, AuthConfigError, Authenticator, Principal, Rejection, Role, Routes,
};
use cxrflow_common::health::Health;
use cxrflow_common::http::{serve, Readiness};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const ISS: &str = "https://idp.example/realms/hospital";
const AUD: &str = "cxrflow";

/// An EC P-256 signing key and its public JWK.
struct IdP {
    pkcs8: Vec<u8>,
    jwk: serde_json::Value,
}

fn idp(kid: &str) -> IdP {
    let rng = SystemRandom::new();
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref(); // 0x04 || x || y
    IdP {
        pkcs8: doc.as_ref().to_vec(),
        jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
                    "x": B64.encode(&point[1..33]), "y": B64.encode(&point[33..65])}),
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(key: &IdP, kid: &str, claims: serde_json::Value) -> String {
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some(kid.into());
    encode(&h, &claims, &EncodingKey::from_ec_der(&key.pkcs8)).unwrap()
}

fn claims(iss: &str, aud: &str, exp: u64) -> serde_json::Value {
    json!({"iss": iss, "aud": aud, "exp": exp, "sub": "u-4711",
           "realm_access": {"roles": ["reader", "other-app-admin"]}})
}

/// Authenticator with one reader key and a JWKS file holding `key`.
async fn authenticator(dir: &std::path::Path, key: &IdP) -> (Authenticator, String) {
    let roles: BTreeSet<Role> = [Role::Reader].into_iter().collect();
    let (plain, line) = keys::generate("ui", &roles);
    std::fs::write(dir.join("keys"), format!("{line}\n")).unwrap();
    std::fs::write(
        dir.join("jwks.json"),
        json!({"keys": [key.jwk]}).to_string(),
    )
    .unwrap();
    let mut args = AuthArgs::with_keys(vec![dir.join("keys")]);
    args.jwks = Some(dir.join("jwks.json").display().to_string());
    args.jwt_issuer = Some(ISS.into());
    args.jwt_audience = Some(AUD.into());
    args.jwt_roles_claim = "realm_access.roles".into();
    (Authenticator::from_args(&args).await.unwrap(), plain)
}

#[tokio::test]
async fn jwt_tokens_are_checked_for_signature_issuer_audience_and_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let good_key = idp("k1");
    let (auth, _) = authenticator(dir.path(), &good_key).await;
    let ok = auth
        .check_credential(&token(&good_key, "k1", claims(ISS, AUD, now() + 300)))
        .expect("good token");
    assert_eq!(ok.id, "oidc:u-4711");
    assert_eq!(ok.roles, [Role::Reader].into_iter().collect());

    let refused = |t: String| match auth.check_credential(&t) {
        Err(Rejection::Token(why)) => why,
        other => panic!("expected a refused token, got {other:?}"),
    };
    assert!(refused(token(&good_key, "k1", claims(ISS, AUD, now() - 120))).contains("Expired"));
    assert!(refused(token(
        &good_key,
        "k1",
        claims(ISS, "other-app", now() + 300)
    ))
    .contains("Audience"));
    assert!(refused(token(
        &good_key,
        "k1",
        claims("https://evil", AUD, now() + 300)
    ))
    .contains("Issuer"));
    // Same kid, another key: the signature does not verify.
    let forger = idp("k1");
    assert!(refused(token(&forger, "k1", claims(ISS, AUD, now() + 300))).contains("Signature"));
    // Unknown kid.
    assert!(refused(token(&good_key, "k9", claims(ISS, AUD, now() + 300))).contains("kid"));
    // A symmetric token is never accepted (algorithm confusion).
    let hs = encode(
        &Header::new(Algorithm::HS256),
        &claims(ISS, AUD, now() + 300),
        &EncodingKey::from_secret(b"whatever"),
    )
    .unwrap();
    assert!(refused(hs).contains("algorithm"));
    // No exp at all.
    let no_exp = json!({"iss": ISS, "aud": AUD, "sub": "u"});
    assert!(refused(token(&good_key, "k1", no_exp)).contains("exp"));
}

#[tokio::test]
async fn a_service_refuses_to_start_without_an_access_rule() {
    let none = AuthArgs {
        insecure_no_auth: false,
        ..AuthArgs::insecure()
    };
    assert!(matches!(
        Authenticator::from_args(&none).await,
        Err(AuthConfigError::NotConfigured)
    ));
    let mut both = AuthArgs::insecure();
    both.api_keys = vec!["/nonexistent".into()];
    assert!(matches!(
        Authenticator::from_args(&both).await,
        Err(AuthConfigError::Contradictory)
    ));
    let missing = AuthArgs::with_keys(vec!["/nonexistent/keys".into()]);
    assert!(matches!(
        Authenticator::from_args(&missing).await,
        Err(AuthConfigError::Keys { .. })
    ));
    let mut jwt_only = none.clone();
    jwt_only.jwks = Some("/nonexistent/jwks.json".into());
    assert!(matches!(
        Authenticator::from_args(&jwt_only).await,
        Err(AuthConfigError::JwtClaimsUnset)
    ));
}

async fn whoami(p: Principal) -> String {
    p.id
}

/// A served endpoint with one reader GET and one reader POST.
async fn endpoint(auth: Authenticator) -> (String, CancellationToken) {
    let routes = Routes::new()
        .get("/thing", Access::Role(Role::Reader), whoami)
        .post("/thing", Access::Role(Role::Reader), whoami)
        .get("/upload", Access::Role(Role::Uploader), whoami);
    let stop = CancellationToken::new();
    let ready = Readiness::default();
    ready.set_ready(true);
    let (addr, _) = serve(
        "127.0.0.1:0".parse().unwrap(),
        None,
        None,
        Default::default(),
        ready,
        Health::default(),
        Arc::new(auth),
        routes,
        stop.clone(),
    )
    .await
    .unwrap();
    (format!("http://{addr}"), stop)
}

#[tokio::test]
async fn keys_tokens_and_sessions_on_a_real_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let key = idp("k1");
    let (auth, plain) = authenticator(dir.path(), &key).await;
    let (base, stop) = endpoint(auth).await;
    let http = reqwest::Client::new();
    let get = |path: &str, cred: Option<&str>| {
        let mut r = http.get(format!("{base}{path}"));
        if let Some(c) = cred {
            r = r.bearer_auth(c);
        }
        r.send()
    };
    assert_eq!(
        get("/thing", None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/thing", Some("cxrk_wrong")).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let r = get("/thing", Some(&plain)).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "key:ui");
    assert_eq!(
        get("/upload", Some(&plain)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let jwt = token(&key, "k1", claims(ISS, AUD, now() + 300));
    assert_eq!(
        get("/thing", Some(&jwt))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "oidc:u-4711"
    );
    let expired = token(&key, "k1", claims(ISS, AUD, now() - 300));
    assert_eq!(
        get("/thing", Some(&expired)).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    // Probes stay open; /metrics needs its role.
    assert_eq!(get("/readyz", None).await.unwrap().status(), StatusCode::OK);
    assert_eq!(
        get("/metrics", None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        get("/metrics", Some(&plain)).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    // A browser without a session gets the login page.
    let page = http
        .get(format!("{base}/thing"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::UNAUTHORIZED);
    // The login page may run only its own inline script and style (by hash); it is never
    // framed, sniffed or stored.
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'sha256-")
            && csp.contains("style-src 'sha256-")
            && csp.contains("frame-ancestors 'none'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(
        page.headers()["www-authenticate"],
        "Bearer realm=\"cxrflow\""
    );
    assert!(page.text().await.unwrap().contains("/auth/login"));
    // Every answer, study data or not: never stored, sniffed or framed, no referrer.
    let r = get("/thing", Some(&plain)).await.unwrap();
    for (name, value) in [
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
        ),
    ] {
        assert_eq!(r.headers()[name], value, "{name}");
    }
    assert!(
        !r.headers().contains_key("strict-transport-security"),
        "HSTS over plain HTTP"
    );

    // Login: a wrong key is refused, the right one sets an HttpOnly SameSite=Strict cookie.
    let login = |c: &str| {
        http.post(format!("{base}/auth/login"))
            .json(&json!({"credential": c}))
            .send()
    };
    assert_eq!(
        login("cxrk_nope").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let cross = http
        .post(format!("{base}/auth/login"))
        .header("origin", "https://evil.example")
        .json(&json!({"credential": plain}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), StatusCode::FORBIDDEN, "login CSRF");
    let r = login(&plain).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let set = r.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict"),
        "{set}"
    );
    let cookie = set.split(';').next().unwrap().to_string();
    let csrf = r.json::<serde_json::Value>().await.unwrap()["csrf"]
        .as_str()
        .unwrap()
        .to_string();
    let with_cookie = |m: reqwest::Method| {
        http.request(m, format!("{base}/thing"))
            .header("cookie", &cookie)
    };
    let r = with_cookie(reqwest::Method::GET).send().await.unwrap();
    assert_eq!(r.text().await.unwrap(), "key:ui");
    // A POST riding on the cookie alone (what a forged cross-site form would send) is refused.
    let r = with_cookie(reqwest::Method::POST).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = with_cookie(reqwest::Method::POST)
        .header("x-csrf-token", &csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let r = with_cookie(reqwest::Method::POST)
        .header("x-csrf-token", &csrf)
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The session view gives the page its CSRF token.
    let s: serde_json::Value = http
        .get(format!("{base}/auth/session"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(s["csrf"].as_str(), Some(csrf.as_str()));
    stop.cancel();
}

#[tokio::test]
async fn insecure_mode_says_so_on_readyz() {
    let (base, stop) = endpoint(Authenticator::insecure()).await;
    let r = reqwest::get(format!("{base}/readyz")).await.unwrap();
    assert!(r.text().await.unwrap().contains("INSECURE"));
    let r = reqwest::get(format!("{base}/thing")).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    stop.cancel();
}

#[test]
fn keys_hashed_in_memory_verify() {
    let roles: BTreeSet<Role> = [Role::Uploader].into_iter().collect();
    let (plain, line) = keys::generate("pacs", &roles);
    let auth = Authenticator::with(ApiKeys::parse(&line).unwrap(), None);
    assert!(auth.check_credential(&plain).unwrap().has(Role::Uploader));
    assert_eq!(
        auth.check_credential("not-a-key"),
        Err(Rejection::UnknownKey)
    );
}

#[tokio::test]
async fn a_rotated_key_is_accepted_after_the_jwks_is_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let (old, new) = (idp("old"), idp("new"));
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [old.jwk]}).to_string()).unwrap();
    let mut args = AuthArgs::insecure();
    args.insecure_no_auth = false;
    args.jwks = Some(jwks.display().to_string());
    args.jwt_issuer = Some(ISS.into());
    args.jwt_audience = Some(AUD.into());
    args.jwks_refresh_secs = 1;
    let auth = Authenticator::from_args(&args).await.unwrap();
    let rotated = token(&new, "new", claims(ISS, AUD, now() + 300));
    assert!(
        auth.check_credential(&rotated).is_err(),
        "not yet published"
    );
    std::fs::write(&jwks, json!({"keys": [old.jwk, new.jwk]}).to_string()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while auth.check_credential(&rotated).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "rotated key never accepted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // A broken JWKS later keeps the keys that work.
    std::fs::write(&jwks, "not json").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(auth.check_credential(&rotated).is_ok());
}
