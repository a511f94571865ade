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
use crate::manifest::{self, ModelDir};
use crate::metrics::InferenceMetrics;
pub use crate::serving::{LoadedModel, Row, Serving};
use crate::session::{ModelSession, SessionOptions};

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
    // As many batches at once as the model has sessions.
    let concurrency = session.sessions();
    Ok(LoadedModel::new(
        session,
        Batcher::spawn(policy, concurrency, run, observe),
    ))
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
            &model.session.placement,
            &self.opts.device.to_string(),
            &model.session.model.manifest.precision.to_string(),
        );
        match &model.session.model.manifest.ood {
            Some(r) => tracing::info!(model = %self.name, %version, threshold = r.threshold,
                calibrated_on = %r.calibrated_on, images = r.images,
                lateral_limit = r.lateral.as_ref().map(|l| l.limit),
                "OOD gate on{}", if r.lateral.is_some() { "" } else {
                    " without a lateral reference: a film with no view position is scored as frontal (recalibrate with cxrflow model calibrate-ood)" }),
            None => tracing::warn!(model = %self.name, %version,
                "OOD gate off: the manifest has no reference (cxrflow model calibrate-ood); every decodable eligible image is scored"),
        }
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
                staged_at: HashMap::new(),
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
        let keep: Vec<String> = next.versions().into_iter().map(String::from).collect();
        *self.serving.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.unload_except(&keep);
    }

    /// Drops the loaded versions not in `keep` (they go away with their last in-flight record).
    fn unload_except(&self, keep: &[String]) {
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
                    .model_unloaded(&self.loader.name, &v, &m.session.placement);
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
        let mut staged_at = HashMap::new();
        for c in &r.candidates {
            match self.load_version(&c.version).await {
                Ok(m) => match c.role {
                    ModelRole::Canary | ModelRole::Shadow => {
                        // A candidate kept across decisions keeps the time it was staged.
                        let kept = cur
                            .candidates()
                            .into_iter()
                            .find(|k| k.version == c.version && k.role == c.role);
                        staged_at.insert(
                            c.version.clone(),
                            kept.map_or(r.decided_at, |k| k.staged_at),
                        );
                        if c.role == ModelRole::Canary {
                            canary = Some((m, c.fraction));
                        } else {
                            shadow = Some((m, c.fraction));
                        }
                    }
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
        let next = Serving {
            revision: r.revision,
            production,
            canary,
            shadow,
            staged_at,
        };
        let keep: Vec<String> = next.versions().into_iter().map(String::from).collect();
        {
            // Loading took time: a newer decision applied meanwhile wins.
            let mut serving = self.serving.write().unwrap_or_else(|e| e.into_inner());
            if serving.revision >= r.revision {
                return false;
            }
            *serving = Arc::new(next);
        }
        self.unload_except(&keep);
        self.loader.metrics.rollout_applied(
            &r.decided_by,
            r.revision,
            &r.production_version,
            &cands.join(","),
        );
        true
    }

    /// Stops serving candidate `version` on this replica at once, keeping the revision, so the
    /// decision published for it (or any later one) still applies. False if it was not serving.
    pub fn withdraw_local(&self, version: &str) -> bool {
        // Under the write lock: a decision applied meanwhile is never overwritten by a stale set.
        let mut serving = self.serving.write().unwrap_or_else(|e| e.into_inner());
        let cur = serving.clone();
        let not = |c: &Option<(Arc<LoadedModel>, f64)>| {
            c.as_ref().filter(|(m, _)| m.version() != version).cloned()
        };
        let (canary, shadow) = (not(&cur.canary), not(&cur.shadow));
        if canary.is_some() == cur.canary.is_some() && shadow.is_some() == cur.shadow.is_some() {
            return false;
        }
        let mut staged_at = cur.staged_at.clone();
        staged_at.remove(version);
        let next = Serving {
            revision: cur.revision,
            production: cur.production.clone(),
            canary,
            shadow,
            staged_at,
        };
        let keep: Vec<String> = next.versions().into_iter().map(String::from).collect();
        *serving = Arc::new(next);
        drop(serving);
        self.unload_except(&keep);
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
                        staged_at: HashMap::new(),
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
