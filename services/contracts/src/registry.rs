//! Schema ids and the static registry of the embedded default.
//!
//! The embedded stack runs no Schema Registry server: every schema it can ever see is compiled
//! into the binary from `schemas/`, so a registry adds nothing but a process to keep alive. The
//! ids are fixed and stable: `100 * (topic's position in SCHEMAS + 1) + version`, where the
//! version of a current schema is one more than the number of its `HISTORY` entries. Topics are
//! only ever appended to SCHEMAS, so an id never changes meaning. The distributed shape uses a
//! real Confluent-API registry instead (see `cxrflow_common::registry`).

use std::collections::HashMap;
use std::sync::Arc;

use apache_avro::Schema;

use crate::topics::{HISTORY, SCHEMAS};

/// A Confluent schema id (the 4 bytes after the magic byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SchemaId(pub u32);

impl std::fmt::Display for SchemaId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema for {subject} does not parse: {source}")]
    BadSchema {
        subject: String,
        #[source]
        source: Box<apache_avro::Error>,
    },
    #[error("no schema registered for topic {0}")]
    UnknownTopic(String),
    #[error("schema registry request failed: {0}")]
    Remote(String),
    #[error("schema for {subject} is not compatible with the registered one: {detail}")]
    Incompatible { subject: String, detail: String },
}

/// Where a codec gets its schemas: the writer schema (and id) of each topic, and any schema by id.
pub trait SchemaRegistry: Send + Sync {
    /// The schema a producer writes `topic` with, and its id.
    fn writer(&self, topic: &str) -> Result<(SchemaId, Arc<Schema>), RegistryError>;
    /// A schema by id, if this registry knows it without I/O.
    fn by_id(&self, id: SchemaId) -> Option<Arc<Schema>>;
}

/// The embedded default's registry: fixed ids for every schema in `schemas/`.
#[derive(Debug, Clone)]
pub struct StaticRegistry {
    writers: HashMap<String, (SchemaId, Arc<Schema>)>,
    by_id: HashMap<SchemaId, Arc<Schema>>,
}

fn parse(subject: &str, text: &str) -> Result<Arc<Schema>, RegistryError> {
    Schema::parse_str(text)
        .map(Arc::new)
        .map_err(|e| RegistryError::BadSchema {
            subject: subject.to_string(),
            source: Box::new(e),
        })
}

impl StaticRegistry {
    pub fn new() -> Result<Self, RegistryError> {
        let mut writers = HashMap::new();
        let mut by_id = HashMap::new();
        for (pos, (topic, text)) in SCHEMAS.iter().enumerate() {
            let base = 100 * (pos as u32 + 1);
            let mut version = 1;
            for (htopic, hversion, htext) in HISTORY.iter().filter(|(t, _, _)| t == topic) {
                let schema = parse(htopic, htext)?;
                by_id.insert(SchemaId(base + hversion), schema);
                version = version.max(hversion + 1);
            }
            let schema = parse(topic, text)?;
            let id = SchemaId(base + version);
            by_id.insert(id, schema.clone());
            writers.insert(topic.to_string(), (id, schema));
        }
        Ok(StaticRegistry { writers, by_id })
    }

    /// Every (topic, id) pair of the current schemas.
    pub fn current_ids(&self) -> Vec<(String, SchemaId)> {
        let mut v: Vec<_> = self
            .writers
            .iter()
            .map(|(t, (id, _))| (t.clone(), *id))
            .collect();
        v.sort();
        v
    }

    /// The fixed id of an earlier version of a topic's schema.
    pub fn historical_id(topic: &str, version: u32) -> Option<SchemaId> {
        let pos = SCHEMAS.iter().position(|(t, _)| *t == topic)?;
        Some(SchemaId(100 * (pos as u32 + 1) + version))
    }
}

impl SchemaRegistry for StaticRegistry {
    fn writer(&self, topic: &str) -> Result<(SchemaId, Arc<Schema>), RegistryError> {
        self.writers
            .get(topic)
            .cloned()
            .ok_or_else(|| RegistryError::UnknownTopic(topic.to_string()))
    }

    fn by_id(&self, id: SchemaId) -> Option<Arc<Schema>> {
        self.by_id.get(&id).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_schema_parses_with_stable_ids() {
        let reg = StaticRegistry::new().unwrap();
        let ids = reg.current_ids();
        assert_eq!(ids.len(), SCHEMAS.len());
        let (scan_id, _) = reg.writer(crate::topics::SCAN).unwrap();
        assert_eq!(scan_id, SchemaId(101));
        let (pred_id, _) = reg.writer(crate::topics::PREDICTIONS).unwrap();
        assert_eq!(pred_id, SchemaId(405), "predictions is at version 5");
        assert!(
            reg.by_id(SchemaId(401)).is_some(),
            "version 1 stays readable"
        );
        assert!(
            reg.by_id(SchemaId(402)).is_some(),
            "version 2 stays readable"
        );
    }

    #[test]
    fn shared_named_types_are_identical_in_every_schema() {
        // StudyContext, FindingScore, ... are repeated in each self-contained schema file;
        // a drift between copies would make the same type mean two things.
        let mut seen: HashMap<String, serde_json::Value> = HashMap::new();
        for (topic, text) in SCHEMAS {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            collect_named(&v, &mut |name, def| {
                if let Some(prev) = seen.get(name) {
                    assert_eq!(prev, def, "{name} differs in {topic}");
                } else {
                    seen.insert(name.to_string(), def.clone());
                }
            });
        }
        assert!(seen.contains_key("StudyContext"));
    }

    fn collect_named(v: &serde_json::Value, f: &mut dyn FnMut(&str, &serde_json::Value)) {
        match v {
            serde_json::Value::Object(m) => {
                if let (Some(serde_json::Value::String(name)), Some(t)) =
                    (m.get("name"), m.get("type"))
                {
                    if t == "record" || t == "enum" {
                        if m.contains_key("namespace") {
                            // top-level record: unique per topic
                        } else {
                            f(name, v);
                        }
                    }
                }
                for x in m.values() {
                    collect_named(x, f);
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|x| collect_named(x, f)),
            _ => {}
        }
    }
}
