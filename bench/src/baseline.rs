//! The FastAPI baseline's measurements, given the same layout search the bare measurement gets:
//! every uvicorn workers × intra-op threads split of the machine (the bare search's threads ×
//! sessions, [`thread_layouts`]) is started in turn and driven closed-loop at a few
//! concurrencies to find its saturation throughput. The best layout is then loaded open loop
//! (evenly spaced sends, latency from each request's scheduled send time) at its saturation
//! rate and a few steps below, until it keeps up: that rate is its max sustained throughput. Then latency open-loop
//! at 50% and 90% of it, an overload burst at twice it, and the uvicorn processes' peak RSS.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::bare::thread_layouts;
use crate::cli::Args;
use crate::corpus::Corpus;
use crate::fastapi::{closed_loop, open_loop, Server};
use crate::load::{LoadResult, Outcome};
use crate::procfs::{cpu_seconds, process_tree, tree_memory, Memory};
use crate::schedule::{offsets, Arrivals};
use crate::stats::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ServerLayout {
    /// uvicorn worker processes, one InferenceSession each.
    pub workers: usize,
    pub intra_op_threads: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct CapacityTrial {
    pub concurrency: usize,
    pub result: LoadResult,
    /// CPU time uvicorn and its workers spent per answered request (robust to other load on
    /// the machine, unlike the throughput; the load generator's client is not counted).
    pub cpu_ms_per_request: Option<f64>,
}

/// CPU seconds of `pid` and every process below it.
fn tree_cpu_seconds(pid: u32) -> Option<f64> {
    let each: Vec<f64> = process_tree(pid)
        .into_iter()
        .filter_map(|p| cpu_seconds(&p.to_string()))
        .collect();
    (!each.is_empty()).then(|| each.iter().sum())
}

/// One layout of the search: closed-loop saturation at each concurrency tried.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutTrial {
    #[serde(flatten)]
    pub layout: ServerLayout,
    pub server: serde_json::Value,
    pub capacity_trials: Vec<CapacityTrial>,
    /// Best closed-loop throughput of this layout, requests per second.
    pub saturation_per_s: f64,
    /// CPU-ms per request of the run that gave `saturation_per_s`.
    pub cpu_ms_per_request: Option<f64>,
}

