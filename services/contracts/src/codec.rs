//! Avro codec with Confluent framing.
//!
//! Encoding writes a record with its topic's writer schema and id. Decoding reads the id from
//! the frame, looks the writer schema up, and resolves it against the reader schema compiled
//! into this binary (the current `schemas/<topic>.avsc`), so records written with an older
//! compatible schema still decode.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use apache_avro::Schema;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::framing::{frame, FrameError, Framed};
use crate::registry::{RegistryError, SchemaId, SchemaRegistry, StaticRegistry};
use crate::topics::SCHEMAS;

/// A record type that lives on one topic, keyed (usually by study UID).
pub trait AvroRecord: Serialize + DeserializeOwned {
    const TOPIC: &'static str;
    /// The Kafka key: the study UID for every study record.
    fn key(&self) -> String;
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("unknown schema id {0}")]
    UnknownSchemaId(SchemaId),
    #[error("record on {topic} was written with schema {found}, expected {expected}")]
    WrongSchema {
        topic: String,
        expected: String,
        found: String,
    },
    #[error("record does not decode with its writer schema {id}: {detail}")]
    Corrupt { id: SchemaId, detail: String },
    #[error("record has {0} trailing bytes after the Avro body")]
    TrailingBytes(usize),
    #[error("record for {topic} does not fit its schema: {detail}")]
    Encode { topic: String, detail: String },
    #[error(transparent)]
    Registry(#[from] RegistryError),
}

impl CodecError {
    /// Every reason [`CodecError::reason`] returns.
    pub const REASONS: &'static [&'static str] = &[
        "codec.too_short",
        "codec.bad_magic",
        "codec.unknown_schema_id",
        "codec.wrong_schema",
        "codec.corrupt",
        "codec.trailing_bytes",
        "codec.encode",
        "codec.registry",
    ];

    /// A short, stable reason for dead letters and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            CodecError::Frame(FrameError::TooShort(_)) => "codec.too_short",
            CodecError::Frame(FrameError::BadMagic(_)) => "codec.bad_magic",
            CodecError::UnknownSchemaId(_) => "codec.unknown_schema_id",
            CodecError::WrongSchema { .. } => "codec.wrong_schema",
            CodecError::Corrupt { .. } => "codec.corrupt",
            CodecError::TrailingBytes(_) => "codec.trailing_bytes",
            CodecError::Encode { .. } => "codec.encode",
            CodecError::Registry(_) => "codec.registry",
        }
    }
}

/// Encodes and decodes framed records. Cheap to share (`Arc<Codec>`); schemas learned at run
/// time (from a remote registry) are added with [`Codec::insert_schema`].
#[derive(Debug)]
pub struct Codec {
    readers: HashMap<&'static str, Arc<Schema>>,
    writers: RwLock<HashMap<String, (SchemaId, Arc<Schema>)>>,
    schemas: RwLock<HashMap<SchemaId, Arc<Schema>>>,
}

fn schema_name(s: &Schema) -> String {
    s.name()
        .map(|n| n.fullname(None))
        .unwrap_or_else(|| "<unnamed>".into())
}

impl Codec {
    /// A codec with reader schemas only; writers and ids come from a registry.
    pub fn empty() -> Result<Self, CodecError> {
        let mut readers = HashMap::new();
        for (topic, text) in SCHEMAS {
            let schema = Schema::parse_str(text).map_err(|e| RegistryError::BadSchema {
                subject: topic.to_string(),
                source: Box::new(e),
            })?;
            readers.insert(*topic, Arc::new(schema));
        }
        Ok(Codec {
            readers,
            writers: RwLock::new(HashMap::new()),
            schemas: RwLock::new(HashMap::new()),
        })
    }

    /// The embedded default: every schema with its fixed id.
    pub fn with_static_registry() -> Result<Self, CodecError> {
        let codec = Codec::empty()?;
        let reg = StaticRegistry::new()?;
        for (topic, _) in SCHEMAS {
            let (id, schema) = reg.writer(topic)?;
            codec.set_writer(topic, id, schema);
        }
        for id in (100..100 * (SCHEMAS.len() as u32 + 2)).map(SchemaId) {
            if let Some(s) = reg.by_id(id) {
                codec.insert_schema(id, s);
            }
        }
        Ok(codec)
    }

    /// The schema this binary reads `topic` with.
    pub fn reader_schema(&self, topic: &str) -> Option<Arc<Schema>> {
        self.readers.get(topic).cloned()
    }

    pub fn set_writer(&self, topic: &str, id: SchemaId, schema: Arc<Schema>) {
        self.insert_schema(id, schema.clone());
        self.writers
            .write()
            .expect("codec lock poisoned")
            .insert(topic.to_string(), (id, schema));
    }

    /// The id records of `topic` are written with, once a registry named it.
    pub fn writer_id(&self, topic: &str) -> Option<SchemaId> {
        self.writers
            .read()
            .expect("codec lock poisoned")
            .get(topic)
            .map(|(id, _)| *id)
    }

    pub fn insert_schema(&self, id: SchemaId, schema: Arc<Schema>) {
        self.schemas
            .write()
            .expect("codec lock poisoned")
            .insert(id, schema);
    }

    pub fn knows(&self, id: SchemaId) -> bool {
        self.schemas
            .read()
            .expect("codec lock poisoned")
            .contains_key(&id)
    }

    pub fn encode<T: AvroRecord>(&self, record: &T) -> Result<Vec<u8>, CodecError> {
        let (id, schema) = self
            .writers
            .read()
            .expect("codec lock poisoned")
            .get(T::TOPIC)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownTopic(T::TOPIC.to_string()))?;
        let enc = |detail: String| CodecError::Encode {
            topic: T::TOPIC.to_string(),
            detail,
        };
        let value = apache_avro::to_value(record)
            .and_then(|v| v.resolve(&schema))
            .map_err(|e| enc(e.to_string()))?;
        let body = apache_avro::to_avro_datum(&schema, value).map_err(|e| enc(e.to_string()))?;
        Ok(frame(id, &body))
    }

    /// The schema id a framed record was written with.
    pub fn schema_id(bytes: &[u8]) -> Result<SchemaId, CodecError> {
        Ok(Framed::parse(bytes)?.schema_id)
    }

    pub fn decode<T: AvroRecord>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let framed = Framed::parse(bytes)?;
        let writer = self
            .schemas
            .read()
            .expect("codec lock poisoned")
            .get(&framed.schema_id)
            .cloned()
            .ok_or(CodecError::UnknownSchemaId(framed.schema_id))?;
        let reader = self
            .readers
            .get(T::TOPIC)
            .ok_or_else(|| RegistryError::UnknownTopic(T::TOPIC.to_string()))?;
        let (wname, rname) = (schema_name(&writer), schema_name(reader));
        if wname != rname {
            return Err(CodecError::WrongSchema {
                topic: T::TOPIC.to_string(),
                expected: rname,
                found: wname,
            });
        }
        let corrupt = |detail: String| CodecError::Corrupt {
            id: framed.schema_id,
            detail,
        };
        let mut body = framed.body;
        let value = apache_avro::from_avro_datum(&writer, &mut body, Some(reader))
            .map_err(|e| corrupt(e.to_string()))?;
        if !body.is_empty() {
            return Err(CodecError::TrailingBytes(body.len()));
        }
        apache_avro::from_value::<T>(&value).map_err(|e| corrupt(e.to_string()))
    }
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
