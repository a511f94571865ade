//! Topic names and their schema files. The schema file of a topic is `schemas/<topic>.avsc`.

pub const SCAN: &str = "cxr.scan.v1";
pub const INGESTED: &str = "cxr.ingested.v1";
pub const PREPROCESSED: &str = "cxr.preprocessed.v1";
pub const PREDICTIONS: &str = "cxr.predictions.v1";
pub const TRIAGE: &str = "cxr.triage.v1";
pub const FEEDBACK: &str = "cxr.feedback.v1";
pub const LABELED: &str = "cxr.labeled.v1";
pub const DRIFT: &str = "cxr.drift.v1";
pub const DLQ: &str = "cxr.dlq.v1";
pub const MODELS: &str = "cxr.models.v1";

/// Every topic with its current schema text, embedded at build time from `schemas/`.
pub const SCHEMAS: &[(&str, &str)] = &[
    (SCAN, include_str!("../../../schemas/cxr.scan.v1.avsc")),
    (
        INGESTED,
        include_str!("../../../schemas/cxr.ingested.v1.avsc"),
    ),
    (
        PREPROCESSED,
        include_str!("../../../schemas/cxr.preprocessed.v1.avsc"),
    ),
    (
        PREDICTIONS,
        include_str!("../../../schemas/cxr.predictions.v1.avsc"),
    ),
    (TRIAGE, include_str!("../../../schemas/cxr.triage.v1.avsc")),
    (
        FEEDBACK,
        include_str!("../../../schemas/cxr.feedback.v1.avsc"),
    ),
    (
        LABELED,
        include_str!("../../../schemas/cxr.labeled.v1.avsc"),
    ),
    (DRIFT, include_str!("../../../schemas/cxr.drift.v1.avsc")),
    (DLQ, include_str!("../../../schemas/cxr.dlq.v1.avsc")),
    (MODELS, include_str!("../../../schemas/cxr.models.v1.avsc")),
];

/// Earlier schema versions still readable by the current ones: (topic, version, schema text).
/// Their ids in the static registry are fixed too, so old records in a topic keep decoding.
pub const HISTORY: &[(&str, u32, &str)] = &[
    (
        PREDICTIONS,
        1,
        include_str!("../../../schemas/history/cxr.predictions.v1.1.avsc"),
    ),
    (
        PREDICTIONS,
        2,
        include_str!("../../../schemas/history/cxr.predictions.v1.2.avsc"),
    ),
    (
        PREDICTIONS,
        3,
        include_str!("../../../schemas/history/cxr.predictions.v1.3.avsc"),
    ),
    (
        PREDICTIONS,
        4,
        include_str!("../../../schemas/history/cxr.predictions.v1.4.avsc"),
    ),
    (
        PREPROCESSED,
        1,
        include_str!("../../../schemas/history/cxr.preprocessed.v1.1.avsc"),
    ),
    (
        TRIAGE,
        1,
        include_str!("../../../schemas/history/cxr.triage.v1.1.avsc"),
    ),
    (
        TRIAGE,
        2,
        include_str!("../../../schemas/history/cxr.triage.v1.2.avsc"),
    ),
    (
        TRIAGE,
        3,
        include_str!("../../../schemas/history/cxr.triage.v1.3.avsc"),
    ),
    (
        LABELED,
        1,
        include_str!("../../../schemas/history/cxr.labeled.v1.1.avsc"),
    ),
];

/// Topics whose records are keyed by study UID and should be compacted (the worklist, model control).
pub const COMPACTED: &[&str] = &[TRIAGE, MODELS];
