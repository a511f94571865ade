//! Tests of the replay's study source, UIDs and scan events.

use super::*;

#[test]
fn ground_truth_tiers_are_the_triage_tiers() {
    let names = |fs: &[Finding]| fs.iter().map(|f| f.name()).collect::<Vec<_>>();
    assert_eq!(names(&CRITICAL), cxrflow_contracts::CRITICAL_FINDINGS);
    assert_eq!(names(&URGENT), cxrflow_contracts::URGENT_FINDINGS);
}

#[test]
fn derived_uids_follow_the_dicom_grammar() {
    let u = derived_uid("study/patient00001/1");
    assert!(u.len() <= 64);
    assert!(u.starts_with("2.25."));
    assert!(u[5..].bytes().all(|b| b.is_ascii_digit()));
    assert!(!u[5..].starts_with('0') || u.len() == 6);
    assert_ne!(u, derived_uid("study/patient00001/2"));
}

fn rows() -> Vec<ChexpertRow> {
    let mut rows = Vec::new();
    for p in 0u32..120 {
        let path = |v: &str| format!("CheXpert-v1.0-small/heldout/patient{p:05}/study1/{v}.png");
        let base = ChexpertRow {
            path: path("view1_frontal"),
            patient: crate::dataset::PatientId(format!("patient{p:05}")),
            study: 1,
            sex: if p.is_multiple_of(2) {
                Sex::Female
            } else {
                Sex::Male
            },
            age: Some(30 + p % 60),
            view: ViewKind::Frontal,
            projection: Some(if p.is_multiple_of(3) {
                Projection::Ap
            } else {
                Projection::Pa
            }),
            labels: crate::dataset::labels::Labels::default(),
        };
        rows.push(ChexpertRow {
            path: path("view2_lateral"),
            view: ViewKind::Lateral,
            projection: None,
            ..base.clone()
        });
        rows.push(base);
    }
    rows
}

fn source(plan: DriftPlan) -> StudySource {
    StudySource::from_rows(
        rows(),
        PathBuf::from("/data"),
        4,
        SiteMix::new(2, &[]),
        plan,
    )
}

#[test]
fn studies_switch_at_the_change_point_and_never_repeat() {
    let mut src = source(DriftPlan::after(DriftScenario::PortableAp, 20));
    let mut seen = std::collections::HashSet::new();
    let mut sent = Vec::new();
    // One pass through the table (the next draw would start the second cycle).
    for _ in 0..120 {
        let s = src
            .next(src.plan().changed(sent.len(), 0.0))
            .expect("the table has 120 studies");
        assert!(seen.insert(s.uid.clone()), "a study is sent once");
        sent.push(s);
    }
    assert!(sent.iter().all(|s| s.cycle == 0));
    assert!(sent[..20].iter().all(|s| !s.after_change && !s.drifted));
    // 40 AP studies exist: those left after the change come first, then the natural mix
    // fills in and the shortfall is counted.
    let ap_before = sent[..20]
        .iter()
        .filter(|s| view_position(&s.row) == "AP")
        .count();
    let left = 40 - ap_before;
    assert!(sent[20..20 + left]
        .iter()
        .all(|s| s.drifted && view_position(&s.row) == "AP"));
    assert!(sent[20 + left..].iter().all(|s| !s.drifted));
    assert_eq!(src.shortfall, 100 - left);
    assert!(sent.iter().all(|s| s.row.view == ViewKind::Frontal));
}

