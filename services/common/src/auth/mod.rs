//! Who may call a service's HTTP routes: one mechanism for every service.
//!
//! Two kinds of credential, presented as `Authorization: Bearer <credential>` (or `X-Api-Key`):
//! - static API keys ([`keys`]) for machine clients (a PACS router calling STOW-RS, the
//!   retraining system, the simulator) and the embedded demo; stored hashed in a keys file;
//! - OIDC/JWT access tokens ([`jwt`]) from the hospital's identity provider, checked against
//!   its JWKS (signature, issuer, audience, expiry), roles from a configurable claim.
//!
//! A browser logs in once with either credential and then holds a signed session cookie
//! ([`session`]); the routes themselves are declared with the role they need ([`routes`]), so
//! a route cannot be added without saying who may call it. With neither kind configured a
//! service refuses to start, unless `--insecure-no-auth` says otherwise out loud.

pub mod args;
pub mod jwt;
pub mod keys;
pub mod login;
pub mod routes;
pub mod session;

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderMap};
use serde::{Deserialize, Serialize};

pub use args::AuthArgs;
pub use routes::{Access, RouteSpec, Routes};

/// What a caller may do. Routes name the one role they need; a principal holds a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads the worklist (page, JSON, live stream, thumbnails), performance, submits reports.
    Reader,
    /// Sends images in (DICOMweb STOW-RS).
    Uploader,
    /// Operational actions (dead-letter replay, model promotion) when exposed over HTTP.
    Operator,
    /// Scrapes `/metrics`.
    Metrics,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Reader, Role::Uploader, Role::Operator, Role::Metrics];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Reader => "reader",
            Role::Uploader => "uploader",
            Role::Operator => "operator",
            Role::Metrics => "metrics",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| {
                format!("unknown role {s:?} (known: reader, uploader, operator, metrics)")
            })
    }
}

/// Parses `reader,uploader`.
pub fn parse_roles(s: &str) -> Result<BTreeSet<Role>, String> {
    s.split(',')
        .filter(|r| !r.trim().is_empty())
        .map(Role::from_str)
        .collect()
}

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    ApiKey,
    Jwt,
    Session,
    /// `--insecure-no-auth`: nobody proved anything.
    Insecure,
}

/// An authenticated caller. `id` is pseudonymous (`key:<name>`, `oidc:<subject>`): it goes
/// into audit events, so it must never carry a patient's or a person's clear name from a
/// study; a key's name or an identity provider's subject id is what the operator chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    pub id: String,
    pub roles: BTreeSet<Role>,
    pub via: Via,
    /// When the credential stops being valid (a token's `exp`, seconds since the epoch): a
    /// session made from it ends then at the latest.
    #[serde(default)]
    pub not_after: Option<u64>,
}

impl Principal {
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    fn insecure() -> Self {
        Principal {
            id: "anonymous(insecure-no-auth)".into(),
            roles: Role::ALL.into_iter().collect(),
            via: Via::Insecure,
            not_after: None,
        }
    }
}

/// Why a credential was not accepted. The text is logged (audit) but the client only ever
/// sees "unauthenticated": telling an attacker which check failed helps nobody else.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("no credential presented")]
    Missing,
    #[error("unknown API key")]
    UnknownKey,
    #[error("token refused: {0}")]
    Token(String),
    #[error("session cookie refused: {0}")]
    Session(String),
    #[error("no token validation configured (--auth-jwks)")]
    NoJwt,
}

/// Why the authentication configuration cannot be used; the service refuses to start.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error(
        "no authentication configured: give --auth-api-keys and/or --auth-jwks with \
         --auth-jwt-issuer and --auth-jwt-audience, or --insecure-no-auth to serve study \
         data to anyone who can reach the port"
    )]
    NotConfigured,
    #[error("--insecure-no-auth together with --auth-api-keys/--auth-jwks: choose one")]
    Contradictory,
    #[error("API keys file {path}: {reason}")]
    Keys { path: String, reason: String },
    #[error("JWKS {source_ref}: {reason}")]
    Jwks { source_ref: String, reason: String },
    #[error("--auth-jwks needs --auth-jwt-issuer and --auth-jwt-audience")]
    JwtClaimsUnset,
    #[error("session secret file {path}: {reason}")]
    SessionSecret { path: String, reason: String },
}

/// The credential in a request: `Authorization: Bearer …` or `X-Api-Key: …`.
pub fn presented_credential(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    bearer
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
        .filter(|c| !c.is_empty())
}

