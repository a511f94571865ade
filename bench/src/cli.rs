//! The bench's command line: what to run, for how long, against which model and dataset.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde::Serialize;

use crate::corpus::ScanImages;
use crate::schedule::Arrivals;

/// The umbrella binary: `explicit`, else target/release/cxrflow when built, else
/// target/debug/cxrflow (both benches' `--cxrflow-bin` default).
pub fn cxrflow_bin_or_default(explicit: Option<&PathBuf>) -> PathBuf {
    explicit.cloned().unwrap_or_else(|| {
        let release = PathBuf::from("target/release/cxrflow");
        if release.exists() {
            release
        } else {
            PathBuf::from("target/debug/cxrflow")
        }
    })
}

fn home() -> PathBuf {
    PathBuf::from(std::env::var("HOME").unwrap_or_default())
}

/// cxrflow performance bench: pipeline efficiency against the best bare ONNX Runtime layout,
/// a FastAPI baseline at equal load and in an overload burst, latency at 50%/90% of capacity,
/// peak RSS per service. Writes one JSON file and prints a markdown table.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "cxrflow-bench")]
pub struct Args {
    /// A short run (a few minutes): fewer layouts, shorter runs, a 15 s burst.
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/pipeline.json")]
    pub out: PathBuf,
    /// Dataset root (holds `CheXpert-v1.0-small/`; `cxrflow sim synth` or
    /// scripts/make-test-data.sh makes one).
    #[arg(long, env = "CXRFLOW_DATASET_ROOT")]
    pub dataset: PathBuf,
    /// Model directories root.
    #[arg(long, env = "CXRFLOW_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model, `name` (newest version) or `name/version` (scripts/make-models.sh makes it).
    #[arg(long, default_value = "densenet121-synthetic")]
    pub model: String,
    /// The umbrella binary; default target/release/cxrflow, else target/debug/cxrflow.
    #[arg(long, env = "CXRFLOW_BENCH_BIN")]
    pub cxrflow_bin: Option<PathBuf>,
    /// Python of the FastAPI baseline's venv (bench/python-env.sh makes it).
    #[arg(long, env = "CXRFLOW_BENCH_PYTHON")]
    pub python: Option<PathBuf>,
    /// uvicorn worker processes of the baseline; default: searched over the bare layouts'
    /// splits of the machine (workers × intra-op threads).
    #[arg(long)]
    pub fastapi_workers: Option<usize>,
    /// Intra-op threads of each baseline worker's session; default: searched (see above).
    #[arg(long)]
    pub fastapi_threads: Option<usize>,
    /// Length of each steady open-loop run, seconds (default 60, quick 20).
    #[arg(long)]
    pub run_s: Option<u64>,
    /// Length of the overload burst at twice the capacity, seconds (default 60, quick 15).
    #[arg(long)]
    pub burst_s: Option<u64>,
    /// Client deadline per FastAPI request, seconds.
    #[arg(long, default_value_t = 30)]
    pub client_timeout_s: u64,
    #[arg(long, value_enum, default_value = "poisson")]
    pub arrivals: Arrivals,
    /// How the scan events carry their images: `reference` (a file:// URI, as cxrflow's DICOM
    /// gateway publishes them) or `inline` (the PNG bytes in the event).
    #[arg(long, value_enum, default_value = "reference")]
    pub scan_images: ScanImages,
    /// Partitions per topic (raised to the inference replicas; every partition is one more
    /// poll per fetch wait for the embedded broker, so one is cheapest for one replica).
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// Override the inference layout taken from the best bare layout: intra-op threads.
    #[arg(long)]
    pub inference_threads: Option<usize>,
    /// Override: largest micro-batch.
    #[arg(long)]
    pub inference_batch: Option<usize>,
    /// Inference processes (default 1; each needs a partition of its own).
    #[arg(long)]
    pub inference_replicas: Option<usize>,
    /// Override: sessions per inference process (default: the best bare layout's sessions,
    /// divided among the processes).
    #[arg(long)]
    pub inference_sessions: Option<usize>,
    /// Longest a record waits for its micro-batch to fill, ms.
    #[arg(long, default_value_t = 5)]
    pub max_wait_ms: u64,
    /// `RUST_LOG` of the services.
    #[arg(long, default_value = "warn")]
    pub service_log: String,
    /// Skip the FastAPI baseline.
    #[arg(long)]
    pub skip_fastapi: bool,
    /// Skip the pipeline (bare ORT and FastAPI only).
    #[arg(long)]
    pub skip_pipeline: bool,
    /// Also flood the pipeline with full-size DICOM (2500×≈3000 CR, 12 bits): held-out studies
    /// rendered again at detector size and wrapped in these transfer syntaxes, taken in turn
    /// (`bench/python/full_size_dicom.py` names, e.g. `native,jpeg12,j2k`), right after the
    /// small corpus's capacity flood; reported beside its efficiency (issue #24: ≥ 0.9 of it).
    #[arg(long, value_delimiter = ',')]
    pub full_size_dicom: Vec<String>,
    /// Studies in the full-size corpus (each is rendered and encoded before the run).
    #[arg(long, default_value_t = 24)]
    pub full_size_images: usize,
    /// The dataset's seed (scripts/make-test-data.sh: CXRFLOW_SEED), so the full-size studies
    /// are rendered as the same patients as the small corpus's.
    #[arg(long, default_value_t = 7)]
    pub dataset_seed: u64,
    /// Scratch directory for the stack's broker, blobs and stores (removed afterwards).
    #[arg(long, default_value = "target/bench/scratch")]
    pub scratch: PathBuf,
}

