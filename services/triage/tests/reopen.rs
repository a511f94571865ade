//! Images added after the report, on the pure core: a study read before one of its images
//! reached the gateway (a repeat or extra film, an image its modality sent late) goes back on
//! the worklist, ranked by that image, whether the study is still kept as read or already
//! removed; a re-delivered record of an image that was read never brings it back. A worklist
//! rebuilt from the decisions alone does the same.

use cxrflow_contracts::{
    FindingScore, Prediction, RadiologistReport, StudyContext, TriageDecision, TriageTier,
    WorklistStatus,
};
use cxrflow_testkit::records::{prediction, score, study};
use cxrflow_triage::intake::{DeadLetterOutcome, Unrankable};
use cxrflow_triage::policy::{TriagePolicy, Unranked};
use cxrflow_triage::worklist::{
    read_time, Ignored, OrderingMode, ReportOutcome, Worklist, REOPENED,
};

const T0: i64 = 1_700_000_000_000;
const MIN: i64 = 60_000;
const UID: &str = "1.2.reopen";

/// Image `sop` of the study, reaching the gateway `arrived` ms after T0 and scored at once.
fn image(sop: &str, arrived: i64) -> Prediction {
    Prediction {
        predicted_at: T0 + arrived + 1_000,
        ..prediction(StudyContext {
            sop_instance_uid: sop.into(),
            acquired_at: T0 + arrived - 1_000,
            published_at: T0 + arrived,
            ..study(UID)
        })
    }
}

fn critical(sop: &str, arrived: i64) -> Prediction {
    let mut p = image(sop, arrived);
    p.findings = vec![FindingScore {
        threshold: 0.4,
        critical: true,
        ..score("Pneumothorax", 0.9)
    }];
    p
}

fn routine(sop: &str, arrived: i64) -> Prediction {
    let mut p = image(sop, arrived);
    p.findings = vec![score("Cardiomegaly", 0.1)];
    p
}

fn report(id: &str) -> RadiologistReport {
    RadiologistReport {
        report_id: id.into(),
        study_instance_uid: UID.into(),
        site_id: "site-a".into(),
        reader_ref: "r1".into(),
        read_started_at: T0,
        read_ended_at: T0,
        labels: vec![],
        tier_at_read: None,
    }
}

/// What the engine publishes, in order: decisions, and tombstones as `None`.
type Log = Vec<(String, Option<TriageDecision>)>;

fn deliver(wl: &mut Worklist, log: &mut Log, p: &Prediction, now: i64) -> Result<(), Ignored> {
    let d = wl.on_prediction(p, now)?;
    log.push((UID.into(), Some(d.clone())));
    assert!(wl.apply(d, Some(p.predicted_at)));
    Ok(())
}

fn read(wl: &mut Worklist, log: &mut Log, id: &str, now: i64) {
    let ReportOutcome::Close(d) = wl.on_report(&report(id), now) else {
        panic!("the report closes the open study");
    };
    log.push((UID.into(), Some((*d).clone())));
    assert!(wl.apply(*d, None));
}

fn rebuilt(log: &Log, now: i64) -> Worklist {
    let mut wl = Worklist::new(TriagePolicy::default());
    for (uid, d) in log {
        match d {
            Some(d) => {
                wl.apply(d.clone(), None);
            }
            None => wl.remove(uid, now),
        }
    }
    wl
}

/// A worklist on which `pa` was scored, then its study read (report "r-1") at `read_at`, and
/// what the engine published for it.
fn read_study(pa: &Prediction, read_at: i64) -> (Worklist, Log) {
    let mut wl = Worklist::new(TriagePolicy::default());
    let mut log = Log::new();
    deliver(&mut wl, &mut log, pa, T0 + 2_000).unwrap();
    read(&mut wl, &mut log, "r-1", read_at);
    (wl, log)
}

fn decision(wl: &Worklist) -> &TriageDecision {
    &wl.get(UID).expect("the study is on the worklist").decision
}