/// Reads the JWKS again every `every` while the validator lives (the task holds only a weak
/// reference, so it ends with the service).
fn refresh_jwks(v: &Arc<jwt::JwtValidator>, every: Duration) {
    let weak = Arc::downgrade(v);
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let Some(v) = weak.upgrade() else { break };
            match v.refresh().await {
                Ok(n) => tracing::debug!(keys = n, "JWKS refreshed"),
                Err(e) => tracing::warn!(error = %e, "JWKS refresh failed; keeping the old keys"),
            }
        }
    });
}

/// The configured checks, shared by every route of a service.
pub struct Authenticator {
    mode: Mode,
    sessions: session::SessionKeys,
}

enum Mode {
    Insecure,
    Enforced {
        keys: keys::ApiKeys,
        jwt: Option<Arc<jwt::JwtValidator>>,
    },
}

impl Authenticator {
    /// Builds the checks from the flags, reading keys files, the JWKS and the session secret.
    pub async fn from_args(args: &AuthArgs) -> Result<Self, AuthConfigError> {
        let configured = !args.api_keys.is_empty() || args.jwks.is_some();
        if args.insecure_no_auth {
            if configured {
                return Err(AuthConfigError::Contradictory);
            }
            return Ok(Self::insecure());
        }
        if !configured {
            return Err(AuthConfigError::NotConfigured);
        }
        let mut keys = keys::ApiKeys::default();
        for path in &args.api_keys {
            keys.extend(keys::ApiKeys::load(path)?);
        }
        let jwt = match &args.jwks {
            None => None,
            Some(src) => {
                let (Some(issuer), Some(audience)) = (&args.jwt_issuer, &args.jwt_audience) else {
                    return Err(AuthConfigError::JwtClaimsUnset);
                };
                let set = jwt::load_jwks(src).await?;
                let v = Arc::new(jwt::JwtValidator::new(
                    set,
                    issuer.clone(),
                    audience.clone(),
                    args.jwt_roles_claim.clone(),
                    src,
                )?);
                if args.jwks_refresh_secs > 0 {
                    refresh_jwks(&v, Duration::from_secs(args.jwks_refresh_secs));
                }
                Some(v)
            }
        };
        let sessions = session::SessionKeys::from_args(args)?;
        Ok(Authenticator {
            mode: Mode::Enforced { keys, jwt },
            sessions,
        })
    }

    /// Every request passes as an anonymous principal with every role.
    pub fn insecure() -> Self {
        Authenticator {
            mode: Mode::Insecure,
            sessions: session::SessionKeys::random(false, 3600),
        }
    }

    /// Checks that accept API keys (and tokens, when `jwt` is given); for tests and the
    /// embedded stack, which build their keys in memory.
    pub fn with(keys: keys::ApiKeys, jwt: Option<jwt::JwtValidator>) -> Self {
        Authenticator {
            mode: Mode::Enforced {
                keys,
                jwt: jwt.map(Arc::new),
            },
            sessions: session::SessionKeys::random(false, 8 * 3600),
        }
    }

    pub fn is_insecure(&self) -> bool {
        matches!(self.mode, Mode::Insecure)
    }

    pub fn sessions(&self) -> &session::SessionKeys {
        &self.sessions
    }

    /// One line for the start-up log: which checks are on (never a secret).
    pub fn describe(&self) -> String {
        match &self.mode {
            Mode::Insecure => "INSECURE: no authentication (--insecure-no-auth)".into(),
            Mode::Enforced { keys, jwt } => format!(
                "api_keys={} jwt={}",
                keys.len(),
                jwt.as_ref().map_or("off".to_string(), |j| j.describe())
            ),
        }
    }

    /// Checks a credential (API key or JWT) presented directly or at login.
    pub fn check_credential(&self, credential: &str) -> Result<Principal, Rejection> {
        match &self.mode {
            Mode::Insecure => Ok(Principal::insecure()),
            Mode::Enforced { keys, jwt } => {
                if credential.starts_with(keys::KEY_PREFIX) {
                    return keys.verify(credential).ok_or(Rejection::UnknownKey);
                }
                match jwt {
                    Some(j) => j.validate(credential),
                    // Not a key of ours and no token validation: an unknown key to the caller.
                    None => Err(Rejection::UnknownKey),
                }
            }
        }
    }

    /// Who sent this request: its credential header first, else its session cookie.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, Rejection> {
        if self.is_insecure() {
            return Ok(Principal::insecure());
        }
        if let Some(c) = presented_credential(headers) {
            return self.check_credential(c);
        }
        match session::cookie_value(headers) {
            Some(v) => self.sessions.open(v).map(|s| s.principal()),
            None => Err(Rejection::Missing),
        }
    }
}
