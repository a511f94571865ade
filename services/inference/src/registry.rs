//! The model versions this replica serves, swapped atomically. A record takes a snapshot of the
//! [`Serving`] set when it starts and keeps its models alive until it is done, so a hot reload
//! or a rollout decision never drops or half-processes a record: new records see the new set,
//! in-flight ones finish on the old, and an old version's session and batcher go away with its
//! last record.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use cxrflow_contracts::{ModelRole, ModelRollout};
use tokio_util::sync::CancellationToken;

use crate::batcher::{BatchObserver, BatchPolicy, Batcher, RunFn};
use crate::embedding;
use crate::manifest::{self, ModelDir};
use crate::metrics::InferenceMetrics;
use crate::session::{ModelSession, SessionOptions};

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
    /// Projection of `features` to the 16-dim embedding, when the model has features.
    projection: Mutex<Option<(usize, Arc<Vec<f32>>)>>,
}

impl LoadedModel {
    pub fn name(&self) -> &str {
        &self.session.model.manifest.name
    }
    pub fn version(&self) -> &str {
        &self.session.model.manifest.version
    }

    /// The embedding of one features row.
    pub fn embed(&self, features: &[f32]) -> Vec<f32> {
        let d = features.len();
        let m = {
            let mut p = self.projection.lock().unwrap_or_else(|e| e.into_inner());
            match &*p {
                Some((pd, m)) if *pd == d => m.clone(),
                _ => {
                    let m = Arc::new(embedding::projection(d));
                    *p = Some((d, m.clone()));
                    m
                }
            }
        };
        embedding::project(&m, features)
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
}

/// Loads model versions from the models directory (each once) and remembers them.
struct Loader {
    root: PathBuf,
    name: String,
    opts: SessionOptions,
    ort_dylib: Option<PathBuf>,
    policy: BatchPolicy,
    metrics: InferenceMetrics,
    loaded: Mutex<HashMap<String, Arc<LoadedModel>>>,
}

/// Loads model versions from the models directory and holds the serving set.
pub struct ModelRegistry {
    loader: Loader,
    pinned: bool,
    serving: RwLock<Arc<Serving>>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Manifest(#[from] manifest::ManifestError),
    #[error(transparent)]
    Session(#[from] crate::session::SessionError),
    #[error("model load task failed: {0}")]
    Join(String),
}

fn load_blocking(
    dir: ModelDir,
    opts: &SessionOptions,
    dylib: Option<&Path>,
    policy: BatchPolicy,
    observe: BatchObserver,
) -> Result<LoadedModel, RegistryError> {
    let session = Arc::new(ModelSession::load(dir, opts, dylib)?);
    let s = session.clone();
    let run: RunFn<Vec<u8>, Row> = Arc::new(move |images: Vec<Vec<u8>>| {
        let refs: Vec<&[u8]> = images.iter().map(Vec::as_slice).collect();
        let out = s.run(&refs).map_err(|e| e.to_string())?;
        let feats = out.features;
        Ok(out
            .probabilities
            .into_iter()
            .enumerate()
            .map(|(i, probabilities)| Row {
                probabilities,
                features: feats.as_ref().map(|(d, f)| f[i * d..(i + 1) * d].to_vec()),
            })
            .collect())
    });
    Ok(LoadedModel {
        session,
        batcher: Batcher::spawn(policy, run, observe),
        projection: Mutex::new(None),
    })
}

impl Loader {
    async fn load_dir(&self, dir: ModelDir) -> Result<Arc<LoadedModel>, RegistryError> {
        let version = dir.manifest.version.clone();
        if let Some(m) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&version)
        {
            return Ok(m.clone());
        }
        let (opts, dylib, policy) = (self.opts.clone(), self.ort_dylib.clone(), self.policy);
        let metrics = self.metrics.clone();
        let observe: BatchObserver = Arc::new(move |n, s| metrics.batch(n, s));
        let model = tokio::task::spawn_blocking(move || {
            load_blocking(dir, &opts, dylib.as_deref(), policy, observe)
        })
        .await
        .map_err(|e| RegistryError::Join(e.to_string()));
        let model = match model.and_then(|r| r) {
            Ok(m) => Arc::new(m),
            Err(e) => {
                self.metrics
                    .model_load_failed(&self.name, &version, &e.to_string());
                return Err(e);
            }
        };
        self.metrics.model_loaded(
            &self.name,
            &version,
            &model.session.provider,
            &self.opts.device.to_string(),
        );
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(version, model.clone());
        Ok(model)
    }

    /// Loads `version` of this registry's model (or returns it if already loaded).
    pub async fn load_version(&self, version: &str) -> Result<Arc<LoadedModel>, RegistryError> {
        let dir = ModelDir::load(&self.root.join(&self.name).join(version))?;
        self.load_dir(dir).await
    }
}

impl ModelRegistry {
    /// Loads `spec` (`name` or `name/version`) from `root` as production. Must run inside a
    /// tokio runtime (the batcher is a task).
    pub async fn open(
        root: &Path,
        spec: &str,
        opts: SessionOptions,
        ort_dylib: Option<PathBuf>,
        policy: BatchPolicy,
        metrics: InferenceMetrics,
    ) -> Result<Arc<ModelRegistry>, RegistryError> {
        let dir = manifest::resolve(root, spec)?;
        let loader = Loader {
            root: root.to_path_buf(),
            name: dir.manifest.name.clone(),
            opts,
            ort_dylib,
            policy,
            metrics,
            loaded: Mutex::new(HashMap::new()),
        };
        let production = loader.load_dir(dir).await?;
        Ok(Arc::new(ModelRegistry {
            loader,
            pinned: spec.contains('/'),
            serving: RwLock::new(Arc::new(Serving {
                revision: 0,
                production,
                canary: None,
                shadow: None,
            })),
        }))
    }

