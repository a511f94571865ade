//! A whole simulated run against a live stack: replay studies as a gateway (arrival process,
//! sites, optional drift scenario), read them as radiologists from the triage worklist while
//! sampling consumer lag, then summarise what a hospital would measure.

mod readback;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cxrflow_common::kafka::Producer;
use cxrflow_common::registry::codec_for;
use cxrflow_common::KafkaArgs;
use tokio_util::sync::CancellationToken;

use crate::dataset::labels::Finding;
use crate::dataset::open_dataset;
use crate::replay::scenario::parse_finding;
use crate::replay::{
    publish_traffic, Arrival, ArrivalConfig, ArrivalProcess, DriftPlan, DriftScenario, SiteMix,
    StudySource, TrafficPace, INTENSITY_SHIFT,
};
use crate::report::{self, Report};
use crate::run::lag::{spawn_sampler, LatestLag};
use crate::run::readers::{read_traffic, ReaderConfig, Traffic};

#[derive(Debug, Clone, clap::Args)]
pub struct SimConfig {
    /// Dataset root (the directory holding `CheXpert-v1.0-small/`, or that directory itself).
    #[arg(long, env = "CXRFLOW_SIM_DATASET")]
    pub dataset: PathBuf,
    /// Which label file to replay (held-out patients only by default).
    #[arg(long, env = "CXRFLOW_SIM_TABLE", default_value = "heldout.csv")]
    pub table: String,
    /// Number of studies to replay (0: one pass through the table, or no count limit with a
    /// duration). More than the table holds cycles through it, with fresh UIDs each cycle.
    #[arg(long, env = "CXRFLOW_SIM_STUDIES", default_value_t = 300)]
    pub studies: usize,
    /// Stop publishing after this many seconds (whichever of count and duration comes first).
    #[arg(long, env = "CXRFLOW_SIM_DURATION_S")]
    pub duration_s: Option<f64>,
    /// Target mean arrival rate, studies per second (every arrival shape averages to it).
    #[arg(long, env = "CXRFLOW_SIM_RATE", default_value_t = 8.0)]
    pub rate: f64,
    /// Arrival process.
    #[arg(
        long,
        env = "CXRFLOW_SIM_ARRIVAL",
        value_enum,
        default_value = "poisson"
    )]
    pub arrival: Arrival,
    /// Diurnal arrivals: length of one compressed day, seconds.
    #[arg(long, env = "CXRFLOW_SIM_DAY_S", default_value_t = 120.0)]
    pub day_s: f64,
    /// Diurnal arrivals: relative swing of the rate around its mean (0..=1).
    #[arg(long, env = "CXRFLOW_SIM_DIURNAL_AMPLITUDE", default_value_t = 0.8)]
    pub diurnal_amplitude: f64,
    /// Burst arrivals: a burst every this many seconds.
    #[arg(long, env = "CXRFLOW_SIM_BURST_EVERY_S", default_value_t = 30.0)]
    pub burst_every_s: f64,
    /// Burst arrivals: how long a burst lasts, seconds.
    #[arg(long, env = "CXRFLOW_SIM_BURST_LEN_S", default_value_t = 5.0)]
    pub burst_len_s: f64,
    /// Burst arrivals: rate during a burst as a multiple of the base rate.
    #[arg(long, env = "CXRFLOW_SIM_BURST_FACTOR", default_value_t = 5.0)]
    pub burst_factor: f64,
    /// Images up to this size travel inline; larger ones by file:// reference.
    #[arg(long, env = "CXRFLOW_SIM_INLINE_MAX", default_value_t = 256 * 1024)]
    pub inline_max: u64,
    /// Number of sites the studies are spread over (`site-01` …).
    #[arg(long, env = "CXRFLOW_SIM_SITES", default_value_t = 2)]
    pub sites: usize,
    /// Relative traffic of each site, comma-separated (missing ones weigh 1): e.g. `3,1`.
    #[arg(long, env = "CXRFLOW_SIM_SITE_WEIGHTS", value_delimiter = ',')]
    pub site_weights: Vec<f64>,
    /// Drift scenario to inject.
    #[arg(
        long,
        env = "CXRFLOW_SIM_DRIFT_SCENARIO",
        value_enum,
        default_value = "none"
    )]
    pub drift_scenario: DriftScenario,
    /// Inject the drift once this many studies were published (default: half of --studies,
    /// unless --drift-after-s is given).
    #[arg(long, env = "CXRFLOW_SIM_DRIFT_AFTER_STUDIES")]
    pub drift_after_studies: Option<usize>,
    /// Inject the drift this many seconds into the replay (whichever comes first).
    #[arg(long, env = "CXRFLOW_SIM_DRIFT_AFTER_S")]
    pub drift_after_s: Option<f64>,
    /// Share of the studies after the change that the scenario affects (0..=1).
    #[arg(long, env = "CXRFLOW_SIM_DRIFT_FRACTION", default_value_t = 1.0)]
    pub drift_fraction: f64,
    /// The finding whose positives the prevalence-rise scenario oversamples.
    #[arg(long, env = "CXRFLOW_SIM_DRIFT_FINDING", value_parser = parse_finding, default_value = "Pneumothorax")]
    pub drift_finding: Finding,
    /// Simulated radiologists.
    #[arg(long, env = "CXRFLOW_SIM_READERS", default_value_t = 2)]
    pub readers: usize,
    /// Median read time per study, milliseconds (log-normal).
    #[arg(long, env = "CXRFLOW_SIM_MEDIAN_READ_MS", default_value_t = 350)]
    pub median_read_ms: u64,
    /// Base URL of the triage service's HTTP endpoint.
    #[arg(
        long,
        env = "CXRFLOW_SIM_TRIAGE_URL",
        default_value = "http://127.0.0.1:8084"
    )]
    pub triage_url: String,
    /// API key (or token) with the `reader` role, sent to triage's `GET /worklist`; empty:
    /// none (a triage started with --insecure-no-auth).
    #[arg(
        long,
        env = "CXRFLOW_SIM_TRIAGE_API_KEY",
        default_value = "",
        hide_env_values = true
    )]
    pub triage_api_key: String,
    #[arg(long, env = "CXRFLOW_SIM_SEED", default_value_t = 7)]
    pub seed: u64,
    /// Where report.json and report.html go.
    #[arg(
        long,
        env = "CXRFLOW_SIM_REPORT_DIR",
        default_value = ".cxrflow/report"
    )]
    pub report_dir: PathBuf,
    /// Give up waiting for reads after this long.
    #[arg(long, env = "CXRFLOW_SIM_TIMEOUT_S", default_value_t = 900)]
    pub timeout_s: u64,
    /// Sample the services' consumer lag this often, milliseconds (0: off).
    #[arg(long, env = "CXRFLOW_SIM_LAG_INTERVAL_MS", default_value_t = 1000)]
    pub lag_interval_ms: u64,
    /// The services' consumer groups are `<prefix><service>`.
    #[arg(long, env = "CXRFLOW_SIM_LAG_GROUP_PREFIX", default_value = "cxrflow-")]
    pub lag_group_prefix: String,
}

