//! `cxrflow sim reading-room`: a discrete-event simulation of a reading room on a simulated
//! clock, to ask what AI triage buys the studies with a critical finding and what it costs
//! everyone else, before a stack runs.
//!
//! Studies arrive over N days at each site ([`profile`]: daily volume, diurnal curve, weekend
//! factor, STAT/URGENT shares, reader shifts, log-normal read times); each shows a study of a
//! pool with ground truth and a model score ([`model`]: synthetic with a stated AUROC, or an
//! oracle; or [`pool`]: real predictions of a pipeline run joined to the label file); and every policy ([`engine::RoomPolicy`]: FIFO, order priority only, AI tiers
//! without caps, AI tiers with the triage defaults' wait caps scaled) orders the same arrivals
//! with the same read durations through triage's own pure policy and worklist code
//! ([`engine`]). [`outcome`] measures the waits and the cap sweep's Pareto frontier.

pub mod engine;
pub mod html;
pub mod model;
pub mod outcome;
pub mod pool;
pub mod profile;

use std::path::PathBuf;
use std::time::Instant;

use cxrflow_triage::policy::TriagePolicy;
use serde::Serialize;

use engine::{run_site, RoomPolicy};
use model::{empirical_auroc, synthetic_pool, PoolStudy, ScoreModel};
use outcome::{compare_with, goal_check, outcome, pareto_frontier, GoalCheck, ParetoPoint};
use profile::{
    arrivals, delay_by_outage, parse_shifts, Arrival, ReadTimes, Shift, SiteProfile, CLOCK_ORIGIN,
    DAY, HOUR,
};

pub use outcome::PolicyOutcome;
pub use pool::PoolError;

/// The scale factors on the triage defaults' wait caps that the sweep tries.
pub const DEFAULT_CAP_SCALES: &[f64] = &[0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0];

/// Which scores the pool gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Scores drawn for the stated AUROC (binormal).
    Synthetic,
    /// Score = ground truth.
    Oracle,
}

