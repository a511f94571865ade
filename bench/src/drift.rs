//! `cxrflow-bench drift`: the drift benchmark driven by the simulator's scenarios. For each
//! scenario it runs the whole embedded stack (`cxrflow up`, its own process, a fresh data
//! directory so the drift service learns a fresh reference window) over a synthetic held-out
//! dataset: the natural mix until the change point (the reference window, then clean
//! monitoring), the scenario's traffic after it. It reads each run's report back and writes
//! detection, studies-to-detection, the first alert and the false alarms as JSON and a table.
//!
//! The drift service runs with `cxrflow up`'s settings (its defaults: a 500-study reference per
//! model version and per site, a 300-study window evaluated every 50 studies); the change point
//! sits after the per-site references have filled, so no reference holds drifted traffic.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use cxrflow_common::time::now_millis;
use cxrflow_sim::DriftScenario;
use serde::Serialize;

use crate::drift_report::{markdown, per_10k, RunReport, ScenarioResult};

fn data_root() -> PathBuf {
    std::env::var("CXRFLOW_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cxrflow/data")
        })
}

/// Drift benchmark: one `cxrflow up` run per drift scenario on a synthetic dataset; detection,
/// studies-to-detection and false alarms as JSON and a markdown table.
#[derive(Debug, Clone, Parser, Serialize)]
#[command(name = "cxrflow-bench drift")]
pub struct DriftArgs {
    /// Fewer studies: the change 300 studies after the reference instead of 700, 300 studies
    /// after it instead of 600, 1,200 studies without drift instead of 4,000.
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON goes.
    #[arg(long, default_value = "target/bench/drift.json")]
    pub out: PathBuf,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<DriftScenario>,
    /// Dataset root (holds `CheXpert-v1.0-small/`); default: synthesized once and cached under
    /// `$CXRFLOW_DATA/datasets/drift-synth-<seed>-h<heldout>`.
    #[arg(long, env = "CXRFLOW_DRIFT_BENCH_DATASET")]
    pub dataset: Option<PathBuf>,
    /// Held-out studies of the synthesized dataset (every replayed study is drawn once).
    #[arg(long, default_value_t = 5000)]
    pub heldout: usize,
    /// Seed of the synthesized dataset.
    #[arg(long, default_value_t = 7)]
    pub synth_seed: u64,
    /// Model directories root.
    #[arg(long, env = "CXRFLOW_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    /// Model, `name` or `name/version`.
    #[arg(long, default_value = "cxr-small")]
    pub model: String,
    /// The umbrella binary; default target/release/cxrflow, else target/debug/cxrflow.
    #[arg(long, env = "CXRFLOW_BENCH_BIN")]
    pub cxrflow_bin: Option<PathBuf>,
    /// Studies in the drift service's reference window (the service's default; the bench does
    /// not change it, it places the change point after it).
    #[arg(long, default_value_t = 500)]
    pub reference_studies: usize,
    /// Clean studies between the (per-site) references and the change point (default 700,
    /// quick 300).
    #[arg(long)]
    pub margin: Option<usize>,
    /// Studies published after the change point (default 600, quick 300).
    #[arg(long)]
    pub after_change: Option<usize>,
    /// Studies of the no-drift run (default 4,000, quick 1,200).
    #[arg(long)]
    pub none_studies: Option<usize>,
    /// Sites the traffic is spread over (equal weights).
    #[arg(long, default_value_t = 2)]
    pub sites: usize,
    /// Share of the studies after the change that come from the scenario.
    #[arg(long, default_value_t = 1.0)]
    pub drift_fraction: f64,
    /// Replay rate, studies per second (Poisson arrivals); the pipeline should keep up, or the
    /// studies counted to detection include its backlog.
    #[arg(long, default_value_t = 30.0)]
    pub rate: f64,
    /// Simulated radiologists and their median read time (the feedback channel's labels).
    #[arg(long, default_value_t = 4)]
    pub readers: usize,
    #[arg(long, default_value_t = 100)]
    pub median_read_ms: u64,
    /// Replay seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Port of the embedded broker; HTTP ports from `--http-base-port` (six consecutive).
    #[arg(long, default_value_t = 29092)]
    pub broker_port: u16,
    #[arg(long, default_value_t = 28080)]
    pub http_base_port: u16,
    /// `RUST_LOG` of the stack.
    #[arg(long, default_value = "warn")]
    pub service_log: String,
    /// Stack data directories (removed after each run); reports and logs stay under
    /// `<out's directory>/drift-runs/<scenario>/`.
    #[arg(long, default_value = "target/bench/drift-scratch")]
    pub scratch: PathBuf,
}

