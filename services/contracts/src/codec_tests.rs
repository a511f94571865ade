use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::records::*;
use crate::topics;

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.\\- ]{0,24}"
}

fn uid() -> impl Strategy<Value = String> {
    "[1-9][0-9]{0,5}(\\.[1-9][0-9]{0,5}){2,8}"
}

fn ts() -> impl Strategy<Value = i64> {
    0i64..4_000_000_000_000
}

fn priority() -> impl Strategy<Value = OrderPriority> {
    prop_oneof![
        Just(OrderPriority::Stat),
        Just(OrderPriority::Urgent),
        Just(OrderPriority::Routine)
    ]
}

fn study() -> impl Strategy<Value = StudyContext> {
    (
        (
            text(),
            uid(),
            uid(),
            uid(),
            proptest::option::of(text()),
            text(),
        ),
        (
            text(),
            proptest::option::of(text()),
            proptest::option::of(0i32..120),
            proptest::option::of(text()),
        ),
        (ts(), ts(), priority()),
    )
        .prop_map(
            |((site, st, se, sop, acc, pat), (m, vp, age, sex), (acq, publ, pr))| StudyContext {
                site_id: site,
                study_instance_uid: st,
                series_instance_uid: se,
                sop_instance_uid: sop,
                accession_number: acc,
                patient_ref: pat,
                modality: m,
                view_position: vp,
                patient_age_years: age,
                patient_sex: sex,
                acquired_at: acq,
                published_at: publ,
                priority_hint: pr,
            },
        )
}

fn prob() -> impl Strategy<Value = f64> {
    0.0f64..=1.0
}

fn finding_scores() -> impl Strategy<Value = Vec<FindingScore>> {
    proptest::collection::vec(
        (text(), prob(), prob(), any::<bool>(), any::<bool>()).prop_map(|(f, p, t, c, u)| {
            FindingScore {
                finding: f,
                probability: p,
                threshold: t,
                critical: c,
                urgent: u,
            }
        }),
        0..14,
    )
}

fn labels() -> impl Strategy<Value = Vec<FindingLabel>> {
    let state = prop_oneof![
        Just(LabelState::Present),
        Just(LabelState::Absent),
        Just(LabelState::Uncertain),
        Just(LabelState::NotAssessed)
    ];
    proptest::collection::vec(
        (text(), state).prop_map(|(finding, state)| FindingLabel { finding, state }),
        0..14,
    )
}

fn role() -> impl Strategy<Value = ModelRole> {
    prop_oneof![
        Just(ModelRole::Production),
        Just(ModelRole::Canary),
        Just(ModelRole::Shadow)
    ]
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..512)
}

fn map() -> impl Strategy<Value = BTreeMap<String, String>> {
    proptest::collection::btree_map(text(), text(), 0..4)
}

fn round_trip<T: AvroRecord + PartialEq + std::fmt::Debug>(codec: &Codec, rec: &T) {
    let bytes = codec.encode(rec).unwrap();
    let back: T = codec.decode(&bytes).unwrap();
    assert_eq!(&back, rec);
}

