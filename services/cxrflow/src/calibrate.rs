//! `cxrflow model calibrate`: the worklist tiers' operating points. Scores a labelled split's
//! frontal images with the same gates, preprocessing and model session the services run, chooses
//! each tier finding's threshold to its target (`cxrflow_inference::calibration`), holds the
//! CRITICAL tier to its budget, writes tiers, thresholds and what they measured into the
//! manifest, and reports tier sizes, PPV and sensitivity on the calibration split and, honestly,
//! on a second split the thresholds never saw.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cxrflow_contracts::{CRITICAL_FINDINGS, URGENT_FINDINGS};
use cxrflow_inference::calibration::{
    choose, fit_budget, measure_tier, CalibrationRecord, OperatingPoint, Sample, ScoredImage,
    Target, TierMeasure,
};
use cxrflow_inference::manifest::FindingTier;
use cxrflow_sim::dataset::labels::{Finding, LabelState};
use cxrflow_sim::dataset::ChexpertRow;
use serde::Serialize;

use crate::ood::{frontal_rows, rewrite_manifest, CalibrationInput, Judge};

#[derive(Debug, clap::Args)]
pub struct CalibrateArgs {
    #[command(flatten)]
    pub input: CalibrationInput,
    /// A second split measured with the chosen thresholds (empty: none).
    #[arg(long, default_value = "heldout")]
    pub evaluate: String,
    /// Findings of the CRITICAL tier (comma-separated CheXpert names).
    #[arg(long, value_delimiter = ',', default_values_t = CRITICAL_FINDINGS.map(String::from))]
    pub critical: Vec<String>,
    /// Findings of the URGENT tier.
    #[arg(long, value_delimiter = ',', default_values_t = URGENT_FINDINGS.map(String::from))]
    pub urgent: Vec<String>,
    /// Each CRITICAL finding's target: `sensitivity=V`, `specificity=V` or `flag-rate=V`.
    #[arg(long, default_value = "sensitivity=0.90")]
    pub critical_target: Target,
    /// Each URGENT finding's target.
    #[arg(long, default_value = "specificity=0.90")]
    pub urgent_target: Target,
    /// Per-finding targets that override the tier's: `Edema=sensitivity=0.8` (repeatable).
    #[arg(long = "target")]
    pub targets: Vec<String>,
    /// The most of the split's images the CRITICAL tier may flag: when the targets would flag
    /// more, thresholds rise until it fits and the report says which target was given up.
    #[arg(long, default_value_t = 0.15)]
    pub critical_budget: f64,
    /// Where to write the JSON report.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Report without writing the manifest.
    #[arg(long)]
    pub dry_run: bool,
}

/// One finding's row of the report.
#[derive(Debug, Serialize)]
struct FindingRow {
    finding: String,
    tier: FindingTier,
    threshold: f64,
    calibration: OperatingPoint,
    evaluation: Option<OperatingPoint>,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    split: String,
    images: usize,
    refused: BTreeMap<String, usize>,
    evaluate_split: Option<String>,
    evaluate_images: usize,
    critical_budget: f64,
    findings: Vec<FindingRow>,
    tiers: BTreeMap<String, TierMeasure>,
    evaluate_tiers: BTreeMap<String, TierMeasure>,
}

fn sim_finding(name: &str) -> anyhow::Result<Finding> {
    Finding::ALL
        .into_iter()
        .find(|f| f.name() == name)
        .with_context(|| format!("{name:?} is not a CheXpert finding"))
}

/// Positive: labelled 1; negative: 0 or blank (CheXpert's "not mentioned"); uncertain (-1):
/// unknown, left out of sensitivity and specificity.
fn truth(row: &ChexpertRow, f: Finding) -> Option<bool> {
    match row.label(f) {
        LabelState::Positive => Some(true),
        LabelState::Negative | LabelState::Blank => Some(false),
        LabelState::Uncertain => None,
    }
}

/// Scores a split's frontal images; refused ones are counted by code (they would never be
/// ranked, so they take no part in choosing thresholds).
fn score_split(
    judge: &Judge,
    dataset: &std::path::Path,
    split: &str,
    findings: &[Finding],
) -> anyhow::Result<(Vec<ScoredImage>, BTreeMap<String, usize>)> {
    let mut images = Vec::new();
    let mut refused = BTreeMap::new();
    for (path, row) in frontal_rows(dataset, split)? {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        match judge.probabilities(&bytes)? {
            Ok(probabilities) => images.push(ScoredImage {
                probabilities,
                truth: findings.iter().map(|f| truth(&row, *f)).collect(),
            }),
            Err(code) => *refused.entry(code).or_default() += 1,
        }
    }
    if images.is_empty() {
        bail!("no image of the {split} split was scored (refused: {refused:?})");
    }
    Ok((images, refused))
}

