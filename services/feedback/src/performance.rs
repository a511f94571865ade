//! Online performance: per model version and site, over the last N labeled examples, AUROC
//! per finding, sensitivity and specificity at each finding's manifest threshold, and the time
//! from acquisition to read per worklist tier. Served as JSON on `GET /performance`; the
//! all-sites figures are also Prometheus gauges labelled by model version and finding.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::Json;
use cxrflow_common::audit;
use cxrflow_common::auth::{Access, Principal, Role, Routes};
use cxrflow_contracts::{LabelState, LabeledExample, FINDINGS};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;

use cxrflow_common::stats::auroc;

/// How an UNCERTAIN label counts in the metrics (CheXpert's policies). The stored and exported
/// labels keep UNCERTAIN as such; only the metrics map it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum UncertaintyPolicy {
    /// Uncertain counts as present (for triage a possible finding is a finding).
    #[default]
    UOnes,
    /// Uncertain counts as absent.
    UZeros,
    /// Uncertain labels are left out.
    Ignore,
}

impl UncertaintyPolicy {
    /// The binary truth of a label under this policy; `None` leaves the pair out.
    pub fn truth(self, state: LabelState) -> Option<bool> {
        match (state, self) {
            (LabelState::Present, _) => Some(true),
            (LabelState::Absent, _) => Some(false),
            (LabelState::Uncertain, UncertaintyPolicy::UOnes) => Some(true),
            (LabelState::Uncertain, UncertaintyPolicy::UZeros) => Some(false),
            (LabelState::Uncertain, UncertaintyPolicy::Ignore) | (LabelState::NotAssessed, _) => {
                None
            }
        }
    }
}

/// The site key of the all-sites window.
pub const ALL_SITES: &str = "*";
/// Model versions kept at once (gauge cardinality bound); the least recently seen is dropped.
pub const MAX_MODEL_VERSIONS: usize = 8;
/// Tier label values (bounded): the triage tiers, anything else is "other".
const TIERS: [&str; 4] = ["CRITICAL", "URGENT", "ROUTINE", "NOT_ASSESSABLE"];

/// One labeled example reduced to what the metrics need.
#[derive(Debug, Clone)]
struct Entry {
    study: String,
    /// Per finding (canonical order): (probability, threshold, truth).
    pairs: [Option<(f64, f64, bool)>; 14],
    acquisition_to_read_s: f64,
    tier: &'static str,
}

#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<Entry>,
}

impl Window {
    /// Adds `e`, replacing the entry of the same study (a corrected report), keeping `cap`.
    fn push(&mut self, e: Entry, cap: usize) {
        if let Some(slot) = self.entries.iter_mut().find(|x| x.study == e.study) {
            *slot = e;
            return;
        }
        self.entries.push_back(e);
        while self.entries.len() > cap {
            self.entries.pop_front();
        }
    }

    fn pairs(&self, finding: usize) -> Vec<(f64, bool)> {
        self.entries
            .iter()
            .filter_map(|e| e.pairs[finding].map(|(p, _, t)| (p, t)))
            .collect()
    }

    fn report(&self, model_version: &str, site: &str) -> WindowReport {
        let findings = FINDINGS
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let (mut tp, mut fp, mut tn, mut fn_) = (0u64, 0u64, 0u64, 0u64);
                let mut threshold = None;
                for (p, thr, truth) in self.entries.iter().filter_map(|e| e.pairs[i]) {
                    threshold = Some(thr);
                    match (p >= thr, truth) {
                        (true, true) => tp += 1,
                        (true, false) => fp += 1,
                        (false, false) => tn += 1,
                        (false, true) => fn_ += 1,
                    }
                }
                let ratio = |a: u64, b: u64| {
                    if a + b == 0 {
                        None
                    } else {
                        Some(a as f64 / (a + b) as f64)
                    }
                };
                FindingReport {
                    finding: name.to_string(),
                    auroc: auroc(&self.pairs(i)),
                    positives: tp + fn_,
                    negatives: tn + fp,
                    threshold,
                    sensitivity: ratio(tp, fn_),
                    specificity: ratio(tn, fp),
                }
            })
            .collect();
        let mut by_tier: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
        for e in &self.entries {
            by_tier
                .entry(e.tier)
                .or_default()
                .push(e.acquisition_to_read_s);
        }
        let time_to_read = by_tier
            .into_iter()
            .map(|(tier, mut v)| {
                v.sort_by(f64::total_cmp);
                TierTime {
                    tier: tier.to_string(),
                    count: v.len(),
                    mean_seconds: v.iter().sum::<f64>() / v.len() as f64,
                    p50_seconds: quantile(&v, 0.5),
                    p90_seconds: quantile(&v, 0.9),
                }
            })
            .collect();
        WindowReport {
            model_version: model_version.to_string(),
            site: site.to_string(),
            examples: self.entries.len(),
            findings,
            time_to_read,
        }
    }
}

