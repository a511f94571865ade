//! The access-control flags every service shares (`#[command(flatten)]` in `ServiceArgs`).
//! No default secret anywhere: with nothing configured a service refuses to start.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

#[derive(Debug, Clone, Args, Default)]
pub struct AuthArgs {
    /// Serve every route to anyone, with no credential: for a throw-away test on a laptop
    /// only. Logged at start and reported by `/readyz`.
    #[arg(
        long = "insecure-no-auth",
        env = "CXRFLOW_INSECURE_NO_AUTH",
        default_value_t = false
    )]
    pub insecure_no_auth: bool,

    /// API keys files (comma-separated in the environment): one key a line,
    /// `sha256:<hex> <name> <role,role>`; make lines with `cxrflow auth new-key`.
    #[arg(
        long = "auth-api-keys",
        env = "CXRFLOW_AUTH_API_KEYS",
        value_delimiter = ','
    )]
    pub api_keys: Vec<PathBuf>,

    /// The identity provider's JWKS: a file path, or an `https://` URL.
    /// Turns on OIDC/JWT bearer tokens (RS*/PS*/ES*/EdDSA only).
    #[arg(long = "auth-jwks", env = "CXRFLOW_AUTH_JWKS")]
    pub jwks: Option<String>,

    /// How often the JWKS is read again, in seconds, so a key the identity provider rotates in
    /// is accepted without a restart (0: never; a failed read keeps the old keys).
    #[arg(
        long = "auth-jwks-refresh-secs",
        env = "CXRFLOW_AUTH_JWKS_REFRESH_SECS",
        default_value_t = 600
    )]
    pub jwks_refresh_secs: u64,

    /// The `iss` a token must carry (required with --auth-jwks).
    #[arg(long = "auth-jwt-issuer", env = "CXRFLOW_AUTH_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// The `aud` a token must carry (required with --auth-jwks).
    #[arg(long = "auth-jwt-audience", env = "CXRFLOW_AUTH_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// The claim holding the roles, dotted for nested claims (Keycloak: `realm_access.roles`):
    /// an array of strings or a space-separated string; names other than reader, uploader,
    /// operator, metrics are ignored.
    #[arg(
        long = "auth-jwt-roles-claim",
        env = "CXRFLOW_AUTH_JWT_ROLES_CLAIM",
        default_value = "roles"
    )]
    pub jwt_roles_claim: String,

    /// File holding the key that signs session cookies. Unset: a random key per process
    /// (sessions end at restart and are not shared between replicas).
    #[arg(
        long = "auth-session-secret-file",
        env = "CXRFLOW_AUTH_SESSION_SECRET_FILE"
    )]
    pub session_secret_file: Option<PathBuf>,

    /// How long a browser session lasts, in seconds.
    #[arg(
        long = "auth-session-ttl-secs",
        env = "CXRFLOW_AUTH_SESSION_TTL_SECS",
        default_value_t = 8 * 3600
    )]
    pub session_ttl_secs: u64,

    /// Mark the session cookie `Secure` (always, when the service is reached over HTTPS
    /// through a proxy); it is also set when a request arrives with `X-Forwarded-Proto: https`.
    #[arg(
        long = "auth-secure-cookie",
        env = "CXRFLOW_AUTH_SECURE_COOKIE",
        default_value_t = false
    )]
    pub secure_cookie: bool,

    /// Serve `/metrics` without credentials on this separate address (for a Prometheus that
    /// scrapes over a network policy); `/metrics` on the main port still needs `metrics`.
    #[arg(long = "metrics-http", env = "CXRFLOW_METRICS_HTTP")]
    pub metrics_http: Option<SocketAddr>,
}

impl AuthArgs {
    /// No authentication, said out loud: for in-process tests.
    pub fn insecure() -> Self {
        AuthArgs {
            insecure_no_auth: true,
            jwt_roles_claim: "roles".into(),
            session_ttl_secs: 8 * 3600,
            jwks_refresh_secs: 600,
            ..Default::default()
        }
    }

    /// API keys from the given files.
    pub fn with_keys(files: Vec<PathBuf>) -> Self {
        AuthArgs {
            insecure_no_auth: false,
            api_keys: files,
            ..Self::insecure()
        }
    }
}