fn column(images: &[ScoredImage], i: usize) -> Vec<Sample> {
    images
        .iter()
        .map(|img| Sample {
            probability: img.probabilities[i],
            truth: img.truth[i],
        })
        .collect()
}

fn tiers_of(
    images: &[ScoredImage],
    names: &[String],
    tiers: &[FindingTier],
    thresholds: &[f64],
) -> BTreeMap<String, TierMeasure> {
    let idx =
        |t: FindingTier| -> Vec<usize> { (0..tiers.len()).filter(|&i| tiers[i] == t).collect() };
    let critical = idx(FindingTier::Critical);
    let urgent = idx(FindingTier::Urgent);
    BTreeMap::from([
        (
            "critical".to_string(),
            measure_tier(images, names, &critical, thresholds, &[]),
        ),
        (
            "urgent".to_string(),
            measure_tier(images, names, &urgent, thresholds, &critical),
        ),
    ])
}

pub fn calibrate(a: &CalibrateArgs) -> anyhow::Result<()> {
    let input = &a.input;
    let judge = Judge::open(&input.model_dir)?;
    let manifest = judge.manifest().clone();
    let names: Vec<String> = manifest.findings.iter().map(|f| f.name.clone()).collect();
    let findings: Vec<Finding> = names
        .iter()
        .map(|n| sim_finding(n))
        .collect::<anyhow::Result<_>>()?;
    for n in a.critical.iter().chain(&a.urgent) {
        if !names.contains(n) {
            bail!("{n:?} is not one of the model's findings {names:?}");
        }
    }
    if let Some(n) = a.critical.iter().find(|n| a.urgent.contains(n)) {
        bail!("{n:?} is named in both --critical and --urgent");
    }
    if !(0.0..=1.0).contains(&a.critical_budget) {
        bail!(
            "--critical-budget {} is not within [0, 1]",
            a.critical_budget
        );
    }
    let mut overrides: BTreeMap<String, Target> = BTreeMap::new();
    for t in &a.targets {
        let (name, target) = t
            .split_once('=')
            .with_context(|| format!("--target {t:?}: expected FINDING=measure=value"))?;
        let target: Target = target
            .parse()
            .map_err(|e| anyhow::anyhow!("--target {t:?}: {e}"))?;
        overrides.insert(name.trim().to_string(), target);
    }
    let tiers: Vec<FindingTier> = names
        .iter()
        .map(|n| {
            if a.critical.contains(n) {
                FindingTier::Critical
            } else if a.urgent.contains(n) {
                FindingTier::Urgent
            } else {
                FindingTier::None
            }
        })
        .collect();
    let target_of = |i: usize| -> Option<Target> {
        match tiers[i] {
            FindingTier::None => overrides.get(&names[i]).copied(),
            FindingTier::Critical => Some(*overrides.get(&names[i]).unwrap_or(&a.critical_target)),
            FindingTier::Urgent => Some(*overrides.get(&names[i]).unwrap_or(&a.urgent_target)),
        }
    };

    let (images, refused) = score_split(&judge, &input.dataset, &input.split, &findings)?;
    // Tier findings get their target's threshold; the others keep the manifest's (shown on the
    // page, raising nothing) unless a --target names them.
    let mut thresholds: Vec<f64> = manifest
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| target_of(i).map_or(f.threshold, |t| choose(&column(&images, i), t).0))
        .collect();
    let critical: Vec<usize> = (0..names.len())
        .filter(|&i| tiers[i] == FindingTier::Critical)
        .collect();
    fit_budget(&images, &critical, &mut thresholds, a.critical_budget);
    // A threshold above every score flags nothing; keep it a probability.
    for t in &mut thresholds {
        *t = t.clamp(0.0, 1.0);
    }

    let evaluation = if a.evaluate.is_empty() {
        None
    } else {
        Some(score_split(&judge, &input.dataset, &a.evaluate, &findings)?)
    };
    let mut rows = Vec::new();
    for i in 0..names.len() {
        let target = target_of(i).unwrap_or(Target::Specificity(0.0));
        rows.push(FindingRow {
            finding: names[i].clone(),
            tier: tiers[i],
            threshold: thresholds[i],
            calibration: OperatingPoint::measure(&column(&images, i), thresholds[i], target),
            evaluation: evaluation
                .as_ref()
                .map(|(ev, _)| OperatingPoint::measure(&column(ev, i), thresholds[i], target)),
        });
    }
    let report = Report {
        model: format!("{}/{}", manifest.name, manifest.version),
        split: input.split.clone(),
        images: images.len(),
        refused,
        evaluate_split: evaluation.as_ref().map(|_| a.evaluate.clone()),
        evaluate_images: evaluation.as_ref().map_or(0, |(ev, _)| ev.len()),
        critical_budget: a.critical_budget,
        tiers: tiers_of(&images, &names, &tiers, &thresholds),
        evaluate_tiers: evaluation
            .as_ref()
            .map(|(ev, _)| tiers_of(ev, &names, &tiers, &thresholds))
            .unwrap_or_default(),
        findings: rows,
    };
    print_report(&report);
    if let Some(out) = &a.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", out.display()))?;
    }
    if a.dry_run {
        return Ok(());
    }
    let record = CalibrationRecord {
        split: format!("{} split of {}", input.split, input.dataset.display()),
        images: report.images,
        critical_budget: a.critical_budget,
        targets: (0..names.len())
            .filter(|&i| tiers[i] != FindingTier::None || overrides.contains_key(&names[i]))
            .filter_map(|i| target_of(i).map(|t| (names[i].clone(), t.to_string())))
            .collect(),
        tiers: report.tiers.clone(),
        uncertain_labels: "left out of sensitivity and specificity".into(),
    };
    write_manifest(a, &report, record)
}