fn codec() -> Codec {
    Codec::with_static_registry().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn scan_event(study in study(), mt in text(), inline in proptest::option::of(bytes()), uri in proptest::option::of(text()),
                  sha in proptest::option::of(text()), size in proptest::option::of(0i64..1<<40), id in text()) {
        round_trip(&codec(), &ScanEvent { event_id: id, study, media_type: mt, image_inline: inline, image_uri: uri, image_sha256: sha, image_size_bytes: size });
    }

    #[test]
    fn ingested(study in study(), uri in text(), sha in text(), size in 0i64..1<<40, mt in text(), at in ts()) {
        round_trip(&codec(), &IngestedImage { event_id: "e".into(), study, blob_uri: uri, sha256: sha, size_bytes: size, media_type: mt, ingested_at: at });
    }

    #[test]
    fn preprocessed(study in study(), pixels in bytes(), hist in proptest::collection::vec(0i64..1000, 32), m in prob(), w in 1i32..4000,
                    frontal in any::<bool>(), reason in proptest::option::of(text()), at in ts()) {
        let stats = ImageStats { mean: m, std: m / 2.0, p01: 0.0, p05: 0.1, p50: m, p95: 0.9, p99: 1.0, histogram: hist,
            original_width: w, original_height: w + 1, bits_stored: 12, photometric: "MONOCHROME1".into() };
        round_trip(&codec(), &PreprocessedImage { study, blob_uri: "file:///b".into(), sha256: "ab".into(), profile_id: "gray224-v1".into(),
            width: 224, height: 224, channels: 1, pixels, frontal, assessable: frontal, not_assessable_reason: reason.clone(), stats, preprocessed_at: at, preprocess_ms: 1.5,
            not_assessable_code: reason.map(|_| "eligibility.modality".into()) });
    }

    #[test]
    fn prediction(study in study(), findings in finding_scores(), role in role(), emb in proptest::option::of(proptest::collection::vec(-10f32..10.0, 0..32)), at in ts(),
                  m in proptest::option::of(prob()), reason in proptest::option::of(text()), ood in proptest::option::of(0.0f64..10.0)) {
        let input_stats = m.map(|m| ImageStats { mean: m, std: m / 2.0, p01: 0.0, p05: 0.1, p50: m, p95: 0.9, p99: 1.0, histogram: vec![3; 32],
            original_width: 640, original_height: 512, bits_stored: 8, photometric: "MONOCHROME2".into() });
        round_trip(&codec(), &Prediction { study, blob_uri: "s3://b/k".into(), model_name: "m".into(), model_version: "1".into(), model_role: role,
            execution_provider: "CPUExecutionProvider".into(), assessable: true, findings, batch_size: 8, inference_ms: 3.0, predicted_at: at, embedding: emb, input_stats,
            not_assessable_code: reason.as_ref().map(|_| "ood.distance".into()), not_assessable_reason: reason, ood_distance: ood });
    }

    #[test]
    fn triage(study in study(), findings in finding_scores(), v in 0i64..1000, reasons in proptest::collection::vec(text(), 0..3), at in ts(),
              pending in any::<bool>(), why in proptest::option::of(text()), read_at in proptest::option::of(ts())) {
        let tier = if pending { TriageTier::AiPending } else { TriageTier::NotAssessable };
        round_trip(&codec(), &TriageDecision { study, version: v, status: WorklistStatus::Escalated, tier, score: 0.3,
            deadline: at, top_findings: findings, model_name: Some("m".into()), model_version: None, reasons, escalations: 2, blob_uri: "b".into(), decided_at: at,
            not_assessable_code: why.as_ref().map(|_| "decode.truncated_image".into()), not_assessable_reason: why, read_at });
    }

    #[test]
    fn feedback(uid in uid(), labels in labels(), a in ts(), b in ts(), tier in proptest::option::of(text())) {
        round_trip(&codec(), &RadiologistReport { report_id: "r".into(), study_instance_uid: uid, site_id: "s".into(), reader_ref: "reader-1".into(),
            read_started_at: a, read_ended_at: b, labels, tier_at_read: tier });
    }

    #[test]
    fn labeled(study in study(), labels in labels(), probs in finding_scores(), role in role(), a in ts()) {
        round_trip(&codec(), &LabeledExample { study, report_id: "r".into(), reader_ref: "x".into(), read_started_at: a, read_ended_at: a,
            model_name: "m".into(), model_version: "v".into(), model_role: role, probabilities: probs, labels, blob_uri: "b".into(), tier_at_read: None, labeled_at: a });
    }

    #[test]
    fn drift(details in map(), p in proptest::option::of(prob()), a in ts(), n in 0i64..10000) {
        let w = DriftWindow { start: a, end: a + 1, count: n };
        round_trip(&codec(), &DriftAlert { alert_id: "a".into(), state: AlertState::Updated, channel: "INPUT".into(), signal: "stats.mean".into(),
            statistic: "KS".into(), value: 0.4, p_value: p, threshold: 0.01, reference_window: w.clone(), detection_window: w, site_id: None,
            model_name: "m".into(), model_version: "v".into(), severity: Severity::Critical, action: RecommendedAction::Retrain, details, raised_at: a });
    }

    #[test]
    fn dead_letter(payload in proptest::option::of(bytes()), key in proptest::option::of(bytes()), headers in map(), off in 0i64..1<<50) {
        round_trip(&codec(), &DeadLetter { stage: "ingest".into(), reason: "codec.bad_magic".into(), error: "x".into(), source_topic: "t".into(),
            source_partition: 3, source_offset: off, key, payload, headers, study_instance_uid: None, failed_at: 5, replay_count: 0 });
    }

    #[test]
    fn model_rollout(fr in prob(), role in role(), rev in 0i64..100) {
        round_trip(&codec(), &ModelRollout { model_name: "m".into(), revision: rev, production_version: "1".into(),
            candidates: vec![CandidateVersion { version: "2".into(), role, fraction: fr }], decided_by: "op".into(), reason: "r".into(), decided_at: 1 });
    }

    #[test]
    fn decode_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = codec().decode::<ScanEvent>(&bytes);
        let mut framed = vec![0, 0, 0, 0, 101];
        framed.extend_from_slice(&bytes);
        prop_assert!(codec().decode::<ScanEvent>(&framed).is_err() || !bytes.is_empty());
    }
}

