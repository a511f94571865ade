//! The detector core on seeded synthetic streams: quiet without drift, fires on a shift,
//! one RAISED → UPDATED → RESOLVED episode per persistent drift, bad input excluded.

use cxrflow_contracts::{AlertState, DriftAlert, RecommendedAction};
use cxrflow_drift::detector::{DetectorConfig, ModelDetector, ModelKey};
use cxrflow_drift::observation::{Observation, AGE_INDEX};
use cxrflow_drift::synthetic::{Scenario, StudyGenerator};

/// Small, fast settings for debug-mode tests.
fn small() -> DetectorConfig {
    DetectorConfig {
        reference_size: 300,
        window_size: 150,
        stride: 25,
        min_window: 150,
        bootstrap: 30,
        mmd_sample: 80,
        mmd_permutations: 60,
        ..DetectorConfig::default()
    }
}

fn key() -> ModelKey {
    ModelKey {
        name: "chexpert-densenet121".into(),
        version: "1.0.0".into(),
    }
}

fn drive(
    det: &mut ModelDetector,
    gen: &mut StudyGenerator,
    n: usize,
    tweak: impl Fn(&mut Observation),
) -> Vec<DriftAlert> {
    let mut alerts = Vec::new();
    for _ in 0..n {
        let mut o = gen.next_study().observation();
        tweak(&mut o);
        alerts.extend(det.observe(o).alerts);
    }
    alerts
}

#[test]
fn quiet_without_drift_and_fires_on_an_intensity_shift() {
    let mut det = ModelDetector::new(key(), small());
    let mut quiet = StudyGenerator::new(42, Scenario::NoDrift, 0);
    let alerts = drive(&mut det, &mut quiet, 300 + 2000, |_| {});
    assert!(alerts.is_empty(), "false alarms without drift: {alerts:#?}");
    assert!(det.reference().is_some());
    assert!(det.last_score().is_some());

    let mut det = ModelDetector::new(key(), small());
    let mut gen = StudyGenerator::new(43, Scenario::IntensityShift, 700);
    let before = drive(&mut det, &mut gen, 700, |_| {});
    assert!(before.is_empty(), "{before:#?}");
    let after = drive(&mut det, &mut gen, 400, |_| {});
    let raised: Vec<&DriftAlert> = after
        .iter()
        .filter(|a| a.state == AlertState::Raised)
        .collect();
    assert!(raised.iter().any(|a| a.channel == "INPUT"), "{after:#?}");
    let a = raised[0];
    assert_eq!(a.model_name, "chexpert-densenet121");
    assert_eq!(a.model_version, "1.0.0");
    assert_eq!(a.reference_window.count, 300);
    assert_eq!(a.detection_window.count, 150);
    assert!(a.detection_window.start <= a.detection_window.end);
    assert!(a.p_value.is_some() || a.channel == "UNIFIED");
}

#[test]
fn persistent_drift_raises_once_then_updates_then_resolves() {
    let mut cfg = small();
    // Studies are a minute apart: UPDATED at most every 100 studies.
    cfg.cooldown_ms = 100 * 60_000;
    let mut det = ModelDetector::new(key(), cfg);
    let mut gen = StudyGenerator::new(5, Scenario::NoDrift, 0);
    let shift = |o: &mut Observation| {
        for v in o.continuous.iter_mut().take(5).flatten() {
            *v += 25.0;
        }
    };
    let mut alerts = drive(&mut det, &mut gen, 600, |_| {});
    alerts.extend(drive(&mut det, &mut gen, 600, shift));
    alerts.extend(drive(&mut det, &mut gen, 600, |_| {}));
    let input: Vec<&DriftAlert> = alerts.iter().filter(|a| a.channel == "INPUT").collect();
    let states: Vec<AlertState> = input.iter().map(|a| a.state).collect();
    assert_eq!(states.first(), Some(&AlertState::Raised), "{states:?}");
    assert_eq!(states.last(), Some(&AlertState::Resolved), "{states:?}");
    assert_eq!(
        states.iter().filter(|s| **s == AlertState::Raised).count(),
        1,
        "{states:?}"
    );
    let updates = states.iter().filter(|s| **s == AlertState::Updated).count();
    // 600 drifted studies, evaluations every 25, cool-down 100 studies: a handful of updates,
    // not one per evaluation.
    assert!((2..=6).contains(&updates), "{states:?}");
    assert!(input.iter().all(|a| a.alert_id == input[0].alert_id));
    assert!(input
        .iter()
        .all(|a| a.action == RecommendedAction::Investigate));
    // Updates respect the cool-down.
    let times: Vec<i64> = input.iter().map(|a| a.raised_at).collect();
    for w in times.windows(2).take(states.len() - 2) {
        assert!(w[1] - w[0] >= 100 * 60_000, "{times:?}");
    }
}

