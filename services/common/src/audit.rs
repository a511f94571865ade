//! The audit trail: who read, wrote or was refused what, as structured log events with
//! `target: "audit"` (route them to their own sink with `RUST_LOG=audit=info` or a log
//! pipeline filter). Pseudonymous identifiers only: a principal's id (`key:<name>`,
//! `oidc:<subject>`), study UIDs as the pipeline carries them (pseudonymised at the gateway),
//! never a name, birth date or image.

use axum::http::Method;

use crate::auth::{Principal, Role};

fn who(p: Option<&Principal>) -> &str {
    p.map_or("-", |p| p.id.as_str())
}

/// A request refused: no or bad credential, missing role, or a failed CSRF check.
pub fn access_refused(p: Option<&Principal>, method: &Method, path: &str, role: Role, why: &str) {
    tracing::warn!(target: "audit", event = "access_refused", principal = who(p),
        %method, path, needs = %role, why);
}

/// A login attempt at `/auth/login`.
pub fn login(p: Result<&Principal, &str>) {
    match p {
        Ok(p) => tracing::info!(target: "audit", event = "login", outcome = "success",
            principal = %p.id, via = ?p.via),
        Err(why) => tracing::warn!(target: "audit", event = "login", outcome = "failure", why),
    }
}

/// The worklist (or its live stream) was read.
pub fn worklist_read(p: &Principal, what: &str, entries: usize, site: Option<&str>) {
    tracing::info!(target: "audit", event = "worklist_read", principal = %p.id, what, entries,
        site = site.unwrap_or("*"));
}

/// One study's data (its thumbnail) was read.
pub fn study_read(p: &Principal, study_uid: &str, what: &str) {
    tracing::info!(target: "audit", event = "study_read", principal = %p.id, study_uid, what);
}

/// A report was submitted for a study.
pub fn report_submitted(p: &Principal, study_uid: &str, report_id: &str) {
    tracing::info!(target: "audit", event = "report_submitted", principal = %p.id, study_uid,
        report_id);
}

/// A STOW-RS request was answered (`status`: 200 all stored, 202 some, other: none).
pub fn images_uploaded(p: &Principal, study_uid: Option<&str>, status: u16) {
    tracing::info!(target: "audit", event = "images_uploaded", principal = %p.id,
        study_uid = study_uid.unwrap_or("-"), status);
}

/// Performance figures were read.
pub fn performance_read(p: &Principal) {
    tracing::info!(target: "audit", event = "performance_read", principal = %p.id);
}

/// A dead letter was replayed to its source topic by the `cxrflow dlq replay` command;
/// `actor` is the operating-system user who ran it (the command talks to Kafka, whose own
/// ACLs decide who may).
pub fn dead_letter_replayed(
    actor: &str,
    source_topic: &str,
    partition: i32,
    offset: i64,
    study_uid: &str,
    reason: &str,
) {
    tracing::info!(target: "audit", event = "dead_letter_replayed", principal = actor,
        source_topic, partition, offset, study_uid, reason);
}
