//! The FastAPI baseline's measurements: saturation throughput (closed loop, a few
//! concurrencies), latency open-loop at 50% and 90% of it, an overload burst at twice it, and
//! the uvicorn process's peak RSS.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::cli::Args;
use crate::corpus::Corpus;
use crate::fastapi::{closed_loop, open_loop, Server};
use crate::load::LoadResult;
use crate::procfs::{memory, Memory};
use crate::schedule::offsets;

#[derive(Debug, Clone, Serialize)]
pub struct CapacityTrial {
    pub concurrency: usize,
    pub result: LoadResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    pub server: serde_json::Value,
    pub command: String,
    pub workers: usize,
    pub client_timeout_s: u64,
    pub capacity_trials: Vec<CapacityTrial>,
    /// Best saturation throughput, requests per second.
    pub capacity_per_s: f64,
    pub at_50: LoadResult,
    pub at_90: LoadResult,
    pub burst: LoadResult,
    /// uvicorn's peak RSS after the steady runs, and after the burst.
    pub memory_steady: Option<Memory>,
    pub memory_after_burst: Option<Memory>,
}

pub async fn run(
    args: &Args,
    corpus: &Arc<Corpus>,
    model_dir: &Path,
) -> anyhow::Result<BaselineReport> {
    let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    std::fs::create_dir_all(&args.scratch)?;
    let server = Server::start(
        &args.python(),
        &app_dir,
        model_dir,
        args.fastapi_workers,
        args.scratch.join("fastapi.log"),
    )
    .await?;
    eprintln!("FastAPI baseline up: {} ({})", server.url, server.info);
    let deadline = args.client_timeout();
    // Warm-up: first requests pay for arena growth and lazy imports.
    closed_loop(&server, corpus, 1, Duration::from_secs(2), deadline).await?;

    let mut trials = Vec::new();
    for c in args.fastapi_concurrency() {
        let out = closed_loop(&server, corpus, c, args.flood_len() / 2, deadline).await?;
        let result = LoadResult::from_outcomes("fastapi", &format!("capacity c={c}"), None, &out);
        eprintln!(
            "  FastAPI closed loop, concurrency {c}: {:.2} req/s",
            result.steady_per_s.or(result.achieved_per_s).unwrap_or(0.0)
        );
        trials.push(CapacityTrial {
            concurrency: c,
            result,
        });
    }
    let capacity_per_s = trials
        .iter()
        .filter_map(|t| t.result.steady_per_s.or(t.result.achieved_per_s))
        .fold(0.0, f64::max);
    anyhow::ensure!(capacity_per_s > 0.0, "FastAPI baseline answered nothing");

    let mut steady = Vec::new();
    for (share, phase) in [(0.5, "fastapi 50%"), (0.9, "fastapi 90%")] {
        let rate = capacity_per_s * share;
        let o = offsets(args.arrivals, rate, args.run_len(), 11);
        let out = open_loop(&server, corpus, &o, deadline).await?;
        let r = LoadResult::from_outcomes("fastapi", phase, Some(rate), &out);
        eprintln!(
            "  {phase} ({rate:.2}/s): p50 {:?} ms, p99 {:?} ms, failed {}",
            r.latency_ms.p50,
            r.latency_ms.p99,
            r.errors + r.timeouts
        );
        steady.push(r);
    }
    let memory_steady = memory(server.pid());

    let rate = capacity_per_s * 2.0;
    let o = offsets(args.arrivals, rate, args.burst_len(), 13);
    eprintln!("  FastAPI burst: {} requests at {rate:.2}/s", o.len());
    let out = open_loop(&server, corpus, &o, deadline).await?;
    let burst = LoadResult::from_outcomes("fastapi", "burst 2x", Some(rate), &out);
    eprintln!(
        "  burst: {} ok, {} errors, {} timeouts, drain {:?} s",
        burst.completed, burst.errors, burst.timeouts, burst.drain_s
    );
    let memory_after_burst = memory(server.pid());
    let report = BaselineReport {
        server: server.info.clone(),
        command: server.command.clone(),
        workers: args.fastapi_workers,
        client_timeout_s: args.client_timeout_s,
        capacity_trials: trials,
        capacity_per_s,
        at_90: steady.pop().expect("two steady runs"),
        at_50: steady.pop().expect("two steady runs"),
        burst,
        memory_steady,
        memory_after_burst,
    };
    server.stop().await;
    Ok(report)
}