/// Everything a run depends on (all flags of `cxrflow sim reading-room`).
#[derive(Debug, Clone, clap::Args, Serialize)]
pub struct RoomConfig {
    /// Simulated days (day 0 is a Monday).
    #[arg(long, env = "CXRFLOW_ROOM_DAYS", default_value_t = 7)]
    pub days: u32,
    /// Sites, each with its own readers and worklist and the same profile.
    #[arg(long, env = "CXRFLOW_ROOM_SITES", default_value_t = 2)]
    pub sites: usize,
    #[arg(long, env = "CXRFLOW_ROOM_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Weekday volume per site is set so the week's read work fills this share of the staffed
    /// reader time (offered load); ignored when --daily-volume is given.
    #[arg(long, env = "CXRFLOW_ROOM_UTILISATION", default_value_t = 0.85)]
    pub utilisation: f64,
    /// Studies per site on a weekday.
    #[arg(long, env = "CXRFLOW_ROOM_DAILY_VOLUME")]
    pub daily_volume: Option<f64>,
    /// Weekend volume relative to a weekday.
    #[arg(long, env = "CXRFLOW_ROOM_WEEKEND_FACTOR", default_value_t = 0.75)]
    pub weekend_factor: f64,
    /// Share of STAT orders.
    #[arg(long, env = "CXRFLOW_ROOM_STAT_SHARE", default_value_t = 0.10)]
    pub stat_share: f64,
    /// Share of URGENT orders.
    #[arg(long, env = "CXRFLOW_ROOM_URGENT_SHARE", default_value_t = 0.20)]
    pub urgent_share: f64,
    /// Reader shifts per site, `HH-HHxREADERS`, comma-separated.
    #[arg(long, env = "CXRFLOW_ROOM_SHIFTS", default_value = "08-20x2,20-08x1", value_parser = parse_shift_spec)]
    pub shifts: Shifts,
    /// Median read time in minutes (log-normal).
    #[arg(long, env = "CXRFLOW_ROOM_READ_MEDIAN_MIN", default_value_t = 2.5)]
    pub read_median_min: f64,
    /// Log-normal sigma of the read time.
    #[arg(long, env = "CXRFLOW_ROOM_READ_SIGMA", default_value_t = 0.5)]
    pub read_sigma: f64,
    #[arg(long, env = "CXRFLOW_ROOM_MODEL", value_enum, default_value_t = ModelKind::Synthetic)]
    pub model: ModelKind,
    /// The synthetic model's AUROC for "any critical finding" (assumed; published CheXpert
    /// per-finding AUROCs are mostly 0.80–0.93).
    #[arg(long, env = "CXRFLOW_ROOM_AUROC", default_value_t = 0.85)]
    pub auroc: f64,
    /// Share of pool studies with a critical finding (assumed for an ED/inpatient mix; the
    /// replay's CheXpert critical set is far more prevalent in CheXpert itself).
    #[arg(long, env = "CXRFLOW_ROOM_CRITICAL_PREVALENCE", default_value_t = 0.15)]
    pub critical_prevalence: f64,
    /// A pool of real studies instead of a synthetic one: `cxr.predictions.v1` records as JSON
    /// lines, exported from a pipeline run (needs --labels; --model and --auroc then unused).
    #[arg(long, env = "CXRFLOW_ROOM_PREDICTIONS", requires = "labels")]
    pub predictions: Option<PathBuf>,
    /// The dataset's label file (CheXpert CSV, optionally gzipped) giving the predictions' ground
    /// truth.
    #[arg(long, env = "CXRFLOW_ROOM_LABELS", requires = "predictions")]
    pub labels: Option<PathBuf>,
    /// Pool size (arrivals sample it with replacement).
    #[arg(long, env = "CXRFLOW_ROOM_POOL", default_value_t = 5000)]
    pub pool: usize,
    /// Scale factors on the triage defaults' wait caps for the sweep, comma-separated.
    #[arg(long, env = "CXRFLOW_ROOM_CAP_SCALES", value_delimiter = ',', default_values_t = DEFAULT_CAP_SCALES.to_vec())]
    pub cap_scales: Vec<f64>,
    /// Scale every tier's cap in the sweep; by default only ROUTINE and NOT_ASSESSABLE are
    /// scaled (CRITICAL and URGENT keep the defaults: scaling the URGENT cap down lifts the large
    /// URGENT tier over the critical studies and gives back the gain).
    #[arg(long, env = "CXRFLOW_ROOM_SCALE_ALL_CAPS")]
    pub scale_all_caps: bool,
    /// An outage between the modalities and the worklist (a PACS or network downtime) starting
    /// this many hours into the run: what is acquired during it reaches the worklist when it
    /// ends, all at once.
    #[arg(long, env = "CXRFLOW_ROOM_OUTAGE_START_H", requires = "outage_hours")]
    pub outage_start_h: Option<f64>,
    /// The outage's length in hours.
    #[arg(long, env = "CXRFLOW_ROOM_OUTAGE_HOURS", requires = "outage_start_h")]
    pub outage_hours: Option<f64>,
    /// Triage's `--late-arrival-limit` for the AI policies, in hours: a study acquired longer
    /// than this before it reached the worklist is timed from its arrival. FIFO and order
    /// priority always order by acquisition.
    #[arg(
        long,
        env = "CXRFLOW_ROOM_LATE_ARRIVAL_LIMIT_H",
        default_value_t = 24.0
    )]
    pub late_arrival_limit_h: f64,
}

/// Reader shifts as a flag value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Shifts(pub Vec<Shift>);

fn parse_shift_spec(s: &str) -> Result<Shifts, String> {
    parse_shifts(s).map(Shifts)
}