impl DriftArgs {
    fn margin(&self) -> usize {
        self.margin.unwrap_or(if self.quick { 300 } else { 700 })
    }

    fn after_change(&self) -> usize {
        self.after_change
            .unwrap_or(if self.quick { 300 } else { 600 })
    }

    /// The change point: after every site's reference has filled, plus the margin.
    fn change_at(&self) -> usize {
        self.reference_studies * self.sites.max(1) + self.margin()
    }

    fn studies(&self, scenario: DriftScenario) -> usize {
        match scenario {
            DriftScenario::None => {
                self.none_studies
                    .unwrap_or(if self.quick { 1200 } else { 4000 })
            }
            _ => self.change_at() + self.after_change(),
        }
    }

    fn scenarios(&self) -> Vec<DriftScenario> {
        if self.scenarios.is_empty() {
            DriftScenario::ALL.to_vec()
        } else {
            self.scenarios.clone()
        }
    }

    fn bin(&self) -> PathBuf {
        crate::cli::cxrflow_bin_or_default(self.cxrflow_bin.as_ref())
    }

    fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(|| data_root().join("models"))
    }
}

/// The dataset: the given one, or the cached synthetic one (synthesized when absent).
async fn dataset(args: &DriftArgs, bin: &Path) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.dataset {
        return Ok(d.clone());
    }
    let dir = data_root()
        .join("datasets")
        .join(format!("drift-synth-{}-h{}", args.synth_seed, args.heldout));
    if dir.join(".complete").exists() {
        return Ok(dir);
    }
    let labels = data_root().join("chexpert-labels");
    eprintln!(
        "synthesizing {} held-out studies into {}",
        args.heldout,
        dir.display()
    );
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("sim")
        .arg("synth")
        .arg("--labels")
        .arg(labels.join("chexpert_train.csv.gz"))
        .arg("--out")
        .arg(&dir)
        .args(["--seed", &args.synth_seed.to_string()])
        // Only the held-out split is replayed; the models were fitted elsewhere.
        .args(["--studies", "20", "--valid", "20"])
        .args(["--heldout", &args.heldout.to_string()]);
    let masks = labels.join("semantic_masks_v7labs_lungs.zip");
    if masks.exists() {
        cmd.arg("--masks").arg(masks);
    }
    let status = cmd.status().await.context("running cxrflow sim synth")?;
    anyhow::ensure!(status.success(), "cxrflow sim synth failed: {status}");
    std::fs::write(dir.join(".complete"), b"")?;
    Ok(dir)
}

/// One scenario: a fresh stack, the replay, the report read back.
async fn run_scenario(
    args: &DriftArgs,
    bin: &Path,
    dataset: &Path,
    scenario: DriftScenario,
    runs: &Path,
) -> anyhow::Result<ScenarioResult> {
    let studies = args.studies(scenario);
    let data = args.scratch.join(scenario.name());
    let keep = runs.join(scenario.name());
    for d in [&data, &keep] {
        if d.exists() {
            std::fs::remove_dir_all(d).with_context(|| format!("removing {}", d.display()))?;
        }
        std::fs::create_dir_all(d)?;
    }
    let keep = std::fs::canonicalize(&keep)?;
    let log = std::fs::File::create(keep.join("up.log"))?;
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("up")
        .arg("--data-dir")
        .arg(&data)
        .arg("--models-dir")
        .arg(args.models_dir())
        .args(["--model", &args.model])
        .args(["--broker-port", &args.broker_port.to_string()])
        .args(["--http-base-port", &args.http_base_port.to_string()])
        .arg("--dataset")
        .arg(dataset)
        .args(["--table", "heldout.csv"])
        .args(["--studies", &studies.to_string()])
        .args(["--rate", &args.rate.to_string()])
        .args(["--arrival", "poisson"])
        .args(["--sites", &args.sites.to_string()])
        .args(["--readers", &args.readers.to_string()])
        .args(["--median-read-ms", &args.median_read_ms.to_string()])
        .args(["--seed", &args.seed.to_string()])
        .args(["--timeout-s", "300"])
        .args(["--drift-scenario", scenario.name()])
        .args(["--drift-fraction", &args.drift_fraction.to_string()])
        .arg("--report-dir")
        .arg(&keep)
        .env("RUST_LOG", &args.service_log)
        .env("CXRFLOW_LOG_FORMAT", "json")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true);
    if scenario != DriftScenario::None {
        cmd.args(["--drift-after-studies", &args.change_at().to_string()]);
    }
    eprintln!(
        "{scenario}: {studies} studies at {}/s{}",
        args.rate,
        if scenario == DriftScenario::None {
            String::new()
        } else {
            format!(", change after {}", args.change_at())
        }
    );
    let started = Instant::now();
    // The replay, the read-out wait (at most 300 s) and start-up, with room to spare.
    let limit = Duration::from_secs_f64(studies as f64 / args.rate.max(0.1) + 900.0);
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(s) => s?,
        Err(_) => {
            child.kill().await.ok();
            anyhow::bail!("{scenario}: cxrflow up ran past {limit:?}");
        }
    };
    let run_s = started.elapsed().as_secs_f64();
    let report_path = keep.join("report.json");
    anyhow::ensure!(
        status.success(),
        "{scenario}: cxrflow up failed ({status}); log in {}",
        keep.join("up.log").display()
    );
    let report: RunReport = serde_json::from_slice(
        &std::fs::read(&report_path).with_context(|| format!("{}", report_path.display()))?,
    )
    .with_context(|| format!("parsing {}", report_path.display()))?;
    std::fs::remove_dir_all(&data).ok();
    let r = ScenarioResult::from_report(
        scenario.name(),
        &report,
        run_s,
        report_path.display().to_string(),
    );
    eprintln!(
        "{scenario}: detected {:?} after {:?} studies; {} false alarm(s); {:.0} s",
        r.detected, r.studies_to_detection, r.false_alarms, r.run_s
    );
    Ok(r)
}