#[test]
fn nan_and_missing_inputs_are_excluded_not_fatal() {
    let mut det = ModelDetector::new(key(), small());
    let mut gen = StudyGenerator::new(9, Scenario::NoDrift, 0);
    // A third of studies lose their statistics, ages go missing, embeddings vanish.
    let mut n = 0usize;
    let mut alerts = Vec::new();
    for _ in 0..900 {
        let mut o = gen.next_study().observation();
        n += 1;
        if n.is_multiple_of(3) {
            for v in o.continuous.iter_mut().take(5) {
                *v = None;
            }
            o.continuous[AGE_INDEX] = None;
            o.embedding = None;
            o.categorical[0] = None;
        }
        alerts.extend(det.observe(o).alerts);
    }
    assert!(alerts.is_empty(), "{alerts:#?}");
    let eval = det.evaluate();
    assert!(eval.measurements.iter().all(|m| m.value.is_finite()));
    let mean = eval
        .measurements
        .iter()
        .find(|m| m.feature == "stats.mean")
        .unwrap();
    assert!(mean.n_window < 150 && mean.n_reference < 300);

    // From records: NaN statistics, an unknown view, an out-of-range age.
    let s = StudyGenerator::new(1, Scenario::NoDrift, 0).next_study();
    let mut p = s.prediction("m", "1");
    let stats = p.input_stats.as_mut().unwrap();
    stats.mean = f64::NAN;
    stats.p95 = f64::INFINITY;
    p.study.view_position = Some("OBLIQUE".into());
    p.study.patient_age_years = Some(400);
    let (o, ex) = Observation::from_prediction(&p);
    assert_eq!(o.continuous[0], None);
    assert_eq!(o.continuous[4], None);
    assert!(o.continuous[1].is_some());
    assert_eq!(o.categorical[0], None);
    assert_eq!(o.continuous[AGE_INDEX], None);
    let reasons: Vec<(&str, &str)> = ex.iter().map(|e| (e.feature, e.reason)).collect();
    assert!(reasons.contains(&("stats.mean", "non_finite")));
    assert!(reasons.contains(&("view_position", "unknown_category")));
    assert!(reasons.contains(&("age", "out_of_range")));
    let mut p = s.prediction("m", "1");
    p.findings[2].probability = f64::NAN;
    p.embedding = Some(vec![f32::NAN; 16]);
    let (o, ex) = Observation::from_prediction(&p);
    assert!(o.embedding.is_none());
    assert_eq!(ex.len(), 2);
    // A prediction from an inference older than schema version 3 carries no image statistics:
    // the input features are excluded as missing, the rest of the study still counts.
    let mut p = s.prediction("m", "1");
    p.input_stats = None;
    let (o, ex) = Observation::from_prediction(&p);
    assert!(o.continuous[..AGE_INDEX].iter().all(Option::is_none));
    assert!(o.continuous[AGE_INDEX..].iter().all(Option::is_some));
    assert_eq!(ex.len(), 5);
    assert!(ex.iter().all(|e| e.reason == "missing"));
}