fn sample_study() -> StudyContext {
    StudyContext {
        site_id: "site-a".into(),
        study_instance_uid: "1.2.3".into(),
        series_instance_uid: "1.2.3.4".into(),
        sop_instance_uid: "1.2.3.4.5".into(),
        accession_number: None,
        patient_ref: "p-1".into(),
        modality: "CR".into(),
        view_position: Some("PA".into()),
        patient_age_years: Some(60),
        patient_sex: Some("F".into()),
        acquired_at: 1,
        published_at: 2,
        priority_hint: OrderPriority::Stat,
    }
}

#[test]
fn earlier_prediction_versions_decode_with_the_current_one() {
    // Records written before a field existed, each with its own version's schema and id: version 1
    // had neither `embedding` nor `input_stats`, version 2 no `input_stats`.
    let c = codec();
    let current_id = Codec::schema_id(&c.encode(&sample_prediction()).unwrap()).unwrap();
    const V4: [&str; 3] = [
        "not_assessable_reason",
        "not_assessable_code",
        "ood_distance",
    ];
    for (version, missing) in [
        (1, &["embedding", "input_stats"][..]),
        (2, &["input_stats"][..]),
        (3, &[][..]),
    ] {
        let id = StaticRegistry::historical_id(topics::PREDICTIONS, version).unwrap();
        assert_ne!(id, current_id, "version {version} has its own id");
        let text = topics::HISTORY
            .iter()
            .find(|(t, v, _)| *t == topics::PREDICTIONS && *v == version)
            .unwrap()
            .2;
        let schema = Schema::parse_str(text).unwrap();
        let mut old = sample_prediction();
        if version < 2 {
            old.embedding = None;
        }
        if version < 3 {
            old.input_stats = None;
        }
        old.ood_distance = None;
        let mut value = apache_avro::to_value(&old).unwrap();
        if let apache_avro::types::Value::Record(fields) = &mut value {
            fields.retain(|(name, _)| {
                !missing.contains(&name.as_str()) && !V4.contains(&name.as_str())
            });
        }
        let body = apache_avro::to_avro_datum(&schema, value.resolve(&schema).unwrap()).unwrap();
        let decoded: Prediction = c.decode(&frame(id, &body)).unwrap();
        assert_eq!(decoded, old, "version {version}");
    }
}

/// Encodes `rec` with an earlier schema version of its topic (fields the old schema lacks
/// dropped), framed with that version's id.
fn encode_with_history<T: AvroRecord + serde::Serialize>(rec: &T, version: u32) -> Vec<u8> {
    let id = StaticRegistry::historical_id(T::TOPIC, version).unwrap();
    let text = topics::HISTORY
        .iter()
        .find(|(t, v, _)| *t == T::TOPIC && *v == version)
        .unwrap()
        .2;
    let schema = Schema::parse_str(text).unwrap();
    let known: Vec<String> = match &schema {
        Schema::Record(r) => r.fields.iter().map(|f| f.name.clone()).collect(),
        _ => unreachable!("every topic schema is a record"),
    };
    let mut value = apache_avro::to_value(rec).unwrap();
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields.retain(|(name, _)| known.contains(name));
    }
    let body = apache_avro::to_avro_datum(&schema, value.resolve(&schema).unwrap()).unwrap();
    frame(id, &body)
}