/// One open-loop run at a candidate sustained rate.
#[derive(Debug, Clone, Serialize)]
pub struct SustainProbe {
    pub kept_up: bool,
    /// Median latency of the first and the last quarter of the requests, by send time: a
    /// queue that grows through the run shows as the second well above the first.
    pub early_p50_ms: Option<f64>,
    pub late_p50_ms: Option<f64>,
    pub result: LoadResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineReport {
    /// The search, best layout included.
    pub layouts: Vec<LayoutTrial>,
    pub best_layout: ServerLayout,
    pub server: serde_json::Value,
    pub command: String,
    pub client_timeout_s: u64,
    /// The best layout's closed-loop saturation throughput, requests per second.
    pub saturation_per_s: f64,
    /// Open-loop runs from the saturation rate down, the last one kept up (unless none did).
    pub sustain_probes: Vec<SustainProbe>,
    /// Max sustained throughput: the highest open-loop rate the best layout kept up with
    /// (the saturation rate when no probe kept up; `open_loop_confirmed` says which).
    pub capacity_per_s: f64,
    pub open_loop_confirmed: bool,
    pub at_50: LoadResult,
    pub at_90: LoadResult,
    pub burst: LoadResult,
    /// Peak RSS of uvicorn and its workers (summed) after the steady runs, and after the burst.
    pub memory_steady: Option<Memory>,
    pub memory_after_burst: Option<Memory>,
}

/// The layouts to search: the bare search's thread × session splits as threads × workers,
/// narrowed to `--fastapi-workers` / `--fastapi-threads` when given (both given: only that).
pub fn layouts(cpus: usize, workers: Option<usize>, threads: Option<usize>) -> Vec<ServerLayout> {
    let all: Vec<ServerLayout> = thread_layouts(cpus)
        .into_iter()
        .map(|(intra_op_threads, workers)| ServerLayout {
            workers,
            intra_op_threads,
        })
        .filter(|l| workers.is_none_or(|w| l.workers == w))
        .filter(|l| threads.is_none_or(|t| l.intra_op_threads == t))
        .collect();
    match (all.is_empty(), workers, threads) {
        (true, w, t) => vec![ServerLayout {
            workers: w.unwrap_or(1).max(1),
            intra_op_threads: t.unwrap_or(1).max(1),
        }],
        _ => all,
    }
}

/// Median latencies of the first and the last quarter of the answered requests, by send time.
pub fn latency_trend(outcomes: &[Outcome]) -> (Option<f64>, Option<f64>) {
    let mut ok: Vec<&Outcome> = outcomes.iter().filter(|o| o.ok).collect();
    ok.sort_by(|a, b| a.sent_ms.total_cmp(&b.sent_ms));
    let q = ok.len() / 4;
    let p50 = |part: &[&Outcome]| {
        let v: Vec<f64> = part
            .iter()
            .filter_map(|o| o.finished_ms.map(|f| f - o.sent_ms))
            .collect();
        Summary::of(&v).p50
    };
    if q == 0 {
        return (None, None);
    }
    (p50(&ok[..q]), p50(&ok[ok.len() - q..]))
}

/// Kept up at an open-loop rate: (almost) everything answered, nothing failed, answers kept
/// pace with sends (a growing queue stretches the time to the last answer, so completions per
/// second from the first send to the last answer fall below the rate sent), and the latency of
/// the last quarter of the run is not that of a queue building up (at most twice the first
/// quarter's, plus 50 ms).
pub fn kept_up(r: &LoadResult, trend: (Option<f64>, Option<f64>)) -> bool {
    let sent_rate = r
        .offered_per_s
        .or_else(|| (r.sending_s > 0.0).then(|| r.sent as f64 / r.sending_s));
    let steady = match trend {
        (Some(early), Some(late)) => late <= 2.0 * early + 50.0,
        _ => false,
    };
    match (r.achieved_per_s, sent_rate) {
        (Some(a), Some(s)) => r.sustained && steady && a >= 0.97 * s,
        _ => false,
    }
}

async fn start(
    args: &Args,
    corpus: &Arc<Corpus>,
    model_dir: &Path,
    l: ServerLayout,
) -> anyhow::Result<Server> {
    let app_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("python");
    std::fs::create_dir_all(&args.scratch)?;
    let server = Server::start(
        &args.python(),
        &app_dir,
        model_dir,
        l.workers,
        Some(l.intra_op_threads),
        args.scratch.join("fastapi.log"),
    )
    .await?;
    server
        .await_workers(l.workers, Duration::from_secs(120))
        .await?;
    // Warm-up: first requests pay for arena growth and lazy imports, in every worker.
    closed_loop(
        &server,
        corpus,
        2 * l.workers,
        Duration::from_secs(2),
        args.client_timeout(),
    )
    .await?;
    Ok(server)
}

async fn search(
    args: &Args,
    cpus: usize,
    corpus: &Arc<Corpus>,
    model_dir: &Path,
) -> anyhow::Result<Vec<LayoutTrial>> {
    let mut out = Vec::new();
    for l in layouts(cpus, args.fastapi_workers, args.fastapi_threads) {
        let server = start(args, corpus, model_dir, l).await?;
        let mut trials = Vec::new();
        for c in args.fastapi_concurrency(l.workers) {
            let cpu0 = tree_cpu_seconds(server.pid());
            let out = closed_loop(
                &server,
                corpus,
                c,
                args.fastapi_closed_len(),
                args.client_timeout(),
            )
            .await?;
            let phase = format!("capacity {}w×{}t c={c}", l.workers, l.intra_op_threads);
            let result = LoadResult::from_outcomes("fastapi", &phase, None, &out);
            let cpu_ms_per_request = tree_cpu_seconds(server.pid())
                .zip(cpu0)
                .filter(|_| result.completed > 0)
                .map(|(b, a)| (b - a) * 1e3 / result.completed as f64);
            eprintln!(
                "  FastAPI {} worker(s) × {} thread(s), closed loop, {c} clients: {:.2} req/s, {:.0} CPU-ms/request",
                l.workers,
                l.intra_op_threads,
                result.steady_per_s.or(result.achieved_per_s).unwrap_or(0.0),
                cpu_ms_per_request.unwrap_or(f64::NAN)
            );
            trials.push(CapacityTrial {
                concurrency: c,
                result,
                cpu_ms_per_request,
            });
        }
        let rate = |t: &CapacityTrial| t.result.steady_per_s.or(t.result.achieved_per_s);
        let best = trials
            .iter()
            .filter(|t| rate(t).is_some())
            .max_by(|a, b| rate(a).unwrap_or(0.0).total_cmp(&rate(b).unwrap_or(0.0)));
        out.push(LayoutTrial {
            layout: l,
            server: server.info.clone(),
            saturation_per_s: best.and_then(rate).unwrap_or(0.0),
            cpu_ms_per_request: best.and_then(|t| t.cpu_ms_per_request),
            capacity_trials: trials,
        });
        server.stop().await;
    }
    Ok(out)
}

pub async fn run(
    args: &Args,
    cpus: usize,
    corpus: &Arc<Corpus>,
    model_dir: &Path,
) -> anyhow::Result<BaselineReport> {
    let deadline = args.client_timeout();
    let layouts = search(args, cpus, corpus, model_dir).await?;
    let best = layouts
        .iter()
        .max_by(|a, b| a.saturation_per_s.total_cmp(&b.saturation_per_s))
        .ok_or_else(|| anyhow::anyhow!("no FastAPI layout tried"))?;
    let (best_layout, saturation_per_s) = (best.layout, best.saturation_per_s);
    anyhow::ensure!(saturation_per_s > 0.0, "FastAPI baseline answered nothing");
    eprintln!(
        "  best FastAPI layout: {} worker(s) × {} thread(s), {saturation_per_s:.2} req/s closed loop",
        best_layout.workers, best_layout.intra_op_threads
    );

    let server = start(args, corpus, model_dir, best_layout).await?;
    eprintln!("FastAPI baseline up: {} ({})", server.url, server.info);
    let mut sustain_probes = Vec::new();
    for share in args.fastapi_sustain_shares() {
        let rate = saturation_per_s * share;
        // Evenly spaced: at a rate this close to saturation a Poisson run's own burstiness
        // (and a realization that happens to send less) would decide the outcome.
        let o = offsets(Arrivals::Constant, rate, args.fastapi_probe_len(), 17);
        let out = open_loop(&server, corpus, &o, deadline).await?;
        let result = LoadResult::from_outcomes(
            "fastapi",
            &format!("sustain {:.0}%", share * 100.0),
            Some(rate),
            &out,
        );
        let trend = latency_trend(&out);
        let ok = kept_up(&result, trend);
        eprintln!(
            "  FastAPI open loop at {rate:.2}/s ({:.0}% of saturation): {} (achieved {:.2}/s, p50 {:?} ms (first quarter {:?}, last {:?}), p99 {:?} ms, drain {:?} s)",
            share * 100.0,
            if ok { "kept up" } else { "fell behind" },
            result.achieved_per_s.unwrap_or(0.0),
            result.latency_ms.p50,
            trend.0,
            trend.1,
            result.latency_ms.p99,
            result.drain_s
        );
        sustain_probes.push(SustainProbe {
            kept_up: ok,
            early_p50_ms: trend.0,
            late_p50_ms: trend.1,
            result,
        });
        if ok {
            break;
        }
    }
    let sustained = sustain_probes
        .iter()
        .find(|p| p.kept_up)
        .and_then(|p| p.result.offered_per_s);
    let capacity_per_s = sustained.unwrap_or(saturation_per_s);

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
    let memory_steady = tree_memory(server.pid());

    let rate = capacity_per_s * 2.0;
    let o = offsets(args.arrivals, rate, args.burst_len(), 13);
    eprintln!("  FastAPI burst: {} requests at {rate:.2}/s", o.len());
    let out = open_loop(&server, corpus, &o, deadline).await?;
    let burst = LoadResult::from_outcomes("fastapi", "burst 2x", Some(rate), &out);
    eprintln!(
        "  burst: {} ok, {} errors, {} timeouts, drain {:?} s",
        burst.completed, burst.errors, burst.timeouts, burst.drain_s
    );
    let memory_after_burst = tree_memory(server.pid());
    let report = BaselineReport {
        layouts,
        best_layout,
        server: server.info.clone(),
        command: server.command.clone(),
        client_timeout_s: args.client_timeout_s,
        saturation_per_s,
        sustain_probes,
        capacity_per_s,
        open_loop_confirmed: sustained.is_some(),
        at_90: steady.pop().expect("two steady runs"),
        at_50: steady.pop().expect("two steady runs"),
        burst,
        memory_steady,
        memory_after_burst,
    };
    server.stop().await;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::Outcome;

    fn l(workers: usize, intra_op_threads: usize) -> ServerLayout {
        ServerLayout {
            workers,
            intra_op_threads,
        }
    }

    #[test]
    fn layouts_are_the_bare_search_split_narrowed_by_the_flags() {
        assert_eq!(layouts(2, None, None), vec![l(1, 2), l(2, 1), l(1, 1)]);
        assert_eq!(layouts(2, Some(2), None), vec![l(2, 1)]);
        assert_eq!(layouts(2, None, Some(1)), vec![l(2, 1), l(1, 1)]);
        // A pair outside the grid is taken as asked.
        assert_eq!(layouts(2, Some(3), Some(2)), vec![l(3, 2)]);
        assert_eq!(layouts(4, Some(2), Some(2)), vec![l(2, 2)]);
    }

    fn outcomes_at(rate: f64, n: usize, latency_ms: impl Fn(usize) -> f64) -> Vec<Outcome> {
        (0..n)
            .map(|i| {
                let sent = i as f64 * 1e3 / rate;
                Outcome {
                    sent_ms: sent,
                    finished_ms: Some(sent + latency_ms(i)),
                    ok: true,
                    timed_out: false,
                    critical: false,
                }
            })
            .collect()
    }

    fn judge(rate: f64, o: &[Outcome]) -> bool {
        kept_up(
            &LoadResult::from_outcomes("fastapi", "t", Some(rate), o),
            latency_trend(o),
        )
    }

    #[test]
    fn a_queue_that_grows_is_not_kept_up() {
        // 20/s for 20 s, 60 ms each: kept up.
        assert!(judge(20.0, &outcomes_at(20.0, 400, |_| 60.0)));
        // Served at 18/s while 20/s arrive: the queue grows 2/s, 40 waiting at the end (2.2 s).
        let slow = |i: usize| 60.0 + i as f64 * (1e3 / 18.0 - 1e3 / 20.0);
        assert!(!judge(20.0, &outcomes_at(20.0, 400, slow)));
        // Served at 19.6/s: the end comes nearly in time, but the latency climbs (60 → 400 ms).
        let slower = |i: usize| 60.0 + i as f64 * (1e3 / 19.6 - 1e3 / 20.0);
        let o = outcomes_at(20.0, 400, slower);
        assert!(!judge(20.0, &o));
        let (early, late) = latency_trend(&o);
        assert!(
            early.unwrap() < 120.0 && late.unwrap() > 300.0,
            "{early:?} {late:?}"
        );
        // A failed request is not kept up either.
        let mut o = outcomes_at(20.0, 400, |_| 60.0);
        o[7].ok = false;
        assert!(!judge(20.0, &o));
    }
}
