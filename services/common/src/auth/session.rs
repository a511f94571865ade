//! Browser sessions: after a login with an API key or a token, the browser holds a cookie
//! (`HttpOnly`, `SameSite=Strict`, `Secure` over HTTPS) instead of the credential, so no
//! script on the page ever sees a secret. The cookie is stateless: the principal, an expiry
//! and a CSRF token, signed with HMAC-SHA256 (`hmac` crate); the signature is checked in
//! constant time by `Mac::verify_slice`.
//!
//! CSRF: a cookie-authenticated request that changes something must carry the session's CSRF
//! token in `X-CSRF-Token` (synchronizer token, bound to the signed session), on top of
//! `SameSite=Strict`; the page reads the token from `GET /auth/session`, which a foreign
//! origin cannot read (no CORS).

use std::collections::BTreeSet;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::{AuthArgs, AuthConfigError, Principal, Rejection, Role, Via};

pub const COOKIE: &str = "cxrflow_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

type HmacSha256 = Hmac<Sha256>;

/// What a session cookie carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub roles: BTreeSet<Role>,
    /// Seconds since the epoch.
    pub exp: u64,
    pub csrf: String,
}

impl Session {
    pub fn principal(&self) -> Principal {
        Principal {
            id: self.id.clone(),
            roles: self.roles.clone(),
            via: Via::Session,
            not_after: Some(self.exp),
        }
    }
}

pub struct SessionKeys {
    key: Vec<u8>,
    pub secure: bool,
    pub ttl_secs: u64,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl SessionKeys {
    pub fn random(secure: bool, ttl_secs: u64) -> Self {
        SessionKeys {
            key: rand::random::<[u8; 32]>().to_vec(),
            secure,
            ttl_secs,
        }
    }

    pub fn from_args(args: &AuthArgs) -> Result<Self, AuthConfigError> {
        let Some(path) = &args.session_secret_file else {
            return Ok(Self::random(args.secure_cookie, args.session_ttl_secs));
        };
        let err = |reason: String| AuthConfigError::SessionSecret {
            path: path.display().to_string(),
            reason,
        };
        let key = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let trimmed = key.trim_ascii().to_vec();
        if trimmed.len() < 32 {
            return Err(err("shorter than 32 bytes".into()));
        }
        Ok(SessionKeys {
            key: trimmed,
            secure: args.secure_cookie,
            ttl_secs: args.session_ttl_secs,
        })
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes a key of any length; `new_from_slice` cannot fail for it.
        HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("hmac key"))
    }

    /// A signed cookie value for `p`, and the session it carries: it ends after the session
    /// lifetime or when the credential it was made from expires, whichever is first.
    pub fn seal(&self, p: &Principal) -> (String, Session) {
        let ttl_end = now_secs() + self.ttl_secs;
        let s = Session {
            id: p.id.clone(),
            roles: p.roles.clone(),
            exp: p.not_after.map_or(ttl_end, |n| n.min(ttl_end)),
            csrf: B64.encode(rand::random::<[u8; 24]>()),
        };
        let body = B64.encode(serde_json::to_vec(&s).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let tag = B64.encode(mac.finalize().into_bytes());
        (format!("{body}.{tag}"), s)
    }

    /// The session of a cookie value whose signature and expiry hold.
    pub fn open(&self, value: &str) -> Result<Session, Rejection> {
        let bad = |m: &str| Rejection::Session(m.to_string());
        let (body, tag) = value.split_once('.').ok_or_else(|| bad("malformed"))?;
        let tag = B64.decode(tag).map_err(|_| bad("malformed"))?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&tag).map_err(|_| bad("bad signature"))?;
        let json = B64.decode(body).map_err(|_| bad("malformed"))?;
        let s: Session = serde_json::from_slice(&json).map_err(|_| bad("malformed"))?;
        if s.exp <= now_secs() {
            return Err(bad("expired"));
        }
        Ok(s)
    }

    /// `Set-Cookie` for a new session.
    pub fn set_cookie(&self, value: &str, headers: &HeaderMap) -> String {
        format!(
            "{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
            self.ttl_secs,
            if self.secure || over_https(headers) {
                "; Secure"
            } else {
                ""
            }
        )
    }

    /// `Set-Cookie` that ends the session in the browser.
    pub fn clear_cookie(&self) -> String {
        format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
    }

    /// Whether a cookie-authenticated, state-changing request carries its session's CSRF
    /// token, and comes from this origin when the browser says where it comes from.
    pub fn csrf_ok(&self, headers: &HeaderMap) -> bool {
        let Some(s) = cookie_value(headers).and_then(|v| self.open(v).ok()) else {
            return false;
        };
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let token_ok = bool::from(sent.as_bytes().ct_eq(s.csrf.as_bytes())) && !sent.is_empty();
        token_ok && same_origin(headers)
    }
}

/// Whether the request came through a TLS-terminating proxy.
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|p| p.eq_ignore_ascii_case("https"))
}

/// `Origin`, when sent, names the host the request went to.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let authority = origin.split_once("://").map_or("", |(_, a)| a);
    !host.is_empty() && authority.eq_ignore_ascii_case(host)
}

/// The session cookie's value, if the request has one.
pub fn cookie_value(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn reader() -> Principal {
        Principal {
            id: "key:ui".into(),
            roles: [Role::Reader].into_iter().collect(),
            via: Via::ApiKey,
            not_after: None,
        }
    }

    #[test]
    fn a_sealed_session_opens_and_a_tampered_one_does_not() {
        let keys = SessionKeys::random(false, 60);
        let (v, s) = keys.seal(&reader());
        assert_eq!(keys.open(&v).unwrap(), s);
        let (body, tag) = v.split_once('.').unwrap();
        let mut forged = s.clone();
        forged.roles.insert(Role::Operator);
        let forged_body = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert!(keys.open(&format!("{forged_body}.{tag}")).is_err());
        assert!(keys.open(body).is_err());
        assert!(
            SessionKeys::random(false, 60).open(&v).is_err(),
            "other key"
        );
        let expired = SessionKeys {
            ttl_secs: 0,
            ..SessionKeys::random(false, 0)
        };
        let (v, _) = expired.seal(&reader());
        assert_eq!(expired.open(&v), Err(Rejection::Session("expired".into())));
    }

    #[test]
    fn a_session_ends_with_the_token_it_was_made_from() {
        let keys = SessionKeys::random(false, 3600);
        let soon = now_secs() + 60;
        let p = Principal {
            not_after: Some(soon),
            ..reader()
        };
        let (_, s) = keys.seal(&p);
        assert_eq!(s.exp, soon);
        let (_, s) = keys.seal(&reader());
        assert!(s.exp >= now_secs() + 3599);
    }

    #[test]
    fn csrf_needs_the_sessions_token_and_the_same_origin() {
        let keys = SessionKeys::random(false, 60);
        let (v, s) = keys.seal(&reader());
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_str(&format!("a=b; {COOKIE}={v}")).unwrap(),
        );
        h.insert(header::HOST, HeaderValue::from_static("triage:8083"));
        assert!(!keys.csrf_ok(&h), "no token");
        h.insert(CSRF_HEADER, HeaderValue::from_static("wrong"));
        assert!(!keys.csrf_ok(&h));
        h.insert(CSRF_HEADER, HeaderValue::from_str(&s.csrf).unwrap());
        assert!(keys.csrf_ok(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!keys.csrf_ok(&h), "foreign origin");
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://triage:8083"),
        );
        assert!(keys.csrf_ok(&h));
    }
}