impl Default for RoomConfig {
    fn default() -> Self {
        RoomConfig {
            days: 7,
            sites: 2,
            seed: 0,
            utilisation: 0.85,
            daily_volume: None,
            weekend_factor: 0.75,
            stat_share: 0.10,
            urgent_share: 0.20,
            shifts: Shifts(profile::default_shifts()),
            read_median_min: 2.5,
            read_sigma: 0.5,
            model: ModelKind::Synthetic,
            auroc: 0.85,
            critical_prevalence: 0.15,
            predictions: None,
            labels: None,
            pool: 5000,
            cap_scales: DEFAULT_CAP_SCALES.to_vec(),
            scale_all_caps: false,
            outage_start_h: None,
            outage_hours: None,
            late_arrival_limit_h: TriagePolicy::default().late_arrival_limit_ms as f64
                / HOUR as f64,
        }
    }
}

/// How long after an outage's end the studies acquired count in its window.
pub const OUTAGE_TAIL: i64 = 6 * HOUR;

/// `h` hours in milliseconds (negative as 0; huge as "never", well inside i64).
fn hours_ms(h: f64) -> i64 {
    (h.max(0.0) * HOUR as f64).min(i64::MAX as f64 / 4.0) as i64
}

impl RoomConfig {
    /// The outage's start and end on the run's clock, if there is one.
    pub fn outage(&self) -> Option<(i64, i64)> {
        let (start, hours) = (self.outage_start_h?, self.outage_hours?);
        let from = CLOCK_ORIGIN + hours_ms(start);
        Some((from, from + hours_ms(hours)))
    }

    pub fn read_times(&self) -> ReadTimes {
        ReadTimes {
            median_minutes: self.read_median_min,
            sigma: self.read_sigma,
        }
    }

    /// The site profiles (one per site, the same profile at each).
    pub fn site_profiles(&self) -> Vec<SiteProfile> {
        (0..self.sites.max(1))
            .map(|i| {
                let mut s = SiteProfile::new(format!("site-{}", i + 1), 0.0);
                s.weekend_factor = self.weekend_factor;
                s.stat_share = self.stat_share;
                s.urgent_share = self.urgent_share;
                s.shifts = self.shifts.0.clone();
                s.daily_volume = self.daily_volume.unwrap_or_else(|| {
                    s.volume_for_utilisation(self.utilisation, &self.read_times())
                });
                s
            })
            .collect()
    }

    pub fn score_model(&self) -> ScoreModel {
        match self.model {
            ModelKind::Oracle => ScoreModel::Oracle,
            ModelKind::Synthetic => ScoreModel::Binormal { auroc: self.auroc },
        }
    }

    /// FIFO, order priority, AI tiers without caps, then the cap sweep.
    pub fn policies(&self) -> Vec<RoomPolicy> {
        let mut v = vec![
            RoomPolicy::Fifo,
            RoomPolicy::OrderPriority,
            RoomPolicy::AiTiers {
                cap_scale: None,
                routine_only: false,
            },
        ];
        v.extend(self.cap_scales.iter().map(|&s| RoomPolicy::AiTiers {
            cap_scale: Some(s),
            routine_only: !self.scale_all_caps,
        }));
        v
    }
}

/// A run's report (what `--out` gets as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct RoomReport {
    pub config: RoomConfig,
    pub sites: Vec<SiteProfile>,
    pub arrivals: usize,
    pub critical_share: f64,
    /// Studies in the pool, and predictions of the file that named no labelled study.
    pub pool_studies: usize,
    pub unmatched_predictions: usize,
    pub pool_auroc: Option<f64>,
    pub outcomes: Vec<PolicyOutcome>,
    pub pareto_frontier: Vec<ParetoPoint>,
    /// At least 50% critical mean gain over FIFO with the non-critical max within 10% of FIFO's.
    pub goal: GoalCheck,
    pub elapsed_ms: u128,
}

/// Every policy's reads, by policy, for tests that look past the summaries.
#[derive(Debug, Clone)]
pub struct PolicyReads {
    pub policy: RoomPolicy,
    pub reads: Vec<engine::Read>,
}

