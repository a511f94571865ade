//! Throughput bench (not a timed test): bare ONNX Runtime session throughput on the
//! DenseNet-121 model at batch 1/8/32 (best of a few intra-op thread settings), then the
//! inference service's throughput through a real broker at the same max batch, and the ratio.
//! Writes JSON to `$CXRFLOW_BENCH_OUT` (default `target/bench/inference-throughput.json`), with
//! the provider the service's predictions name and where the session's nodes ran.
//!
//! `$CXRFLOW_BENCH_DEVICE` (`cpu`, `cuda`, `cuda:N`; default cpu) and `$CXRFLOW_BENCH_BATCHES`
//! (e.g. `32`; default 1,8,32) pick the device and batches: scripts/gpu-check.sh runs the
//! service here at the bare runtime's best batch.
//!
//! `cargo bench -p cxrflow-inference --bench throughput`; the model comes from
//! `$CXRFLOW_BENCH_MODEL` (a version directory) or
//! `~/.cache/cxrflow/data/models/densenet121-synthetic/0.0.1` (scripts/make-models.sh).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cxrflow_common::kafka::Producer;
use cxrflow_common::ServiceArgs;
use cxrflow_contracts::{Codec, Prediction, PreprocessedImage};
use cxrflow_inference::manifest::ModelDir;
use cxrflow_inference::session::{Device, ModelSession, SessionOptions};
use cxrflow_inference::Config;
use cxrflow_testkit::{read_records, Broker};
use tokio_util::sync::CancellationToken;

#[path = "../tests/common/mod.rs"]
mod common;

const BATCHES: [usize; 3] = [1, 8, 32];

fn batches() -> Vec<usize> {
    std::env::var("CXRFLOW_BENCH_BATCHES")
        .ok()
        .map(|s| {
            s.split(',')
                .filter_map(|b| b.trim().parse().ok())
                .collect::<Vec<usize>>()
        })
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| BATCHES.to_vec())
}

fn device() -> Device {
    std::env::var("CXRFLOW_BENCH_DEVICE")
        .ok()
        .map(|d| {
            d.parse()
                .unwrap_or_else(|e| panic!("CXRFLOW_BENCH_DEVICE: {e}"))
        })
        .unwrap_or(Device::Cpu)
}

fn model_dir() -> PathBuf {
    std::env::var("CXRFLOW_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default())
                .join(".cache/cxrflow/data/models/densenet121-synthetic/0.0.1")
        })
}

fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Images per second of bare session calls at `batch`, over at least `min_images` images.
fn bare(session: &ModelSession, batch: usize, min_images: usize) -> f64 {
    let len = session.model.manifest.input_len();
    let images: Vec<Vec<u8>> = (0..batch).map(|i| vec![(i * 7 % 256) as u8; len]).collect();
    let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
    session.run(&refs).expect("warm-up run");
    let calls = min_images.div_ceil(batch).max(2);
    let t = Instant::now();
    for _ in 0..calls {
        session.run(&refs).expect("run");
    }
    (calls * batch) as f64 / t.elapsed().as_secs_f64()
}

async fn service(
    broker: &Broker,
    models_root: &std::path::Path,
    model: &str,
    threads: usize,
    batch: usize,
    n: usize,
    device: Device,
) -> serde_json::Value {
    let kafka = broker.stack().await;
    let codec = Arc::new(Codec::with_static_registry().unwrap());
    let mut cfg = Config::defaults(kafka.clone(), ServiceArgs::local());
    cfg.models_dir = models_root.to_path_buf();
    cfg.model = model.to_string();
    cfg.max_batch = batch;
    cfg.max_wait_ms = 20;
    cfg.intra_op_threads = threads;
    cfg.device = device;
    cfg.reload_interval_ms = 0;
    cfg.service.drain_timeout_ms = 5_000;
    cfg.service.max_in_flight = (batch * 2).max(8);
    let images: Vec<PreprocessedImage> = (0..n)
        .map(|i| common::image(&format!("1.2.840.99.{batch}.{i}"), (i % 256) as u8))
        .collect();
    let p = Producer::new(&kafka).unwrap();
    let headers = std::collections::BTreeMap::new();
    let sends = images.iter().map(|i| p.send(&codec, i, &headers));
    for r in futures::future::join_all(sends).await {
        r.unwrap();
    }
    let shutdown = CancellationToken::new();
    let svc = tokio::spawn(cxrflow_inference::run(cfg, shutdown.clone()));
    let preds: Vec<Prediction> = read_records(&kafka, &codec, n, Duration::from_secs(600)).await;
    shutdown.cancel();
    svc.await.unwrap().unwrap();
    assert_eq!(preds.len(), n, "every record predicted");
    // Steady state: from the first prediction's publication to the last one's, the first
    // batch excluded (it includes the consumer's start).
    let mut at: Vec<i64> = preds.iter().map(|p| p.predicted_at).collect();
    at.sort();
    let first_batch = preds
        .iter()
        .map(|p| p.batch_size as usize)
        .max()
        .unwrap_or(1);
    let span = (at[n - 1] - at[0]) as f64 / 1e3;
    let rate = if span > 0.0 {
        (n - first_batch.min(n - 1)) as f64 / span
    } else {
        f64::NAN
    };
    let mut lat: Vec<f64> = preds.iter().map(|p| p.inference_ms).collect();
    let mut sizes: Vec<f64> = preds.iter().map(|p| p.batch_size as f64).collect();
    // The label the service's own verdict gave (the same one its execution_provider_info
    // metric carries): a provider only when every compute node ran there, else "mixed".
    let providers: std::collections::BTreeSet<&str> = preds
        .iter()
        .map(|p| p.execution_provider.as_str())
        .collect();
    serde_json::json!({
        "images": n,
        "execution_provider": providers.into_iter().collect::<Vec<_>>(),
        "images_per_s": rate,
        "batch_size_p50": percentile(&mut sizes, 0.5),
        "inference_ms_p50": percentile(&mut lat, 0.5),
        "inference_ms_p99": percentile(&mut lat, 0.99),
    })
}

