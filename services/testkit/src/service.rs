//! A service's `run()` in the test's own process: spawned with a shutdown token of its own,
//! reached on its HTTP address, read through its `/metrics`, and stopped the way SIGTERM stops
//! it (drain, then return), so every broker test starts and stops a service the same way.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use cxrflow_common::ServiceArgs;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{eventually, free_port, scrape_metric};

/// How long a stopped service may take to drain and return.
const STOP_WITHIN: Duration = Duration::from_secs(30);

/// Service settings for a test: insecure loopback HTTP on a free port (so the test knows the
/// address before the service binds it) and a 2 s drain.
pub fn service_args() -> ServiceArgs {
    let mut service = ServiceArgs::local();
    service.http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    service.drain_timeout_ms = 2_000;
    service
}

/// A service running in this process.
pub struct TestService {
    name: &'static str,
    http: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestService {
    /// Spawns `run` (the service's `run(cfg, shutdown)` with the test's configuration) with a
    /// fresh shutdown token. `http` is that configuration's `service.http`, where
    /// [`TestService::base`] and [`TestService::metric`] look (with port 0 the test cannot
    /// reach it: [`service_args`] gives a free port).
    pub fn spawn<F, Fut>(name: &'static str, http: SocketAddr, run: F) -> TestService
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone()));
        TestService {
            name,
            http,
            shutdown,
            task,
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn http_port(&self) -> u16 {
        self.http.port()
    }

    /// The value of one series (exact name plus labels) on the service's `/metrics`; `None`
    /// when the endpoint does not answer or the series is absent.
    pub async fn metric(&self, series: &str) -> Option<f64> {
        scrape_metric(&self.base(), series).await
    }

    /// Waits until `/readyz` answers 200 (every stage held a partition once).
    pub async fn wait_ready(&self, timeout: Duration) {
        let url = format!("{}/readyz", self.base());
        eventually(timeout, &format!("{} reports ready", self.name), || {
            let url = url.clone();
            async move {
                reqwest::get(url)
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        })
        .await;
    }

    /// Whether `run()` has returned (a service that failed on its own).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Stops the service as SIGTERM does and waits for `run()` to return; panics when it does
    /// not return within 30 s or returns an error.
    pub async fn stop(self) {
        self.shutdown.cancel();
        let name = self.name;
        tokio::time::timeout(STOP_WITHIN, self.task)
            .await
            .unwrap_or_else(|_| panic!("{name} did not stop within {STOP_WITHIN:?}"))
            .unwrap_or_else(|e| panic!("{name} task: {e}"))
            .unwrap_or_else(|e| panic!("{name} ended with an error: {e:#}"));
    }
}
