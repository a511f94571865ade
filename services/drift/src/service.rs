//! The drift service on the stage runtime: consumes `cxr.predictions.v1` (which carries each
//! study's image statistics, metadata, probabilities and embedding, so no join with the
//! preprocessed tensors is needed) and `cxr.labeled.v1`, feeds the detector, and publishes
//! alerts on `cxr.drift.v1`.
//!
//! Delivery guarantee: **at-least-once** (the stage runtime's): an input offset is stored only
//! after the alerts its record produced are acknowledged. The catch: the detector's windows
//! live in memory (only the reference is persisted), so after a restart the detection window
//! refills from new traffic; a replayed record is recognised by study UID (bounded memory) and
//! not counted twice, and alert ids are deterministic, so a replayed alert carries the same id.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use cxrflow_common::{Outbound, Processor, StageError};
use cxrflow_contracts::{topics, Codec, DriftAlert, LabeledExample, Prediction};

use crate::detector::{DetectorConfig, DriftDetector, ModelKey, Observed};
use crate::error::DriftError;
use crate::metrics::DriftMetrics;
use crate::observation::{LabeledObservation, Observation};
use crate::store::{DriftStore, StoreError};

/// A bounded insertion-ordered map: the oldest entry goes when full.
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Inserts; returns the evicted entry, if any.
    fn insert(&mut self, k: String, v: V) -> Option<(String, V)> {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
        }
        if self.map.len() > self.cap {
            while let Some(old) = self.order.pop_front() {
                if let Some(v) = self.map.remove(&old) {
                    return Some((old, v));
                }
            }
        }
        None
    }

    fn get(&self, k: &str) -> Option<&V> {
        self.map.get(k)
    }
}

/// The service's state: detectors and store, behind one lock.
pub struct Engine {
    detector: DriftDetector,
    store: DriftStore,
    metrics: DriftMetrics,
    /// (study, model) pairs already observed, and labeled studies already observed: a replayed
    /// record is not counted twice.
    seen: Bounded<()>,
    epochs: HashMap<(ModelKey, Option<String>), i64>,
}

impl Engine {
    pub fn new(
        cfg: DetectorConfig,
        store: DriftStore,
        metrics: DriftMetrics,
        dedup_capacity: usize,
    ) -> Self {
        Engine {
            detector: DriftDetector::new(cfg),
            store,
            metrics,
            seen: Bounded::new(dedup_capacity),
            epochs: HashMap::new(),
        }
    }

    /// Makes sure the detector of `key` (of one site's traffic when `site` is given) exists,
    /// restored from the store, and follows resets of the model version. `false` when there
    /// is no such detector (per-site detection off, or the site limit reached).
    fn prepare(&mut self, key: &ModelKey, site: Option<&str>) -> Result<bool, StoreError> {
        let epoch = self.store.reference_epoch(key)?;
        let id = (key.clone(), site.map(str::to_string));
        let known = self.epochs.get(&id).copied();
        let exists = match site {
            None => self.detector.has_model(key),
            Some(s) => self.detector.has_site(key, s),
        };
        if exists && known == Some(epoch) {
            return Ok(true);
        }
        let reference = self.store.load_reference(key, site)?;
        let n = reference.len();
        let m = match site {
            None => self.detector.model(key),
            Some(s) => match self.detector.site(key, s) {
                Some(m) => m,
                None => {
                    self.metrics.site_not_watched();
                    return Ok(false);
                }
            },
        };
        m.reset_reference();
        m.restore_reference(reference);
        let scope = site.unwrap_or("all");
        if known.is_some() {
            tracing::info!(model = %key.name, version = %key.version, scope, epoch, "reference reset; collecting a new one");
        } else if n > 0 {
            tracing::info!(model = %key.name, version = %key.version, scope, studies = n, "reference restored");
        }
        self.epochs.insert(id, epoch);
        Ok(true)
    }

