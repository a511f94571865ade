//! Property tests of the pure ordering core: STAT never below ROUTINE, no open study past its
//! tier's wait cap without escalation in a simulated-clock run, a total reading order, and
//! re-delivery of any prediction changes nothing.

use std::cmp::Ordering;

use cxrflow_contracts::{
    FindingScore, ModelRole, OrderPriority, Prediction, StudyContext, TriageDecision, TriageTier,
    WorklistStatus,
};
use cxrflow_testkit::records::{prediction, score, study};
use cxrflow_triage::policy::TriagePolicy;
use cxrflow_triage::worklist::{reading_order, OrderingMode, Worklist};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

fn arb_prediction() -> impl Strategy<Value = Prediction> {
    let finding = (
        prop::sample::select(vec![
            "Pneumothorax",
            "Edema",
            "Cardiomegaly",
            "Fracture",
            "No Finding",
            "Atelectasis",
        ]),
        0.0f64..1.0,
        0.05f64..0.95,
        any::<bool>(),
    );
    (
        0u32..10,
        prop::sample::select(vec!["a", "b"]),
        prop::sample::select(vec![
            OrderPriority::Stat,
            OrderPriority::Urgent,
            OrderPriority::Routine,
        ]),
        0i64..(10 * 60 * MIN),
        prop::collection::vec(finding, 0..5),
        prop::bool::weighted(0.85),
        prop::sample::select(vec!["1", "2"]),
        0i64..(10 * 60 * MIN),
        prop::sample::select(vec![
            ModelRole::Production,
            ModelRole::Canary,
            ModelRole::Shadow,
        ]),
    )
        .prop_map(
            |(n, site, hint, acq, findings, assessable, version, pred, role)| Prediction {
                study: StudyContext {
                    site_id: site.into(),
                    study_instance_uid: format!("1.2.840.{n}"),
                    series_instance_uid: format!("1.2.840.{n}.1"),
                    sop_instance_uid: format!("1.2.840.{n}.1.1"),
                    accession_number: None,
                    patient_ref: format!("p{n}"),
                    modality: "CR".into(),
                    view_position: Some("PA".into()),
                    patient_age_years: None,
                    patient_sex: None,
                    // One acquisition time per study, as in reality.
                    acquired_at: T0 + (n as i64) * 7 * MIN + (acq % 2),
                    // Mostly on time; some arrive late: a backlog of hours, a prior of days, or
                    // before their acquisition (a modality clock running ahead).
                    published_at: T0
                        + (n as i64) * 7 * MIN
                        + match n % 6 {
                            0 => (n as i64 + 1) * 40 * MIN,
                            3 => (n as i64 + 1) * 30 * 60 * MIN,
                            5 => -(n as i64) * 20 * MIN,
                            _ => 0,
                        },
                    priority_hint: hint,
                },
                blob_uri: format!("file:///blobs/{n}"),
                model_name: "densenet".into(),
                model_version: version.into(),
                model_role: role,
                execution_provider: "cpu".into(),
                assessable,
                findings: findings
                    .into_iter()
                    .map(|(f, p, t, c)| FindingScore {
                        finding: f.into(),
                        probability: p,
                        threshold: t,
                        critical: c && f != "No Finding",
                        urgent: !c && cxrflow_contracts::URGENT_FINDINGS.contains(&f),
                    })
                    .collect(),
                batch_size: 1,
                inference_ms: 1.0,
                predicted_at: T0 + pred,
                embedding: None,
                input_stats: None,
                not_assessable_reason: None,
                not_assessable_code: None,
                ood_distance: None,
            },
        )
}

#[derive(Debug, Clone)]
enum Step {
    Deliver(Box<Prediction>),
    Advance(i64),
    Tick,
}

fn arb_steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        prop_oneof![
            4 => arb_prediction().prop_map(|p| Step::Deliver(Box::new(p))),
            2 => (0i64..(3 * 60 * MIN)).prop_map(Step::Advance),
            2 => Just(Step::Tick),
        ],
        1..60,
    )
}

