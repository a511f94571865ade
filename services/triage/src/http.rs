//! The worklist's HTTP face, served beside `/metrics`, `/healthz` and `/readyz`:
//! `GET /` (the worklist page), `GET /worklist` (JSON in reading order), `GET /worklist/events`
//! (Server-Sent Events of changes), `GET /studies/{uid}/thumbnail` (a small PNG from the blob
//! store) and `POST /studies/{uid}/report` (a radiologist's labels to `cxr.feedback.v1`).
//! Every route needs the `reader` role ([`cxrflow_common::auth`]); a browser without a session
//! gets the login page instead of the worklist. Reads and reports are audited.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::Cursor;
use std::sync::{Arc, OnceLock};

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cxrflow_common::audit;
use cxrflow_common::auth::{Access, Principal, Role, Routes};
use cxrflow_common::blob::{BlobError, BlobStore};
use cxrflow_contracts::{
    EpochMillis, FindingLabel, FindingScore, OrderPriority, RadiologistReport, TriageDecision,
    TriageTier, WorklistStatus,
};
use futures::Stream;
use serde::{Deserialize, Serialize};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use crate::engine::{Engine, WorklistEvent};
use crate::worklist::OrderingMode;

const PAGE: &str = include_str!("page.html");
const THUMBNAIL_PX: u32 = 256;

/// What the routes share; the engine is set once the service has its producer.
#[derive(Clone)]
pub struct WebState {
    pub engine: Arc<OnceLock<Arc<Engine>>>,
    pub blobs: Option<BlobStore>,
    /// `--viewer-url`: the PACS viewer's URL template for a study.
    pub viewer_url: Option<String>,
}

/// Checks a `--viewer-url` template: empty, or an http(s) URL with `{study_uid}` in it.
pub fn parse_viewer_url(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Ok(String::new());
    }
    // No quote, angle bracket or space: the page puts it in an attribute as it is.
    let plain = !s.contains(['"', '\'', '<', '>', ' ', '`']);
    if !(s.starts_with("https://") || s.starts_with("http://"))
        || !s.contains("{study_uid}")
        || !plain
    {
        return Err(format!(
            "{s:?}: expected an http(s) URL with {{study_uid}} where the Study Instance UID goes"
        ));
    }
    Ok(s.to_string())
}

/// The viewer link of a study: the template with its UID, only for a well-formed DICOM UID
/// (digits and dots, at most 64 characters), so nothing from a record can inject into the URL.
pub fn viewer_link(template: &str, study_uid: &str) -> Option<String> {
    let well_formed = !study_uid.is_empty()
        && study_uid.len() <= 64
        && study_uid.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    well_formed.then(|| template.replace("{study_uid}", study_uid))
}

/// One study as the worklist shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WorklistItem {
    pub position: usize,
    pub study_uid: String,
    pub site_id: String,
    pub tier: TriageTier,
    pub status: WorklistStatus,
    pub score: f64,
    pub top_findings: Vec<FindingScore>,
    pub priority_hint: OrderPriority,
    pub acquired_at: EpochMillis,
    /// When its wait started, as its deadline and wait cap count it: its acquisition, or its
    /// arrival for a prior or a wrong modality clock (`--late-arrival-limit`).
    #[serde(default)]
    pub waiting_since: EpochMillis,
    /// Since `waiting_since`.
    pub waiting_ms: i64,
    pub deadline: EpochMillis,
    pub due_in_ms: i64,
    pub escalations: i32,
    pub version: i64,
    pub model_version: Option<String>,
    pub reasons: Vec<String>,
    /// Why the AI does not rank this study (AI_PENDING has none yet).
    #[serde(default)]
    pub not_assessable_reason: Option<String>,
    #[serde(default)]
    pub not_assessable_code: Option<String>,
    /// The (pseudonymous) accession number, when the gateway had one.
    #[serde(default)]
    pub accession_number: Option<String>,
    /// The study in the PACS viewer (`--viewer-url`).
    #[serde(default)]
    pub viewer_url: Option<String>,
    /// When the study was last read, on a study open again because an image arrived after
    /// its report (absent on a study never read).
    #[serde(default)]
    pub read_at: Option<EpochMillis>,
    /// A scored study whose patient age reached the AI from neither the image header nor the
    /// scan event: whether the patient is in the model's age range (adults) was not checked
    /// (`--preprocess-unknown-age score`, the default). Never set on an unranked study.
    #[serde(default)]
    pub age_unknown: bool,
}