#[test]
fn a_replay_longer_than_the_table_cycles_with_fresh_deterministic_uids() {
    let draw = || {
        let mut src = source(DriftPlan::default());
        (0..300)
            .map(|_| {
                src.next(false)
                    .expect("the replay cycles, it never runs out")
            })
            .collect::<Vec<_>>()
    };
    let sent = draw();
    let cycles: Vec<u32> = sent.iter().map(|s| s.cycle).collect();
    assert!(cycles[..120].iter().all(|&c| c == 0), "{cycles:?}");
    assert!(cycles[120..240].iter().all(|&c| c == 1), "{cycles:?}");
    assert!(cycles[240..].iter().all(|&c| c == 2), "{cycles:?}");
    // Each cycle sends the table's studies again, in the same order.
    for i in 0..120 {
        assert_eq!(sent[i].row.path, sent[i + 120].row.path);
    }
    // Every study, series and image is new downstream.
    let mut uids = std::collections::HashSet::new();
    for s in &sent {
        let ev = scan_event(s, None, 0, "k");
        assert_eq!(ev.study.study_instance_uid, s.uid);
        for u in [
            ev.study.study_instance_uid,
            ev.study.series_instance_uid,
            ev.study.sop_instance_uid,
        ] {
            assert!(u.len() <= 64 && u.starts_with("2.25."), "{u}");
            assert!(uids.insert(u.clone()), "{u} sent twice");
        }
    }
    // The first cycle keeps the names label joins use; later ones derive from the cycle.
    let first = &sent[0];
    assert_eq!(
        first.uid,
        derived_uid(&format!(
            "study/{}/{}",
            first.row.patient.0, first.row.study
        ))
    );
    assert_eq!(sent[120].uid, study_uid(&sent[120].row, 1));
    assert_ne!(sent[120].uid, first.uid);
    // Deterministic: the same seed gives the same UIDs.
    let again: Vec<String> = draw().into_iter().map(|s| s.uid).collect();
    assert_eq!(
        again,
        sent.iter().map(|s| s.uid.clone()).collect::<Vec<_>>()
    );
}

#[test]
fn lateral_leak_sends_laterals_and_intensity_shift_marks_pixels() {
    let mut src = source(DriftPlan::after(DriftScenario::LateralLeak, 0));
    let s = src.next(true).unwrap();
    assert_eq!(
        (s.row.view, view_position(&s.row)),
        (ViewKind::Lateral, "LL")
    );
    let mut src = source(DriftPlan::after(DriftScenario::IntensityShift, 0));
    let s = src.next(true).unwrap();
    assert_eq!(s.intensity, Some(INTENSITY_SHIFT));
    assert!(s.drifted && s.row.view == ViewKind::Frontal);
    assert!(staged_path(&s).to_string_lossy().ends_with(".shifted.png"));
    assert!(src.next(false).unwrap().intensity.is_none());
}

#[test]
fn site_demographics_change_only_the_drifting_site() {
    let mut src = source(DriftPlan::after(DriftScenario::SiteDemographics, 0));
    let sent: Vec<ReplayStudy> = std::iter::from_fn(|| src.next(true)).take(30).collect();
    for s in &sent {
        if s.drifted {
            assert_eq!(s.site, "site-02");
            assert!(s.row.sex == Sex::Female && s.row.age.unwrap() >= 70);
        } else {
            assert!(s.site == "site-01" || src.shortfall > 0);
        }
    }
    assert!(sent.iter().any(|s| s.drifted));
}

#[test]
fn drift_fraction_mixes_natural_studies_in() {
    let plan = DriftPlan {
        fraction: 0.5,
        ..DriftPlan::after(DriftScenario::IntensityShift, 0)
    };
    let mut src = source(plan);
    // One pass through the 120 studies (the source cycles after it).
    let shifted = std::iter::from_fn(|| src.next(true))
        .take(120)
        .filter(|s| s.intensity.is_some())
        .count();
    assert!((40..=80).contains(&shifted), "{shifted} of 120 shifted");
}

#[test]
fn pseudonym_hides_the_patient_id() {
    let p = pseudonym("s", "patient00001");
    assert!(!p.contains("00001"));
    assert_eq!(p, pseudonym("s", "patient00001"));
    assert_ne!(p, pseudonym("other", "patient00001"));
}