/// Runs every policy of `cfg` on the same arrivals with the same read durations.
pub fn simulate_room(cfg: &RoomConfig) -> Result<(RoomReport, Vec<PolicyReads>), PoolError> {
    let (pool, unmatched) = match (&cfg.predictions, &cfg.labels) {
        (Some(p), Some(l)) => pool::pool_from_files(p, l)?,
        _ => (
            synthetic_pool(
                cfg.pool.max(1),
                cfg.critical_prevalence,
                cfg.score_model(),
                cfg.seed,
            ),
            0,
        ),
    };
    let sites = cfg.site_profiles();
    let mut arr = arrivals(&sites, cfg.days, pool.len(), &cfg.read_times(), cfg.seed);
    if let Some((from, to)) = cfg.outage() {
        delay_by_outage(&mut arr, from, to);
    }
    let (mut report, reads) = run_policies(cfg, &sites, &pool, &arr, &cfg.policies());
    report.unmatched_predictions = unmatched;
    Ok((report, reads))
}

/// Runs `policies` on given arrivals (the pool gives each arrival its truth and score).
pub fn run_policies(
    cfg: &RoomConfig,
    sites: &[SiteProfile],
    pool: &[PoolStudy],
    arr: &[Arrival],
    policies: &[RoomPolicy],
) -> (RoomReport, Vec<PolicyReads>) {
    let started = Instant::now();
    let horizon_end = CLOCK_ORIGIN + cfg.days as i64 * DAY;
    let critical = |a: &Arrival| pool[a.study].critical;
    // Each site's arrivals in the order they reach its worklist, the same for every policy.
    let by_site: Vec<Vec<&Arrival>> = (0..sites.len())
        .map(|ix| {
            let mut mine: Vec<&Arrival> = arr.iter().filter(|a| a.site == ix).collect();
            mine.sort_by_key(|a| (a.arrives_at, a.at, a.id));
            mine
        })
        .collect();
    let limit = hours_ms(cfg.late_arrival_limit_h);
    let mut outcomes = Vec::new();
    let mut all_reads = Vec::new();
    for policy in policies {
        let mut reads = Vec::new();
        let mut queue = vec![0usize; (cfg.days as usize) * 24];
        let (mut busy, mut staffed, mut unread) = (0i64, 0i64, 0usize);
        for (site, mine) in sites.iter().zip(&by_site) {
            let run = run_site(site, mine, pool, policy, horizon_end, limit);
            for (q, n) in queue.iter_mut().zip(&run.queue_by_hour) {
                *q += n;
            }
            busy += run.busy_ms;
            staffed += run.staffed_ms;
            unread += run.unread;
            reads.extend(run.reads);
        }
        reads.sort_by_key(|r| r.arrival);
        let util = if staffed > 0 {
            busy as f64 / staffed as f64
        } else {
            0.0
        };
        let mut o = outcome(policy, arr, &critical, &reads, util, queue, unread);
        if let Some((from, to)) = cfg.outage() {
            let tail = to + OUTAGE_TAIL;
            o.outage_window = Some(outcome::window(arr, &critical, &reads, from, tail));
        }
        outcomes.push(o);
        all_reads.push(PolicyReads {
            policy: *policy,
            reads,
        });
    }
    if let Some(fifo) = outcomes
        .iter()
        .find(|o| o.room_policy == RoomPolicy::Fifo)
        .cloned()
    {
        compare_with(&fifo, &mut outcomes);
    }
    let report = RoomReport {
        config: cfg.clone(),
        sites: sites.to_vec(),
        arrivals: arr.len(),
        critical_share: if arr.is_empty() {
            0.0
        } else {
            arr.iter().filter(|a| critical(a)).count() as f64 / arr.len() as f64
        },
        pool_studies: pool.len(),
        unmatched_predictions: 0,
        pool_auroc: empirical_auroc(pool),
        pareto_frontier: pareto_frontier(&outcomes),
        goal: goal_check(&outcomes, 0.5, 0.1),
        outcomes,
        elapsed_ms: started.elapsed().as_millis(),
    };
    (report, all_reads)
}