fn write_manifest(
    a: &CalibrateArgs,
    report: &Report,
    record: CalibrationRecord,
) -> anyhow::Result<()> {
    rewrite_manifest(&a.input.model_dir, |manifest| {
        let Some(specs) = manifest["findings"].as_array_mut() else {
            bail!("the manifest has no findings array");
        };
        for (spec, row) in specs.iter_mut().zip(&report.findings) {
            spec["threshold"] = serde_json::json!(row.threshold);
            spec["tier"] = serde_json::to_value(row.tier)?;
            spec["critical"] = serde_json::json!(row.tier == FindingTier::Critical);
            spec["operating_point"] = serde_json::to_value(&row.calibration)?;
        }
        manifest["calibration"] = serde_json::to_value(&record)?;
        Ok(())
    })
}

fn pct(v: Option<f64>) -> String {
    v.map_or("  n/a".into(), |v| format!("{:5.1}", 100.0 * v))
}

fn print_report(r: &Report) {
    eprintln!(
        "calibrated on {} {} images ({} refused: {:?}); CRITICAL budget {:.0}%",
        r.images,
        r.split,
        r.refused.values().sum::<usize>(),
        r.refused,
        100.0 * r.critical_budget
    );
    eprintln!(
        "{:<27} {:<8} {:>9} {:<18} {:>4} {:>6} {:>6} {:>15} {:>6} {:>6}",
        "finding",
        "tier",
        "threshold",
        "target",
        "met",
        "flag%",
        "pos",
        "sens% [95% CI]",
        "spec%",
        "PPV%"
    );
    for f in r.findings.iter().filter(|f| f.tier != FindingTier::None) {
        let c = &f.calibration;
        let ci = c.sensitivity_ci95.map_or(String::new(), |[l, h]| {
            format!("[{:.0}-{:.0}]", 100.0 * l, 100.0 * h)
        });
        eprintln!(
            "{:<27} {:<8} {:>9.4} {:<18} {:>4} {:>6.1} {:>6} {:>6} {:>8} {:>6} {:>6}",
            f.finding,
            format!("{:?}", f.tier).to_uppercase(),
            f.threshold,
            c.target,
            if c.met { "yes" } else { "NO" },
            100.0 * c.flag_rate,
            c.positives,
            pct(c.sensitivity),
            ci,
            pct(c.specificity),
            pct(c.ppv)
        );
    }
    for (label, tiers, n) in [
        (r.split.as_str(), &r.tiers, r.images),
        (
            r.evaluate_split.as_deref().unwrap_or(""),
            &r.evaluate_tiers,
            r.evaluate_images,
        ),
    ] {
        for (name, t) in tiers {
            eprintln!(
                "tier {:<8} on {label} ({n} images): {} flagged ({:.1}%), {} positive, sensitivity {}%, PPV {}%",
                name.to_uppercase(),
                t.flagged,
                100.0 * t.flag_rate,
                t.positives,
                pct(t.sensitivity).trim(),
                pct(t.ppv).trim()
            );
        }
    }
}