impl Default for SimConfig {
    /// The command line's defaults (a test checks they agree), with an empty dataset path.
    fn default() -> Self {
        SimConfig {
            dataset: PathBuf::new(),
            table: "heldout.csv".into(),
            studies: 300,
            duration_s: None,
            rate: 8.0,
            arrival: Arrival::Poisson,
            day_s: 120.0,
            diurnal_amplitude: 0.8,
            burst_every_s: 30.0,
            burst_len_s: 5.0,
            burst_factor: 5.0,
            inline_max: 256 * 1024,
            sites: 2,
            site_weights: Vec::new(),
            drift_scenario: DriftScenario::None,
            drift_after_studies: None,
            drift_after_s: None,
            drift_fraction: 1.0,
            drift_finding: Finding::Pneumothorax,
            readers: 2,
            median_read_ms: 350,
            triage_url: "http://127.0.0.1:8084".into(),
            triage_api_key: String::new(),
            seed: 7,
            report_dir: PathBuf::from(".cxrflow/report"),
            timeout_s: 900,
            lag_interval_ms: 1000,
            lag_group_prefix: "cxrflow-".into(),
        }
    }
}

impl SimConfig {
    pub fn arrival_config(&self) -> ArrivalConfig {
        ArrivalConfig {
            kind: self.arrival,
            rate: self.rate,
            day_s: self.day_s,
            diurnal_amplitude: self.diurnal_amplitude,
            burst_every_s: self.burst_every_s,
            burst_len_s: self.burst_len_s,
            burst_factor: self.burst_factor,
        }
    }

