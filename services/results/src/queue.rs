//! Pending deliveries, durable: one JSON file per delivery under
//! `<state-dir>/<destination>/pending/`, written to a temporary name, fsynced, renamed and the
//! directory fsynced, so a delivery is either wholly queued or not at all across a crash or a
//! power cut. A delivered one leaves a small marker under `done/` (kept for `--done-retention`)
//! so a Kafka re-delivery of the same decision version is not delivered again; a refused one
//! leaves none, so a replay of its dead letter delivers it afresh.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// Where the decision came from: what its dead letter needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    #[serde(with = "b64_opt")]
    pub key: Option<Vec<u8>>,
    #[serde(with = "b64_opt")]
    pub payload: Option<Vec<u8>>,
    pub headers: std::collections::BTreeMap<String, String>,
}

/// One output on its way to one destination.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// `study@version`.
    pub key: String,
    pub study_instance_uid: String,
    /// The rendered output (an SR file, a FHIR Bundle).
    #[serde(with = "b64")]
    pub body: Vec<u8>,
    pub queued_at: i64,
    pub source: Source,
}

mod b64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .map_err(serde::de::Error::custom)
    }
}

mod b64_opt {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_some(&base64::engine::general_purpose::STANDARD.encode(b)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| {
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("results queue {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("results queue {path}: unreadable delivery: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> QueueError + '_ {
    move |source| QueueError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One destination's pending deliveries.
#[derive(Debug, Clone)]
pub struct Queue {
    pending: PathBuf,
    done: PathBuf,
}

/// The file name of a delivery: a name-based UUID of its key (file-system safe).
fn file_name(key: &str) -> String {
    crate::uid::name_uuid(&["delivery", key]).to_string()
}

fn sync_dir(dir: &Path) -> Result<(), QueueError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))
}

/// Whether a queue write may go on: `Queued`, or already there or already delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    Queued,
    AlreadyPending,
    AlreadyDelivered,
}

impl Queue {
    pub fn open(state_dir: &Path, destination: &str) -> Result<Queue, QueueError> {
        let base = state_dir.join(destination);
        let q = Queue {
            pending: base.join("pending"),
            done: base.join("done"),
        };
        for d in [&q.pending, &q.done] {
            std::fs::create_dir_all(d).map_err(io(d))?;
        }
        // Leftovers of a write interrupted before its rename were never queued.
        for e in std::fs::read_dir(&q.pending).map_err(io(&q.pending))? {
            let p = e.map_err(io(&q.pending))?.path();
            if p.extension().is_some_and(|x| x == "tmp") {
                let _ = std::fs::remove_file(&p);
            }
        }
        Ok(q)
    }

    /// Queues `d` durably (fsynced) unless it is pending or was delivered already.
    pub fn enqueue(&self, d: &Delivery) -> Result<Enqueued, QueueError> {
        let name = file_name(&d.key);
        if self.done.join(&name).exists() {
            return Ok(Enqueued::AlreadyDelivered);
        }
        let path = self.pending.join(format!("{name}.json"));
        if path.exists() {
            return Ok(Enqueued::AlreadyPending);
        }
        let tmp = self.pending.join(format!("{name}.tmp"));
        let bytes = serde_json::to_vec(d).map_err(|source| QueueError::Corrupt {
            path: path.clone(),
            source,
        })?;
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            f.write_all(&bytes).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.pending)?;
        Ok(Enqueued::Queued)
    }

    /// Every pending delivery, oldest first. An unreadable file is reported, not lost: it is
    /// moved aside to `<name>.corrupt`.
    pub fn pending(&self) -> Result<Vec<Delivery>, QueueError> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.pending).map_err(io(&self.pending))? {
            let p = e.map_err(io(&self.pending))?.path();
            if p.extension().is_none_or(|x| x != "json") {
                continue;
            }
            let bytes = match std::fs::read(&p) {
                Ok(b) => b,
                // Completed by now.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&p)(e)),
            };
            match serde_json::from_slice::<Delivery>(&bytes) {
                Ok(d) => out.push(d),
                Err(source) => {
                    tracing::error!(path = %p.display(), error = %source, "unreadable pending delivery moved aside");
                    let _ = std::fs::rename(&p, p.with_extension("corrupt"));
                }
            }
        }
        out.sort_by(|a, b| a.queued_at.cmp(&b.queued_at).then(a.key.cmp(&b.key)));
        Ok(out)
    }

    /// How many deliveries are pending, and since when the oldest.
    pub fn stats(&self) -> Result<(usize, Option<i64>), QueueError> {
        let p = self.pending()?;
        Ok((p.len(), p.iter().map(|d| d.queued_at).min()))
    }

    /// The delivery reached its destination: marker first, then the pending file goes.
    pub fn delivered(&self, key: &str) -> Result<(), QueueError> {
        let name = file_name(key);
        let marker = self.done.join(&name);
        std::fs::File::create(&marker)
            .and_then(|f| f.sync_all())
            .map_err(io(&marker))?;
        sync_dir(&self.done)?;
        self.remove(&name)
    }

    /// The delivery was refused (and dead-lettered): it leaves the queue without a marker.
    pub fn refused(&self, key: &str) -> Result<(), QueueError> {
        self.remove(&file_name(key))
    }

    fn remove(&self, name: &str) -> Result<(), QueueError> {
        let path = self.pending.join(format!("{name}.json"));
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.pending),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Forgets delivered markers older than `age` (a re-delivery from Kafka comes within
    /// minutes of the first; the markers need not live for ever).
    pub fn prune_done(&self, age: std::time::Duration) -> Result<usize, QueueError> {
        let mut n = 0;
        let now = std::time::SystemTime::now();
        for e in std::fs::read_dir(&self.done).map_err(io(&self.done))? {
            let e = e.map_err(io(&self.done))?;
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|a| a > age);
            if old && std::fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

/// Base64 of bytes (for logs of small answers).
pub fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(key: &str, at: i64) -> Delivery {
        Delivery {
            key: key.into(),
            study_instance_uid: "1.2.3".into(),
            body: vec![1, 2, 3],
            queued_at: at,
            source: Source {
                topic: "cxr.triage.v1".into(),
                partition: 1,
                offset: 7,
                key: Some(b"1.2.3".to_vec()),
                payload: Some(vec![0, 9]),
                headers: Default::default(),
            },
        }
    }

    #[test]
    fn a_queued_delivery_survives_reopening_and_is_delivered_once() {
        let dir = tempfile::tempdir().unwrap();
        let q = Queue::open(dir.path(), "fhir").unwrap();
        assert_eq!(
            q.enqueue(&delivery("1.2.3@2", 20)).unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            q.enqueue(&delivery("1.2.3@1", 10)).unwrap(),
            Enqueued::Queued
        );
        assert_eq!(
            q.enqueue(&delivery("1.2.3@2", 20)).unwrap(),
            Enqueued::AlreadyPending
        );
        let q = Queue::open(dir.path(), "fhir").unwrap();
        let p = q.pending().unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0], delivery("1.2.3@1", 10), "oldest first, intact");
        q.delivered("1.2.3@1").unwrap();
        assert_eq!(
            q.enqueue(&delivery("1.2.3@1", 30)).unwrap(),
            Enqueued::AlreadyDelivered
        );
        q.refused("1.2.3@2").unwrap();
        assert!(q.pending().unwrap().is_empty());
        assert_eq!(
            q.enqueue(&delivery("1.2.3@2", 40)).unwrap(),
            Enqueued::Queued,
            "a refused delivery may be queued again (dead-letter replay)"
        );
    }
}
