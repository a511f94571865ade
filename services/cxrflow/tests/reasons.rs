//! The README's reason tables and the services' error types agree: every reason a service can
//! put on a dead letter or a retried failure is in a table under its service, and every reason
//! a table lists is one the code has.

use std::collections::BTreeSet;
use std::path::Path;

use cxrflow_contracts::CodecError;
use cxrflow_drift::error::{DriftError, RetrainTriggerError};
use cxrflow_feedback::FeedbackError;
use cxrflow_inference::error::InferenceError;
use cxrflow_ingest::error::IngestError;
use cxrflow_preprocess::PreprocessError;
use cxrflow_results::error::ResultsError;
use cxrflow_triage::error::TriageError;

/// The stage runtime's rows: reasons every stage can have.
const EVERY_STAGE: &str = "every stage";

/// Reasons the stage runtime itself names (`services/common/src/kafka/stage.rs`), besides the
/// codec's: checked against that file's text, as they have no type of their own.
const RUNTIME: &[(&str, &str)] = &[
    ("codec.tombstone", "\"codec.tombstone\""),
    ("<service>.panic", "format!(\"{service}.panic\")"),
    ("produce", ".transient(\"produce\""),
    ("schema_registry", ".transient(\"schema_registry\""),
];

fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// Every (service, reason) the code has.
fn in_code() -> BTreeSet<(String, String)> {
    let services: [(&str, &[&str]); 9] = [
        ("ingest", IngestError::REASONS),
        ("preprocess", PreprocessError::REASONS),
        ("inference", InferenceError::REASONS),
        ("triage", TriageError::REASONS),
        ("feedback", FeedbackError::REASONS),
        ("drift", DriftError::REASONS),
        ("retrain_trigger", RetrainTriggerError::REASONS),
        ("results", ResultsError::REASONS),
        (EVERY_STAGE, CodecError::REASONS),
    ];
    let runtime = RUNTIME.iter().map(|(reason, _)| (EVERY_STAGE, *reason));
    services
        .iter()
        .flat_map(|(service, reasons)| reasons.iter().map(move |r| (*service, *r)))
        .chain(runtime)
        .map(|(s, r)| (s.to_string(), r.to_string()))
        .collect()
}

/// The text of a table cell that is one code span: `` `x` `` → `x`.
fn code(cell: &str) -> Option<&str> {
    let inner = cell.trim().strip_prefix('`')?.strip_suffix('`')?;
    (!inner.contains('`')).then_some(inner)
}

/// Every (service, reason) row of the README's reason tables: tables whose first column is
/// `reason`; the service is the `service` column, or preprocess for the `decode.*` table
/// under the preprocess section.
fn in_readme(text: &str) -> Vec<(String, String)> {
    let mut rows = Vec::new();
    let mut heading = "";
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.starts_with('#') {
            heading = line;
            continue;
        }
        let cells = |l: &str| -> Vec<String> {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect()
        };
        if !line.starts_with("| reason |") {
            continue;
        }
        let header = cells(line);
        let service_col = header.iter().position(|c| c == "service");
        if service_col.is_none() {
            assert!(
                heading.contains("preprocess"),
                "a reason table without a service column outside the preprocess section: {heading}"
            );
        }
        lines.next(); // |---|---|
        while let Some(row) = lines.next_if(|l| l.starts_with('|')) {
            let row = cells(row);
            let reason = code(&row[0]).unwrap_or_else(|| panic!("reason cell {:?}", row[0]));
            let services = match service_col {
                Some(i) => row[i].split(',').map(|s| s.trim().to_string()).collect(),
                None => vec!["preprocess".to_string()],
            };
            for service in services {
                rows.push((service, reason.to_string()));
            }
        }
    }
    rows
}

#[test]
fn the_readme_lists_every_reason_and_only_those() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let rows = in_readme(&readme);
    let listed: BTreeSet<_> = rows.iter().cloned().collect();
    assert_eq!(listed.len(), rows.len(), "a reason is listed twice");
    let code = in_code();
    // A reason of the stage runtime's rows is listed for every service (triage's `produce`).
    let every_stage = |r: &String| listed.contains(&(EVERY_STAGE.to_string(), r.clone()));
    let missing: Vec<_> = code
        .iter()
        .filter(|(s, r)| !listed.contains(&(s.clone(), r.clone())) && !every_stage(r))
        .collect();
    let unknown: Vec<_> = listed.difference(&code).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "README reason tables and code disagree\n  in code, not in the README: {missing:?}\n  in the README, not in code: {unknown:?}"
    );
}

#[test]
fn the_runtime_reasons_are_the_stage_runtimes() {
    let stage = std::fs::read_to_string(root().join("services/common/src/kafka/stage.rs")).unwrap();
    for (reason, text) in RUNTIME {
        assert!(stage.contains(text), "{reason}: {text} not in stage.rs");
    }
}