impl WorklistItem {
    /// The item of decision `d` at `position`, its wait counted from `waiting_since`.
    pub fn of(
        position: usize,
        d: &TriageDecision,
        now: EpochMillis,
        waiting_since: EpochMillis,
    ) -> Self {
        WorklistItem {
            position,
            study_uid: d.study.study_instance_uid.clone(),
            site_id: d.study.site_id.clone(),
            tier: d.tier,
            status: d.status,
            score: d.score,
            top_findings: d.top_findings.clone(),
            priority_hint: d.study.priority_hint,
            acquired_at: d.study.acquired_at,
            waiting_since,
            waiting_ms: (now - waiting_since).max(0),
            deadline: d.deadline,
            due_in_ms: d.deadline - now,
            escalations: d.escalations,
            version: d.version,
            model_version: d.model_version.clone(),
            reasons: d.reasons.clone(),
            not_assessable_reason: d.not_assessable_reason.clone(),
            not_assessable_code: d.not_assessable_code.clone(),
            accession_number: d.study.accession_number.clone(),
            viewer_url: None,
            read_at: d.read_at,
            age_unknown: d.study.patient_age_years.is_none() && crate::policy::ai_ranked(d.tier),
        }
    }
}

/// Open studies per tier, for the page's header.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TierCounts {
    pub critical: i64,
    pub urgent: i64,
    pub routine: i64,
    pub not_assessable: i64,
    pub ai_pending: i64,
}

impl TierCounts {
    fn of(counts: &[(TriageTier, i64)]) -> Self {
        let mut c = TierCounts::default();
        for (t, n) in counts {
            *match t {
                TriageTier::Critical => &mut c.critical,
                TriageTier::Urgent => &mut c.urgent,
                TriageTier::Routine => &mut c.routine,
                TriageTier::NotAssessable => &mut c.not_assessable,
                TriageTier::AiPending => &mut c.ai_pending,
            } += n;
        }
        c
    }
}

/// The `GET /worklist` answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorklistView {
    pub now: EpochMillis,
    pub ordering: String,
    pub items: Vec<WorklistItem>,
    /// Open studies per tier on the whole worklist (whatever the filter).
    #[serde(default)]
    pub counts: TierCounts,
}

#[derive(Debug, Deserialize)]
struct WorklistQuery {
    site: Option<String>,
    limit: Option<usize>,
    /// `unranked`: only studies the AI does not rank (AI_PENDING, NOT_ASSESSABLE); or one tier
    /// name (`CRITICAL`, `AI_PENDING`, ...).
    only: Option<String>,
}

/// Whether `d` passes the `only` filter.
fn shown(d: &TriageDecision, only: Option<&str>) -> bool {
    match only.map(str::trim).filter(|o| !o.is_empty()) {
        None => true,
        Some(o) if o.eq_ignore_ascii_case("unranked") => !crate::policy::ai_ranked(d.tier),
        Some(o) => serde_json::to_value(d.tier)
            .ok()
            .and_then(|v| v.as_str().map(|t| t.eq_ignore_ascii_case(o)))
            .unwrap_or(false),
    }
}

/// The body of `POST /studies/{uid}/report`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReportRequest {
    pub labels: Vec<FindingLabel>,
    #[serde(default)]
    pub reader_ref: Option<String>,
    #[serde(default)]
    pub read_started_at: Option<EpochMillis>,
}

pub fn routes(state: WebState) -> Routes {
    const READER: Access = Access::Role(Role::Reader);
    Routes::new()
        .get("/", READER, || async {
            cxrflow_common::http::page(StatusCode::OK, PAGE)
        })
        .get("/worklist", READER, worklist)
        .get("/worklist/events", READER, events)
        .get("/studies/{uid}/thumbnail", READER, thumbnail)
        .post("/studies/{uid}/report", READER, report)
        .with_state(state)
}

fn unavailable() -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, "worklist is being rebuilt").into_response()
}

fn ready_engine(s: &WebState) -> Option<&Arc<Engine>> {
    s.engine.get().filter(|e| e.is_rebuilt())
}

