//! A Confluent Schema Registry REST client (Confluent or Karapace) for the distributed shape.
//!
//! Four calls are needed: register a subject's schema (returns its id), look a schema up under
//! its subject without registering it (read-only credentials), fetch a schema by id, and test
//! compatibility. Subjects follow the TopicNameStrategy (`<topic>-value`). Fetched schemas are
//! cached in the [`Codec`], so each id costs one request per process. Credentials: HTTP basic
//! (API key and secret) or a bearer token (`--schema-registry-auth`).

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use cxrflow_contracts::topics::SCHEMAS;
use cxrflow_contracts::{Codec, CodecError, RegistryError, SchemaId};
use serde::Deserialize;

use crate::config::KafkaArgs;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// How the client authenticates to the registry.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    None,
    Basic { user: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::None => f.write_str("None"),
            RegistryAuth::Basic { user, .. } => write!(f, "Basic({user}:***)"),
            RegistryAuth::Bearer(_) => f.write_str("Bearer(***)"),
        }
    }
}

impl RegistryAuth {
    /// Parses `--schema-registry-auth`: empty, `basic:<user>:<password>` or `bearer:<token>`.
    pub fn parse(spec: &str) -> Result<Self, RegistryError> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Ok(RegistryAuth::None);
        }
        let bad = || {
            RegistryError::Remote(
                "--schema-registry-auth must be basic:<user>:<password> or bearer:<token>".into(),
            )
        };
        match spec.split_once(':').ok_or_else(bad)? {
            ("basic", rest) => {
                let (user, password) = rest.split_once(':').ok_or_else(bad)?;
                Ok(RegistryAuth::Basic {
                    user: user.to_string(),
                    password: password.to_string(),
                })
            }
            ("bearer", token) if !token.is_empty() => Ok(RegistryAuth::Bearer(token.to_string())),
            _ => Err(bad()),
        }
    }

    fn apply(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            RegistryAuth::None => req,
            RegistryAuth::Basic { user, password } => req.basic_auth(user, Some(password)),
            RegistryAuth::Bearer(token) => req.bearer_auth(token),
        }
    }
}

#[derive(Clone)]
pub struct RestRegistry {
    base: String,
    http: reqwest::Client,
    auth: RegistryAuth,
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
}

#[derive(Deserialize)]
struct CompatResponse {
    is_compatible: bool,
}

fn remote(e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Remote(e.to_string())
}

/// A refused request: authentication errors say so (a wrong key is not a network problem).
async fn refused(resp: reqwest::Response, what: &str) -> RegistryError {
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    match status {
        reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN => {
            RegistryError::Remote(format!(
                "schema registry refused {what}: {status} (check --schema-registry-auth): {body}"
            ))
        }
        _ => RegistryError::Remote(format!("schema registry: {what}: {status}: {body}")),
    }
}

impl RestRegistry {
    pub fn new(base: &str) -> Self {
        Self::with_auth(base, RegistryAuth::None)
    }

    pub fn with_auth(base: &str, auth: RegistryAuth) -> Self {
        RestRegistry {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client with static settings"),
            auth,
        }
    }

    /// POSTs `{"schema": schema}` to `url` with the credentials.
    async fn post_schema(
        &self,
        url: String,
        schema: &str,
    ) -> Result<reqwest::Response, RegistryError> {
        self.auth
            .apply(self.http.post(url))
            .header("content-type", CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": schema }))
            .send()
            .await
            .map_err(remote)
    }

    /// The id under which `schema` is registered for `<topic>-value`, without registering it;
    /// `None` when it is not.
    pub async fn lookup(
        &self,
        topic: &str,
        schema: &str,
    ) -> Result<Option<SchemaId>, RegistryError> {
        let url = format!("{}/subjects/{}-value", self.base, topic);
        let resp = self.post_schema(url, schema).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(refused(resp, &format!("looking up {topic}-value")).await);
        }
        Ok(Some(SchemaId(
            resp.json::<IdResponse>().await.map_err(remote)?.id,
        )))
    }

