//! Drift scenarios: how the traffic changes at a change point, and which dataset studies the
//! replay draws before and after it.
//!
//! Images come from a pre-synthesized dataset, so most scenarios change *which rows are drawn*
//! after the change point (view mix, site demographics, prevalence, laterals); the intensity
//! scenario keeps the rows and transforms the pixels of the images it sends ([`super::pixels`]).
//! Before the change point every scenario draws the natural held-out mix, so the drift
//! service's reference window sees the hospital as it was. After it, each study is drawn from
//! the scenario's sub-population with probability `fraction` (the rest stays natural); when
//! that sub-population runs out, the natural mix fills in and the shortfall is counted.

use std::fmt;
use std::str::FromStr;

use rand::SeedableRng;
use serde::Serialize;

use crate::dataset::labels::{Finding, LabelState, Projection, Sex, ViewKind};
use crate::dataset::ChexpertRow;
use crate::synth::render::Drift;

/// A change injected into the replayed traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DriftScenario {
    /// No change.
    #[default]
    None,
    /// View mix: only portable AP frontals after the change (an ICU or ward takes over).
    PortableAp,
    /// A new detector: gain, offset and gamma of the images change ([`INTENSITY_SHIFT`]).
    IntensityShift,
    /// One site's patients change: after the change the last site sends elderly women
    /// (age >= 70, female); the other sites stay as they were.
    SiteDemographics,
    /// Prevalence rise: positives of one finding (`--drift-finding`) are oversampled.
    PrevalenceRise,
    /// Lateral views leak in: studies send their lateral image instead of the frontal.
    LateralLeak,
}

impl DriftScenario {
    pub const ALL: [DriftScenario; 6] = [
        DriftScenario::None,
        DriftScenario::PortableAp,
        DriftScenario::IntensityShift,
        DriftScenario::SiteDemographics,
        DriftScenario::PrevalenceRise,
        DriftScenario::LateralLeak,
    ];

    pub fn name(self) -> &'static str {
        match self {
            DriftScenario::None => "none",
            DriftScenario::PortableAp => "portable-ap",
            DriftScenario::IntensityShift => "intensity-shift",
            DriftScenario::SiteDemographics => "site-demographics",
            DriftScenario::PrevalenceRise => "prevalence-rise",
            DriftScenario::LateralLeak => "lateral-leak",
        }
    }
}

impl fmt::Display for DriftScenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DriftScenario {
    type Err = String;

    /// Accepts the kebab-case names (`portable-ap`), snake case and any letter case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm = s.trim().to_ascii_lowercase().replace('_', "-");
        DriftScenario::ALL
            .into_iter()
            .find(|d| d.name() == norm)
            .ok_or_else(|| {
                let names: Vec<&str> = DriftScenario::ALL.iter().map(|d| d.name()).collect();
                format!("unknown drift scenario {s:?}; one of {}", names.join(", "))
            })
    }
}

/// The new detector of [`DriftScenario::IntensityShift`]: darker, lifted blacks, flatter
/// contrast, a little noisier.
pub const INTENSITY_SHIFT: Drift = Drift {
    gain: 0.8,
    offset: 0.08,
    gamma: 1.35,
    noise: 1.5,
};

/// Age from which a patient counts as elderly in [`DriftScenario::SiteDemographics`].
pub const ELDERLY_AGE: u32 = 70;

/// A finding by its CheXpert column name, case-insensitively, `-`/`_` for spaces.
pub fn parse_finding(s: &str) -> Result<Finding, String> {
    let norm = |x: &str| x.trim().to_ascii_lowercase().replace(['-', '_'], " ");
    Finding::ALL
        .into_iter()
        .find(|f| norm(f.name()) == norm(s))
        .ok_or_else(|| format!("unknown finding {s:?}"))
}

/// What changes, when, and how strongly.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DriftPlan {
    pub scenario: DriftScenario,
    /// The change happens once this many studies were published (the next one is the first
    /// after the change) …
    pub after_studies: Option<usize>,
    /// … or this many seconds after the first study, whichever comes first.
    pub after_s: Option<f64>,
    /// Share of the studies after the change that come from the scenario (0..=1).
    pub fraction: f64,
    /// The finding of [`DriftScenario::PrevalenceRise`].
    #[serde(serialize_with = "finding_name")]
    pub finding: Finding,
    /// The pixel change of [`DriftScenario::IntensityShift`].
    pub intensity: Drift,
}

fn finding_name<S: serde::Serializer>(f: &Finding, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(f.name())
}

impl Default for DriftPlan {
    fn default() -> Self {
        DriftPlan {
            scenario: DriftScenario::None,
            after_studies: None,
            after_s: None,
            fraction: 1.0,
            finding: Finding::Pneumothorax,
            intensity: INTENSITY_SHIFT,
        }
    }
}