impl Args {
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| home().join(".cache/cxrflow/data/models"))
    }

    pub fn cxrflow_bin(&self) -> PathBuf {
        cxrflow_bin_or_default(self.cxrflow_bin.as_ref())
    }

    pub fn python(&self) -> PathBuf {
        self.python.clone().unwrap_or_else(|| {
            let tools = std::env::var("CXRFLOW_TOOLS")
                .map(PathBuf::from)
                .unwrap_or_else(|_| home().join(".cache/cxrflow/tools"));
            tools.join("bench-venv/bin/python")
        })
    }

    pub fn run_len(&self) -> Duration {
        Duration::from_secs(self.run_s.unwrap_or(if self.quick { 20 } else { 60 }))
    }

    pub fn burst_len(&self) -> Duration {
        Duration::from_secs(self.burst_s.unwrap_or(if self.quick { 15 } else { 60 }))
    }

    /// Seconds of work the capacity floods aim at.
    pub fn flood_len(&self) -> Duration {
        Duration::from_secs(if self.quick { 20 } else { 60 })
    }

    /// Time per bare ORT layout.
    pub fn bare_len(&self) -> Duration {
        Duration::from_secs(if self.quick { 3 } else { 8 })
    }

    pub fn bare_batches(&self) -> Vec<usize> {
        if self.quick {
            vec![1, 8]
        } else {
            vec![1, 4, 8, 16]
        }
    }

    /// Closed-loop concurrencies tried for a FastAPI layout's saturation: one client per
    /// worker (no queue) up to four (decode and HTTP overlap inference).
    pub fn fastapi_concurrency(&self, workers: usize) -> Vec<usize> {
        let w = workers.max(1);
        if self.quick {
            vec![2 * w]
        } else {
            vec![w, 2 * w, 4 * w]
        }
    }

    /// Length of each closed-loop run of the FastAPI layout search.
    pub fn fastapi_closed_len(&self) -> Duration {
        Duration::from_secs(if self.quick { 6 } else { 20 })
    }

    /// Length of each open-loop run that looks for the best FastAPI layout's sustained rate.
    pub fn fastapi_probe_len(&self) -> Duration {
        Duration::from_secs(if self.quick { 10 } else { 30 })
    }

    /// Open-loop rates tried for the best FastAPI layout, as shares of its closed-loop
    /// saturation, from the top until one is kept up.
    pub fn fastapi_sustain_shares(&self) -> Vec<f64> {
        if self.quick {
            vec![1.0, 0.9, 0.8]
        } else {
            vec![1.0, 0.95, 0.9, 0.85, 0.8]
        }
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.client_timeout_s)
    }
}
