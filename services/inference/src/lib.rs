//! cxrflow inference: `cxr.preprocessed.v1` → `cxr.predictions.v1`.
//!
//! Owns the model directory and manifest ([`manifest`]), ONNX Runtime sessions on the CPU or
//! the CUDA execution provider with the provider proven by a profiled run ([`session`]),
//! micro-batching across records and partitions ([`batcher`]), the serving set of model
//! versions with hot reload ([`registry`]), canary/shadow rollout on `cxr.models.v1`
//! ([`rollout`]) and the per-record processor ([`processor`]). [`testmodel`] generates tiny
//! ONNX models for tests.

pub mod batcher;
pub mod embedding;
pub mod manifest;
pub mod metrics;
pub mod processor;
pub mod registry;
pub mod rollout;
pub mod session;
pub mod testmodel;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cxrflow_common::{KafkaArgs, ServiceArgs};
use cxrflow_contracts::{topics, Codec, ModelRollout};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use tokio_util::sync::CancellationToken;

pub use metrics::InferenceMetrics;
pub use processor::InferenceProcessor;
pub use registry::ModelRegistry;
pub use rollout::{promote, rollback, stage_candidate};
pub use session::Device;

pub const SERVICE: &str = "inference";

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Root of the model directories: `<models-dir>/<name>/<version>/{model.onnx,manifest.json}`.
    #[arg(
        long = "models-dir",
        env = "CXRFLOW_MODELS_DIR",
        default_value = ".cxrflow/models"
    )]
    pub models_dir: PathBuf,

    /// Model to serve: `name` (newest version present, hot-reloaded) or `name/version` (pinned).
    #[arg(
        long = "model",
        env = "CXRFLOW_INFERENCE_MODEL",
        default_value = "cxr-small"
    )]
    pub model: String,

    /// ONNX Runtime library (`libonnxruntime.so`); default `$ORT_DYLIB_PATH`, then
    /// `~/.cache/cxrflow/tools/onnxruntime/`.
    #[arg(long = "ort-dylib", env = "CXRFLOW_ORT_DYLIB")]
    pub ort_dylib: Option<PathBuf>,

    /// Where the model runs: `cpu`, `cuda` or `cuda:N`.
    #[arg(
        long = "device",
        env = "CXRFLOW_INFERENCE_DEVICE",
        default_value = "cpu"
    )]
    pub device: Device,

    /// With `--device cuda`: warn and run on the CPU instead of failing when CUDA is unusable.
    #[arg(
        long = "allow-cpu-fallback",
        env = "CXRFLOW_INFERENCE_ALLOW_CPU_FALLBACK"
    )]
    pub allow_cpu_fallback: bool,

    /// Intra-op threads per session (0: ONNX Runtime's default, one per physical core).
    #[arg(
        long = "intra-op-threads",
        env = "CXRFLOW_INFERENCE_INTRA_OP_THREADS",
        default_value_t = 0
    )]
    pub intra_op_threads: usize,

    /// CUDA EP device memory limit in MiB (0: no limit).
    #[arg(
        long = "cuda-mem-limit-mib",
        env = "CXRFLOW_INFERENCE_CUDA_MEM_LIMIT_MIB",
        default_value_t = 0
    )]
    pub cuda_mem_limit_mib: usize,

    /// CUDA EP arena growth: grow by exactly what is requested instead of powers of two.
    #[arg(
        long = "cuda-arena-same-as-requested",
        env = "CXRFLOW_INFERENCE_CUDA_ARENA_SAME_AS_REQUESTED"
    )]
    pub cuda_arena_same_as_requested: bool,

    /// cuDNN convolution algorithm search: exhaustive, heuristic or default.
    #[arg(
        long = "cudnn-conv-algo-search",
        env = "CXRFLOW_INFERENCE_CUDNN_CONV_ALGO_SEARCH",
        default_value = "heuristic"
    )]
    pub cudnn_conv_algo_search: String,

    /// Largest micro-batch.
    #[arg(
        long = "max-batch",
        env = "CXRFLOW_INFERENCE_MAX_BATCH",
        default_value_t = 16
    )]
    pub max_batch: usize,

    /// Longest a record waits for its batch to fill, in milliseconds.
    #[arg(
        long = "max-wait-ms",
        env = "CXRFLOW_INFERENCE_MAX_WAIT_MS",
        default_value_t = 5
    )]
    pub max_wait_ms: u64,

    /// Images queued per model version beyond the running batch (backpressure bound).
    #[arg(
        long = "batch-queue",
        env = "CXRFLOW_INFERENCE_BATCH_QUEUE",
        default_value_t = 64
    )]
    pub batch_queue: usize,

    /// How often the models directory is checked for a newer version (0: never).
    #[arg(
        long = "reload-interval-ms",
        env = "CXRFLOW_INFERENCE_RELOAD_INTERVAL_MS",
        default_value_t = 5_000
    )]
    pub reload_interval_ms: u64,

    /// Automatic canary rollback: bad (NaN/error) share above which the canary is withdrawn.
    #[arg(
        long = "canary-max-bad-rate",
        env = "CXRFLOW_INFERENCE_CANARY_MAX_BAD_RATE",
        default_value_t = 0.05
    )]
    pub canary_max_bad_rate: f64,

    /// Automatic canary rollback: the sliding window, in seconds.
    #[arg(
        long = "canary-window-s",
        env = "CXRFLOW_INFERENCE_CANARY_WINDOW_S",
        default_value_t = 300
    )]
    pub canary_window_s: u64,

    /// Automatic canary rollback: fewest canary records in the window before the rule may trip.
    #[arg(
        long = "canary-min-samples",
        env = "CXRFLOW_INFERENCE_CANARY_MIN_SAMPLES",
        default_value_t = 20
    )]
    pub canary_min_samples: usize,
}

