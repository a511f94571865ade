//! The Confluent-API schema registry client against an HTTP server that speaks the subset of
//! the API cxrflow uses (register, look up under a subject, fetch by id, compatibility with
//! the latest version, BACKWARD compatibility checked with apache-avro), with authentication:
//! HTTP basic (an API key and secret) and bearer tokens, and a read-only mode that looks
//! schemas up instead of registering them. Neither Confluent's registry nor Karapace can be
//! installed from this project's package registries; this server follows Confluent's REST
//! reference for the five calls (status codes, `error_code` bodies, content type).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use apache_avro::schema_compatibility::SchemaCompatibility;
use apache_avro::Schema;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cxrflow_common::registry::{codec_for, learn_schema, RegistryAuth, RestRegistry};
use cxrflow_common::KafkaArgs;
use cxrflow_contracts::topics::{self, SCHEMAS};
use cxrflow_contracts::{AvroRecord, Codec, RegistryError, SchemaId};
use serde_json::{json, Value};

/// `cxr-svc:s3cret` in base64, as the Authorization header carries it.
const BASIC: &str = "Basic Y3hyLXN2YzpzM2NyZXQ=";
const BEARER: &str = "Bearer tok-123";

#[derive(Default)]
struct Registry {
    /// subject → versions (schema text, id)
    subjects: BTreeMap<String, Vec<(String, u32)>>,
    schemas: Vec<String>,
    /// Authorization header values accepted.
    accept: Vec<&'static str>,
    requests: usize,
}

type Shared = Arc<Mutex<Registry>>;

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        Json(json!({"error_code": code, "message": message})),
    )
        .into_response()
}

/// A refused request's response (boxed: a `Response` is large).
type Refusal = Box<Response>;

fn check(reg: &Shared, headers: &HeaderMap) -> Result<(), Refusal> {
    let mut r = reg.lock().unwrap();
    r.requests += 1;
    let given = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if r.accept.is_empty() || r.accept.contains(&given) {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            40101,
            "Unauthorized",
        )))
    }
}

fn parse(body: &Value) -> Result<(String, Schema), Refusal> {
    let text = body["schema"].as_str().unwrap_or_default().to_string();
    Schema::parse_str(&text).map(|s| (text, s)).map_err(|e| {
        Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            42201,
            &e.to_string(),
        ))
    })
}

/// Authenticates a request and parses the schema in its body.
fn admit(reg: &Shared, headers: &HeaderMap, body: &Value) -> Result<(String, Schema), Refusal> {
    check(reg, headers)?;
    parse(body)
}

/// The registered version (0-based index, (text, id)) whose canonical form is `schema`'s.
fn find_version<'a>(
    versions: &'a [(String, u32)],
    schema: &Schema,
) -> Option<(usize, &'a (String, u32))> {
    let want = schema.canonical_form();
    versions
        .iter()
        .enumerate()
        .find(|(_, (t, _))| Schema::parse_str(t).unwrap().canonical_form() == want)
}

