//! A Confluent Schema Registry REST client (Confluent or Karapace) for the distributed shape.
//!
//! Only three calls are needed: register a subject's schema (returns its id), fetch a schema by
//! id, and test compatibility. Subjects follow the TopicNameStrategy (`<topic>-value`). Fetched
//! schemas are cached in the [`Codec`], so each id costs one request per process.

use std::sync::Arc;
use std::time::Duration;

use apache_avro::Schema;
use cxrflow_contracts::topics::SCHEMAS;
use cxrflow_contracts::{Codec, CodecError, RegistryError, SchemaId};
use serde::Deserialize;

use crate::config::KafkaArgs;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Clone)]
pub struct RestRegistry {
    base: String,
    http: reqwest::Client,
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

impl RestRegistry {
    pub fn new(base: &str) -> Self {
        RestRegistry {
            base: base.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("reqwest client with static settings"),
        }
    }

    /// Registers `schema` under `<topic>-value`; returns its id (existing id if already there).
    pub async fn register(&self, topic: &str, schema: &str) -> Result<SchemaId, RegistryError> {
        let url = format!("{}/subjects/{}-value/versions", self.base, topic);
        let resp = self
            .http
            .post(url)
            .header("content-type", CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": schema }))
            .send()
            .await
            .map_err(remote)?;
        if resp.status() == reqwest::StatusCode::CONFLICT {
            return Err(RegistryError::Incompatible {
                subject: format!("{topic}-value"),
                detail: resp.text().await.unwrap_or_default(),
            });
        }
        let resp = resp.error_for_status().map_err(remote)?;
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
        let resp = self
            .http
            .post(url)
            .header("content-type", CONTENT_TYPE)
            .json(&serde_json::json!({ "schema": schema }))
            .send()
            .await
            .map_err(remote)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(true); // nothing registered yet
        }
        let resp = resp.error_for_status().map_err(remote)?;
        Ok(resp
            .json::<CompatResponse>()
            .await
            .map_err(remote)?
            .is_compatible)
    }

    /// Fetches a schema by id.
    pub async fn fetch(&self, id: SchemaId) -> Result<Option<Schema>, RegistryError> {
        let url = format!("{}/schemas/ids/{}", self.base, id.0);
        let resp = self.http.get(url).send().await.map_err(remote)?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = resp.error_for_status().map_err(remote)?;
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
/// current schema is registered (compatibility enforced by the registry) and its id used.
pub async fn codec_for(
    kafka: &KafkaArgs,
) -> Result<(Arc<Codec>, Option<RestRegistry>), CodecError> {
    if kafka.schema_registry.is_empty() {
        return Ok((Arc::new(Codec::with_static_registry()?), None));
    }
    let reg = RestRegistry::new(&kafka.schema_registry);
    let codec = Codec::empty()?;
    for (topic, text) in SCHEMAS {
        let physical = kafka.topic(topic);
        let id = reg.register(&physical, text).await?;
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