fn main() {
    let dir = model_dir();
    let model = ModelDir::load(&dir)
        .unwrap_or_else(|e| panic!("bench model: {e} (run scripts/make-models.sh)"));
    let cpus = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let mut thread_settings = vec![0, cpus];
    thread_settings.dedup();
    let min_images: usize = std::env::var("CXRFLOW_BENCH_IMAGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);

    let device = device();
    let batch_list = batches();
    let mut bare_results = Vec::new();
    let mut best_threads = 0;
    let mut placement = serde_json::Value::Null;
    for &batch in &batch_list {
        let mut best = (0.0f64, 0usize);
        let mut tried = Vec::new();
        for &threads in &thread_settings {
            let opts = SessionOptions {
                intra_op_threads: threads,
                device,
                ..SessionOptions::default()
            };
            let s = ModelSession::load(model.clone(), &opts, None).expect("session");
            if placement.is_null() {
                let p = &s.placement;
                placement = serde_json::json!({
                    "provider": p.provider,
                    "nodes": p.nodes,
                    "off_requested": p.off_requested.iter().map(|n| serde_json::json!({
                        "node": n.node, "op_type": n.op_type, "provider": n.provider,
                    })).collect::<Vec<_>>(),
                });
            }
            let r = bare(&s, batch, min_images);
            eprintln!("bare batch={batch} intra_op_threads={threads}: {r:.2} images/s");
            tried.push(serde_json::json!({"intra_op_threads": threads, "images_per_s": r}));
            if r > best.0 {
                best = (r, threads);
            }
        }
        best_threads = best.1;
        bare_results.push(serde_json::json!({"batch": batch, "images_per_s": best.0, "intra_op_threads": best.1, "tried": tried}));
    }

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let root = dir
        .parent()
        .and_then(|p| p.parent())
        .expect("models root")
        .to_path_buf();
    let spec = format!("{}/{}", model.manifest.name, model.manifest.version);
    let service_results: Vec<serde_json::Value> = rt.block_on(async {
        let broker = Broker::start();
        let mut out = Vec::new();
        for (i, &batch) in batch_list.iter().enumerate() {
            let threads = bare_results[i]["intra_op_threads"]
                .as_u64()
                .unwrap_or(best_threads as u64) as usize;
            let n = (batch * 4).max(min_images);
            let mut r = service(&broker, &root, &spec, threads, batch, n, device).await;
            let bare_rate = bare_results[i]["images_per_s"].as_f64().unwrap_or(f64::NAN);
            let ratio = r["images_per_s"].as_f64().unwrap_or(f64::NAN) / bare_rate;
            r["batch"] = batch.into();
            r["ratio_service_over_bare"] = ratio.into();
            eprintln!("service batch={batch}: {r}");
            out.push(r);
        }
        out
    });

    let report = serde_json::json!({
        "model": spec,
        "device": device.to_string(),
        "placement": placement,
        "cpus": cpus,
        "ort": cxrflow_inference::session::locate_runtime(None).map(|p| p.display().to_string()).unwrap_or_default(),
        "bare": bare_results,
        "service": service_results,
    });
    let out = std::env::var("CXRFLOW_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../target/bench/inference-throughput.json")
        });
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    eprintln!("written to {}", out.display());
}