#[test]
fn version_one_worklist_and_preprocessed_records_decode_with_the_current_ones() {
    let c = codec();
    let old = TriageDecision {
        study: sample_study(),
        version: 3,
        status: WorklistStatus::Open,
        tier: TriageTier::Critical,
        score: 0.9,
        deadline: 10,
        top_findings: vec![],
        model_name: Some("m".into()),
        model_version: Some("1".into()),
        reasons: vec!["critical finding".into()],
        escalations: 0,
        blob_uri: "b".into(),
        decided_at: 5,
        not_assessable_reason: None,
        not_assessable_code: None,
        read_at: None,
    };
    let decoded: TriageDecision = c.decode(&encode_with_history(&old, 1)).unwrap();
    assert_eq!(decoded, old);
    // Version 3 had no `read_at`: a READ decision written with it decodes with none.
    let read = TriageDecision {
        status: WorklistStatus::Read,
        not_assessable_code: Some("view.lateral".into()),
        ..old.clone()
    };
    let decoded: TriageDecision = c.decode(&encode_with_history(&read, 3)).unwrap();
    assert_eq!(decoded, read);
    let old = PreprocessedImage {
        study: sample_study(),
        blob_uri: "file:///b".into(),
        sha256: "ab".into(),
        profile_id: "gray224-v1".into(),
        width: 224,
        height: 224,
        channels: 1,
        pixels: vec![7; 16],
        frontal: false,
        assessable: false,
        not_assessable_reason: Some("lateral view".into()),
        stats: sample_prediction().input_stats.unwrap(),
        preprocessed_at: 4,
        preprocess_ms: 2.0,
        not_assessable_code: None,
    };
    let decoded: PreprocessedImage = c.decode(&encode_with_history(&old, 1)).unwrap();
    assert_eq!(decoded, old);
}

#[test]
fn input_stats_round_trip_on_the_current_version() {
    let c = codec();
    let p = sample_prediction();
    assert!(p.input_stats.is_some());
    let back: Prediction = c.decode(&c.encode(&p).unwrap()).unwrap();
    assert_eq!(back, p);
}

fn sample_prediction() -> Prediction {
    Prediction {
        study: sample_study(),
        blob_uri: "file:///x".into(),
        model_name: "m".into(),
        model_version: "1".into(),
        model_role: ModelRole::Production,
        execution_provider: "CPUExecutionProvider".into(),
        assessable: true,
        findings: vec![],
        batch_size: 1,
        inference_ms: 1.0,
        predicted_at: 3,
        embedding: Some(vec![0.25, -1.0]),
        input_stats: Some(ImageStats {
            mean: 0.5,
            std: 0.2,
            p01: 0.01,
            p05: 0.05,
            p50: 0.5,
            p95: 0.95,
            p99: 0.99,
            histogram: vec![1; 32],
            original_width: 2048,
            original_height: 2500,
            bits_stored: 12,
            photometric: "MONOCHROME2".into(),
        }),
        not_assessable_reason: None,
        not_assessable_code: None,
        ood_distance: Some(0.4),
    }
}

#[test]
fn unknown_id_garbage_and_wrong_schema_are_typed() {
    let c = codec();
    let err = c
        .decode::<ScanEvent>(&[0, 0, 0, 0x7f, 0x7f, 1, 2])
        .unwrap_err();
    assert!(
        matches!(err, CodecError::UnknownSchemaId(SchemaId(0x7f7f))),
        "{err}"
    );
    let err = c.decode::<ScanEvent>(b"definitely not avro").unwrap_err();
    assert_eq!(err.reason(), "codec.bad_magic");
    let err = c
        .decode::<ScanEvent>(&[0, 0, 0, 0, 101, 0xff, 0xff, 0xff])
        .unwrap_err();
    assert_eq!(err.reason(), "codec.corrupt", "{err}");
    let report = RadiologistReport {
        report_id: "r".into(),
        study_instance_uid: "1.2".into(),
        site_id: "s".into(),
        reader_ref: "x".into(),
        read_started_at: 1,
        read_ended_at: 2,
        labels: vec![],
        tier_at_read: None,
    };
    let bytes = c.encode(&report).unwrap();
    let err = c.decode::<ScanEvent>(&bytes).unwrap_err();
    assert_eq!(err.reason(), "codec.wrong_schema", "{err}");
}

