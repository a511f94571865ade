//! `cxrflow-bench`: the performance half of the reliability and performance suites. Measures,
//! in one run on one machine: the best bare ONNX Runtime throughput of the serving model (a
//! small layout search), the whole pipeline's throughput against it (every service its own
//! process, the embedded broker), a Python FastAPI + onnxruntime baseline at equal load and in
//! an overload burst, latency at 50% and 90% of capacity, and peak RSS per service. Writes one
//! JSON file and prints a markdown table. `scripts/bench.sh` builds and runs it.
//! `cxrflow-bench drift` runs the drift benchmark instead ([`drift`]); `cxrflow-bench
//! reduced-decode` compares reduced- and full-resolution decoding through the model
//! ([`reduced_decode`]); `cxrflow-bench pydicom-compare` times cxrflow's preprocess against
//! pydicom + OpenCV on the same full-size DICOM files ([`pydicom_compare`]).

mod bare;
mod baseline;
mod cli;
mod corpus;
mod drift;
mod drift_report;
mod fastapi;
mod full_size;
mod load;
mod pipeline;
mod pipeline_suite;
mod procfs;
mod pydicom_compare;
mod reduced_decode;
mod report;
mod schedule;
mod stack;
mod stats;

use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use cxrflow_common::time::now_millis;
use cxrflow_inference::manifest::resolve;

use crate::cli::Args;
use crate::corpus::Corpus;
use crate::report::{DatasetFacts, Report};
use crate::stack::{InferenceLayout, StackConfig};

/// What the figures say about where time goes, in words.
fn notes(r: &Report) -> Vec<String> {
    let mut out = vec![
        "Services run as separate processes (`cxrflow <service>`, as deployed), not as tasks of \
         `cxrflow up`; peak RSS is each process's VmHWM."
            .to_string(),
    ];
    let best_trial = &r.bare_onnxruntime.best;
    let best = &best_trial.layout;
    if let (Some(busy), Some(own)) = (best_trial.machine_busy, best_trial.own_cpu_share) {
        if busy - own > 0.15 {
            out.push(format!(
                "Other processes used about {:.0}% of the machine during the best bare run \
                 (busy {:.0}%, bare ORT {:.0}%): wall-clock throughputs are noisy on a shared \
                 machine; the CPU-time figures are not.",
                (busy - own) * 100.0,
                busy * 100.0,
                own * 100.0
            ));
        }
    }
    if let Some(f) = &r.fastapi {
        let tried: Vec<String> = f
            .layouts
            .iter()
            .map(|l| {
                format!(
                    "{}w×{}t {:.1} ({} CPU-ms/request)",
                    l.layout.workers,
                    l.layout.intra_op_threads,
                    l.saturation_per_s,
                    l.cpu_ms_per_request
                        .map_or("unknown".into(), |c| format!("{c:.0}"))
                )
            })
            .collect();
        out.push(format!(
            "FastAPI layout search (uvicorn workers × intra-op threads, closed-loop req/s at the \
             best client count): {}. Best: {} worker(s) × {} thread(s), {:.2} req/s closed loop; \
             open loop it {} {:.2} req/s (latency from each request's scheduled send time).",
            tried.join(", "),
            f.best_layout.workers,
            f.best_layout.intra_op_threads,
            f.saturation_per_s,
            if f.open_loop_confirmed {
                "kept up with"
            } else {
                "kept up with none of the rates tried; taken at its saturation,"
            },
            f.capacity_per_s
        ));
    }
    if let Some(p) = &r.pipeline {
        let i = &p.stack.inference;
        out.push(format!(
            "Inference layout in the pipeline: {} process(es) × {} session(s) × {} intra-op \
             thread(s), max batch {} (best bare: {} session(s) × {} thread(s), batch {}); mean \
             micro-batch during the flood {}.",
            i.replicas,
            i.sessions,
            i.intra_op_threads,
            i.max_batch,
            best.sessions,
            best.intra_op_threads,
            best.batch,
            p.capacity_batches
                .mean_batch
                .map_or("unknown".into(), |b| format!("{b:.1}"))
        ));
        let st = &p.at_50_stages;
        let ms = |v: Option<f64>| v.map_or("unknown".into(), |x| format!("{x:.0} ms"));
        out.push(format!(
            "Latency at 50% load, p50: scan published → prediction {} (mean {} of it in the inference batcher), \
             prediction → triage decision {}.",
            ms(st.publish_to_prediction_ms.p50),
            ms(st.mean_inference_ms),
            ms(st.prediction_to_decision_ms.p50)
        ));
        let total: f64 = p.cpu.iter().map(|c| c.cpu_ms_per_study).sum();
        if total > 0.0 {
            let mut parts: Vec<_> = p.cpu.iter().collect();
            parts.sort_by(|a, b| b.cpu_ms_per_study.total_cmp(&a.cpu_ms_per_study));
            let split: Vec<String> = parts
                .iter()
                .map(|c| {
                    format!(
                        "{} {:.0} ms ({:.0}%)",
                        c.process,
                        c.cpu_ms_per_study,
                        100.0 * c.cpu_ms_per_study / total
                    )
                })
                .collect();
            let pct = |v: Option<f64>| v.map_or("unknown".into(), |b| format!("{:.0}%", b * 100.0));
            out.push(format!(
                "CPU per study during the flood: {total:.0} ms in all: {}. Machine busy {}, of \
                 which the pipeline and this bench {}.",
                split.join(", "),
                pct(p.machine_busy),
                pct(p.own_cpu_share)
            ));
        }
        if p.burst_worklist.is_some() {
            out.push(
                "Critical = a positive ground-truth label among the manifest's critical findings. \
                 Studies move through the pipeline in arrival order, so their time to a triage \
                 decision does not depend on it; the worklist then orders by the model's \
                 predictions, so the critical studies' worklist position measures the model \
                 (a model with synthetic weights puts them at about 50%)."
                    .to_string(),
            );
        }
        if r.pipeline_efficiency.is_some_and(|e| e < 0.9) {
            out.push(format!(
                "Efficiency is below 0.90. On a CPU-bound machine the ceiling is the CPU-time \
                 ratio ({}): bare ORT spends {} CPU-ms per image, and every CPU-ms the other \
                 processes spend per study (above: broker, preprocess, …) comes out of the same \
                 {} CPUs.",
                r.pipeline_cpu_efficiency
                    .map_or("unknown".into(), |e| format!("{e:.2}")),
                best_trial
                    .cpu_ms_per_image
                    .map_or("unknown".into(), |c| format!("{c:.0}")),
                r.machine.cpus
            ));
        }
    }
    out
}