impl Config {
    /// All service-specific settings at their defaults.
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            models_dir: PathBuf::from(".cxrflow/models"),
            model: "cxr-small".into(),
            ort_dylib: None,
            device: Device::Cpu,
            allow_cpu_fallback: false,
            intra_op_threads: 0,
            cuda_mem_limit_mib: 0,
            cuda_arena_same_as_requested: false,
            cudnn_conv_algo_search: "heuristic".into(),
            max_batch: 16,
            max_wait_ms: 5,
            batch_queue: 64,
            reload_interval_ms: 5_000,
            canary_max_bad_rate: 0.05,
            canary_window_s: 300,
            canary_min_samples: 20,
        }
    }

    pub fn session_options(&self) -> session::SessionOptions {
        session::SessionOptions {
            device: self.device,
            intra_op_threads: self.intra_op_threads,
            allow_cpu_fallback: self.allow_cpu_fallback,
            cuda_mem_limit_mib: self.cuda_mem_limit_mib,
            cuda_arena_same_as_requested: self.cuda_arena_same_as_requested,
            cudnn_conv_algo_search: self.cudnn_conv_algo_search.clone(),
        }
    }

    pub fn batch_policy(&self) -> batcher::BatchPolicy {
        batcher::BatchPolicy {
            max_batch: self.max_batch,
            max_wait: Duration::from_millis(self.max_wait_ms),
            queue: self.batch_queue,
        }
    }
}

/// Follows `cxr.models.v1` from the beginning (a throwaway group: every replica reads every
/// decision) and applies this model's records with a higher revision.
async fn follow_rollouts(
    kafka: KafkaArgs,
    codec: Arc<Codec>,
    registry: Arc<ModelRegistry>,
    shutdown: CancellationToken,
) {
    let mut cc = kafka.client_config();
    cc.set(
        "group.id",
        format!("cxrflow-inference-models-{:016x}", rand_id()),
    )
    .set("enable.auto.commit", "false")
    .set("auto.offset.reset", "earliest");
    let consumer: StreamConsumer = match cc.create() {
        Ok(c) => c,
        Err(e) => return tracing::error!(error = %e, "cannot follow the models topic"),
    };
    if let Err(e) = consumer.subscribe(&[&kafka.topic(topics::MODELS)]) {
        return tracing::error!(error = %e, "cannot subscribe to the models topic");
    }
    loop {
        let m = tokio::select! {
            _ = shutdown.cancelled() => return,
            m = consumer.recv() => m,
        };
        match m {
            Ok(m) => {
                let Some(p) = m.payload() else { continue };
                match codec.decode::<ModelRollout>(p) {
                    Ok(r) => {
                        registry.apply(&r).await;
                    }
                    Err(e) => tracing::warn!(error = %e, "undecodable rollout record ignored"),
                }
            }
            Err(e) => tracing::debug!(error = %e, "models topic consumer"),
        }
    }
}

fn rand_id() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    t ^ ((std::process::id() as u64) << 32)
}

/// Runs until `shutdown` is cancelled; returns after draining.
pub async fn run(cfg: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    tracing::info!(models_dir = %cfg.models_dir.display(), model = %cfg.model, device = %cfg.device,
        max_batch = cfg.max_batch, max_wait_ms = cfg.max_wait_ms, intra_op_threads = cfg.intra_op_threads, "inference configuration");
    let metrics = InferenceMetrics::default();
    let m = metrics.clone();
    let host = cxrflow_common::Host::start(
        SERVICE,
        &cfg.kafka,
        &cfg.service,
        move |reg| m.register(reg),
        axum::Router::new(),
        &shutdown,
    )
    .await?;
    let registry = ModelRegistry::open(
        &cfg.models_dir,
        &cfg.model,
        cfg.session_options(),
        cfg.ort_dylib.clone(),
        cfg.batch_policy(),
        metrics.clone(),
    )
    .await?;
    // The rollout in force before serving anything: read the compacted topic to its end.
    let (k, c) = (cfg.kafka.clone(), host.codec().clone());
    let latest = tokio::task::spawn_blocking(move || rollout::read_latest_blocking(&k, &c)).await?;
    match latest {
        Ok(all) => {
            if let Some(r) = all.get(registry.name()) {
                registry.apply(r).await;
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not read the models topic at start; following it from now")
        }
    }
    // The side tasks stop with the service, never the other way round (`up` shares `shutdown`).
    let side = shutdown.child_token();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(follow_rollouts(
        cfg.kafka.clone(),
        host.codec().clone(),
        registry.clone(),
        side.clone(),
    ));
    if cfg.reload_interval_ms > 0 {
        tasks.spawn(
            registry
                .clone()
                .watch_dir(Duration::from_millis(cfg.reload_interval_ms), side.clone()),
        );
    }
    let processor = Arc::new(InferenceProcessor {
        codec: host.codec().clone(),
        registry: registry.clone(),
        metrics,
        guard: Mutex::new(rollout::CanaryGuard::new(
            Duration::from_secs(cfg.canary_window_s),
            cfg.canary_max_bad_rate,
            cfg.canary_min_samples,
        )),
        kafka: cfg.kafka.clone(),
    });
    host.ready.set_ready(true);
    let result = cxrflow_common::run_stage(
        &cfg.kafka,
        host.stage(vec![topics::PREPROCESSED]),
        processor,
        host.deps.clone(),
        shutdown.clone(),
    )
    .await;
    side.cancel();
    while tasks.join_next().await.is_some() {}
    result?;
    Ok(())
}