fn deliver(wl: &mut Worklist, p: &Prediction, now: i64) -> bool {
    match wl.on_prediction(p, now) {
        Ok(d) => wl.apply(d, Some(p.predicted_at)),
        Err(_) => false,
    }
}

fn tick(wl: &mut Worklist, now: i64) {
    for d in wl.escalations_due(now) {
        assert!(wl.apply(d, None));
    }
}

fn snapshot(wl: &Worklist, mode: OrderingMode) -> Vec<(String, i64)> {
    wl.ordered(None, mode)
        .into_iter()
        .map(|e| {
            (
                e.decision.study.study_instance_uid.clone(),
                e.decision.version,
            )
        })
        .collect()
}

/// The open studies' UIDs in pooled reading order.
fn reading_order_of(wl: &Worklist) -> Vec<String> {
    snapshot(wl, OrderingMode::Pooled)
        .into_iter()
        .map(|x| x.0)
        .collect()
}

fn assert_stat_not_below_routine(wl: &Worklist, mode: OrderingMode) {
    for site in ["a", "b"] {
        let order = wl.ordered(Some(site), mode);
        let last_stat = order
            .iter()
            .rposition(|e| e.decision.study.priority_hint == OrderPriority::Stat);
        let first_routine = order
            .iter()
            .position(|e| e.decision.tier == TriageTier::Routine);
        if let (Some(s), Some(r)) = (last_stat, first_routine) {
            assert!(s < r, "STAT study at {s} below a ROUTINE study at {r}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn stat_never_ranks_below_routine(steps in arb_steps(), pooled in any::<bool>()) {
        let mode = if pooled { OrderingMode::Pooled } else { OrderingMode::PerSite };
        let mut wl = Worklist::new(TriagePolicy::default());
        let mut now = T0;
        for s in &steps {
            match s {
                Step::Deliver(p) => { deliver(&mut wl, p, now); }
                Step::Advance(ms) => now += ms,
                Step::Tick => tick(&mut wl, now),
            }
            assert_stat_not_below_routine(&wl, mode);
        }
    }

    #[test]
    fn no_open_study_waits_past_its_cap_unescalated(steps in arb_steps()) {
        let policy = TriagePolicy::default();
        let mut wl = Worklist::new(policy.clone());
        let mut now = T0;
        let mut last: std::collections::HashMap<String, (i64, i32)> = Default::default();
        for s in &steps {
            match s {
                Step::Deliver(p) => { deliver(&mut wl, p, now); }
                Step::Advance(ms) => now += ms,
                Step::Tick => {
                    tick(&mut wl, now);
                    for e in wl.entries().filter(|e| e.is_open()) {
                        let waited = now - e.wait_since(&policy);
                        prop_assert!(waited <= policy.cap(e.decision.tier),
                            "{} waited {waited} ms in {:?} (cap {})", e.decision.study.study_instance_uid,
                            e.decision.tier, policy.cap(e.decision.tier));
                        if e.decision.escalations > 0 {
                            prop_assert_eq!(e.decision.status, WorklistStatus::Escalated);
                        }
                    }
                }
            }
            // Versions strictly increase per study; escalations never go back.
            for e in wl.entries() {
                let uid = e.decision.study.study_instance_uid.clone();
                if let Some((v, esc)) = last.get(&uid) {
                    prop_assert!(e.decision.version >= *v);
                    prop_assert!(e.decision.escalations >= *esc);
                }
                last.insert(uid, (e.decision.version, e.decision.escalations));
            }
        }
    }

    #[test]
    fn reading_order_is_a_total_order(preds in prop::collection::vec(arb_prediction(), 3..30), pooled in any::<bool>()) {
        let mode = if pooled { OrderingMode::Pooled } else { OrderingMode::PerSite };
        let wl = Worklist::new(TriagePolicy::default());
        let mut ds: Vec<TriageDecision> = Vec::new();
        for p in &preds {
            if let Ok(d) = wl.on_prediction(p, T0) {
                if !ds.iter().any(|x| x.study.study_instance_uid == d.study.study_instance_uid) {
                    ds.push(d);
                }
            }
        }
        for a in &ds {
            prop_assert_eq!(reading_order(a, a, mode), Ordering::Equal);
            for b in &ds {
                let ab = reading_order(a, b, mode);
                prop_assert_eq!(ab, reading_order(b, a, mode).reverse());
                if a.study.study_instance_uid != b.study.study_instance_uid {
                    prop_assert_ne!(ab, Ordering::Equal);
                }
                for c in &ds {
                    if ab != Ordering::Greater && reading_order(b, c, mode) != Ordering::Greater {
                        prop_assert_ne!(reading_order(a, c, mode), Ordering::Greater);
                    }
                }
            }
        }
        // The order does not depend on the order entries were added in.
        let mut fwd = Worklist::new(TriagePolicy::default());
        let mut rev = Worklist::new(TriagePolicy::default());
        for d in &ds { fwd.apply(d.clone(), None); }
        for d in ds.iter().rev() { rev.apply(d.clone(), None); }
        prop_assert_eq!(snapshot(&fwd, mode), snapshot(&rev, mode));
    }

    #[test]
    fn redelivering_any_prediction_changes_nothing(steps in arb_steps(), pick in any::<prop::sample::Index>(), pooled in any::<bool>()) {
        let mode = if pooled { OrderingMode::Pooled } else { OrderingMode::PerSite };
        let mut wl = Worklist::new(TriagePolicy::default());
        let mut now = T0;
        let mut delivered = Vec::new();
        for s in &steps {
            match s {
                Step::Deliver(p) => { deliver(&mut wl, p, now); delivered.push(p.clone()); }
                Step::Advance(ms) => now += ms,
                Step::Tick => tick(&mut wl, now),
            }
        }
        prop_assume!(!delivered.is_empty());
        let before = snapshot(&wl, mode);
        let p = pick.get(&delivered);
        prop_assert!(wl.on_prediction(p, now + 1).is_err(), "re-delivery produced a decision");
        prop_assert_eq!(snapshot(&wl, mode), before);
    }
}

#[test]
fn a_critical_study_reads_before_a_routine_one_and_escalation_lifts_the_routine_one() {
    let mut wl = Worklist::new(TriagePolicy::default());
    let mut routine = Prediction {
        findings: vec![score("Cardiomegaly", 0.1)],
        predicted_at: T0,
        ..prediction(StudyContext {
            view_position: None,
            acquired_at: T0,
            published_at: T0,
            ..study("r")
        })
    };
    deliver(&mut wl, &routine, T0);
    let mut critical = routine.clone();
    critical.study.study_instance_uid = "c".into();
    critical.study.acquired_at = T0 + 7 * 60 * MIN;
    critical.study.published_at = T0 + 7 * 60 * MIN;
    critical.findings[0] = FindingScore {
        threshold: 0.4,
        ..score("Pneumothorax", 0.9)
    };
    deliver(&mut wl, &critical, T0 + 7 * 60 * MIN);
    assert_eq!(reading_order_of(&wl), ["c", "r"]);
    // Past its cap the routine study escalates to URGENT, due since it started waiting (its
    // acquisition): past the cap it is read by age.
    tick(&mut wl, T0 + 6 * 60 * MIN + 1);
    let r = &wl.get("r").unwrap().decision;
    assert_eq!(
        (r.tier, r.status, r.escalations),
        (TriageTier::Urgent, WorklistStatus::Escalated, 1)
    );
    assert!(r.reasons.last().unwrap().contains("past its cap"));
    assert_eq!(r.deadline, routine.study.acquired_at);
    // A newer prediction does not undo the escalation.
    routine.predicted_at += 1;
    routine.model_version = "2".into();
    assert!(deliver(&mut wl, &routine, T0 + 6 * 60 * MIN + 2));
    let r = &wl.get("r").unwrap().decision;
    assert_eq!(
        (r.tier, r.escalations, r.version),
        (TriageTier::Urgent, 1, 3)
    );
    assert_eq!(
        reading_order_of(&wl),
        ["r", "c"],
        "the escalated study is due now, before the fresh critical one"
    );
}

/// A prior acquired years before it arrived (pydicom's test files are dated 1997–2004) is timed
/// from its arrival: it is not escalated on arrival, and it is read after a CRITICAL study
/// acquired just before it, where timed from its acquisition it was escalated to URGENT at once
/// and due since 1997, above every CRITICAL study. A 6-hour outage's backlog, within the limit,
/// keeps its acquisition time: past its cap on arrival, it is escalated and read by age (the
/// reading room shows this keeps the other studies' longest wait at FIFO's).
#[test]
fn a_prior_from_years_ago_is_timed_from_its_arrival_and_a_backlog_from_its_acquisition() {
    let policy = TriagePolicy::default();
    let mut wl = Worklist::new(policy.clone());
    let arrival = T0 + 6 * 60 * MIN;
    let pneumothorax = vec![FindingScore {
        threshold: 0.4,
        ..score("Pneumothorax", 0.9)
    }];
    let at = |uid: &str, acquired_at: i64, findings: Vec<FindingScore>| Prediction {
        findings,
        predicted_at: arrival + 1_000,
        ..prediction(StudyContext {
            acquired_at,
            published_at: arrival,
            ..study(uid)
        })
    };
    let studies = [
        at("backlog-routine", T0, vec![score("Cardiomegaly", 0.1)]),
        at("backlog-critical", T0 + 2 * 60 * MIN, pneumothorax.clone()),
        Prediction {
            assessable: false,
            not_assessable_reason: Some("colour image".into()),
            ..at("1997-prior", 861_890_678_000, vec![])
        },
        at("fresh-critical", arrival - 5 * MIN, pneumothorax),
    ];
    let now = arrival + 2_000;
    for p in &studies {
        assert!(deliver(&mut wl, p, now), "{}", p.study.study_instance_uid);
    }
    tick(&mut wl, now);
    let d = |wl: &Worklist, uid: &str| wl.get(uid).unwrap().decision.clone();
    let d0 = |uid: &str| d(&wl, uid);
    assert_eq!(
        (d0("1997-prior").tier, d0("1997-prior").escalations),
        (TriageTier::NotAssessable, 0),
        "{:?}",
        d0("1997-prior").reasons
    );
    assert!(
        d0("1997-prior")
            .reasons
            .iter()
            .any(|r| r.contains("days before it arrived")),
        "{:?}",
        d0("1997-prior").reasons
    );
    assert_eq!(
        (
            d0("backlog-routine").tier,
            d0("backlog-routine").escalations
        ),
        (TriageTier::Urgent, 1),
        "the backlog is past its cap on arrival"
    );
    assert_eq!(d0("backlog-routine").deadline, T0, "read by age");
    assert!(d0("backlog-routine")
        .reasons
        .iter()
        .all(|r| !r.contains("arrived")));
    assert_eq!(
        reading_order_of(&wl),
        [
            "backlog-routine",
            "backlog-critical",
            "fresh-critical",
            "1997-prior"
        ]
    );
    // The prior escalates once it has waited its cap on this worklist, due since its arrival.
    tick(
        &mut wl,
        arrival + policy.cap(TriageTier::NotAssessable) - MIN,
    );
    assert_eq!(d(&wl, "1997-prior").escalations, 0);
    tick(&mut wl, arrival + policy.cap(TriageTier::NotAssessable) + 1);
    assert_eq!(
        (d(&wl, "1997-prior").tier, d(&wl, "1997-prior").escalations),
        (TriageTier::Urgent, 1)
    );
    assert_eq!(d(&wl, "1997-prior").deadline, arrival);
}

/// Ordinary traffic and backlogs within the limit are timed from their acquisition; past it, or
/// acquired "after" arrival by a clock running ahead, a study is timed from its arrival (a
/// clock ahead would otherwise put its deadline and escalation hours late).
#[test]
fn a_study_is_timed_from_its_acquisition_within_the_limit_and_never_from_after_its_arrival() {
    let policy = TriagePolicy::default();
    let on_time = StudyContext {
        acquired_at: T0,
        published_at: T0 + 29 * MIN,
        ..study("s")
    };
    assert_eq!(policy.wait_start(&on_time), T0);
    assert_eq!(policy.late_arrival_reason(&on_time), None);
    let backlog = StudyContext {
        published_at: T0 + policy.late_arrival_limit_ms,
        ..on_time.clone()
    };
    assert_eq!(policy.wait_start(&backlog), T0);
    let prior = StudyContext {
        published_at: T0 + policy.late_arrival_limit_ms + 1,
        ..on_time.clone()
    };
    assert_eq!(policy.wait_start(&prior), prior.published_at);
    assert!(policy
        .late_arrival_reason(&prior)
        .unwrap()
        .contains("acquired 24 h 00 min before it arrived"));
    let ahead = StudyContext {
        acquired_at: T0 + 3 * 60 * MIN,
        published_at: T0,
        ..on_time
    };
    assert_eq!(policy.wait_start(&ahead), T0);
    assert!(policy
        .late_arrival_reason(&ahead)
        .unwrap()
        .contains("acquired 3 h 00 min after it arrived"));
    // A clock a minute or two ahead is timed from arrival too, without a word.
    let slightly = StudyContext {
        acquired_at: T0 + 2 * MIN,
        ..ahead.clone()
    };
    assert_eq!(policy.wait_start(&slightly), T0);
    assert_eq!(policy.late_arrival_reason(&slightly), None);
    let mut wl = Worklist::new(policy.clone());
    let p = Prediction {
        findings: vec![score("Cardiomegaly", 0.1)],
        ..prediction(ahead)
    };
    assert!(deliver(&mut wl, &p, T0 + 1_000));
    assert_eq!(
        wl.get("s").unwrap().decision.deadline,
        T0 + policy.sla_ms.routine
    );
    tick(&mut wl, T0 + policy.cap(TriageTier::Routine) + 1);
    assert_eq!(
        wl.get("s").unwrap().decision.escalations,
        1,
        "escalated on time"
    );
}

/// A prediction of image `sop` of study `uid`, acquired and published at T0, predicted `at` ms
/// after it, with no findings scored.
fn image_of(uid: &str, sop: &str, at: i64) -> Prediction {
    Prediction {
        predicted_at: T0 + at,
        ..prediction(StudyContext {
            sop_instance_uid: sop.into(),
            acquired_at: T0,
            published_at: T0,
            ..study(uid)
        })
    }
}

/// A study of several images (a PA and a lateral, a repeat film) is ranked by its most urgent
/// image, whatever order the images' predictions arrive in: a lateral's not-assessable
/// prediction after the PA's pneumothorax never unranks the study, a routine film never
/// lowers a critical one, and a critical film after a routine one raises the study.
#[test]
fn a_study_of_several_images_is_ranked_by_its_most_urgent_image_in_any_order() {
    let image = |sop: &str, at: i64| image_of("s", sop, at);
    let mut pa = image("s.1", 1);
    pa.findings = vec![FindingScore {
        threshold: 0.4,
        ..score("Pneumothorax", 0.9)
    }];
    let mut lateral = image("s.2", 2);
    lateral.assessable = false;
    lateral.findings.clear();
    lateral.not_assessable_code = Some("view.lateral".into());
    lateral.not_assessable_reason = Some("lateral view".into());
    let mut repeat = image("s.3", 3);
    repeat.findings = vec![score("Cardiomegaly", 0.1)];
    let orders: [[&Prediction; 3]; 6] = [
        [&pa, &lateral, &repeat],
        [&pa, &repeat, &lateral],
        [&lateral, &pa, &repeat],
        [&lateral, &repeat, &pa],
        [&repeat, &pa, &lateral],
        [&repeat, &lateral, &pa],
    ];
    for order in orders {
        let mut wl = Worklist::new(TriagePolicy::default());
        for (i, p) in order.iter().enumerate() {
            deliver(&mut wl, p, T0 + 10 + i as i64);
        }
        let d = &wl.get("s").unwrap().decision;
        let sops: Vec<&str> = order
            .iter()
            .map(|p| p.study.sop_instance_uid.as_str())
            .collect();
        assert_eq!(d.tier, TriageTier::Critical, "{sops:?}: {d:?}");
        assert_eq!(d.study.sop_instance_uid, "s.1", "{sops:?}");
        assert_eq!(d.top_findings[0].finding, "Pneumothorax", "{sops:?}");
        // Re-delivering any of them changes nothing.
        for p in order {
            deliver(&mut wl, p, T0 + 20);
            assert_eq!(wl.get("s").unwrap().decision.tier, TriageTier::Critical);
        }
    }
    // Only the lateral and the routine film: ranked ROUTINE by the film, in either order.
    for order in [[&lateral, &repeat], [&repeat, &lateral]] {
        let mut wl = Worklist::new(TriagePolicy::default());
        for p in order {
            deliver(&mut wl, p, T0 + 10);
        }
        assert_eq!(wl.get("s").unwrap().decision.tier, TriageTier::Routine);
    }
    // The lateral alone: NOT_ASSESSABLE, with its reason.
    let mut wl = Worklist::new(TriagePolicy::default());
    deliver(&mut wl, &lateral, T0 + 10);
    let d = &wl.get("s").unwrap().decision;
    assert_eq!(d.tier, TriageTier::NotAssessable);
    assert_eq!(d.not_assessable_code.as_deref(), Some("view.lateral"));
}

/// A study escalated to CRITICAL for waiting still takes another image's critical finding:
/// the escalation raised its tier, not its own image's findings.
#[test]
fn an_escalated_study_still_takes_another_images_critical_finding() {
    let policy = TriagePolicy::default();
    let mut wl = Worklist::new(policy.clone());
    let image = |sop: &str, at: i64| image_of("e", sop, at);
    let mut urgent = image("e.1", 1);
    urgent.findings = vec![FindingScore {
        threshold: 0.05,
        urgent: true,
        ..score("Edema", 0.99)
    }];
    deliver(&mut wl, &urgent, T0 + 1);
    assert_eq!(wl.get("e").unwrap().decision.tier, TriageTier::Urgent);
    // Past the URGENT cap it escalates to CRITICAL.
    let now = T0 + policy.cap(TriageTier::Urgent) + 1;
    tick(&mut wl, now);
    let d = &wl.get("e").unwrap().decision;
    assert_eq!((d.tier, d.escalations), (TriageTier::Critical, 1));
    let escalated_score = d.score;
    let mut critical = image("e.2", 2);
    critical.findings = vec![FindingScore {
        threshold: 0.4,
        critical: true,
        ..score("Pneumothorax", 0.41)
    }];
    deliver(&mut wl, &critical, now + 1);
    let d = &wl.get("e").unwrap().decision;
    assert_eq!(d.tier, TriageTier::Critical);
    assert_eq!(d.escalations, 1, "the escalation is kept");
    assert!(
        d.top_findings.iter().any(|f| f.finding == "Pneumothorax"),
        "the critical image decides (its score {} against the escalated {escalated_score}): {d:?}",
        d.score
    );
}
