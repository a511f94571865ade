//! Drift benchmark: feeds the detector core synthetic-but-realistic study streams (no Kafka)
//! and measures, per scenario, whether the injected drift is detected and after how many
//! studies, and how many false alarms fire without drift.
//!
//! `cargo bench -p cxrflow-drift --bench drift_benchmark` writes `target/drift-benchmark.json`
//! and prints a markdown table. Environment: `DRIFT_BENCH_SEEDS` (default 3) seeds per
//! scenario, `DRIFT_BENCH_NODRIFT` (default 10000) studies per no-drift run.

use std::time::Instant;

use cxrflow_contracts::AlertState;
use cxrflow_drift::detector::{DetectorConfig, ModelDetector, ModelKey};
use cxrflow_drift::synthetic::{Scenario, StudyGenerator};
use serde_json::json;

const REFERENCE: usize = 500;
/// Studies after the reference and before the drift starts (false alarms count here too).
const PRE_DRIFT: usize = 1000;
const POST_DRIFT: usize = 1500;
const GOAL_STUDIES: usize = 500;

struct Run {
    false_alarms: usize,
    studies_monitored_without_drift: usize,
    /// Studies after onset until the first RAISED alert (any channel).
    detected_after: Option<usize>,
    first_channel: Option<String>,
    first_signal: Option<String>,
    channels: Vec<String>,
}

fn run(scenario: Scenario, seed: u64, no_drift_len: usize) -> Run {
    let cfg = DetectorConfig::default();
    let key = ModelKey {
        name: "chexpert-densenet121".into(),
        version: "1.0.0".into(),
    };
    let mut det = ModelDetector::new(key, cfg);
    let onset = REFERENCE + PRE_DRIFT;
    let total = if scenario == Scenario::NoDrift {
        REFERENCE + no_drift_len
    } else {
        onset + POST_DRIFT
    };
    let mut generator = StudyGenerator::new(seed, scenario, onset);
    let mut r = Run {
        false_alarms: 0,
        studies_monitored_without_drift: 0,
        detected_after: None,
        first_channel: None,
        first_signal: None,
        channels: vec![],
    };
    for i in 0..total {
        let drifting = generator.drifting();
        let study = generator.next_study();
        if i >= REFERENCE && !drifting {
            r.studies_monitored_without_drift += 1;
        }
        let out = det.observe(study.observation());
        for a in out.alerts.iter().filter(|a| a.state == AlertState::Raised) {
            if drifting {
                if r.detected_after.is_none() {
                    r.detected_after = Some(i + 1 - onset);
                    r.first_channel = Some(a.channel.clone());
                    r.first_signal = Some(a.signal.clone());
                }
                if !r.channels.contains(&a.channel) {
                    r.channels.push(a.channel.clone());
                }
            } else {
                r.false_alarms += 1;
                eprintln!(
                    "  false alarm: {} seed {seed} study {i}: {} {} {} p={:?}",
                    scenario.name(),
                    a.channel,
                    a.signal,
                    a.value,
                    a.p_value
                );
            }
        }
    }
    r
}