#[derive(Debug, Serialize)]
struct DriftBench {
    generated_at_ms: i64,
    mode: &'static str,
    dataset: String,
    model: String,
    change_at_study: usize,
    drift_service: &'static str,
    config: DriftArgs,
    scenarios: Vec<ScenarioResult>,
    /// Raised alerts over every clean study: the no-drift run and every run before its change.
    false_alarms_pooled: usize,
    clean_studies_pooled: usize,
    false_alarms_per_10k_pooled: Option<f64>,
    /// The no-drift run alone.
    false_alarms_per_10k_no_drift: Option<f64>,
    detected_within_500: usize,
    drift_scenarios: usize,
}

pub async fn run(args: DriftArgs) -> anyhow::Result<()> {
    let bin = args.bin();
    anyhow::ensure!(
        bin.exists(),
        "{} missing: cargo build --release -p cxrflow",
        bin.display()
    );
    let dataset = dataset(&args, &bin).await?;
    let runs = args
        .out
        .parent()
        .unwrap_or(Path::new("."))
        .join("drift-runs");
    let mut results = Vec::new();
    for scenario in args.scenarios() {
        results.push(run_scenario(&args, &bin, &dataset, scenario, &runs).await?);
    }
    let pooled: usize = results.iter().map(|r| r.false_alarms).sum();
    let clean: usize = results.iter().map(|r| r.clean_studies).sum();
    let none = results.iter().find(|r| r.detected.is_none());
    let drifted: Vec<&ScenarioResult> = results.iter().filter(|r| r.detected.is_some()).collect();
    let bench = DriftBench {
        generated_at_ms: now_millis(),
        mode: if args.quick { "quick" } else { "full" },
        dataset: dataset.display().to_string(),
        model: args.model.clone(),
        change_at_study: args.change_at(),
        drift_service: "cxrflow up defaults: reference 500 studies per model version and per \
                        site, window 300, stride 50",
        scenarios: results.clone(),
        false_alarms_pooled: pooled,
        clean_studies_pooled: clean,
        false_alarms_per_10k_pooled: per_10k(pooled, clean),
        false_alarms_per_10k_no_drift: none.and_then(|r| per_10k(r.false_alarms, r.clean_studies)),
        detected_within_500: drifted
            .iter()
            .filter(|r| r.studies_to_detection.is_some_and(|n| n <= 500))
            .count(),
        drift_scenarios: drifted.len(),
        config: args.clone(),
    };
    if let Some(d) = args.out.parent() {
        std::fs::create_dir_all(d)?;
    }
    std::fs::write(&args.out, serde_json::to_vec_pretty(&bench)?)
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("{}", markdown(&results));
    println!(
        "Detected within 500 studies: {}/{}. False alarms: {} in {} clean studies ({}) pooled \
         over the no-drift run and every run's studies before its change.",
        bench.detected_within_500,
        bench.drift_scenarios,
        pooled,
        clean,
        bench
            .false_alarms_per_10k_pooled
            .map_or("n/a".to_string(), |r| format!("{r:.1} per 10k"))
    );
    eprintln!("written to {}", args.out.display());
    Ok(())
}