async fn worklist(
    State(s): State<WebState>,
    who: Principal,
    Query(q): Query<WorklistQuery>,
) -> Response {
    let Some(engine) = ready_engine(&s) else {
        return unavailable();
    };
    let now = engine.now();
    let mode = engine.settings.ordering;
    let (items, counts): (Vec<WorklistItem>, TierCounts) = {
        let wl = engine.worklist();
        let items = wl
            .ordered(q.site.as_deref(), mode)
            .into_iter()
            .enumerate()
            .filter(|(_, e)| shown(&e.decision, q.only.as_deref()))
            .take(q.limit.unwrap_or(usize::MAX))
            .map(|(i, e)| {
                let since = wl.policy().wait_start(&e.decision.study);
                let mut item = WorklistItem::of(i + 1, &e.decision, now, since);
                item.viewer_url = s
                    .viewer_url
                    .as_deref()
                    .and_then(|t| viewer_link(t, &item.study_uid));
                item
            })
            .collect();
        (items, TierCounts::of(&wl.open_by_tier()))
    };
    audit::worklist_read(&who, "list", items.len(), q.site.as_deref());
    let ordering = match mode {
        OrderingMode::PerSite => "per-site",
        OrderingMode::Pooled => "pooled",
    };
    Json(WorklistView {
        now,
        ordering: ordering.into(),
        items,
        counts,
    })
    .into_response()
}

#[derive(Serialize)]
struct EventBody<'a> {
    study_uid: &'a str,
    version: Option<i64>,
    status: Option<WorklistStatus>,
    tier: Option<TriageTier>,
}

fn sse_event(
    ev: Result<WorklistEvent, tokio_stream::wrappers::errors::BroadcastStreamRecvError>,
) -> Event {
    let (name, body) = match &ev {
        Ok(WorklistEvent::Changed(d)) => (
            "decision",
            EventBody {
                study_uid: &d.study.study_instance_uid,
                version: Some(d.version),
                status: Some(d.status),
                tier: Some(d.tier),
            },
        ),
        Ok(WorklistEvent::Removed(uid)) => (
            "removed",
            EventBody {
                study_uid: uid,
                version: None,
                status: None,
                tier: None,
            },
        ),
        // The client fell behind: it should reload the whole list.
        Err(_) => return Event::default().event("resync").data("{}"),
    };
    Event::default()
        .event(name)
        .json_data(&body)
        .unwrap_or_else(|_| Event::default().event("resync").data("{}"))
}

async fn events(State(s): State<WebState>, who: Principal) -> Response {
    let Some(engine) = ready_engine(&s) else {
        return unavailable();
    };
    audit::worklist_read(&who, "live stream", 0, None);
    let hello = tokio_stream::once(Ok::<Event, Infallible>(
        Event::default().event("hello").data("{}"),
    ));
    let changes =
        BroadcastStream::new(engine.subscribe()).map(|ev| Ok::<Event, Infallible>(sse_event(ev)));
    let stream: std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>> =
        Box::pin(hello.chain(changes));
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn is_dicom(bytes: &[u8]) -> bool {
    bytes.len() >= 132 && &bytes[128..132] == b"DICM"
}

/// A small PNG of `bytes`, or `None` when the format cannot be decoded here.
pub fn thumbnail_png(bytes: &[u8]) -> Option<Vec<u8>> {
    if is_dicom(bytes) {
        return None;
    }
    let mut reader = image::ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .ok()?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(16_384);
    limits.max_image_height = Some(16_384);
    limits.max_alloc = Some(512 * 1024 * 1024);
    reader.limits(limits);
    let img = reader.decode().ok()?;
    let thumb = img.thumbnail(THUMBNAIL_PX, THUMBNAIL_PX);
    let mut out = Vec::new();
    thumb
        .write_to(&mut Cursor::new(&mut out), image::ImageFormat::Png)
        .ok()?;
    Some(out)
}

async fn thumbnail(State(s): State<WebState>, who: Principal, Path(uid): Path<String>) -> Response {
    let Some(engine) = ready_engine(&s) else {
        return unavailable();
    };
    audit::study_read(&who, &uid, "thumbnail");
    let Some(uri) = engine
        .worklist()
        .get(&uid)
        .map(|e| e.decision.blob_uri.clone())
    else {
        return (StatusCode::NOT_FOUND, "study not on the worklist").into_response();
    };
    if uri.is_empty() {
        return (StatusCode::NOT_FOUND, "no stored image for this study yet").into_response();
    }
    let Some(blobs) = s.blobs.clone() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "no blob store configured").into_response();
    };
    let bytes = match blobs.get(&uri).await {
        Ok(b) => b,
        Err(e @ (BlobError::NotFound(_) | BlobError::ForeignUri { .. })) => {
            return (StatusCode::NOT_FOUND, e.to_string()).into_response()
        }
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into_response(),
    };
    match tokio::task::spawn_blocking(move || thumbnail_png(&bytes)).await {
        Ok(Some(png)) => ([(header::CONTENT_TYPE, "image/png")], png).into_response(),
        Ok(None) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "image format cannot be shown here (e.g. DICOM)",
        )
            .into_response(),
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, "thumbnail failed").into_response(),
    }
}