    /// The drift plan: without a change point given, the change comes after half the studies.
    pub fn drift_plan(&self) -> DriftPlan {
        let after_studies = match (self.drift_after_studies, self.drift_after_s) {
            (None, None) => Some(self.studies / 2),
            (n, _) => n,
        };
        DriftPlan {
            scenario: self.drift_scenario,
            after_studies,
            after_s: self.drift_after_s,
            fraction: self.drift_fraction.clamp(0.0, 1.0),
            finding: self.drift_finding,
            intensity: INTENSITY_SHIFT,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimRunError {
    #[error(transparent)]
    Dataset(#[from] crate::dataset::DatasetError),
    #[error("dataset has no studies to replay in {0}")]
    Empty(String),
    #[error(transparent)]
    Replay(#[from] crate::replay::ReplayError),
    #[error("{0}")]
    Setup(String),
    #[error("writing the report: {0}")]
    Io(#[from] std::io::Error),
}

/// Runs the simulation and writes the report.
pub async fn simulate(
    kafka: &KafkaArgs,
    cfg: &SimConfig,
    shutdown: CancellationToken,
) -> Result<Report, SimRunError> {
    let ds = open_dataset(&cfg.dataset)?;
    let plan = cfg.drift_plan();
    let sites = SiteMix::new(cfg.sites, &cfg.site_weights);
    let mut source = StudySource::new(&ds, &cfg.table, cfg.seed, sites, plan);
    if source.available() == 0 {
        return Err(SimRunError::Empty(ds.dir.display().to_string()));
    }
    let arrival = cfg.arrival_config();
    ArrivalProcess::new(arrival, cfg.seed).map_err(|e| SimRunError::Setup(e.to_string()))?;
    let (codec, _) = codec_for(kafka)
        .await
        .map_err(|e| SimRunError::Setup(e.to_string()))?;
    let producer = Producer::new(kafka).map_err(|e| SimRunError::Setup(e.to_string()))?;
    // The replay cycles through the table (fresh UIDs each pass), so any count can be served;
    // without one, a duration ends the run, else one pass through the table.
    let planned = match (cfg.studies, cfg.duration_s) {
        (0, None) => source.available(),
        (0, Some(_)) => 0,
        (n, _) => n,
    };
    if planned > source.available() {
        tracing::info!(
            planned,
            available = source.available(),
            "simulation: more studies than the table holds; the replay cycles through it with fresh UIDs"
        );
    }
    tracing::info!(
        planned,
        rate = cfg.rate,
        arrival = ?cfg.arrival,
        duration_s = ?cfg.duration_s,
        sites = cfg.sites,
        readers = cfg.readers,
        drift = %plan.scenario,
        drift_after_studies = ?plan.after_studies,
        drift_after_s = ?plan.after_s,
        "simulation: replaying"
    );
    let started = Instant::now();
    let traffic = Traffic::default();
    let read_stop = shutdown.child_token();
    let readers = tokio::spawn(read_traffic(
        ReaderConfig {
            readers: cfg.readers,
            median_read: Duration::from_millis(cfg.median_read_ms),
            triage_url: cfg.triage_url.trim_end_matches('/').to_string(),
            triage_api_key: cfg.triage_api_key.clone(),
            seed: cfg.seed,
        },
        traffic.clone(),
        producer.clone(),
        codec.clone(),
        read_stop.clone(),
    ));
    let watch_stop = CancellationToken::new();
    let latest: LatestLag = Arc::new(Mutex::new(None));
    let lag = (cfg.lag_interval_ms > 0).then(|| {
        spawn_sampler(
            kafka.clone(),
            cfg.lag_group_prefix.clone(),
            Duration::from_millis(cfg.lag_interval_ms),
            watch_stop.clone(),
            latest.clone(),
        )
    });
    // A run bounded by its duration alone has no count: the bar shows one pass of the table.
    let bar_len = if planned == 0 {
        source.available()
    } else {
        planned
    };
    let progress =
        crate::run::progress::spawn(traffic.clone(), bar_len, latest.clone(), watch_stop.clone());
    let pace = TrafficPace {
        arrival,
        inline_max: cfg.inline_max,
        seed: cfg.seed,
        // 0 (no count limit) only when a duration bounds the run: the replay cycles forever.
        max_studies: planned,
        duration: cfg.duration_s.map(Duration::from_secs_f64),
    };
    let outcome = publish_traffic(&producer, &codec, &mut source, pace, &shutdown, |s, _| {
        traffic.add(s.clone())
    })
    .await;
    traffic.finish();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            read_stop.cancel();
            watch_stop.cancel();
            return Err(e.into());
        }
    };
    tracing::info!(
        published = outcome.published.len(),
        change_at = ?outcome.change.map(|c| c.index),
        "simulation: replay done; waiting for reads"
    );
    let timeout = tokio::time::sleep(Duration::from_secs(cfg.timeout_s));
    tokio::pin!(timeout);
    let mut readers = readers;
    let events = tokio::select! {
        r = &mut readers => r.unwrap_or_default(),
        _ = &mut timeout => {
            tracing::warn!("simulation: timed out waiting for reads");
            read_stop.cancel();
            readers.await.unwrap_or_default()
        }
    };
    watch_stop.cancel();
    let lag = match lag {
        Some(h) => h.await.unwrap_or_default(),
        None => Vec::new(),
    };
    let _ = progress.await;
    let duration_s = started.elapsed().as_secs_f64();
    let input = readback::RunInput {
        kafka: kafka.clone(),
        codec: codec.clone(),
        traffic,
        outcome,
        events,
        lag,
        readers: cfg.readers.max(1),
        duration_s,
        arrival,
        plan,
    };
    let report = tokio::task::spawn_blocking(move || readback::summarise(input))
        .await
        .map_err(|e| SimRunError::Setup(e.to_string()))?;
    report::write(&report, &cfg.report_dir)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        sim: SimConfig,
    }

    #[test]
    fn default_matches_the_command_line_defaults() {
        let parsed = Cli::try_parse_from(["sim", "--dataset", "d"]).unwrap().sim;
        let default = SimConfig {
            dataset: "d".into(),
            ..SimConfig::default()
        };
        assert_eq!(format!("{parsed:?}"), format!("{default:?}"));
    }

    #[test]
    fn drift_flags_parse() {
        let c = Cli::try_parse_from([
            "sim",
            "--dataset",
            "d",
            "--drift-scenario",
            "prevalence-rise",
            "--drift-after-studies",
            "40",
            "--drift-finding",
            "pleural-effusion",
            "--arrival",
            "bursts",
            "--site-weights",
            "3,1",
        ])
        .unwrap()
        .sim;
        let plan = c.drift_plan();
        assert_eq!(plan.scenario, DriftScenario::PrevalenceRise);
        assert_eq!(plan.after_studies, Some(40));
        assert_eq!(plan.finding, Finding::PleuralEffusion);
        assert_eq!(c.arrival, Arrival::Bursts);
        assert_eq!(c.site_weights, vec![3.0, 1.0]);
        // Without a change point the drift comes halfway.
        assert_eq!(SimConfig::default().drift_plan().after_studies, Some(150));
    }
}
