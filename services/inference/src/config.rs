//! The inference service's configuration: flags with `CXRFLOW_INFERENCE_…` environment
//! variables and the embedded stack's defaults.

use std::path::PathBuf;
use std::time::Duration;

use cxrflow_common::{KafkaArgs, ServiceArgs};

use crate::auto_rollback::RuleSettings;
use crate::rules::{DriftRule, DriftSeverityLevel};
use crate::{batcher, session, Device};

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

    /// Sessions per loaded model version: up to this many batches run at once, each on its
    /// own session with `--intra-op-threads` threads. On a CPU machine shared with the broker
    /// and the other services, N sessions × 1 thread usually beats 1 session × N threads (the
    /// bench's layout search measures both); one process with N sessions needs one partition,
    /// N processes need N.
    #[arg(
        long = "sessions",
        env = "CXRFLOW_INFERENCE_SESSIONS",
        default_value_t = 1,
        value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=64)
    )]
    pub sessions: usize,

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

    /// Automatic rollback of a canary or shadow: p99 latency bound in milliseconds (0: off).
    /// The latency is from the record reaching the version's batcher to its output.
    #[arg(
        long = "candidate-max-p99-ms",
        env = "CXRFLOW_INFERENCE_CANDIDATE_MAX_P99_MS",
        default_value_t = 0.0
    )]
    pub candidate_max_p99_ms: f64,

    /// Automatic rollback: the sliding window over which a candidate's p99 is taken, seconds.
    #[arg(
        long = "candidate-p99-window-s",
        env = "CXRFLOW_INFERENCE_CANDIDATE_P99_WINDOW_S",
        default_value_t = 60
    )]
    pub candidate_p99_window_s: u64,

    /// Automatic rollback: how long the p99 must stay above the bound, seconds.
    #[arg(
        long = "candidate-p99-sustain-s",
        env = "CXRFLOW_INFERENCE_CANDIDATE_P99_SUSTAIN_S",
        default_value_t = 60
    )]
    pub candidate_p99_sustain_s: u64,

    /// Automatic rollback on `cxr.drift.v1`: the lowest alert severity naming a canary or
    /// shadow version that withdraws it (`off`: severity alone never does).
    #[arg(
        long = "drift-rollback-severity",
        env = "CXRFLOW_INFERENCE_DRIFT_ROLLBACK_SEVERITY",
        value_enum,
        default_value = "critical"
    )]
    pub drift_rollback_severity: DriftSeverityLevel,

    /// Automatic rollback on `cxr.drift.v1`: an alert recommending RETRAIN for a candidate
    /// version withdraws it whatever its severity.
    #[arg(
        long = "drift-rollback-on-retrain",
        env = "CXRFLOW_INFERENCE_DRIFT_ROLLBACK_ON_RETRAIN",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub drift_rollback_on_retrain: bool,
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
            sessions: 1,
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
            candidate_max_p99_ms: 0.0,
            candidate_p99_window_s: 60,
            candidate_p99_sustain_s: 60,
            drift_rollback_severity: DriftSeverityLevel::Critical,
            drift_rollback_on_retrain: true,
        }
    }

    pub fn session_options(&self) -> session::SessionOptions {
        session::SessionOptions {
            device: self.device,
            intra_op_threads: self.intra_op_threads,
            sessions: self.sessions,
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

    pub fn rule_settings(&self) -> RuleSettings {
        RuleSettings {
            bad_rate_window: Duration::from_secs(self.canary_window_s),
            max_bad_rate: self.canary_max_bad_rate,
            min_samples: self.canary_min_samples,
            p99_bound: Duration::from_secs_f64(self.candidate_max_p99_ms.max(0.0) / 1e3),
            p99_window: Duration::from_secs(self.candidate_p99_window_s),
            p99_sustain: Duration::from_secs(self.candidate_p99_sustain_s),
            drift: DriftRule {
                min_severity: self.drift_rollback_severity,
                on_retrain: self.drift_rollback_on_retrain,
            },
        }
    }
}