#[test]
fn performance_drop_raises_a_retrain_alert() {
    let mut cfg = small();
    cfg.performance.reference_size = 300;
    cfg.performance.window_size = 200;
    cfg.performance.stride = 25;
    let mut det = ModelDetector::new(key(), cfg);
    let mut gen = StudyGenerator::new(77, Scenario::PerformanceDrop, 800);
    let mut alerts = Vec::new();
    for _ in 0..1300 {
        let drifting = gen.drifting();
        let s = gen.next_study();
        let out = det.observe_labeled(s.labeled_observation());
        if !drifting {
            assert!(out.alerts.is_empty(), "{:#?}", out.alerts);
        }
        alerts.extend(out.alerts);
    }
    let a = alerts
        .iter()
        .find(|a| a.state == AlertState::Raised)
        .expect("a performance alert");
    assert_eq!(a.channel, "PERFORMANCE");
    assert_eq!(a.statistic, "AUROC_DELTA");
    assert_eq!(a.action, RecommendedAction::Retrain);
    assert!(a.value < 0.0);
}

/// A drift confined to one site (a fifth of the traffic): that site's own detector, with its
/// own reference, names it; its alerts have ids of their own, and it is quiet before the onset.
#[test]
fn a_drift_at_one_site_is_caught_by_that_sites_detector() {
    use cxrflow_drift::detector::DriftDetector;
    let mut det = DriftDetector::new(DetectorConfig {
        max_sites: 3,
        ..small()
    });
    let key = key();
    let mut quiet = StudyGenerator::new(7, Scenario::NoDrift, 0);
    let mut shifted = StudyGenerator::new(8, Scenario::IntensityShift, 0);
    let (onset, total) = (2000, 3200);
    let (mut before, mut after) = (Vec::new(), Vec::new());
    let mut s3_after_onset = 0;
    let mut first_s3_alert_at = None;
    for i in 0..total {
        let mut s = quiet.next_study();
        if s.site == "S3" && i >= onset {
            let uid = s.uid.clone();
            s = loop {
                let t = shifted.next_study();
                if t.site == "S3" {
                    break t;
                }
            };
            s.uid = uid;
            s3_after_onset += 1;
        }
        let o = s.observation();
        let mut alerts = det.observe(&key, o.clone()).alerts;
        alerts.extend(
            det.observe_site(&key, o)
                .map(|x| x.alerts)
                .unwrap_or_default(),
        );
        if i < onset {
            before.extend(alerts);
        } else {
            if first_s3_alert_at.is_none()
                && alerts.iter().any(|a| a.site_id.as_deref() == Some("S3"))
            {
                first_s3_alert_at = Some(s3_after_onset);
            }
            after.extend(alerts);
        }
    }
    // (The all-traffic detector's false-alarm rate is the no-drift test's business; these small
    // debug settings are not the calibrated defaults.)
    let site_false: Vec<_> = before.iter().filter(|a| a.site_id.is_some()).collect();
    assert!(
        site_false.is_empty(),
        "site false alarms before the onset: {site_false:#?}"
    );
    let at = first_s3_alert_at.unwrap_or_else(|| panic!("no S3 alert: {after:#?}"));
    assert!(at <= 250, "S3 drift found only after {at} S3 studies");
    // Alerts of the site detectors name only S3; ids never repeat across scopes.
    let mut ids = std::collections::HashSet::new();
    for a in after.iter().filter(|a| a.state == AlertState::Raised) {
        assert!(ids.insert(a.alert_id.clone()), "duplicate alert id {a:#?}");
    }
    assert!(
        after
            .iter()
            .filter_map(|a| a.site_id.as_deref())
            .all(|s| s == "S3"),
        "{after:#?}"
    );
    // Three sites watched, the limit: a fourth gets no detector of its own.
    assert!(det.site(&key, "S9").is_none());
}
