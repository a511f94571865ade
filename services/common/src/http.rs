//! The HTTP endpoint every service serves: `/metrics`, `/healthz`, `/readyz`, the login routes,
//! plus its own routes, each with its access rule ([`crate::auth`]). `/healthz` and `/readyz`
//! stay open for probes and answer from the consumer loops too ([`crate::health`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::Engine;
use prometheus_client::registry::Registry;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::auth::{Access, Authenticator, Role, Routes};
use crate::health::Health;

/// Readiness flag a service flips once it can serve (e.g. triage after rebuilding its worklist).
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set_ready(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

#[derive(Clone)]
struct HttpState {
    registry: Arc<Registry>,
    ready: Readiness,
    health: Health,
    insecure: bool,
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        crate::metrics::render(&s.registry),
    )
}

/// Ready: the service says so and every stage has held a partition.
/// With `--insecure-no-auth` the body says so, so a probe dashboard shows it.
async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    let (status, text) = if !s.ready.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    } else if !s.health.assigned_once() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no partition assigned yet",
        )
    } else {
        (StatusCode::OK, "ready")
    };
    if s.insecure {
        (
            status,
            format!("{text} (INSECURE: no authentication, --insecure-no-auth)"),
        )
    } else {
        (status, text.to_string())
    }
}

/// Live: no consumer loop has had work without progress past its bound.
async fn healthz(State(s): State<HttpState>) -> impl IntoResponse {
    match s.health.live() {
        Ok(()) => (StatusCode::OK, "ok".to_string()),
        Err(stalled) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("stalled: {stalled}"),
        ),
    }
}

/// Every route of a service's endpoint, with its access rule: the shared ones and `routes`.
pub fn endpoint(
    registry: Arc<Registry>,
    ready: Readiness,
    health: Health,
    auth: Arc<Authenticator>,
    routes: Routes,
) -> Routes {
    let state = HttpState {
        registry,
        ready,
        health,
        insecure: auth.is_insecure(),
    };
    Routes::new()
        .get("/metrics", Access::Role(Role::Metrics), metrics)
        .get("/healthz", Access::Open, healthz)
        .get("/readyz", Access::Open, readyz)
        .with_state(state)
        .merge(crate::auth::login::routes(auth))
        .merge(routes)
}

/// The Content-Security-Policy of every response that is not a page: nothing may load from it,
/// and nothing may frame it.
const CSP_NONE: &str = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'";

/// Headers every response of the API endpoint carries, unless its handler set its own. Study
/// data is never stored by a browser or proxy (reading-room workstations are shared), never
/// sniffed into another type, never framed by another site (clickjacking the report form), and
/// a page's address never leaves as a referrer (the viewer links). Over HTTPS, browsers are told
/// to keep to it (HSTS).
pub async fn secure_headers(https: bool, mut res: Response) -> Response {
    let h = res.headers_mut();
    let defaults = [
        (header::CACHE_CONTROL, "no-store"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, CSP_NONE),
    ];
    for (name, value) in defaults {
        if !h.contains_key(&name) {
            h.insert(name, HeaderValue::from_static(value));
        }
    }
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    res
}

/// A page the service serves itself (the worklist, the login page), with a
/// Content-Security-Policy that lets it run only its own inline script and style (by their
/// SHA-256) and talk only to its own origin: a study field that got past the page's escaping
/// still cannot run as script.
pub fn page(status: StatusCode, html: &'static str) -> Response {
    let mut res = (status, axum::response::Html(html)).into_response();
    if let Ok(csp) = HeaderValue::from_str(&page_csp(html)) {
        res.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    res
}

/// The policy of `html`: its inline `<script>` and `<style>` elements allowed by hash.
pub fn page_csp(html: &str) -> String {
    let hashes = |tag: &str| -> String {
        let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
        let mut out = Vec::new();
        let mut rest = html;
        while let Some(start) = rest.find(&open) {
            let body = &rest[start + open.len()..];
            let Some(end) = body.find(&close) else { break };
            let digest = Sha256::digest(&body.as_bytes()[..end]);
            out.push(format!(
                "'sha256-{}'",
                base64::engine::general_purpose::STANDARD.encode(digest)
            ));
            rest = &body[end + close.len()..];
        }
        if out.is_empty() {
            "'none'".to_string()
        } else {
            out.join(" ")
        }
    };
    format!(
        "default-src 'none'; script-src {}; style-src {}; img-src 'self' data:; connect-src 'self'; \
         form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        hashes("script"),
        hashes("style")
    )
}

/// How long an HTTPS endpoint lets open requests finish at shutdown (the SSE streams never
/// do: they are cut then).
const TLS_DRAIN: std::time::Duration = std::time::Duration::from_secs(5);

async fn listen(
    what: &'static str,
    addr: SocketAddr,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if let Some(tls) = tls {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        tracing::info!(%bound, what, "https endpoint listening");
        let handle = axum_server::Handle::new();
        let server = axum_server::from_tcp_rustls(
            listener,
            axum_server::tls_rustls::RustlsConfig::from_config(tls),
        )?
        .handle(handle.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            handle.graceful_shutdown(Some(TLS_DRAIN));
        });
        let task = tokio::spawn(async move {
            if let Err(e) = server.serve(app.into_make_service()).await {
                tracing::error!(error = %e, what, "https endpoint failed");
            }
        });
        return Ok((bound, task));
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, what, "http endpoint listening");
    let handle = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, what, "http endpoint failed");
        }
    });
    Ok((bound, handle))
}

/// Binds `addr` and serves until `shutdown`, over HTTPS when `tls` is given. Returns the bound
/// address (useful with port 0). With `metrics_open` set, `/metrics` is also served there
/// without credentials (plain HTTP: it carries no study data).
#[allow(clippy::too_many_arguments)]
pub async fn serve(
    addr: SocketAddr,
    tls: Option<Arc<rustls::ServerConfig>>,
    metrics_open: Option<SocketAddr>,
    registry: Arc<Registry>,
    ready: Readiness,
    health: Health,
    auth: Arc<Authenticator>,
    routes: Routes,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    if let Some(m) = metrics_open {
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(HttpState {
                registry: registry.clone(),
                ready: ready.clone(),
                health: health.clone(),
                insecure: auth.is_insecure(),
            });
        listen("metrics (open)", m, app, None, shutdown.clone()).await?;
    }
    let https = tls.is_some();
    let app = endpoint(registry, ready, health, auth.clone(), routes)
        .into_app(auth)
        .layer(axum::middleware::map_response(move |res: Response| {
            secure_headers(https, res)
        }));
    listen("api", addr, app, tls, shutdown).await
}
