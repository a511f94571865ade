//! The bench's output: the whole JSON document, and the short markdown table for the README.

use serde::Serialize;

use crate::bare::Search;
use crate::baseline::BaselineReport;
use crate::cli::Args;
use crate::load::LoadResult;
use crate::pipeline_suite::PipelineReport;
use crate::procfs::Machine;

#[derive(Debug, Serialize)]
pub struct Report {
    pub generated_at_ms: i64,
    pub mode: &'static str,
    pub machine: Machine,
    pub model: String,
    pub dataset: DatasetFacts,
    pub config: Args,
    pub bare_onnxruntime: Search,
    /// Pipeline capacity ÷ best bare ORT throughput (goal ≥ 0.90 on CPU).
    pub pipeline_efficiency: Option<f64>,
    /// The same in CPU time, robust to other load on the machine: bare ORT CPU-ms per image
    /// (best layout) ÷ CPU-ms per study of every pipeline process (broker and load generator
    /// included) during the flood.
    pub pipeline_cpu_efficiency: Option<f64>,
    /// Bare ORT CPU-ms per image ÷ the inference processes' CPU-ms per study alone: the
    /// service's own overhead, what a deployment with the broker and the other services on
    /// nodes of their own sees.
    pub inference_cpu_efficiency: Option<f64>,
    /// The FastAPI baseline's max sustained throughput (best layout, open loop) ÷ best bare ORT.
    pub fastapi_efficiency: Option<f64>,
    /// Pipeline capacity ÷ the FastAPI baseline's max sustained throughput (best layout,
    /// open loop).
    pub cxrflow_over_fastapi: Option<f64>,
    /// Pipeline capacity ÷ the best FastAPI layout's closed-loop saturation throughput (its
    /// service rate, as the pipeline's flood drain rate is; the stricter comparison).
    pub cxrflow_over_fastapi_saturation: Option<f64>,
    /// The same in CPU time: the best FastAPI layout's CPU-ms per request (uvicorn and its
    /// workers, at saturation) ÷ the pipeline's CPU-ms per study (every process, during the
    /// flood). Robust to other load on the machine, as the wall-clock ratios are not.
    pub cxrflow_over_fastapi_cpu: Option<f64>,
    pub pipeline: Option<PipelineReport>,
    pub fastapi: Option<BaselineReport>,
    pub notes: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DatasetFacts {
    pub root: String,
    pub images: usize,
    pub critical_share: f64,
    pub critical_findings: Vec<String>,
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or("–".into(), |x| format!("{x:.digits$}"))
}

fn p50_p99(r: &LoadResult) -> String {
    format!("{} / {}", f(r.latency_ms.p50, 0), f(r.latency_ms.p99, 0))
}

fn failed(r: &LoadResult) -> String {
    format!(
        "{} of {} ({} timeouts, {} errors, {} never answered)",
        r.errors + r.timeouts + r.lost,
        r.sent,
        r.timeouts,
        r.errors,
        r.lost
    )
}

fn crit(r: &LoadResult) -> String {
    let s = |v: Option<f64>| f(v.map(|ms| ms / 1e3), 1);
    format!(
        "{} / {} (routine {} / {})",
        s(r.critical_latency_ms.p50),
        s(r.critical_latency_ms.p99),
        s(r.routine_latency_ms.p50),
        s(r.routine_latency_ms.p99)
    )
}

fn row(out: &mut String, what: &str, cx: String, fa: String) {
    out.push_str(&format!("| {what} | {cx} | {fa} |\n"));
}

/// The README table.
pub fn markdown(r: &Report) -> String {
    let m = &r.machine;
    let b = &r.bare_onnxruntime.best;
    let mut out = format!(
        "Machine: {} ({} CPUs, {:.0} GiB), ONNX Runtime {}, model {}; `{}` mode.\n\n",
        m.cpu_model, m.cpus, m.memory_gib, m.onnxruntime_version, r.model, r.mode
    );
    out.push_str(&format!(
        "Best bare ONNX Runtime layout: {} intra-op thread(s) × {} session(s), batch {}: {:.2} images/s.\n",
        b.layout.intra_op_threads, b.layout.sessions, b.layout.batch, b.images_per_s
    ));
    if let (Some(e), Some(p)) = (r.pipeline_efficiency, &r.pipeline) {
        out.push_str(&format!(
            "Pipeline efficiency: {:.2} studies/s end to end ÷ {:.2} = **{:.2}** (goal ≥ 0.90).\n",
            p.capacity_per_s, b.images_per_s, e
        ));
    }
    if let Some(fs) = r.pipeline.as_ref().and_then(|p| p.full_size.as_ref()) {
        out.push_str(&format!(
            "On full-size DICOM ({} studies of {:.1} MiB on average; {}): {:.2} studies/s over the whole flood, efficiency {:.2}, **{:.2}** of the small corpus's (goal ≥ 0.90); {:.0} CPU-ms per study, {:.2} of the small corpus's by CPU; {} dead letter(s).\n",
            fs.images,
            fs.mean_file_mib,
            fs.syntaxes.join(", "),
            fs.capacity_per_s,
            fs.efficiency,
            fs.of_small_corpus,
            fs.cpu_ms_per_study,
            fs.of_small_corpus_cpu,
            fs.dead_letters
        ));
    }
    if let Some(fb) = &r.fastapi {
        out.push_str(&format!(
            "FastAPI baseline, best of {} layout(s): {} uvicorn worker(s) × {} intra-op thread(s), \
             {:.2} req/s closed loop, {:.2} req/s sustained open loop ({} of bare).\n",
            fb.layouts.len(),
            fb.best_layout.workers,
            fb.best_layout.intra_op_threads,
            fb.saturation_per_s,
            fb.capacity_per_s,
            f(r.fastapi_efficiency, 2)
        ));
    }
    if let (Some(o), Some(s)) = (r.cxrflow_over_fastapi, r.cxrflow_over_fastapi_saturation) {
        out.push_str(&format!(
            "cxrflow ÷ FastAPI: **{s:.2}** against its closed-loop saturation, {o:.2} against its \
             sustained open-loop rate; in CPU time (FastAPI CPU-ms per request ÷ cxrflow CPU-ms \
             per study) {}.\n",
            f(r.cxrflow_over_fastapi_cpu, 2)
        ));
    }
    if let Some(e) = r.pipeline_cpu_efficiency {
        out.push_str(&format!(
            "In CPU time: bare ORT {} CPU-ms/image ÷ whole pipeline {} CPU-ms/study = {e:.2}; \
             ÷ the inference process alone (the broker and the other services on nodes of \
             their own) {}.\n",
            f(b.cpu_ms_per_image, 0),
            f(
                r.pipeline
                    .as_ref()
                    .map(|p| p.cpu.iter().map(|c| c.cpu_ms_per_study).sum()),
                0
            ),
            f(r.inference_cpu_efficiency, 2),
        ));
    }
    out.push('\n');
    let none = || "–".to_string();
    let (p, fa) = (r.pipeline.as_ref(), r.fastapi.as_ref());
    out.push_str("| | cxrflow | FastAPI + onnxruntime |\n|---|---|---|\n");
    row(
        &mut out,
        "max sustained throughput (studies/s)",
        p.map_or_else(none, |p| format!("{:.2}", p.capacity_per_s)),
        fa.map_or_else(none, |f| {
            format!(
                "{:.2} open loop ({:.2} closed loop)",
                f.capacity_per_s, f.saturation_per_s
            )
        }),
    );
    row(
        &mut out,
        "÷ best bare ORT",
        f(r.pipeline_efficiency, 2),
        f(r.fastapi_efficiency, 2),
    );
    row(
        &mut out,
        "layout",
        p.map_or_else(none, |p| {
            let i = &p.stack.inference;
            format!(
                "{} process(es) × {} session(s) × {} thread(s), batch ≤ {}",
                i.replicas, i.sessions, i.intra_op_threads, i.max_batch
            )
        }),
        fa.map_or_else(none, |f| {
            format!(
                "{} worker(s) × {} thread(s), batch 1 (searched: {})",
                f.best_layout.workers,
                f.best_layout.intra_op_threads,
                f.layouts.len()
            )
        }),
    );
    row(
        &mut out,
        "latency p50 / p99 at 50% of own max (ms)",
        p.map_or_else(none, |p| p50_p99(&p.at_50)),
        fa.map_or_else(none, |f| p50_p99(&f.at_50)),
    );
    row(
        &mut out,
        "latency p50 / p99 at 90% of own max (ms)",
        p.map_or_else(none, |p| p50_p99(&p.at_90)),
        fa.map_or_else(none, |f| p50_p99(&f.at_90)),
    );
    if let (Some(eq), Some(f)) = (p.and_then(|p| p.equal_load.as_ref()), fa) {
        row(
            &mut out,
            &format!(
                "latency p50 / p99 at equal offered load {:.2}/s (ms)",
                eq.offered_per_s.unwrap_or(0.0)
            ),
            p50_p99(eq),
            p50_p99(&f.at_90),
        );
    }
    let burst_s = |r: &LoadResult| r.sending_s.round();
    row(
        &mut out,
        "overload (2× own max) lost or failed",
        p.map_or_else(none, |p| {
            format!("{} over {:.0} s", failed(&p.burst), burst_s(&p.burst))
        }),
        fa.map_or_else(none, |f| {
            format!(
                "{} over {:.0} s, {} s deadline",
                failed(&f.burst),
                burst_s(&f.burst),
                f.client_timeout_s
            )
        }),
    );
    row(
        &mut out,
        "overload: drain after the burst (s)",
        p.map_or_else(none, |p| f(p.burst.drain_s, 1)),
        fa.map_or_else(none, |x| f(x.burst.drain_s, 1)),
    );
    row(
        &mut out,
        "overload: critical studies' latency p50 / p99 (s)",
        p.map_or_else(none, |p| crit(&p.burst)),
        fa.map_or_else(none, |f| crit(&f.burst)),
    );
    if let Some(w) = p.and_then(|p| p.burst_worklist.as_ref()) {
        row(
            &mut out,
            "overload: mean worklist position, critical vs routine (0% = top)",
            format!(
                "{}% vs {}%",
                f(w.critical_mean_position_pct, 0),
                f(w.routine_mean_position_pct, 0)
            ),
            "n/a (no worklist: answers in arrival order)".into(),
        );
    }
    let total = |v: &[crate::pipeline_suite::ProcessMemory]| {
        v.iter().map(|m| m.memory.peak_rss_mib).sum::<f64>()
    };
    row(
        &mut out,
        "peak RSS at steady load (MiB)",
        p.map_or_else(none, |p| {
            let each: Vec<String> = p
                .memory_steady
                .iter()
                .map(|m| format!("{} {:.0}", m.process, m.memory.peak_rss_mib))
                .collect();
            format!("{:.0} in all: {}", total(&p.memory_steady), each.join(", "))
        }),
        fa.map_or_else(none, |x| f(x.memory_steady.map(|m| m.peak_rss_mib), 0)),
    );
    row(
        &mut out,
        "CPU with nothing to do (% of one core)",
        p.map_or_else(none, |p| {
            let each: Vec<String> = p
                .idle_cpu
                .iter()
                .filter(|c| !c.process.starts_with("bench"))
                .map(|c| format!("{} {:.0}", c.process, c.cores * 100.0))
                .collect();
            let all: f64 = p
                .idle_cpu
                .iter()
                .filter(|c| !c.process.starts_with("bench"))
                .map(|c| c.cores)
                .sum();
            format!("{:.0} in all: {}", all * 100.0, each.join(", "))
        }),
        "–".into(),
    );
    for n in &r.notes {
        out.push_str(&format!("\n- {n}"));
    }
    out.push('\n');
    out
}
