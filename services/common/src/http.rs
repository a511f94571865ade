//! The HTTP endpoint every service serves: `/metrics`, `/healthz`, `/readyz`, plus its own routes.
//! `/healthz` and `/readyz` answer from the consumer loops too ([`crate::health`]).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

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
async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    if !s.ready.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    } else if !s.health.assigned_once() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no partition assigned yet",
        )
    } else {
        (StatusCode::OK, "ready")
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

/// Binds `addr` and serves until `shutdown`. Returns the bound address (useful with port 0).
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    ready: Readiness,
    health: Health,
    routes: Router,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let state = HttpState {
        registry,
        ready,
        health,
    };
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(routes);
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    tracing::info!(%bound, "http endpoint listening");
    let handle = tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "http endpoint failed");
        }
    });
    Ok((bound, handle))
}