#[test]
fn an_image_arriving_after_the_report_opens_the_study_again_and_a_read_one_never_does() {
    let pa = critical("s.1", 0);
    let read_at = T0 + 10 * MIN;
    let (mut wl, mut log) = read_study(&pa, read_at);
    let d = decision(&wl);
    assert_eq!((d.status, d.read_at), (WorklistStatus::Read, Some(read_at)));
    let read_version = d.version;

    // The PA re-delivered, and its lateral that arrived with it but was scored after the
    // report: both were read with the study.
    let mut late_lateral = routine("s.2", 1_000);
    late_lateral.predicted_at = read_at + MIN;
    for (p, now) in [(&pa, read_at + MIN), (&late_lateral, read_at + 2 * MIN)] {
        assert_eq!(
            wl.on_prediction(p, now),
            Err(Ignored::AlreadyRead),
            "{}",
            p.study.sop_instance_uid
        );
    }

    // A repeat film that reached the gateway after the report: the study is open again,
    // ranked by the new film alone (ROUTINE, though the read PA was CRITICAL).
    let repeat = routine("s.3", 25 * MIN);
    deliver(&mut wl, &mut log, &repeat, T0 + 26 * MIN).unwrap();
    let d = decision(&wl);
    assert_eq!(d.status, WorklistStatus::Open, "{d:?}");
    assert_eq!(d.tier, TriageTier::Routine, "{d:?}");
    assert_eq!(d.study.sop_instance_uid, "s.3");
    assert_eq!(d.version, read_version + 1, "the versions go on");
    assert_eq!(d.read_at, Some(read_at), "it keeps when it was read");
    assert!(
        d.reasons
            .iter()
            .any(|r| r == &format!("{REOPENED}an image of it arrived 0h15m after its report")),
        "{:?}",
        d.reasons
    );
    assert_eq!(wl.ordered(None, OrderingMode::Pooled).len(), 1);

    // The read PA re-delivered now does not take the open study over: it was read.
    assert_eq!(
        wl.on_prediction(&pa, T0 + 27 * MIN),
        Err(Ignored::AlreadyRead)
    );
    // Another new image still ranks it by its most urgent one.
    let second = critical("s.4", 28 * MIN);
    deliver(&mut wl, &mut log, &second, T0 + 29 * MIN).unwrap();
    let d = decision(&wl);
    assert_eq!(
        (d.tier, d.read_at, d.study.sop_instance_uid.as_str()),
        (TriageTier::Critical, Some(read_at), "s.4")
    );

    // A worklist rebuilt from the decisions alone agrees, record for record.
    let mut again = rebuilt(&log, T0 + 30 * MIN);
    assert_eq!(decision(&again), decision(&wl));
    assert_eq!(
        again.on_prediction(&pa, T0 + 30 * MIN),
        Err(Ignored::AlreadyRead)
    );

    // The second report closes it again, with its own time.
    read(&mut wl, &mut log, "r-2", T0 + 40 * MIN);
    read(&mut again, &mut Log::new(), "r-2", T0 + 40 * MIN);
    for w in [&wl, &again] {
        let d = decision(w);
        assert_eq!(
            (d.status, d.read_at),
            (WorklistStatus::Read, Some(T0 + 40 * MIN))
        );
        assert_eq!(
            w.on_prediction(&second, T0 + 41 * MIN),
            Err(Ignored::AlreadyRead)
        );
    }
}

