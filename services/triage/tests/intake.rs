//! The worklist is complete, tested on the pure core: whatever order scan events, dead letters,
//! predictions (assessable, not assessable, NaN) and re-deliveries arrive in, every scanned
//! study is on the worklist exactly once, and the AI ranks it only when its newest prediction
//! passed every gate. The same invariant over the running pipeline is in
//! `tests/tests/poison.rs`.

use std::collections::BTreeMap;

use cxrflow_contracts::{
    DeadLetter, OrderPriority, Prediction, ScanEvent, StudyContext, TriageTier, WorklistStatus,
};
use cxrflow_triage::intake::{describe, DeadLetterOutcome, Unrankable, OVERDUE_CODE};
use cxrflow_triage::policy::{ai_ranked, TriagePolicy};
use cxrflow_triage::worklist::{reading_order, Ignored, OrderingMode, Worklist};
use proptest::prelude::*;

const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;

fn study(n: u32, hint: OrderPriority) -> StudyContext {
    StudyContext {
        patient_ref: format!("p{n}"),
        acquired_at: T0 + i64::from(n) * MIN,
        published_at: T0 + i64::from(n) * MIN,
        priority_hint: hint,
        ..cxrflow_testkit::records::study(&format!("1.2.826.{n}"))
    }
}

fn scan(n: u32, hint: OrderPriority) -> ScanEvent {
    ScanEvent {
        event_id: format!("e{n}"),
        study: study(n, hint),
        media_type: "application/dicom".into(),
        image_inline: None,
        image_uri: Some(format!("file:///in/{n}.dcm")),
        image_sha256: None,
        image_size_bytes: None,
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Critical,
    Normal,
    /// Refused by a gate (lateral, ineligible, out of distribution).
    Gated,
    /// The model's output was NaN.
    Nan,
}

fn prediction(n: u32, hint: OrderPriority, kind: Kind, at: i64) -> Prediction {
    use cxrflow_testkit::records::{prediction, score};
    let (assessable, p, code) = match kind {
        Kind::Critical => (true, 0.95, None),
        Kind::Normal => (true, 0.05, None),
        Kind::Gated => (false, 0.0, Some("eligibility.modality")),
        Kind::Nan => (false, 0.0, Some("model.invalid_output")),
    };
    Prediction {
        blob_uri: format!("file:///blobs/{n}"),
        assessable,
        findings: if assessable {
            vec![score("Pneumothorax", p)]
        } else {
            vec![]
        },
        predicted_at: at,
        not_assessable_reason: code.map(|c| format!("refused: {c}")),
        not_assessable_code: code.map(String::from),
        ..prediction(study(n, hint))
    }
}

fn dead_letter(n: u32, reason: &str) -> Unrankable {
    let dl = DeadLetter {
        stage: "preprocess".into(),
        reason: reason.into(),
        error: "file:///blobs/x (image/jpeg): image is truncated: JPEG stream ends early".into(),
        source_topic: "cxr.ingested.v1".into(),
        source_partition: 0,
        source_offset: 7,
        key: None,
        payload: Some(vec![1, 2, 3]),
        headers: BTreeMap::new(),
        study_instance_uid: Some(format!("1.2.826.{n}")),
        failed_at: T0,
        replay_count: 0,
    };
    Unrankable::from_dead_letter(&dl, "cxr.ingested.v1", |_, _| None).expect("a study path DLQ")
}

#[derive(Debug, Clone)]
enum Event {
    Scan(u32),
    DeadLetter(u32),
    Predict(u32, Kind, i64),
}

/// Applies `e` as the engine would: propose, then commit.
fn apply(wl: &mut Worklist, e: &Event, hint: OrderPriority, now: i64) {
    match e {
        Event::Scan(n) => {
            if let Ok(d) = wl.on_scan(&scan(*n, hint), now) {
                wl.apply(d, None);
            }
        }
        Event::DeadLetter(n) => {
            match wl.on_dead_letter(&dead_letter(*n, "decode.truncated"), now) {
                DeadLetterOutcome::Decide(d) => {
                    wl.apply(*d, None);
                }
                DeadLetterOutcome::Wait => {
                    wl.remember_dead_letter(dead_letter(*n, "decode.truncated"), now)
                }
                DeadLetterOutcome::Ignored(_) => {}
            }
        }
        Event::Predict(n, k, at) => {
            let p = prediction(*n, hint, *k, *at);
            if let Ok(d) = wl.on_prediction(&p, now) {
                wl.apply(d, Some(p.predicted_at));
            }
        }
    }
}

fn arb_kind() -> impl Strategy<Value = Kind> {
    prop::sample::select(vec![Kind::Critical, Kind::Normal, Kind::Gated, Kind::Nan])
}

type Plan = (Kind, Option<Kind>, bool, bool);

fn events_of(studies: &[Plan]) -> Vec<Event> {
    let mut events = Vec::new();
    for (i, (first, second, dlq, scanned)) in studies.iter().enumerate() {
        let n = i as u32;
        if *scanned {
            events.push(Event::Scan(n));
            events.push(Event::Scan(n)); // a re-delivery
        }
        if *dlq {
            events.push(Event::DeadLetter(n));
        }
        events.push(Event::Predict(n, *first, T0 + 1_000));
        if let Some(k) = second {
            events.push(Event::Predict(n, *k, T0 + 2_000));
        }
    }
    events
}

/// A plan of studies and its events in any order the topics' partitions may interleave them.
fn arb_run() -> impl Strategy<Value = (Vec<Plan>, Vec<Event>)> {
    prop::collection::vec(
        (
            arb_kind(),
            prop::option::of(arb_kind()),
            any::<bool>(),
            any::<bool>(),
        ),
        1..12,
    )
    .prop_flat_map(|studies| {
        let events = events_of(&studies);
        (Just(studies), Just(events).prop_shuffle())
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Every study whose scan event arrived is on the worklist exactly once; it is ranked by
    /// the AI exactly when its newest prediction was assessable; a study never scanned but
    /// dead-lettered with no context is listed after the wait, never lost.
    #[test]
    fn every_scanned_study_is_listed_once_and_ranked_only_when_assessable(
        (studies, events) in arb_run(),
        hint in prop::sample::select(vec![OrderPriority::Stat, OrderPriority::Urgent, OrderPriority::Routine]),
    ) {
        let mut wl = Worklist::new(TriagePolicy::default());
        let mut now = T0;
        for e in &events {
            now += 10;
            apply(&mut wl, e, hint, now);
        }
        for (i, (first, second, _, _)) in studies.iter().enumerate() {
            let uid = format!("1.2.826.{i}");
            let e = wl.get(&uid).expect("every study with any record is listed");
            let newest = second.unwrap_or(*first);
            let assessable = matches!(newest, Kind::Critical | Kind::Normal);
            prop_assert_eq!(ai_ranked(e.decision.tier), assessable, "{:?} {:?}", newest, e.decision);
            if !assessable {
                prop_assert!(e.decision.not_assessable_reason.is_some());
                prop_assert_eq!(e.decision.score, 0.0);
            }
        }
        prop_assert_eq!(wl.len(), studies.len());
        let ordered = wl.ordered(None, OrderingMode::Pooled);
        prop_assert_eq!(ordered.len(), studies.len(), "every study listed once in the order");
    }
}

#[test]
fn a_scan_lists_the_study_as_ai_pending_by_order_priority_and_acquisition_time() {
    let mut wl = Worklist::new(TriagePolicy::default());
    for (n, hint) in [
        (1, OrderPriority::Routine),
        (2, OrderPriority::Stat),
        (3, OrderPriority::Routine),
    ] {
        let d = wl.on_scan(&scan(n, hint), T0).unwrap();
        assert_eq!(d.tier, TriageTier::AiPending);
        assert_eq!(d.score, 0.0);
        assert!(d.not_assessable_reason.is_none());
        wl.apply(d, None);
    }
    let order: Vec<String> = wl
        .ordered(None, OrderingMode::Pooled)
        .iter()
        .map(|e| e.decision.study.study_instance_uid.clone())
        .collect();
    assert_eq!(
        order,
        ["1.2.826.2", "1.2.826.1", "1.2.826.3"],
        "STAT first, then by acquisition"
    );
    assert!(
        wl.on_scan(&scan(1, OrderPriority::Routine), T0).is_err(),
        "a re-delivered scan adds nothing"
    );

    // The prediction re-ranks it: a critical finding moves study 3 above study 1.
    let p = prediction(3, OrderPriority::Routine, Kind::Critical, T0 + 500);
    let d = wl.on_prediction(&p, T0 + 600).unwrap();
    assert_eq!((d.tier, d.version), (TriageTier::Critical, 2));
    wl.apply(d, Some(p.predicted_at));
    let first_routine = wl.ordered(None, OrderingMode::Pooled)[1].decision.clone();
    assert_eq!(first_routine.study.study_instance_uid, "1.2.826.3");
}

#[test]
fn a_dead_letter_makes_a_pending_study_not_assessable_with_words_and_a_code() {
    let mut wl = Worklist::new(TriagePolicy::default());
    wl.apply(wl.on_scan(&scan(1, OrderPriority::Stat), T0).unwrap(), None);
    let DeadLetterOutcome::Decide(d) =
        wl.on_dead_letter(&dead_letter(1, "decode.truncated"), T0 + 5)
    else {
        panic!("a pending study is decided")
    };
    assert_eq!(d.tier, TriageTier::NotAssessable);
    assert_eq!(d.not_assessable_code.as_deref(), Some("decode.truncated"));
    assert_eq!(
        d.not_assessable_reason.as_deref(),
        Some("image could not be decoded: image is truncated: JPEG stream ends early")
    );
    assert_eq!(
        d.deadline,
        T0 + MIN + 30 * MIN,
        "a STAT order keeps its deadline"
    );
    wl.apply(*d, None);
    let e = wl.ordered(None, OrderingMode::Pooled)[0];
    assert_eq!(e.decision.study.study_instance_uid, "1.2.826.1");

    // A dead letter for a study the AI already ranked leaves it ranked.
    let p = prediction(2, OrderPriority::Routine, Kind::Normal, T0);
    wl.apply(wl.on_prediction(&p, T0).unwrap(), Some(p.predicted_at));
    assert_eq!(
        wl.on_dead_letter(&dead_letter(2, "decode.corrupt_stream"), T0 + 9),
        DeadLetterOutcome::Ignored("already_decided")
    );
}

#[test]
fn a_dead_letter_before_its_scan_waits_and_one_without_any_scan_is_listed_after_the_wait() {
    let mut wl = Worklist::new(TriagePolicy::default());
    let u = dead_letter(1, "ingest.fetch_not_found");
    assert_eq!(wl.on_dead_letter(&u, T0), DeadLetterOutcome::Wait);
    wl.remember_dead_letter(u, T0);
    let d = wl
        .on_scan(&scan(1, OrderPriority::Routine), T0 + 1)
        .unwrap();
    assert_eq!(
        d.tier,
        TriageTier::NotAssessable,
        "the early dead letter decides at the scan"
    );
    assert_eq!(
        d.not_assessable_reason.as_deref(),
        Some("image could not be retrieved")
    );
    wl.apply(d, None);
    assert!(wl.orphaned_dead_letters(T0 + 10 * MIN, MIN).is_empty());

    let u = dead_letter(7, "codec.corrupt");
    wl.remember_dead_letter(u, T0);
    assert!(
        wl.orphaned_dead_letters(T0 + 30_000, MIN).is_empty(),
        "still waiting"
    );
    let orphans = wl.orphaned_dead_letters(T0 + MIN, MIN);
    assert_eq!(orphans.len(), 1);
    assert_eq!(orphans[0].tier, TriageTier::NotAssessable);
    assert_eq!(orphans[0].study.study_instance_uid, "1.2.826.7");
}

#[test]
fn a_pending_study_becomes_overdue_and_a_late_prediction_still_ranks_it() {
    let mut wl = Worklist::new(TriagePolicy::default());
    wl.apply(
        wl.on_scan(&scan(1, OrderPriority::Routine), T0).unwrap(),
        None,
    );
    assert!(wl.overdue(T0 + 4 * MIN, 5 * MIN).is_empty());
    assert_eq!(wl.overdue(T0 + 5 * MIN, 5 * MIN), ["1.2.826.1"]);
    let d = wl
        .overdue_decision("1.2.826.1", T0 + 5 * MIN, 5 * MIN)
        .unwrap();
    assert_eq!(d.not_assessable_code.as_deref(), Some(OVERDUE_CODE));
    assert!(d
        .not_assessable_reason
        .unwrap()
        .starts_with("AI result overdue"));
    let d = wl
        .overdue_decision("1.2.826.1", T0 + 5 * MIN, 5 * MIN)
        .unwrap();
    wl.apply(d, None);
    assert!(wl.overdue(T0 + 9 * MIN, 5 * MIN).is_empty(), "once");

    let p = prediction(1, OrderPriority::Routine, Kind::Critical, T0 + 6 * MIN);
    let d = wl.on_prediction(&p, T0 + 6 * MIN).unwrap();
    assert_eq!(d.tier, TriageTier::Critical);
    assert!(d.not_assessable_reason.is_none());
    assert_eq!(d.status, WorklistStatus::Open);
}

/// A PA-and-lateral study whose PA could not be decoded: the lateral's "lateral view" does not
/// hide the PA's failure; a PA that comes through after all still ranks the study.
#[test]
fn a_lateral_does_not_hide_its_studys_failure_and_the_pa_still_ranks_it() {
    let mut wl = Worklist::new(TriagePolicy::default());
    let hint = OrderPriority::Routine;
    apply(&mut wl, &Event::Scan(1), hint, T0);
    apply(&mut wl, &Event::DeadLetter(1), hint, T0 + 1);
    let mut lateral = prediction(1, hint, Kind::Gated, T0 + 2);
    lateral.study.sop_instance_uid += ".lateral";
    lateral.not_assessable_code = Some("view.lateral".into());
    lateral.not_assessable_reason = Some("lateral view".into());
    assert_eq!(
        wl.on_prediction(&lateral, T0 + 3).map(|_| ()),
        Err(Ignored::LessUrgentImage)
    );
    let d = &wl.get("1.2.826.1").unwrap().decision;
    assert_eq!(
        (d.tier, d.not_assessable_code.as_deref()),
        (TriageTier::NotAssessable, Some("decode.truncated"))
    );
    apply(
        &mut wl,
        &Event::Predict(1, Kind::Critical, T0 + 4),
        hint,
        T0 + 5,
    );
    assert_eq!(
        wl.get("1.2.826.1").unwrap().decision.tier,
        TriageTier::Critical
    );
}

#[test]
fn dead_letters_off_the_study_path_or_without_a_study_change_nothing() {
    let mut dl = DeadLetter {
        stage: "feedback".into(),
        reason: "feedback.unknown_study".into(),
        error: "x".into(),
        source_topic: "cxr.feedback.v1".into(),
        source_partition: 0,
        source_offset: 1,
        key: None,
        payload: None,
        headers: BTreeMap::new(),
        study_instance_uid: Some("1.2.3".into()),
        failed_at: T0,
        replay_count: 0,
    };
    assert!(Unrankable::from_dead_letter(&dl, "cxr.feedback.v1", |_, _| None).is_none());
    dl.study_instance_uid = None;
    assert!(Unrankable::from_dead_letter(&dl, "cxr.scan.v1", |_, _| None).is_none());
}

#[test]
fn reasons_read_as_words() {
    assert_eq!(
        describe("decode.unsupported_transfer_syntax", "x"),
        "image could not be decoded: unsupported DICOM transfer syntax"
    );
    assert_eq!(
        describe("inference.tensor_size", "x"),
        "model could not score the image"
    );
    assert_eq!(
        describe("blob.not_found", "x"),
        "image could not be retrieved"
    );
    assert!(
        describe("ingest.modality_unsupported", "modality MR is not CR or DX")
            .starts_with("not a chest radiograph")
    );
}

#[test]
fn an_unranked_study_is_ordered_like_its_order_priority_never_by_its_score() {
    let mut wl = Worklist::new(TriagePolicy::default());
    // A NaN output on a STAT order and a routine critical finding: the STAT order reads first,
    // by its deadline, though the model could not score it.
    let stat = prediction(0, OrderPriority::Stat, Kind::Nan, T0);
    let routine = prediction(1, OrderPriority::Routine, Kind::Critical, T0);
    for p in [&stat, &routine] {
        wl.apply(wl.on_prediction(p, T0).unwrap(), Some(p.predicted_at));
    }
    let a = &wl.get("1.2.826.0").unwrap().decision;
    let b = &wl.get("1.2.826.1").unwrap().decision;
    assert_eq!(a.tier, TriageTier::NotAssessable);
    assert_eq!(
        reading_order(a, b, OrderingMode::Pooled),
        std::cmp::Ordering::Less
    );
}