#[test]
fn truncated_record_is_corrupt_not_panic() {
    let c = codec();
    let scan = ScanEvent {
        event_id: "e".into(),
        study: sample_study(),
        media_type: "image/png".into(),
        image_inline: Some(vec![1; 100]),
        image_uri: None,
        image_sha256: None,
        image_size_bytes: None,
    };
    let bytes = c.encode(&scan).unwrap();
    // Cuts inside the data. (apache-avro reads a missing trailing null-union index at EOF as
    // null, so cutting only the very last byte of this record yields the same record.)
    for cut in [6, 20, 100, bytes.len() - 4] {
        let r = c.decode::<ScanEvent>(&bytes[..cut]);
        assert!(r.is_err(), "cut {cut} of {}: {r:?}", bytes.len());
    }
}

/// Strips `urgent` from every nested FindingScore of an Avro value (what a writer of the
/// schemas before tiers produced).
fn without_urgent(v: &mut apache_avro::types::Value) {
    use apache_avro::types::Value;
    match v {
        Value::Record(fields) => {
            fields.retain(|(name, _)| name != "urgent");
            for (_, f) in fields {
                without_urgent(f);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(without_urgent),
        Value::Union(_, inner) => without_urgent(inner),
        _ => {}
    }
}

#[test]
fn records_from_before_tiers_decode_with_no_urgent_finding() {
    let c = codec();
    let mut p = sample_prediction();
    p.findings = ["Pneumothorax", "Edema"]
        .iter()
        .map(|f| FindingScore {
            finding: f.to_string(),
            probability: 0.7,
            threshold: 0.5,
            critical: *f == "Pneumothorax",
            urgent: *f == "Edema",
        })
        .collect();
    let text = topics::HISTORY
        .iter()
        .find(|(t, v, _)| *t == topics::PREDICTIONS && *v == 4)
        .unwrap()
        .2;
    let schema = Schema::parse_str(text).unwrap();
    let mut value = apache_avro::to_value(&p).unwrap();
    without_urgent(&mut value);
    let body = apache_avro::to_avro_datum(&schema, value.resolve(&schema).unwrap()).unwrap();
    let id = StaticRegistry::historical_id(topics::PREDICTIONS, 4).unwrap();
    let decoded: Prediction = c.decode(&frame(id, &body)).unwrap();
    assert!(!decoded.findings.is_empty());
    assert!(decoded.findings.iter().all(|f| !f.urgent));
    for f in &mut p.findings {
        f.urgent = false;
    }
    assert_eq!(decoded, p);
    // The current version carries the flag.
    let mut q = p.clone();
    q.findings[1].urgent = true;
    let back: Prediction = c.decode(&c.encode(&q).unwrap()).unwrap();
    assert!(back.findings[1].urgent);
}

/// One of each variant. Adding a variant breaks the match: add it here too.
#[test]
fn reasons_lists_every_reason() {
    let all = vec![
        CodecError::Frame(FrameError::TooShort(1)),
        CodecError::Frame(FrameError::BadMagic(1)),
        CodecError::UnknownSchemaId(SchemaId(1)),
        CodecError::WrongSchema {
            topic: "t".into(),
            expected: "a".into(),
            found: "b".into(),
        },
        CodecError::Corrupt {
            id: SchemaId(1),
            detail: "x".into(),
        },
        CodecError::TrailingBytes(1),
        CodecError::Encode {
            topic: "t".into(),
            detail: "x".into(),
        },
        CodecError::Registry(RegistryError::UnknownTopic("t".into())),
    ];
    for e in &all {
        match e {
            CodecError::Frame(FrameError::TooShort(_) | FrameError::BadMagic(_))
            | CodecError::UnknownSchemaId(_)
            | CodecError::WrongSchema { .. }
            | CodecError::Corrupt { .. }
            | CodecError::TrailingBytes(_)
            | CodecError::Encode { .. }
            | CodecError::Registry(_) => {}
        }
    }
    let seen: std::collections::BTreeSet<_> = all.iter().map(|e| e.reason()).collect();
    let listed: std::collections::BTreeSet<_> = CodecError::REASONS.iter().copied().collect();
    assert_eq!(seen, listed);
    assert_eq!(listed.len(), CodecError::REASONS.len(), "listed twice");
}