#[test]
fn a_removed_study_opens_again_for_a_later_image_and_stays_removed_for_a_redelivery() {
    let pa = routine("s.1", 0);
    let read_at = T0 + 5 * MIN;
    let (mut wl, mut log) = read_study(&pa, read_at);
    let version = decision(&wl).version;
    // Past its read retention it is removed (its tombstone published).
    let removed_at = read_at + 60 * MIN;
    assert_eq!(
        wl.tombstones_due(removed_at, 60 * MIN),
        vec![UID.to_string()]
    );
    wl.remove(UID, removed_at);
    log.push((UID.into(), None));
    assert!(wl.get(UID).is_none());

    for w in [&wl, &rebuilt(&log, removed_at)] {
        // Its PA re-delivered: still removed.
        assert_eq!(w.on_prediction(&pa, removed_at + MIN), Err(Ignored::Closed));
        // A film that arrived after the report: listed again, its versions going on.
        let late = critical("s.2", 70 * MIN);
        let d = w.on_prediction(&late, removed_at + 2 * MIN).unwrap();
        assert_eq!(
            (d.status, d.tier, d.version, d.read_at),
            (
                WorklistStatus::Open,
                TriageTier::Critical,
                version + 1,
                Some(read_at)
            )
        );
    }

    // A study removed with its reading unknown (its decisions compacted away before the
    // tombstone) is never brought back: nothing tells a new image from a re-delivered one.
    let mut blind = Worklist::new(TriagePolicy::default());
    blind.remove(UID, removed_at);
    assert_eq!(
        blind.on_prediction(&critical("s.2", 70 * MIN), removed_at + MIN),
        Err(Ignored::Closed)
    );
}

#[test]
fn an_image_failing_after_the_report_opens_the_study_not_assessable() {
    let read_at = T0 + 10 * MIN;
    let (wl, _) = read_study(&critical("s.1", 0), read_at);
    let failed = |sop: &str, arrived: i64| Unrankable {
        study_uid: UID.into(),
        context: Some(image(sop, arrived).study),
        why: Unranked::new(
            "decode.truncated_image",
            "image could not be decoded: truncated",
        ),
        failed_at: T0 + arrived + 500,
    };
    // An image that arrived before the report and failed: it was read with the study.
    assert_eq!(
        wl.on_dead_letter(&failed("s.2", 1_000), read_at + MIN),
        DeadLetterOutcome::Ignored("already_read")
    );
    // One that arrived after it: the study is open again, NOT_ASSESSABLE with the reason.
    let DeadLetterOutcome::Decide(d) = wl.on_dead_letter(&failed("s.3", 20 * MIN), T0 + 21 * MIN)
    else {
        panic!("the study is listed again");
    };
    assert_eq!(
        (
            d.status,
            d.tier,
            d.not_assessable_code.as_deref(),
            d.read_at
        ),
        (
            WorklistStatus::Open,
            TriageTier::NotAssessable,
            Some("decode.truncated_image"),
            Some(read_at)
        )
    );
    assert!(d.reasons.iter().any(|r| r.starts_with(REOPENED)), "{d:?}");
    // Without the failed image's context (its record unreadable) nothing tells when it came.
    let mut blind = failed("s.3", 20 * MIN);
    blind.context = None;
    assert_eq!(
        wl.on_dead_letter(&blind, T0 + 21 * MIN),
        DeadLetterOutcome::Ignored("already_read")
    );
}

#[test]
fn a_read_decision_written_before_read_at_existed_is_read_when_it_was_decided() {
    let (wl, _) = read_study(&critical("s.1", 0), T0 + 10 * MIN);
    // As schema version 3 wrote it: READ, no `read_at`.
    let mut old = decision(&wl).clone();
    old.read_at = None;
    assert_eq!(read_time(&old), Some(old.decided_at));
    let mut wl = Worklist::new(TriagePolicy::default());
    wl.apply(old, None);
    assert_eq!(
        wl.on_prediction(&critical("s.2", 5 * MIN), T0 + 11 * MIN),
        Err(Ignored::AlreadyRead)
    );
    let d = wl
        .on_prediction(&routine("s.3", 12 * MIN), T0 + 13 * MIN)
        .unwrap();
    assert_eq!(
        (d.status, d.read_at),
        (WorklistStatus::Open, Some(T0 + 10 * MIN))
    );
}
