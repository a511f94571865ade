//! DICOMweb STOW-RS (PS3.18 §10.5) on the service's HTTP endpoint: `POST /studies` and
//! `POST /studies/{study}` with a `multipart/related; type="application/dicom"` body of Part-10
//! files. Each part is checked like a C-STORE (SOP class, transfer syntax, UIDs; the study in
//! the URL), stored and published; the answer lists it under ReferencedSOPSequence (0008,1199)
//! once its scan event is acknowledged, or under FailedSOPSequence (0008,1198) with a
//! FailureReason (0008,1197). HTTP status: 200 all stored, 202 some failed, 409 none stored,
//! 503 none stored and every failure is one a retry may fix (also when all slots are busy),
//! 400 for a body that is not valid multipart, 408 for a body that stalls longer than the idle
//! timeout, 413 past the body or instance limit, 415 for another media type. No RetrieveURL
//! is returned: the gateway does not serve WADO-RS.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cxrflow_common::audit;
use cxrflow_common::auth::{Access, Principal, Role, Routes};
use serde_json::{json, Map, Value};
use tokio::sync::Semaphore;

use crate::error::{clip, InstanceError};
use crate::instance::{is_accepted_transfer_syntax, read_part10, InstanceMeta};
use crate::metrics::{GatewayMetrics, Protocol, Reason};
use crate::publish::{Publisher, MEDIA_TYPE};

pub const DICOM_JSON: &str = "application/dicom+json";
const PEER: &str = "stow-rs";

/// What a STOW-RS request needs; set once the service's Kafka side is up (until then every
/// request gets 503).
pub struct Stow {
    pub publisher: Arc<Publisher>,
    pub slots: Arc<Semaphore>,
    pub max_instance_bytes: u64,
    pub max_body_bytes: u64,
    /// Longest wait for the next chunk of a request body.
    pub idle_timeout: Duration,
}

#[derive(Clone, Default)]
pub struct StowSlot(Arc<OnceLock<Stow>>);

impl StowSlot {
    pub fn set(&self, stow: Stow) {
        let _ = self.0.set(stow);
    }
}

/// The STOW-RS routes, to merge into the service's HTTP endpoint: `uploader` only (anyone
/// else could inject images into the pipeline).
pub fn routes(slot: StowSlot) -> Routes {
    const UPLOADER: Access = Access::Role(Role::Uploader);
    Routes::new()
        .post("/studies", UPLOADER, store_any)
        .post("/studies/{study}", UPLOADER, store_in_study)
        .with_state(slot)
}

async fn store_any(
    State(slot): State<StowSlot>,
    who: Principal,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = store(slot, None, headers, body).await;
    audit::images_uploaded(&who, None, r.status().as_u16());
    r
}

async fn store_in_study(
    State(slot): State<StowSlot>,
    who: Principal,
    Path(study): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let r = store(slot, Some(study.clone()), headers, body).await;
    audit::images_uploaded(&who, Some(&study), r.status().as_u16());
    r
}

fn plain(status: StatusCode, text: String) -> Response {
    (status, text).into_response()
}

/// Why a whole request is refused.
#[derive(Debug, thiserror::Error)]
enum RequestError {
    #[error("expected Content-Type multipart/related; type=\"application/dicom\", got {0:?}")]
    MediaType(String),
    #[error("multipart body is malformed: {0}")]
    Malformed(String),
    #[error("request exceeds a size limit: {0}")]
    TooLarge(String),
    #[error("request body stalled for more than {0} ms")]
    Stalled(u128),
}

impl RequestError {
    fn answer(&self, metrics: &GatewayMetrics) -> Response {
        let (reason, code) = match self {
            RequestError::MediaType(_) => (
                Reason::MediaTypeUnsupported,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ),
            RequestError::Malformed(_) => (Reason::RequestMalformed, StatusCode::BAD_REQUEST),
            RequestError::TooLarge(_) => (Reason::RequestTooLarge, StatusCode::PAYLOAD_TOO_LARGE),
            RequestError::Stalled(_) => (Reason::IdleTimeout, StatusCode::REQUEST_TIMEOUT),
        };
        metrics.rejected(reason, PEER, &self.to_string());
        plain(code, self.to_string())
    }
}