/// What a radiology manager reads first: the default policy (triage's own wait caps) against
/// reading in arrival order, in three lines.
pub fn headline(r: &RoomReport) -> String {
    let find = |p: RoomPolicy| r.outcomes.iter().find(|o| o.room_policy == p);
    let default = RoomPolicy::AiTiers {
        cap_scale: Some(1.0),
        routine_only: !r.config.scale_all_caps,
    };
    let (Some(fifo), Some(ai)) = (find(RoomPolicy::Fifo), find(default)) else {
        return String::new();
    };
    let caps = TriagePolicy::default().wait_cap_ms;
    let pct = |a: f64, b: f64| if b > 0.0 { 100.0 * (a / b - 1.0) } else { 0.0 };
    format!(
        "With AI triage (default wait caps: CRITICAL {} min, URGENT {} min, ROUTINE {} min) instead of arrival order:\n  \
         studies with a critical finding: mean {:.1} min to read instead of {:.1} ({:+.0}%); read within 30 min: {:.0}% instead of {:.0}%\n  \
         every other study: mean {:.1} min instead of {:.1}; longest wait {:.0} min instead of {:.0} ({:+.0}%)\n",
        caps.critical / 60_000,
        caps.urgent / 60_000,
        caps.routine / 60_000,
        ai.critical.mean_min,
        fifo.critical.mean_min,
        pct(ai.critical.mean_min, fifo.critical.mean_min),
        100.0 * ai.critical_within_30_min,
        100.0 * fifo.critical_within_30_min,
        ai.non_critical.mean_min,
        fifo.non_critical.mean_min,
        ai.non_critical.max_min,
        fifo.non_critical.max_min,
        pct(ai.non_critical.max_min, fifo.non_critical.max_min),
    )
}

/// The plain-text summary of a report.
pub fn render_table(r: &RoomReport) -> String {
    let model = match &r.config.predictions {
        Some(p) => format!("predictions of {}", p.display()),
        None => format!("{:?}", r.config.model),
    };
    let mut s = format!(
        "{} arrivals over {} days at {} sites from {} pool studies, {:.1}% critical (ground truth), model {model} (pool AUROC {})\n",
        r.arrivals,
        r.config.days,
        r.sites.len(),
        r.pool_studies,
        100.0 * r.critical_share,
        r.pool_auroc.map_or("n/a".to_string(), |a| format!("{a:.3}")),
    );
    s.push_str(&headline(r));
    s.push_str("minutes from acquisition to read finished; gain = 1 - critical mean / FIFO's; max/ff = non-critical max / FIFO's\n");
    s.push_str(&outcome::table(&r.outcomes));
    if let (Some(start), Some(hours)) = (r.config.outage_start_h, r.config.outage_hours) {
        s.push_str(&format!(
            "outage of {hours} h from hour {start} (acquired then, listed when it ends; AI policies' late-arrival limit {} h): studies acquired from its start to {} h after its end\n",
            r.config.late_arrival_limit_h,
            OUTAGE_TAIL / HOUR
        ));
        for o in &r.outcomes {
            if let Some(w) = &o.outage_window {
                s.push_str(&format!(
                    "{:<29} critical {} studies: mean {:.1}, p90 {:.1}, max {:.1} min; others {}: mean {:.1}, max {:.1} min\n",
                    o.policy,
                    w.critical.studies,
                    w.critical.mean_min,
                    w.critical.p90_min,
                    w.critical.max_min,
                    w.non_critical.studies,
                    w.non_critical.mean_min,
                    w.non_critical.max_min,
                ));
            }
        }
    }
    s.push_str("Pareto frontier (cap scale: gain, non-critical max min): ");
    let front: Vec<String> = r
        .pareto_frontier
        .iter()
        .map(|p| {
            format!(
                "x{}: {:.3}, {:.0}",
                p.cap_scale, p.critical_mean_gain_vs_fifo, p.non_critical_max_min
            )
        })
        .collect();
    s.push_str(&front.join("; "));
    s.push('\n');
    s.push_str(&match &r.goal.best {
        Some(b) => format!(
            "goal (gain >= 50%, non-critical max within 10% of FIFO) met by {} (best: {b})\n",
            r.goal.met_by.join(", ")
        ),
        None => "goal (gain >= 50%, non-critical max within 10% of FIFO) not met by any policy\n"
            .to_string(),
    });
    s
}