async fn report(
    State(s): State<WebState>,
    who: Principal,
    Path(uid): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(engine) = ready_engine(&s) else {
        return unavailable();
    };
    let req: ReportRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::UNPROCESSABLE_ENTITY, format!("bad report: {e}")).into_response()
        }
    };
    // Labels first: a bad request is answered as such whether or not the study is listed.
    if let Err(e) = RadiologistReport::validate_labels(&req.labels) {
        return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response();
    }
    let Some((current, open)) = engine
        .worklist()
        .get(&uid)
        .map(|e| (e.decision.clone(), e.is_open()))
    else {
        return (StatusCode::NOT_FOUND, "study not on the worklist").into_response();
    };
    // A read study stays on the worklist until its tombstone; a second report for it would be
    // a second labelled example downstream, not a replay of the first.
    if !open {
        return (StatusCode::CONFLICT, "study already read").into_response();
    }
    let now = engine.now();
    let report = RadiologistReport {
        report_id: uuid::Uuid::new_v4().to_string(),
        study_instance_uid: uid,
        site_id: current.study.site_id.clone(),
        reader_ref: req.reader_ref.unwrap_or_else(|| "worklist-ui".into()),
        read_started_at: req.read_started_at.unwrap_or(now),
        read_ended_at: now,
        labels: req.labels,
        tier_at_read: Some(format!("{:?}", current.tier).to_ascii_uppercase()),
    };
    // The rules feedback applies: a report it would dead-letter is refused here, to the reader.
    if let Err(e) = report.validate() {
        return (StatusCode::UNPROCESSABLE_ENTITY, e.to_string()).into_response();
    }
    match engine
        .producer()
        .send(engine.codec(), &report, &BTreeMap::new())
        .await
    {
        Ok(_) => {
            engine.metrics().report_submitted();
            audit::report_submitted(&who, &report.study_instance_uid, &report.report_id);
            (
                StatusCode::ACCEPTED,
                Json(serde_json::json!({ "report_id": report.report_id })),
            )
                .into_response()
        }
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("report not published: {e}"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnails_are_small_pngs_and_dicom_is_refused() {
        let img = image::GrayImage::from_fn(640, 480, |x, y| image::Luma([((x + y) % 256) as u8]));
        let mut png = Vec::new();
        img.write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let t = thumbnail_png(&png).expect("png decodes");
        let back = image::load_from_memory(&t).unwrap();
        assert!(back.width() <= THUMBNAIL_PX && back.height() <= THUMBNAIL_PX);
        let mut dicom = vec![0u8; 200];
        dicom[128..132].copy_from_slice(b"DICM");
        assert!(thumbnail_png(&dicom).is_none());
        assert!(thumbnail_png(b"not an image").is_none());
    }

    #[test]
    fn viewer_links_take_only_well_formed_uids() {
        let t =
            parse_viewer_url("https://pacs.example/viewer?StudyInstanceUIDs={study_uid}").unwrap();
        assert_eq!(
            viewer_link(&t, "1.2.840.113619.2.55"),
            Some("https://pacs.example/viewer?StudyInstanceUIDs=1.2.840.113619.2.55".into())
        );
        for bad in ["", "1.2\"><script>", "1.2&x=1", &"1".repeat(65)] {
            assert_eq!(viewer_link(&t, bad), None, "{bad}");
        }
        assert_eq!(parse_viewer_url(""), Ok(String::new()));
        assert!(parse_viewer_url("javascript:alert(1)//{study_uid}").is_err());
        assert!(parse_viewer_url("https://pacs.example/viewer").is_err());
        assert!(
            parse_viewer_url("https://pacs.example/v?u={study_uid}\" onmouseover=\"x").is_err()
        );
    }
}
