//! What a replica serves: the loaded model versions ([`LoadedModel`]) and the set in force
//! ([`Serving`]: production, canary, shadow), which [`crate::registry`] swaps atomically.

use std::collections::HashMap;
use std::sync::Arc;

use cxrflow_contracts::ModelRole;

use crate::batcher::Batcher;
use crate::embedding;
use crate::rules::Candidate;
use crate::session::ModelSession;

/// One image's model output.
#[derive(Debug, Clone)]
pub struct Row {
    pub probabilities: [f32; 14],
    pub features: Option<Vec<f32>>,
}

/// A loaded model version: its session (with the proven provider) and its batcher.
pub struct LoadedModel {
    pub session: Arc<ModelSession>,
    pub batcher: Batcher<Vec<u8>, Row>,
    /// Projects `features` to the 16-dim embedding, when the model has features.
    embedder: embedding::Embedder,
}

impl LoadedModel {
    pub fn new(session: Arc<ModelSession>, batcher: Batcher<Vec<u8>, Row>) -> Self {
        LoadedModel {
            session,
            batcher,
            embedder: embedding::Embedder::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.session.model.manifest.name
    }
    pub fn version(&self) -> &str {
        &self.session.model.manifest.version
    }

    /// The embedding of one features row.
    pub fn embed(&self, features: &[f32]) -> Vec<f32> {
        self.embedder.embed(features)
    }
}

/// Which versions serve now.
#[derive(Clone)]
pub struct Serving {
    /// Revision of the rollout record applied (0: none, the directory decides).
    pub revision: i64,
    pub production: Arc<LoadedModel>,
    pub canary: Option<(Arc<LoadedModel>, f64)>,
    pub shadow: Option<(Arc<LoadedModel>, f64)>,
    /// When (epoch millis) the decision that staged each candidate version was taken.
    pub staged_at: HashMap<String, i64>,
}

impl Serving {
    /// The canary and shadow, as the automatic rollback rules see them.
    pub fn candidates(&self) -> Vec<Candidate> {
        let roles = [
            (&self.canary, ModelRole::Canary),
            (&self.shadow, ModelRole::Shadow),
        ];
        roles
            .into_iter()
            .filter_map(|(c, role)| {
                c.as_ref().map(|(m, _)| Candidate {
                    version: m.version().to_string(),
                    role,
                    staged_at: self.staged_at.get(m.version()).copied().unwrap_or(0),
                })
            })
            .collect()
    }

    /// Every version serving now, production first.
    pub fn versions(&self) -> Vec<&str> {
        std::iter::once(&self.production)
            .chain(self.canary.as_ref().map(|c| &c.0))
            .chain(self.shadow.as_ref().map(|c| &c.0))
            .map(|m| m.version())
            .collect()
    }
}