    fn observe(&mut self, key: ModelKey, obs: Observation) -> Result<Vec<DriftAlert>, StoreError> {
        let seen_key = format!("{}\u{1f}{}\u{1f}{}", obs.study_uid, key.name, key.version);
        if self.seen.get(&seen_key).is_some() {
            return Ok(vec![]);
        }
        self.prepare(&key, None)?;
        let site = obs.site.clone();
        let site_obs = site.as_ref().map(|_| obs.clone());
        let seq = self.detector.model(&key).collecting_len();
        let out = self.detector.observe(&key, obs);
        let mut alerts = self.after(&key, None, out, seq)?;
        // The same study also feeds its site's own detector.
        if let (Some(site), Some(o)) = (site, site_obs) {
            if self.prepare(&key, Some(&site))? {
                if let Some(m) = self.detector.site(&key, &site) {
                    let seq = m.collecting_len();
                    let out = m.observe(o);
                    alerts.extend(self.after(&key, Some(&site), out, seq)?);
                }
            }
        }
        self.seen.insert(seen_key, ());
        Ok(alerts)
    }

    fn after(
        &mut self,
        key: &ModelKey,
        site: Option<&str>,
        out: Observed,
        seq: usize,
    ) -> Result<Vec<DriftAlert>, StoreError> {
        if let Some(o) = &out.reference_added {
            self.store.add_reference(key, site, seq, o)?;
            if site.is_none() {
                self.metrics.reference(&key.name, &key.version, seq + 1);
            }
            if out.reference_completed {
                let scope = site.unwrap_or("all");
                tracing::info!(model = %key.name, version = %key.version, scope, studies = seq + 1, "reference window complete");
            }
        }
        if let Some(e) = &out.evaluation {
            if site.is_none() {
                self.metrics.evaluated(&key.name, &key.version, e.score);
            }
        }
        for a in &out.alerts {
            self.metrics.alert(a);
        }
        Ok(out.alerts)
    }

    /// A prediction arrived.
    pub fn on_prediction(&mut self, p: &Prediction) -> Result<Vec<DriftAlert>, StoreError> {
        let (obs, ex) = Observation::from_prediction(p);
        self.metrics.excluded(&ex);
        let key = ModelKey {
            name: p.model_name.clone(),
            version: p.model_version.clone(),
        };
        self.observe(key, obs)
    }

    /// A labeled example arrived.
    pub fn on_labeled(&mut self, l: &LabeledExample) -> Result<Vec<DriftAlert>, StoreError> {
        let (obs, ex) = LabeledObservation::from_labeled(l);
        self.metrics.excluded(&ex);
        let key = ModelKey {
            name: l.model_name.clone(),
            version: l.model_version.clone(),
        };
        let seen_key = format!(
            "L\u{1f}{}\u{1f}{}\u{1f}{}",
            l.report_id, key.name, key.version
        );
        if self.seen.get(&seen_key).is_some() {
            return Ok(vec![]);
        }
        self.seen.insert(seen_key, ());
        self.prepare(&key, None)?;
        let out = self.detector.observe_labeled(&key, obs);
        self.after(&key, None, out, 0)
    }
}

pub(crate) struct DriftProcessor {
    pub(crate) codec: Arc<Codec>,
    pub(crate) engine: Arc<Mutex<Engine>>,
}

impl Processor for DriftProcessor {
    async fn process(&self, msg: &cxrflow_common::Inbound) -> Result<Vec<Outbound>, StageError> {
        enum Rec {
            Prediction(Box<Prediction>),
            Labeled(Box<LabeledExample>),
        }
        let rec = match msg.logical.as_str() {
            topics::PREDICTIONS => Rec::Prediction(Box::new(msg.decode(&self.codec)?)),
            topics::LABELED => Rec::Labeled(Box::new(msg.decode(&self.codec)?)),
            other => return Err(DriftError::UnexpectedTopic(other.to_string()).into()),
        };
        let engine = self.engine.clone();
        // Evaluations (permutations, bootstrap) are CPU work: keep them off the async workers.
        let alerts = tokio::task::spawn_blocking(move || {
            let mut e = engine.lock().map_err(|_| DriftError::EngineLock)?;
            match rec {
                Rec::Prediction(p) => e.on_prediction(&p),
                Rec::Labeled(l) => e.on_labeled(&l),
            }
            .map_err(DriftError::Store)
        })
        .await
        .map_err(DriftError::EngineTask)??;
        alerts
            .iter()
            .map(|a| Outbound::record(&self.codec, a))
            .collect()
    }
}