fn main() {
    let seeds: u64 = std::env::var("DRIFT_BENCH_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let no_drift_len: usize = std::env::var("DRIFT_BENCH_NODRIFT")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut table = String::from(
        "| scenario | detected | studies to detection (median, max) | first channel / signal | channels raised | false alarms / 10k studies without drift |\n|---|---|---|---|---|---|\n",
    );
    let mut all_goals = true;
    for scenario in Scenario::BENCHMARK {
        let t = Instant::now();
        let runs: Vec<Run> = (0..seeds)
            .map(|s| run(scenario, 1000 + s, no_drift_len))
            .collect();
        let false_alarms: usize = runs.iter().map(|r| r.false_alarms).sum();
        let monitored: usize = runs.iter().map(|r| r.studies_monitored_without_drift).sum();
        let fa_per_10k = false_alarms as f64 * 10_000.0 / monitored.max(1) as f64;
        let mut delays: Vec<usize> = runs.iter().filter_map(|r| r.detected_after).collect();
        delays.sort_unstable();
        let detected = delays.len();
        let median = delays.get(delays.len() / 2).copied();
        let max = delays.last().copied();
        let mut channels: Vec<String> = runs.iter().flat_map(|r| r.channels.clone()).collect();
        channels.sort();
        channels.dedup();
        let first = runs
            .iter()
            .find_map(|r| {
                Some(format!(
                    "{} / {}",
                    r.first_channel.as_ref()?,
                    r.first_signal.as_ref()?
                ))
            })
            .unwrap_or_else(|| "-".into());
        let goal_met = if scenario == Scenario::NoDrift {
            fa_per_10k < 1.0
        } else {
            detected as u64 == seeds && max.is_some_and(|m| m <= GOAL_STUDIES) && fa_per_10k < 1.0
        };
        all_goals &= goal_met;
        let detected_txt = if scenario == Scenario::NoDrift {
            "n/a".to_string()
        } else {
            format!("{detected}/{seeds}")
        };
        let delay_txt = match (median, max) {
            (Some(m), Some(x)) => format!("{m}, {x}"),
            _ => "-".into(),
        };
        table.push_str(&format!(
            "| {} | {} | {} | {} | {} | {:.2} ({} in {} studies) |\n",
            scenario.name(),
            detected_txt,
            delay_txt,
            if scenario == Scenario::NoDrift {
                "-".into()
            } else {
                first
            },
            if channels.is_empty() {
                "-".into()
            } else {
                channels.join(", ")
            },
            fa_per_10k,
            false_alarms,
            monitored
        ));
        rows.push(json!({
            "scenario": scenario.name(),
            "seeds": seeds,
            "detected_runs": detected,
            "studies_to_detection": runs.iter().map(|r| r.detected_after).collect::<Vec<_>>(),
            "median_studies_to_detection": median,
            "max_studies_to_detection": max,
            "first_channel": runs.iter().map(|r| r.first_channel.clone()).collect::<Vec<_>>(),
            "first_signal": runs.iter().map(|r| r.first_signal.clone()).collect::<Vec<_>>(),
            "channels_raised": channels,
            "false_alarms": false_alarms,
            "studies_without_drift": monitored,
            "false_alarms_per_10k": fa_per_10k,
            "goal_met": goal_met,
            "seconds": t.elapsed().as_secs_f64(),
        }));
    }
    let cfg = DetectorConfig::default();
    let doc = json!({
        "benchmark": "cxrflow-drift synthetic scenarios",
        "goal": {"max_studies_to_detection": GOAL_STUDIES, "max_false_alarms_per_10k": 1.0},
        "all_goals_met": all_goals,
        "config": {
            "reference_size": cfg.reference_size, "window_size": cfg.window_size, "stride": cfg.stride,
            "alpha_raise": cfg.alpha_raise, "alpha_resolve": cfg.alpha_resolve,
            "mmd_sample": cfg.mmd_sample, "mmd_permutations": cfg.mmd_permutations, "mmd_z_raise": cfg.mmd_z_raise,
            "bootstrap": cfg.bootstrap, "score_sigma_raise": cfg.score_sigma_raise,
        },
        "layout": {"reference": REFERENCE, "pre_drift": PRE_DRIFT, "post_drift": POST_DRIFT, "no_drift_studies_per_run": no_drift_len},
        "scenarios": rows,
        "seconds": started.elapsed().as_secs_f64(),
    });
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target")
        });
    let path = target.join("drift-benchmark.json");
    match serde_json::to_string_pretty(&doc).map(|s| std::fs::write(&path, s)) {
        Ok(Ok(())) => eprintln!("wrote {}", path.display()),
        Ok(Err(e)) => eprintln!("could not write {}: {e}", path.display()),
        Err(e) => eprintln!("could not serialise results: {e}"),
    }
    println!("{table}");
    println!(
        "all goals met: {all_goals} ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
}