/// Nearest-rank quantile of sorted, non-empty `v`.
fn quantile(v: &[f64], q: f64) -> f64 {
    let idx = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[idx]
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FindingReport {
    pub finding: String,
    pub auroc: Option<f64>,
    pub positives: u64,
    pub negatives: u64,
    pub threshold: Option<f64>,
    pub sensitivity: Option<f64>,
    pub specificity: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TierTime {
    pub tier: String,
    pub count: usize,
    pub mean_seconds: f64,
    pub p50_seconds: f64,
    pub p90_seconds: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WindowReport {
    pub model_version: String,
    /// A site id, or `*` for all sites together.
    pub site: String,
    pub examples: usize,
    pub findings: Vec<FindingReport>,
    pub time_to_read: Vec<TierTime>,
}

/// The body of `GET /performance`.
#[derive(Debug, Clone, Serialize)]
pub struct PerformanceReport {
    pub uncertainty_policy: UncertaintyPolicy,
    pub window: usize,
    pub windows: Vec<WindowReport>,
}

type G = Family<Vec<(&'static str, String)>, Gauge<f64, AtomicU64>>;

#[derive(Clone, Default)]
struct Gauges {
    auroc: G,
    sensitivity: G,
    specificity: G,
    examples: G,
    time_to_read: G,
}

#[derive(Default)]
struct Windows {
    windows: HashMap<(String, String), Window>,
    /// Model versions, least recently seen first.
    versions: Vec<String>,
}

/// Rolling windows of labeled examples and their metrics. Cheap to share (`Arc`).
pub struct Performance {
    window: usize,
    policy: UncertaintyPolicy,
    state: Mutex<Windows>,
    gauges: Gauges,
}

impl Performance {
    pub fn new(window: usize, policy: UncertaintyPolicy) -> Performance {
        Performance {
            window: window.max(1),
            policy,
            state: Mutex::default(),
            gauges: Gauges::default(),
        }
    }

    /// Registers the gauges under `cxrflow_feedback_…`.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("cxrflow_feedback");
        let g = &self.gauges;
        r.register(
            "auroc",
            "Online AUROC per finding over the rolling window (all sites)",
            g.auroc.clone(),
        );
        r.register(
            "sensitivity",
            "Sensitivity at the manifest threshold over the rolling window (all sites)",
            g.sensitivity.clone(),
        );
        r.register(
            "specificity",
            "Specificity at the manifest threshold over the rolling window (all sites)",
            g.specificity.clone(),
        );
        r.register(
            "window_examples",
            "Labeled examples in the rolling window (all sites)",
            g.examples.clone(),
        );
        r.register(
            "acquisition_to_read_seconds",
            "Time from acquisition to the end of the read, by tier at read, over the rolling window (all sites)",
            g.time_to_read.clone(),
        );
    }

    fn entry(&self, ex: &LabeledExample) -> Entry {
        let mut pairs = [None; 14];
        for (i, name) in FINDINGS.iter().enumerate() {
            let score = ex.probabilities.iter().find(|s| s.finding == *name);
            let label = ex.labels.iter().find(|l| l.finding == *name);
            if let (Some(s), Some(l)) = (score, label) {
                if let Some(truth) = self.policy.truth(l.state) {
                    pairs[i] = Some((s.probability, s.threshold, truth));
                }
            }
        }
        let tier = ex
            .tier_at_read
            .as_deref()
            .and_then(|t| TIERS.iter().find(|k| k.eq_ignore_ascii_case(t)).copied())
            .unwrap_or("other");
        Entry {
            study: ex.study.study_instance_uid.clone(),
            pairs,
            acquisition_to_read_s: (ex.read_ended_at - ex.study.acquired_at) as f64 / 1000.0,
            tier,
        }
    }

    /// Adds a (new or corrected) labeled example to its windows and refreshes the gauges.
    pub fn observe(&self, ex: &LabeledExample) {
        let entry = self.entry(ex);
        let version = ex.model_version.clone();
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.versions.retain(|v| *v != version);
        st.versions.push(version.clone());
        while st.versions.len() > MAX_MODEL_VERSIONS {
            let gone = st.versions.remove(0);
            st.windows.retain(|(v, _), _| *v != gone);
            self.clear_gauges(&gone);
        }
        for site in [ex.study.site_id.clone(), ALL_SITES.to_string()] {
            st.windows
                .entry((version.clone(), site))
                .or_default()
                .push(entry.clone(), self.window);
        }
        let all = st.windows[&(version.clone(), ALL_SITES.to_string())].report(&version, ALL_SITES);
        drop(st);
        self.set_gauges(&all);
    }

    fn set_gauges(&self, r: &WindowReport) {
        let g = &self.gauges;
        let v = r.model_version.clone();
        g.examples
            .get_or_create(&vec![("model_version", v.clone())])
            .set(r.examples as f64);
        for f in &r.findings {
            let l = vec![("model_version", v.clone()), ("finding", f.finding.clone())];
            g.auroc.get_or_create(&l).set(f.auroc.unwrap_or(f64::NAN));
            g.sensitivity
                .get_or_create(&l)
                .set(f.sensitivity.unwrap_or(f64::NAN));
            g.specificity
                .get_or_create(&l)
                .set(f.specificity.unwrap_or(f64::NAN));
        }
        for t in &r.time_to_read {
            for (q, val) in [("0.5", t.p50_seconds), ("0.9", t.p90_seconds)] {
                g.time_to_read
                    .get_or_create(&vec![
                        ("model_version", v.clone()),
                        ("tier", t.tier.clone()),
                        ("quantile", q.into()),
                    ])
                    .set(val);
            }
        }
    }

    fn clear_gauges(&self, version: &str) {
        let g = &self.gauges;
        g.examples
            .remove(&vec![("model_version", version.to_string())]);
        for f in FINDINGS {
            let l = vec![
                ("model_version", version.to_string()),
                ("finding", f.to_string()),
            ];
            g.auroc.remove(&l);
            g.sensitivity.remove(&l);
            g.specificity.remove(&l);
        }
        for t in TIERS.iter().chain(["other"].iter()) {
            for q in ["0.5", "0.9"] {
                g.time_to_read.remove(&vec![
                    ("model_version", version.to_string()),
                    ("tier", t.to_string()),
                    ("quantile", q.to_string()),
                ]);
            }
        }
    }

    /// Every window's figures, sorted by model version then site.
    pub fn report(&self) -> PerformanceReport {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut keys: Vec<&(String, String)> = st.windows.keys().collect();
        keys.sort();
        PerformanceReport {
            uncertainty_policy: self.policy,
            window: self.window,
            windows: keys
                .into_iter()
                .map(|k| st.windows[k].report(&k.0, &k.1))
                .collect(),
        }
    }

    /// `GET /performance`, for readers (it names sites and model versions).
    pub fn routes(self: &Arc<Self>) -> Routes {
        Routes::new()
            .get("/performance", Access::Role(Role::Reader), performance)
            .with_state(self.clone())
    }
}

async fn performance(State(p): State<Arc<Performance>>, who: Principal) -> Json<PerformanceReport> {
    audit::performance_read(&who);
    Json(p.report())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, pair by pair: P(score+ > score-) + P(score+ = score-) / 2.
    fn brute_force_auroc(pairs: &[(f64, bool)]) -> Option<f64> {
        let pos: Vec<f64> = pairs.iter().filter(|p| p.1).map(|p| p.0).collect();
        let neg: Vec<f64> = pairs.iter().filter(|p| !p.1).map(|p| p.0).collect();
        if pos.is_empty() || neg.is_empty() {
            return None;
        }
        let wins: f64 = pos
            .iter()
            .flat_map(|p| neg.iter().map(move |n| (p, n)))
            .map(|(p, n)| {
                if p > n {
                    1.0
                } else if p == n {
                    0.5
                } else {
                    0.0
                }
            })
            .sum();
        Some(wins / (pos.len() * neg.len()) as f64)
    }
    use crate::fixtures::{labeled, rng_labeled};

    #[test]
    fn online_auroc_equals_offline_pair_counting_on_the_same_pairs() {
        let perf = Performance::new(500, UncertaintyPolicy::UOnes);
        let examples = rng_labeled(700, 42);
        for ex in &examples {
            perf.observe(ex);
        }
        let report = perf.report();
        let all = report
            .windows
            .iter()
            .find(|w| w.site == ALL_SITES && w.model_version == "v1")
            .unwrap();
        assert_eq!(all.examples, 500, "rolling window keeps the last N");
        let window = &examples[200..];
        for (i, name) in FINDINGS.iter().enumerate() {
            let pairs: Vec<(f64, bool)> = window
                .iter()
                .filter_map(|ex| {
                    let s = ex.probabilities.iter().find(|s| s.finding == *name)?;
                    let l = ex.labels.iter().find(|l| l.finding == *name)?;
                    UncertaintyPolicy::UOnes
                        .truth(l.state)
                        .map(|t| (s.probability, t))
                })
                .collect();
            let offline = brute_force_auroc(&pairs);
            let online = all.findings[i].auroc;
            match (online, offline) {
                (Some(a), Some(b)) => {
                    assert!((a - b).abs() < 1e-12, "{name}: online {a} offline {b}")
                }
                (a, b) => assert_eq!(a, b, "{name}"),
            }
        }
        // Per-site windows exist beside the aggregate.
        assert!(report.windows.iter().any(|w| w.site == "site-a"));
    }

    #[test]
    fn uncertainty_policy_and_thresholds() {
        let mut ex = labeled("1.1", "v2", 0.7, LabelState::Uncertain);
        ex.study.acquired_at = 0;
        ex.read_ended_at = 90_000;
        ex.tier_at_read = Some("urgent".into());
        let mut neg = labeled("1.2", "v2", 0.2, LabelState::Absent);
        neg.tier_at_read = Some("weird".into());
        for (policy, sens) in [
            (UncertaintyPolicy::UOnes, Some(1.0)),
            (UncertaintyPolicy::Ignore, None),
        ] {
            let perf = Performance::new(10, policy);
            perf.observe(&ex);
            perf.observe(&neg);
            let r = perf.report();
            let w = r.windows.iter().find(|w| w.site == ALL_SITES).unwrap();
            let edema = w.findings.iter().find(|f| f.finding == "Edema").unwrap();
            assert_eq!(edema.sensitivity, sens, "{policy:?}");
            assert_eq!(edema.specificity, Some(1.0));
            let urgent = w.time_to_read.iter().find(|t| t.tier == "URGENT").unwrap();
            assert_eq!(urgent.p50_seconds, 90.0);
            assert!(w.time_to_read.iter().any(|t| t.tier == "other"));
        }
        let perf = Performance::new(10, UncertaintyPolicy::UZeros);
        perf.observe(&ex);
        let r = perf.report();
        let edema = r.windows[0]
            .findings
            .iter()
            .find(|f| f.finding == "Edema")
            .unwrap();
        assert_eq!((edema.positives, edema.negatives), (0, 1));
    }

    #[test]
    fn corrected_example_replaces_its_study_and_versions_are_bounded() {
        let perf = Performance::new(10, UncertaintyPolicy::UOnes);
        perf.observe(&labeled("1.1", "v1", 0.9, LabelState::Present));
        perf.observe(&labeled("1.1", "v1", 0.9, LabelState::Absent));
        let r = perf.report();
        assert_eq!(r.windows[0].examples, 1);
        for i in 0..(MAX_MODEL_VERSIONS + 3) {
            perf.observe(&labeled("1.1", &format!("m{i}"), 0.5, LabelState::Present));
        }
        let versions: std::collections::HashSet<_> = perf
            .report()
            .windows
            .into_iter()
            .map(|w| w.model_version)
            .collect();
        assert_eq!(versions.len(), MAX_MODEL_VERSIONS);
    }
}