/// The boundary of a `multipart/related` body whose root type is `application/dicom`.
fn boundary(headers: &HeaderMap) -> Result<String, RequestError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let m: mime::Mime = raw
        .parse()
        .map_err(|_| RequestError::MediaType(clip(raw)))?;
    if m.type_() != mime::MULTIPART || m.subtype() != "related" {
        return Err(RequestError::MediaType(clip(raw)));
    }
    if let Some(t) = m.get_param("type") {
        if !t.as_str().eq_ignore_ascii_case(MEDIA_TYPE) {
            return Err(RequestError::MediaType(clip(raw)));
        }
    }
    m.get_param(mime::BOUNDARY)
        .map(|b| b.as_str().to_string())
        .ok_or_else(|| RequestError::Malformed("no boundary in Content-Type".into()))
}

/// One body part: its media type and bytes.
struct Part {
    media_type: Option<String>,
    bytes: Bytes,
}

/// Reads every part of the body; a body that stalls longer than `idle` between chunks is
/// given up on, so a slow sender cannot hold a slot forever.
async fn read_parts(
    body: Body,
    boundary: String,
    max_body: u64,
    max_part: u64,
    idle: Duration,
) -> Result<Vec<Part>, RequestError> {
    let stalled = Arc::new(AtomicBool::new(false));
    let flag = stalled.clone();
    let chunks = futures::stream::unfold(body.into_data_stream(), move |mut stream| {
        let flag = flag.clone();
        async move {
            use futures::StreamExt;
            match tokio::time::timeout(idle, stream.next()).await {
                Ok(Some(chunk)) => Some((chunk.map_err(std::io::Error::other), stream)),
                Ok(None) => None,
                Err(_) => {
                    flag.store(true, Ordering::Relaxed);
                    let e = std::io::Error::new(std::io::ErrorKind::TimedOut, "body stalled");
                    Some((Err(e), stream))
                }
            }
        }
    });
    let limits = multer::SizeLimit::new()
        .whole_stream(max_body)
        .per_field(max_part);
    let mut multipart = multer::Multipart::with_constraints(
        Box::pin(chunks),
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    let classify = |e: multer::Error| {
        if stalled.load(Ordering::Relaxed) {
            return RequestError::Stalled(idle.as_millis());
        }
        match e {
            multer::Error::StreamSizeExceeded { limit } => {
                RequestError::TooLarge(format!("body over {limit} bytes"))
            }
            multer::Error::FieldSizeExceeded { limit, .. } => {
                RequestError::TooLarge(format!("an instance over {limit} bytes"))
            }
            other => RequestError::Malformed(other.to_string()),
        }
    };
    let mut parts = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(classify)? {
        let media_type = field.content_type().map(|m| m.essence_str().to_string());
        let bytes = field.bytes().await.map_err(classify)?;
        parts.push(Part { media_type, bytes });
    }
    Ok(parts)
}

/// The SOP class and instance of a part, as far as they could be read.
#[derive(Default)]
struct Ids {
    sop_class: Option<String>,
    sop_instance: Option<String>,
}

fn uid_attr(tag: &str, uid: &str) -> (String, Value) {
    (tag.to_string(), json!({"vr": "UI", "Value": [uid]}))
}

fn item(ids: &Ids, failure: Option<u16>) -> Value {
    let mut m = Map::new();
    if let Some(c) = &ids.sop_class {
        let (k, v) = uid_attr("00081150", c);
        m.insert(k, v);
    }
    if let Some(i) = &ids.sop_instance {
        let (k, v) = uid_attr("00081155", i);
        m.insert(k, v);
    }
    if let Some(code) = failure {
        m.insert("00081197".into(), json!({"vr": "US", "Value": [code]}));
    }
    Value::Object(m)
}

impl Stow {
    async fn accept(
        &self,
        part: Part,
        study: Option<&str>,
        ids: &mut Ids,
    ) -> Result<(), InstanceError> {
        let received = Instant::now();
        self.publisher
            .metrics
            .instance_received(Protocol::Stow, part.bytes.len() as u64);
        if let Some(t) = part.media_type.as_deref() {
            if !t.eq_ignore_ascii_case(MEDIA_TYPE) {
                return Err(InstanceError::PartMediaType(clip(t)));
            }
        }
        let bytes = part.bytes;
        let parse = bytes.clone();
        let file = tokio::task::spawn_blocking(move || read_part10(&parse))
            .await
            .map_err(|e| InstanceError::Unreadable(e.to_string()))??;
        ids.sop_class = Some(file.media_sop_class.clone());
        ids.sop_instance = Some(file.media_sop_instance.clone());
        if !is_accepted_transfer_syntax(&file.transfer_syntax) {
            return Err(InstanceError::TransferSyntaxNotSupported(clip(
                &file.transfer_syntax,
            )));
        }
        let meta = InstanceMeta::from_dataset(&file.dataset)?;
        if meta.sop_class_uid != file.media_sop_class
            || meta.sop_instance_uid != file.media_sop_instance
        {
            return Err(InstanceError::DatasetMismatch(
                "file meta SOP class/instance differ from the data set's".into(),
            ));
        }
        if let Some(expected) = study {
            if meta.study_instance_uid != expected {
                return Err(InstanceError::StudyMismatch {
                    expected: clip(expected),
                    found: meta.study_instance_uid.clone(),
                });
            }
        }
        self.publisher
            .publish(Protocol::Stow, &meta, bytes, received)
            .await
            .map(|_| ())
    }
}

async fn store(slot: StowSlot, study: Option<String>, headers: HeaderMap, body: Body) -> Response {
    let Some(stow) = slot.0.get() else {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "starting".into());
    };
    let metrics = &stow.publisher.metrics;
    let Ok(_permit) = stow.slots.clone().try_acquire_owned() else {
        metrics.rejected(Reason::Busy, PEER, "all association slots busy; 503");
        let mut r = plain(StatusCode::SERVICE_UNAVAILABLE, "busy, retry later".into());
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };
    let boundary = match boundary(&headers) {
        Ok(b) => b,
        Err(e) => return e.answer(metrics),
    };
    let parts = match read_parts(
        body,
        boundary,
        stow.max_body_bytes,
        stow.max_instance_bytes,
        stow.idle_timeout,
    )
    .await
    {
        Ok(p) if p.is_empty() => {
            return RequestError::Malformed("no body parts".into()).answer(metrics)
        }
        Ok(p) => p,
        Err(e) => return e.answer(metrics),
    };
    let mut stored = Vec::new();
    let mut failed = Vec::new();
    let mut all_transient = true;
    for part in parts {
        let mut ids = Ids::default();
        match stow.accept(part, study.as_deref(), &mut ids).await {
            Ok(()) => stored.push(item(&ids, None)),
            Err(e) => {
                let sop = ids.sop_instance.as_deref().unwrap_or("(unreadable)");
                metrics.rejected(
                    e.reason(),
                    PEER,
                    &format!("STOW-RS part {}: {e}", clip(sop)),
                );
                all_transient &= e.is_transient();
                failed.push(item(&ids, Some(e.status())));
            }
        }
    }
    let code = if failed.is_empty() {
        StatusCode::OK
    } else if !stored.is_empty() {
        StatusCode::ACCEPTED
    } else if all_transient {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::CONFLICT
    };
    let mut doc = Map::new();
    if !failed.is_empty() {
        doc.insert("00081198".into(), json!({"vr": "SQ", "Value": failed}));
    }
    if !stored.is_empty() {
        doc.insert("00081199".into(), json!({"vr": "SQ", "Value": stored}));
    }
    (
        code,
        [(header::CONTENT_TYPE, DICOM_JSON)],
        Value::Object(doc).to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
        h
    }

    #[test]
    fn only_multipart_related_dicom_is_accepted() {
        assert_eq!(
            boundary(&ct(
                "multipart/related; type=\"application/dicom\"; boundary=abc"
            ))
            .unwrap(),
            "abc"
        );
        assert_eq!(boundary(&ct("multipart/related; boundary=x")).unwrap(), "x");
        assert!(matches!(
            boundary(&ct(
                "multipart/related; type=\"application/dicom+xml\"; boundary=x"
            )),
            Err(RequestError::MediaType(_))
        ));
        assert!(matches!(
            boundary(&ct("application/json")),
            Err(RequestError::MediaType(_))
        ));
        assert!(matches!(
            boundary(&ct("multipart/related; type=\"application/dicom\"")),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            boundary(&HeaderMap::new()),
            Err(RequestError::MediaType(_))
        ));
    }

    #[test]
    fn response_items_are_dicom_json() {
        let ids = Ids {
            sop_class: Some("1.2.840.10008.5.1.4.1.1.1".into()),
            sop_instance: Some("1.2.3".into()),
        };
        let v = item(&ids, Some(0xC000));
        assert_eq!(v["00081155"]["Value"][0], "1.2.3");
        assert_eq!(v["00081197"]["vr"], "US");
        assert_eq!(v["00081197"]["Value"][0], 0xC000);
        assert!(item(&Ids::default(), None).as_object().unwrap().is_empty());
    }
}