/// The inference layout: the best bare layout, unless overridden.
fn layout(args: &Args, best: &bare::Layout) -> InferenceLayout {
    let replicas = args.inference_replicas.unwrap_or(1).max(1);
    InferenceLayout {
        replicas,
        // The bare search's sessions, spread over the processes (one process by default: the
        // same layout as the bare measurement, and one partition per topic suffices).
        sessions: args
            .inference_sessions
            .unwrap_or_else(|| best.sessions.div_ceil(replicas))
            .max(1),
        intra_op_threads: args.inference_threads.unwrap_or(best.intra_op_threads),
        max_batch: args.inference_batch.unwrap_or(best.batch),
        max_wait_ms: args.max_wait_ms,
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cxrflow-bench drift …`: the drift benchmark, its own flags.
    if std::env::args().nth(1).as_deref() == Some("drift") {
        return drift::run(drift::DriftArgs::parse_from(std::env::args().skip(1))).await;
    }
    // `cxrflow-bench reduced-decode …`: reduced-resolution decoding through the model.
    if std::env::args().nth(1).as_deref() == Some("reduced-decode") {
        let args = reduced_decode::ReducedArgs::parse_from(std::env::args().skip(1));
        return tokio::task::spawn_blocking(move || reduced_decode::run(args)).await?;
    }
    // `cxrflow-bench pydicom-compare …`: preprocess against pydicom + OpenCV.
    if std::env::args().nth(1).as_deref() == Some("pydicom-compare") {
        let args = pydicom_compare::CompareArgs::parse_from(std::env::args().skip(1));
        return tokio::task::spawn_blocking(move || pydicom_compare::run(args)).await?;
    }
    let args = Args::parse();
    let machine = procfs::machine();
    eprintln!(
        "machine: {} × {} CPUs, {:.1} GiB, ONNX Runtime {}",
        machine.cpu_model, machine.cpus, machine.memory_gib, machine.onnxruntime_version
    );
    let model = resolve(&args.models_dir(), &args.model)
        .with_context(|| format!("model {} (scripts/make-models.sh makes it)", args.model))?;
    let spec = format!("{}/{}", model.manifest.name, model.manifest.version);
    let corpus = Arc::new(Corpus::load(
        &args.dataset,
        &model.manifest,
        if args.quick { 200 } else { 400 },
    )?);
    eprintln!(
        "dataset: {} frontal held-out studies, {:.0}% critical ({})",
        corpus.images.len(),
        corpus.critical_share() * 100.0,
        corpus.critical_findings.join(", ")
    );

    eprintln!("bare ONNX Runtime layout search ({spec})");
    let cpus = machine.cpus;
    let (m, batches, len) = (model.clone(), args.bare_batches(), args.bare_len());
    let search =
        tokio::task::spawn_blocking(move || bare::search(&m, cpus, &batches, len)).await??;
    let best = search.best.clone();
    eprintln!(
        "best bare: {:?}: {:.2} images/s",
        best.layout, best.images_per_s
    );

    let full = if args.full_size_dicom.is_empty() || args.skip_pipeline {
        None
    } else {
        let dir = args.scratch.with_file_name("full-size-dicom");
        eprintln!(
            "full-size DICOM corpus: {} studies in {} ({})",
            args.full_size_images,
            dir.display(),
            args.full_size_dicom.join(", ")
        );
        let (corpus, dataset, seed, n, syntaxes) = (
            corpus.clone(),
            args.dataset.clone(),
            args.dataset_seed,
            args.full_size_images,
            args.full_size_dicom.clone(),
        );
        let python = crate::full_size::tools_python("venv");
        Some(Arc::new(
            tokio::task::spawn_blocking(move || {
                Corpus::full_size(&corpus, &dataset, seed, n, &syntaxes, &python, &dir)
            })
            .await??,
        ))
    };

    let fastapi = if args.skip_fastapi {
        None
    } else {
        eprintln!("FastAPI baseline");
        Some(baseline::run(&args, cpus, &corpus, &model.dir).await?)
    };
    let pipeline = if args.skip_pipeline {
        None
    } else {
        eprintln!("cxrflow pipeline");
        let inference = layout(&args, &best.layout);
        let cfg = StackConfig {
            bin: args.cxrflow_bin(),
            models_dir: args.models_dir(),
            model: spec.clone(),
            inference,
            // Every replica needs a partition of its own or it idles.
            partitions: args.partitions.max(inference.replicas as i32),
            ingest_file_roots: std::iter::once(corpus.image_root())
                .chain(full.as_ref().map(|f| f.image_root()))
                .collect(),
            log_filter: args.service_log.clone(),
        };
        let equal = fastapi
            .as_ref()
            .map(|f| f.at_90.offered_per_s.unwrap_or(0.0));
        Some(
            pipeline_suite::run(
                &args,
                cpus,
                &corpus,
                cfg,
                best.images_per_s,
                equal,
                full.as_ref(),
            )
            .await?,
        )
    };

    let mut report = Report {
        generated_at_ms: now_millis(),
        mode: if args.quick { "quick" } else { "full" },
        machine,
        model: spec,
        dataset: DatasetFacts {
            root: args.dataset.display().to_string(),
            images: corpus.images.len(),
            critical_share: corpus.critical_share(),
            critical_findings: corpus.critical_findings.clone(),
        },
        config: args.clone(),
        pipeline_efficiency: pipeline
            .as_ref()
            .map(|p| p.capacity_per_s / best.images_per_s),
        pipeline_cpu_efficiency: pipeline.as_ref().and_then(|p| {
            let total: f64 = p.cpu.iter().map(|c| c.cpu_ms_per_study).sum();
            best.cpu_ms_per_image
                .filter(|_| total > 0.0)
                .map(|b| b / total)
        }),
        inference_cpu_efficiency: pipeline.as_ref().and_then(|p| {
            let inference: f64 = p
                .cpu
                .iter()
                .filter(|c| c.process.starts_with("inference"))
                .map(|c| c.cpu_ms_per_study)
                .sum();
            best.cpu_ms_per_image
                .filter(|_| inference > 0.0)
                .map(|b| b / inference)
        }),
        fastapi_efficiency: fastapi
            .as_ref()
            .map(|f| f.capacity_per_s / best.images_per_s),
        cxrflow_over_fastapi: pipeline
            .as_ref()
            .zip(fastapi.as_ref())
            .map(|(p, f)| p.capacity_per_s / f.capacity_per_s),
        cxrflow_over_fastapi_saturation: pipeline
            .as_ref()
            .zip(fastapi.as_ref())
            .map(|(p, f)| p.capacity_per_s / f.saturation_per_s),
        cxrflow_over_fastapi_cpu: pipeline.as_ref().zip(fastapi.as_ref()).and_then(|(p, f)| {
            let total: f64 = p.cpu.iter().map(|c| c.cpu_ms_per_study).sum();
            let best = f.layouts.iter().find(|l| l.layout == f.best_layout)?;
            best.cpu_ms_per_request
                .filter(|_| total > 0.0)
                .map(|c| c / total)
        }),
        bare_onnxruntime: search,
        pipeline,
        fastapi,
        notes: vec![],
    };
    report.notes = notes(&report);
    if let Some(d) = args.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", report::markdown(&report));
    eprintln!("written to {}", args.out.display());
    Ok(())
}