async fn register(
    State(reg): State<Shared>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (text, schema) = match admit(&reg, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let mut r = reg.lock().unwrap();
    let versions = r.subjects.get(&subject).cloned().unwrap_or_default();
    if let Some((_, (_, id))) = find_version(&versions, &schema) {
        return Json(json!({"id": id})).into_response();
    }
    if let Some((latest, _)) = versions.last() {
        // BACKWARD: the new schema must read data written with the latest one.
        let old = Schema::parse_str(latest).unwrap();
        if let Err(e) = SchemaCompatibility::can_read(&old, &schema) {
            return error(
                StatusCode::CONFLICT,
                409,
                &format!("Schema being registered is incompatible with an earlier schema: {e}"),
            );
        }
    }
    r.schemas.push(text.clone());
    let id = r.schemas.len() as u32;
    r.subjects.entry(subject).or_default().push((text, id));
    Json(json!({"id": id})).into_response()
}

async fn lookup(
    State(reg): State<Shared>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (_, schema) = match admit(&reg, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let r = reg.lock().unwrap();
    let Some(versions) = r.subjects.get(&subject) else {
        return error(StatusCode::NOT_FOUND, 40401, "Subject not found.");
    };
    match find_version(versions, &schema) {
        Some((v, (t, id))) => Json(json!({
            "subject": subject, "id": id, "version": v + 1, "schema": t
        }))
        .into_response(),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn by_id(State(reg): State<Shared>, Path(id): Path<u32>, headers: HeaderMap) -> Response {
    if let Err(r) = check(&reg, &headers) {
        return *r;
    }
    let r = reg.lock().unwrap();
    match r.schemas.get((id as usize).wrapping_sub(1)) {
        Some(t) => Json(json!({"schema": t})).into_response(),
        None => error(StatusCode::NOT_FOUND, 40403, "Schema not found"),
    }
}

async fn compatibility(
    State(reg): State<Shared>,
    Path(subject): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let (_, schema) = match admit(&reg, &headers, &body) {
        Ok(x) => x,
        Err(r) => return *r,
    };
    let r = reg.lock().unwrap();
    let Some((latest, _)) = r.subjects.get(&subject).and_then(|v| v.last()) else {
        return error(StatusCode::NOT_FOUND, 40401, "Subject not found.");
    };
    let ok = SchemaCompatibility::can_read(&Schema::parse_str(latest).unwrap(), &schema).is_ok();
    Json(json!({"is_compatible": ok})).into_response()
}

async fn serve(accept: Vec<&'static str>) -> (String, Shared) {
    let reg: Shared = Arc::new(Mutex::new(Registry {
        accept,
        ..Registry::default()
    }));
    let app = Router::new()
        .route("/subjects/{subject}/versions", post(register))
        .route("/subjects/{subject}", post(lookup))
        .route("/schemas/ids/{id}", get(by_id))
        .route(
            "/compatibility/subjects/{subject}/versions/latest",
            post(compatibility),
        )
        .with_state(reg.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), reg)
}

fn kafka(url: &str, auth: &str, read_only: bool) -> KafkaArgs {
    let mut k = KafkaArgs::for_bootstrap("127.0.0.1:9");
    k.schema_registry = url.to_string();
    k.schema_registry_auth = auth.to_string();
    k.schema_registry_read_only = read_only;
    k.topic_prefix = "site1.".into();
    k
}

fn scan_schema() -> &'static str {
    SCHEMAS.iter().find(|(t, _)| *t == topics::SCAN).unwrap().1
}

#[tokio::test]
async fn a_service_registers_every_schema_with_basic_auth_and_encodes_with_the_registry_ids() {
    let (url, reg) = serve(vec![BASIC]).await;
    let (codec, client) = codec_for(&kafka(&url, "basic:cxr-svc:s3cret", false))
        .await
        .expect("registered");
    assert!(client.is_some());
    {
        let r = reg.lock().unwrap();
        assert_eq!(r.subjects.len(), SCHEMAS.len(), "one subject per topic");
        assert!(
            r.subjects.contains_key("site1.cxr.scan.v1-value"),
            "TopicNameStrategy, prefixed"
        );
    }
    // A second start registers nothing new: the same ids.
    let (again, _) = codec_for(&kafka(&url, "basic:cxr-svc:s3cret", false))
        .await
        .unwrap();
    assert_eq!(reg.lock().unwrap().schemas.len(), SCHEMAS.len());
    let id = |c: &Codec| c.writer_id(cxrflow_contracts::DeadLetter::TOPIC).unwrap();
    assert_eq!(id(&codec), id(&again));
    let dlq_subject = format!("site1.{}-value", cxrflow_contracts::DeadLetter::TOPIC);
    let registered = reg.lock().unwrap().subjects[&dlq_subject][0].1;
    assert_eq!(
        id(&codec),
        SchemaId(registered),
        "records carry the registry's id"
    );
    let rec = cxrflow_contracts::DeadLetter {
        stage: "s".into(),
        reason: "r".into(),
        error: "e".into(),
        source_topic: "t".into(),
        source_partition: 0,
        source_offset: 0,
        key: None,
        payload: None,
        headers: Default::default(),
        study_instance_uid: None,
        failed_at: 0,
        replay_count: 0,
    };
    let bytes = codec.encode(&rec).unwrap();
    assert_eq!(Codec::schema_id(&bytes).unwrap(), SchemaId(registered));
    assert_eq!(
        again
            .decode::<cxrflow_contracts::DeadLetter>(&bytes)
            .unwrap(),
        rec
    );
}

#[tokio::test]
async fn wrong_or_missing_credentials_are_refused_with_a_clear_error() {
    let (url, _) = serve(vec![BASIC]).await;
    for auth in ["", "basic:cxr-svc:wrong", "bearer:nope"] {
        let err = codec_for(&kafka(&url, auth, false))
            .await
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(
            text.contains("401") && text.contains("--schema-registry-auth"),
            "{auth}: {text}"
        );
    }
    let err = RegistryAuth::parse("basic-only").unwrap_err();
    assert!(err.to_string().contains("basic:<user>:<password>"), "{err}");
    assert!(
        !format!("{:?}", RegistryAuth::parse("basic:u:hunter2").unwrap()).contains("hunter2"),
        "the secret never prints"
    );
    assert!(!kafka(&url, "bearer:tok-xyz", false)
        .describe()
        .contains("tok-xyz"));
}

#[tokio::test]
async fn read_only_credentials_look_schemas_up_and_never_register() {
    let (url, reg) = serve(vec![BASIC, BEARER]).await;
    // Nothing registered yet: a read-only service refuses to start, naming the subject.
    let err = codec_for(&kafka(&url, "bearer:tok-123", true))
        .await
        .err()
        .expect("nothing registered");
    assert!(err.to_string().contains("site1.cxr.scan.v1-value"), "{err}");
    assert!(
        reg.lock().unwrap().schemas.is_empty(),
        "read-only registered nothing"
    );
    // The release pipeline registers (basic), the service looks up (bearer): same ids.
    let (writer, _) = codec_for(&kafka(&url, "basic:cxr-svc:s3cret", false))
        .await
        .unwrap();
    let before = reg.lock().unwrap().schemas.len();
    let (reader, client) = codec_for(&kafka(&url, "bearer:tok-123", true))
        .await
        .expect("looked up");
    assert_eq!(
        reg.lock().unwrap().schemas.len(),
        before,
        "nothing new registered"
    );
    let scan = cxrflow_contracts::topics::SCAN;
    assert_eq!(
        writer.writer_id(scan).unwrap(),
        reader.writer_id(scan).unwrap()
    );
    // A record written with an id this process never saw is fetched by id and decodes.
    let fresh = Codec::empty().unwrap();
    let bytes = {
        let mut b = vec![0u8];
        b.extend(reader.writer_id(scan).unwrap().0.to_be_bytes());
        b
    };
    learn_schema(&fresh, client.as_ref(), &bytes).await.unwrap();
    assert!(fresh.knows(reader.writer_id(scan).unwrap()));
}

#[tokio::test]
async fn an_incompatible_schema_is_refused_by_the_registry() {
    let (url, _) = serve(vec![]).await;
    let client = RestRegistry::new(&url);
    client.register("t", scan_schema()).await.unwrap();
    // A new required field without a default cannot read the old records.
    let mut v: Value = serde_json::from_str(scan_schema()).unwrap();
    v["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "required_new", "type": "string"}));
    let breaking = v.to_string();
    assert!(!client.is_compatible("t", &breaking).await.unwrap());
    let err = client.register("t", &breaking).await.unwrap_err();
    assert!(matches!(err, RegistryError::Incompatible { .. }), "{err}");
    // With a default it is a compatible evolution.
    let mut v: Value = serde_json::from_str(scan_schema()).unwrap();
    v["fields"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "optional_new", "type": ["null", "string"], "default": null}));
    assert!(client.is_compatible("t", &v.to_string()).await.unwrap());
    assert!(client.register("t", &v.to_string()).await.is_ok());
    assert_eq!(client.fetch(SchemaId(999)).await.unwrap(), None);
}