impl DriftPlan {
    /// A plan that changes the traffic to `scenario` after `after_studies` studies.
    pub fn after(scenario: DriftScenario, after_studies: usize) -> Self {
        DriftPlan {
            scenario,
            after_studies: Some(after_studies),
            ..DriftPlan::default()
        }
    }

    /// Whether the study about to be published (`published` went before it, `elapsed_s` after
    /// the first) comes after the change point.
    pub fn changed(&self, published: usize, elapsed_s: f64) -> bool {
        if self.scenario == DriftScenario::None {
            return false;
        }
        match (self.after_studies, self.after_s) {
            (None, None) => true,
            (n, t) => n.is_some_and(|n| published >= n) || t.is_some_and(|t| elapsed_s >= t),
        }
    }
}

/// The image a study sends in the natural mix: its first frontal view, else its first image.
pub fn baseline_row(rows: &[ChexpertRow]) -> Option<&ChexpertRow> {
    rows.iter()
        .find(|r| r.view == ViewKind::Frontal)
        .or(rows.first())
}

/// The image a study sends when drawn from `plan`'s sub-population; `None` when the study is
/// not in it (or the scenario draws no separate sub-population).
pub fn drifted_row<'a>(plan: &DriftPlan, rows: &'a [ChexpertRow]) -> Option<&'a ChexpertRow> {
    match plan.scenario {
        DriftScenario::None | DriftScenario::IntensityShift => None,
        DriftScenario::PortableAp => rows
            .iter()
            .find(|r| r.view == ViewKind::Frontal && r.projection == Some(Projection::Ap)),
        DriftScenario::LateralLeak => rows.iter().find(|r| r.view == ViewKind::Lateral),
        DriftScenario::SiteDemographics => baseline_row(rows)
            .filter(|r| r.sex == Sex::Female && r.age.is_some_and(|a| a >= ELDERLY_AGE)),
        DriftScenario::PrevalenceRise => {
            baseline_row(rows).filter(|r| r.label(plan.finding) == LabelState::Positive)
        }
    }
}

/// The dataset's studies in a seeded random order, each drawn at most once: the natural mix
/// from one cursor, a scenario's sub-population from another.
#[derive(Debug, Clone)]
pub struct StudyPool {
    studies: Vec<Vec<ChexpertRow>>,
    used: Vec<bool>,
    natural: usize,
    drifted: usize,
    /// Completed passes through the studies.
    cycle: u32,
}

impl StudyPool {
    /// Groups `rows` into studies and shuffles them with `seed`.
    pub fn new(rows: Vec<ChexpertRow>, seed: u64) -> Self {
        let mut by_study: std::collections::BTreeMap<_, Vec<ChexpertRow>> = Default::default();
        for r in rows {
            by_study.entry(r.study_key()).or_default().push(r);
        }
        let mut studies: Vec<Vec<ChexpertRow>> = by_study.into_values().collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        rand::seq::SliceRandom::shuffle(studies.as_mut_slice(), &mut rng);
        StudyPool {
            used: vec![false; studies.len()],
            studies,
            natural: 0,
            drifted: 0,
            cycle: 0,
        }
    }

    /// How many times the pool was drawn through before the current pass (0: first pass).
    pub fn cycle(&self) -> u32 {
        self.cycle
    }

    /// Studies in the pool (drawn or not).
    pub fn len(&self) -> usize {
        self.studies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.studies.is_empty()
    }

    /// The next undrawn study, natural mix. When every study was drawn, the next pass (cycle)
    /// begins, in the same order: a load test may run longer than the held-out split is long.
    /// `None` only for an empty pool.
    pub fn next_natural(&mut self) -> Option<ChexpertRow> {
        // Twice at most: the second pass starts on a fresh cycle, whose first study is free.
        for _ in 0..2 {
            while self.natural < self.studies.len() {
                let i = self.natural;
                self.natural += 1;
                if !self.used[i] {
                    self.used[i] = true;
                    return baseline_row(&self.studies[i]).cloned();
                }
            }
            if self.studies.is_empty() {
                return None;
            }
            // The natural cursor passed every study, so each one was drawn (by it or by a
            // scenario draw): all of them are available again in the next cycle.
            self.used.fill(false);
            self.natural = 0;
            self.drifted = 0;
            self.cycle += 1;
        }
        None
    }