    /// Registers `schema` under `<topic>-value`; returns its id (existing id if already there).
    pub async fn register(&self, topic: &str, schema: &str) -> Result<SchemaId, RegistryError> {
        let url = format!("{}/subjects/{}-value/versions", self.base, topic);
        let resp = self.post_schema(url, schema).await?;
        if resp.status() == reqwest::StatusCode::CONFLICT {
            return Err(RegistryError::Incompatible {
                subject: format!("{topic}-value"),
                detail: resp.text().await.unwrap_or_default(),
            });
        }
        if !resp.status().is_success() {
            return Err(refused(resp, &format!("registering {topic}-value")).await);
        }
        Ok(SchemaId(
            resp.json::<IdResponse>().await.map_err(remote)?.id,
        ))
    }

    /// Whether `schema` is compatible with the latest registered version of `<topic>-value`.
    pub async fn is_compatible(&self, topic: &str, schema: &str) -> Result<bool, RegistryError> {
        let url = format!(
            "{}/compatibility/subjects/{}-value/versions/latest",
            self.base, topic
        );
        let resp = self.post_schema(url, schema).await?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(true); // nothing registered yet
        }
        if !resp.status().is_success() {
            return Err(refused(resp, &format!("compatibility of {topic}-value")).await);
        }
        Ok(resp
            .json::<CompatResponse>()
            .await
            .map_err(remote)?
            .is_compatible)
    }

    /// Fetches a schema by id.
    pub async fn fetch(&self, id: SchemaId) -> Result<Option<Schema>, RegistryError> {
        let url = format!("{}/schemas/ids/{}", self.base, id.0);
        let resp = self
            .auth
            .apply(self.http.get(url))
            .send()
            .await
            .map_err(remote)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !resp.status().is_success() {
            return Err(refused(resp, &format!("fetching schema id {}", id.0)).await);
        }
        let text = resp.json::<SchemaResponse>().await.map_err(remote)?.schema;
        Schema::parse_str(&text)
            .map(Some)
            .map_err(|e| RegistryError::BadSchema {
                subject: format!("id {id}"),
                source: Box::new(e),
            })
    }
}

/// The codec a service uses: the static registry by default; with a registry URL, every
/// current schema is registered (compatibility enforced by the registry) and its id used, or,
/// read-only, looked up (a schema not registered is an error naming its subject).
pub async fn codec_for(
    kafka: &KafkaArgs,
) -> Result<(Arc<Codec>, Option<RestRegistry>), CodecError> {
    if kafka.schema_registry.is_empty() {
        return Ok((Arc::new(Codec::with_static_registry()?), None));
    }
    let auth = RegistryAuth::parse(&kafka.schema_registry_auth)?;
    let reg = RestRegistry::with_auth(&kafka.schema_registry, auth);
    let codec = Codec::empty()?;
    for (topic, text) in SCHEMAS {
        let physical = kafka.topic(topic);
        let id = if kafka.schema_registry_read_only {
            reg.lookup(&physical, text).await?.ok_or_else(|| {
                RegistryError::Remote(format!(
                    "schema of {topic} is not registered under {physical}-value and \
                     --schema-registry-read-only forbids registering it: register this \
                     release's schemas first"
                ))
            })?
        } else {
            reg.register(&physical, text).await?
        };
        let schema = codec
            .reader_schema(topic)
            .ok_or_else(|| RegistryError::UnknownTopic(topic.to_string()))?;
        codec.set_writer(topic, id, schema);
    }
    Ok((Arc::new(codec), Some(reg)))
}

/// Makes sure the codec knows the schema id of `bytes`, fetching it from the registry if
/// needed. An id the registry does not know either is left unknown (the decode then fails
/// with a typed `UnknownSchemaId`, which is poison).
pub async fn learn_schema(
    codec: &Codec,
    registry: Option<&RestRegistry>,
    bytes: &[u8],
) -> Result<(), RegistryError> {
    let (Some(reg), Ok(id)) = (registry, Codec::schema_id(bytes)) else {
        return Ok(());
    };
    if codec.knows(id) {
        return Ok(());
    }
    if let Some(schema) = reg.fetch(id).await? {
        codec.insert_schema(id, Arc::new(schema));
    }
    Ok(())
}