    pub fn name(&self) -> &str {
        &self.loader.name
    }

    /// The serving set now (a cheap snapshot).
    pub fn serving(&self) -> Arc<Serving> {
        self.serving
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Loads `version` of this registry's model (or returns it if already loaded).
    pub async fn load_version(&self, version: &str) -> Result<Arc<LoadedModel>, RegistryError> {
        self.loader.load_version(version).await
    }

    fn swap(&self, next: Serving) {
        let keep: Vec<String> = std::iter::once(&next.production)
            .chain(next.canary.as_ref().map(|c| &c.0))
            .chain(next.shadow.as_ref().map(|c| &c.0))
            .map(|m| m.version().to_string())
            .collect();
        *self.serving.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        let mut loaded = self.loader.loaded.lock().unwrap_or_else(|e| e.into_inner());
        let gone: Vec<String> = loaded
            .keys()
            .filter(|v| !keep.contains(v))
            .cloned()
            .collect();
        for v in gone {
            if let Some(m) = loaded.remove(&v) {
                self.loader
                    .metrics
                    .model_unloaded(&self.loader.name, &v, &m.session.provider);
            }
        }
    }

    /// Applies a rollout decision for this model (older or foreign records are ignored). A
    /// version that cannot be loaded keeps its role's current model (logged and counted).
    pub async fn apply(&self, r: &ModelRollout) -> bool {
        let cur = self.serving();
        if r.model_name != self.loader.name || r.revision <= cur.revision {
            return false;
        }
        let production = match self.load_version(&r.production_version).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, version = %r.production_version, "rollout names a production version that does not load; keeping the current one");
                cur.production.clone()
            }
        };
        let mut canary = None;
        let mut shadow = None;
        for c in &r.candidates {
            match self.load_version(&c.version).await {
                Ok(m) => match c.role {
                    ModelRole::Canary => canary = Some((m, c.fraction)),
                    ModelRole::Shadow => shadow = Some((m, c.fraction)),
                    ModelRole::Production => {}
                },
                Err(e) => {
                    tracing::error!(error = %e, version = %c.version, "rollout candidate does not load; not serving it")
                }
            }
        }
        let cands: Vec<String> = r
            .candidates
            .iter()
            .map(|c| format!("{}:{:?}:{}", c.version, c.role, c.fraction))
            .collect();
        self.loader.metrics.rollout_applied(
            &r.decided_by,
            r.revision,
            production.version(),
            &cands.join(","),
        );
        self.swap(Serving {
            revision: r.revision,
            production,
            canary,
            shadow,
        });
        true
    }

    /// Hot reload: when the model is not pinned to a version and no rollout record governs it,
    /// a newer version directory (once its manifest exists) becomes production.
    pub async fn reload_newest(&self) -> Option<String> {
        let cur = self.serving();
        if self.pinned || cur.revision > 0 {
            return None;
        }
        let newest = manifest::versions(&self.loader.root, &self.loader.name).pop()?;
        if manifest::compare_versions(&newest, cur.production.version())
            != std::cmp::Ordering::Greater
        {
            return None;
        }
        match self.load_version(&newest).await {
            Ok(m) => {
                tracing::info!(model = %self.loader.name, from = %cur.production.version(), to = %newest, "hot reload: newer model version serving");
                // A rollout may have landed while loading; it wins.
                if self.serving().revision == 0 {
                    self.swap(Serving {
                        revision: 0,
                        production: m,
                        canary: None,
                        shadow: None,
                    });
                }
                Some(newest)
            }
            Err(_) => None,
        }
    }

    /// Polls the models directory every `every` until `shutdown`.
    pub async fn watch_dir(self: Arc<Self>, every: Duration, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => { self.reload_newest().await; }
            }
        }
    }
}