    /// The next undrawn study of `plan`'s sub-population.
    pub fn next_drifted(&mut self, plan: &DriftPlan) -> Option<ChexpertRow> {
        while self.drifted < self.studies.len() {
            let i = self.drifted;
            self.drifted += 1;
            if self.used[i] {
                continue;
            }
            if let Some(row) = drifted_row(plan, &self.studies[i]) {
                let row = row.clone();
                self.used[i] = true;
                return Some(row);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::labels::Labels;

    fn row(patient: u32, study: u32, view: ViewKind, proj: Option<Projection>) -> ChexpertRow {
        let v = if view == ViewKind::Frontal {
            "frontal"
        } else {
            "lateral"
        };
        ChexpertRow {
            path: format!(
                "CheXpert-v1.0-small/heldout/patient{patient:05}/study{study}/view1_{v}.png"
            ),
            patient: crate::dataset::PatientId(format!("patient{patient:05}")),
            study,
            sex: if patient.is_multiple_of(3) {
                Sex::Female
            } else {
                Sex::Male
            },
            age: Some(40 + patient % 50),
            view,
            projection: proj,
            labels: if patient.is_multiple_of(4) {
                Labels::default().with(Finding::Pneumothorax, LabelState::Positive)
            } else {
                Labels::default()
            },
        }
    }

    fn dataset() -> Vec<ChexpertRow> {
        let mut rows = Vec::new();
        for p in 0u32..200 {
            let proj = if p.is_multiple_of(2) {
                Projection::Ap
            } else {
                Projection::Pa
            };
            rows.push(row(p, 1, ViewKind::Frontal, Some(proj)));
            if p.is_multiple_of(5) {
                rows.push(row(p, 1, ViewKind::Lateral, None));
            }
        }
        rows
    }

    #[test]
    fn scenario_names_round_trip() {
        for d in DriftScenario::ALL {
            assert_eq!(d.to_string().parse::<DriftScenario>(), Ok(d));
        }
        assert_eq!("Portable_AP".parse(), Ok(DriftScenario::PortableAp));
        assert!("sunspots".parse::<DriftScenario>().is_err());
        assert_eq!(
            parse_finding("pleural-effusion"),
            Ok(Finding::PleuralEffusion)
        );
    }

    #[test]
    fn change_point_by_count_or_time() {
        let p = DriftPlan::after(DriftScenario::PortableAp, 10);
        assert!(!p.changed(9, 0.0));
        assert!(p.changed(10, 0.0));
        let t = DriftPlan {
            after_s: Some(5.0),
            ..p
        };
        assert!(t.changed(3, 5.0));
        assert!(!DriftPlan::default().changed(1_000, 1e9));
    }

    #[test]
    fn each_scenario_draws_its_sub_population_and_never_a_study_twice() {
        for scenario in [
            DriftScenario::PortableAp,
            DriftScenario::LateralLeak,
            DriftScenario::SiteDemographics,
            DriftScenario::PrevalenceRise,
        ] {
            let plan = DriftPlan::after(scenario, 0);
            let mut pool = StudyPool::new(dataset(), 9);
            let mut seen = std::collections::HashSet::new();
            let mut drifted = 0;
            while let Some(r) = pool.next_drifted(&plan) {
                assert!(seen.insert(r.study_key()), "{scenario}: drawn twice");
                match scenario {
                    DriftScenario::PortableAp => assert_eq!(r.projection, Some(Projection::Ap)),
                    DriftScenario::LateralLeak => assert_eq!(r.view, ViewKind::Lateral),
                    DriftScenario::SiteDemographics => {
                        assert!(r.sex == Sex::Female && r.age.unwrap() >= ELDERLY_AGE)
                    }
                    DriftScenario::PrevalenceRise => {
                        assert_eq!(r.label(Finding::Pneumothorax), LabelState::Positive)
                    }
                    _ => unreachable!(),
                }
                drifted += 1;
            }
            assert!(drifted > 0, "{scenario} found its sub-population");
            // Within one cycle; the draw after the last study starts the next one.
            while let Some(r) = pool.next_natural().filter(|_| pool.cycle() == 0) {
                assert!(
                    seen.insert(r.study_key()),
                    "{scenario}: natural drew a drifted study"
                );
                assert_eq!(r.view, ViewKind::Frontal, "natural draws send the frontal");
            }
            assert_eq!(seen.len(), 200);
            assert_eq!(
                pool.cycle(),
                1,
                "{scenario}: the pool cycles when drawn through"
            );
            // The new cycle offers the sub-population again.
            assert!(pool.next_drifted(&plan).is_some(), "{scenario}: cycle 2");
        }
    }

    #[test]
    fn population_mix_counts_shares() {
        let rows = dataset();
        let m = crate::replay::PopulationMix::of(
            rows.iter().map(|r| (r, false)),
            Finding::Pneumothorax,
        );
        assert_eq!(m.studies, rows.len());
        assert!(m.lateral_fraction > 0.0 && m.ap_fraction > 0.0);
        assert_eq!(m.intensity_shifted, 0);
    }
}
