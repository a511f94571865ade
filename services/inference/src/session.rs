//! ONNX Runtime sessions: loading the runtime library at run time, registering the CUDA
//! execution provider when asked, and proving which provider actually runs the graph.
//!
//! ONNX Runtime falls back to the CPU silently when the CUDA provider is missing or cannot run
//! a node. After creating a session we therefore run one profiled batch, end profiling and read
//! the `provider` of every node from the profile ([`crate::placement`]): a CUDA request whose
//! graph ran entirely on the CPU is an error (or a warning with `allow_cpu_fallback`); one whose
//! graph is split is reported as `mixed`, with the nodes off CUDA named in a warning.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, TryLockError};

use ort::environment::Environment;
use ort::ep::cuda::ConvAlgorithmSearch;
use ort::ep::{ArenaExtendStrategy, ExecutionProvider, CUDA};
use ort::session::builder::SessionBuilder;
use ort::session::Session;
use ort::value::Tensor;

use crate::manifest::{Activation, Manifest, ModelDir};
use crate::placement::{
    placements_in_profile, requested_provider, serving_provider, ProviderVerdict,
};

pub const CPU_PROVIDER: &str = "CPUExecutionProvider";
pub const CUDA_PROVIDER: &str = "CUDAExecutionProvider";

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("ONNX Runtime library not found: {0}. Run scripts/install-onnxruntime.sh, or set ORT_DYLIB_PATH / --ort-dylib")]
    NoRuntime(String),
    #[error("cannot load ONNX Runtime from {path}: {detail}")]
    Load { path: PathBuf, detail: String },
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    #[error("CUDA was requested ({device}) but {detail}; use --device cpu, or --allow-cpu-fallback to run on the CPU with a warning")]
    CudaUnavailable { device: String, detail: String },
    #[error("model {model}: {detail}")]
    Model { model: String, detail: String },
}

fn ort_err(e: impl std::fmt::Display) -> SessionError {
    SessionError::Ort(e.to_string())
}

/// Where the session runs: `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda(i32),
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Device::Cuda)
                .ok_or_else(|| format!("expected cpu, cuda or cuda:N, got {s:?}")),
        }
    }
}

impl std::fmt::Display for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// How sessions are built.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub device: Device,
    /// Intra-op threads; 0 lets ONNX Runtime choose (one per physical core).
    pub intra_op_threads: usize,
    /// Sessions of the model, each running one batch at a time: up to this many batches run
    /// at once (each with its own `intra_op_threads`). 0 counts as 1.
    pub sessions: usize,
    pub allow_cpu_fallback: bool,
    /// CUDA EP: device memory limit in MiB (0: unlimited).
    pub cuda_mem_limit_mib: usize,
    /// CUDA EP: `true` grows the arena by what is requested, `false` by powers of two.
    pub cuda_arena_same_as_requested: bool,
    /// CUDA EP: cuDNN conv algorithm search: exhaustive, heuristic or default.
    pub cudnn_conv_algo_search: String,
}

impl Default for SessionOptions {
    fn default() -> Self {
        SessionOptions {
            device: Device::Cpu,
            intra_op_threads: 0,
            sessions: 1,
            allow_cpu_fallback: false,
            cuda_mem_limit_mib: 0,
            cuda_arena_same_as_requested: false,
            cudnn_conv_algo_search: "heuristic".into(),
        }
    }
}

/// Finds the ONNX Runtime library: the explicit path, `$ORT_DYLIB_PATH`, or
/// `~/.cache/cxrflow/tools/onnxruntime/libonnxruntime.so*` (where scripts/install-onnxruntime.sh puts it).
pub fn locate_runtime(explicit: Option<&Path>) -> Result<PathBuf, SessionError> {
    if let Some(p) = explicit.filter(|p| !p.as_os_str().is_empty()) {
        return Ok(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        if !p.is_empty() {
            return Ok(PathBuf::from(p));
        }
    }
    let tools = std::env::var("CXRFLOW_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cxrflow/tools")
        });
    let dir = tools.join("onnxruntime");
    let plain = dir.join("libonnxruntime.so");
    if plain.exists() {
        return Ok(plain);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .collect();
    versioned.sort();
    versioned.pop().ok_or_else(|| {
        SessionError::NoRuntime(format!(
            "no ORT_DYLIB_PATH and nothing in {}",
            dir.display()
        ))
    })
}

static ENV: OnceLock<(PathBuf, Environment)> = OnceLock::new();
static ENV_INIT: Mutex<()> = Mutex::new(());

/// The process-wide ONNX Runtime environment (the library loads once per process).
pub fn environment(explicit: Option<&Path>) -> Result<&'static Environment, SessionError> {
    if let Some((_, env)) = ENV.get() {
        return Ok(env);
    }
    let _guard = ENV_INIT.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, env)) = ENV.get() {
        return Ok(env);
    }
    let path = locate_runtime(explicit)?;
    if !path.exists() {
        return Err(SessionError::NoRuntime(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let builder = ort::init_from(&path).map_err(|e| SessionError::Load {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    let env = builder
        .with_name("cxrflow-inference")
        .build()
        .map_err(ort_err)?;
    tracing::info!(path = %path.display(), "ONNX Runtime loaded");
    Ok(&ENV.get_or_init(|| (path, env)).1)
}

/// The output of one session call: per row, 14 probabilities and optional features.
#[derive(Debug, Clone)]
pub struct BatchOutput {
    pub probabilities: Vec<[f32; 14]>,
    pub features: Option<(usize, Vec<f32>)>,
}

/// A loaded model: its manifest, its sessions and the provider proven to run it.
///
/// ONNX Runtime's `Run` needs the session exclusively (through `ort`), so concurrent batches
/// need sessions of their own: [`ModelSession::run`] takes whichever is free. With one
/// intra-op thread each, N sessions run N batches on N cores — on a small CPU machine this
/// beats one session with N threads (the bench's layout search), and it is the same layout
/// in one process as in the bare-runtime measurement.
pub struct ModelSession {
    pub model: ModelDir,
    /// The provider label: CUDA or CPU only when every compute node ran there, else `mixed`.
    pub provider: String,
    /// Where the profiled batch's nodes ran.
    pub placement: ProviderVerdict,
    sessions: Vec<Mutex<Session>>,
    /// Round-robin start for [`ModelSession::run`]'s search for a free session.
    next: AtomicUsize,
}

impl std::fmt::Debug for ModelSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelSession")
            .field("model", &self.model.manifest.name)
            .field("version", &self.model.manifest.version)
            .field("provider", &self.provider)
            .finish()
    }
}

fn cuda_ep(opts: &SessionOptions, id: i32) -> ort::ep::ExecutionProviderDispatch {
    let mut ep = CUDA::default().with_device_id(id);
    if opts.cuda_mem_limit_mib > 0 {
        ep = ep.with_memory_limit(opts.cuda_mem_limit_mib * 1024 * 1024);
    }
    ep = ep.with_arena_extend_strategy(if opts.cuda_arena_same_as_requested {
        ArenaExtendStrategy::SameAsRequested
    } else {
        ArenaExtendStrategy::NextPowerOfTwo
    });
    ep = ep.with_conv_algorithm_search(
        match opts.cudnn_conv_algo_search.to_ascii_lowercase().as_str() {
            "exhaustive" => ConvAlgorithmSearch::Exhaustive,
            "default" => ConvAlgorithmSearch::Default,
            _ => ConvAlgorithmSearch::Heuristic,
        },
    );
    ep.build().error_on_failure()
}

impl ModelSession {
    /// Builds the session for `model`, registers the requested provider and proves it runs the
    /// graph with one profiled batch of one black image.
    pub fn load(
        model: ModelDir,
        opts: &SessionOptions,
        ort_dylib: Option<&Path>,
    ) -> Result<ModelSession, SessionError> {
        let env = environment(ort_dylib)?;
        let label = format!("{}/{}", model.manifest.name, model.manifest.version);
        let (builder, cuda_requested) = session_builder(env, opts, &label)?;
        let prefix = std::env::temp_dir().join(format!(
            "cxrflow-ort-profile-{}-{}",
            std::process::id(),
            unique()
        ));
        let builder = builder.with_profiling(&prefix).map_err(ort_err)?;
        let path = model.model_path();
        let commit = |mut b: SessionBuilder| {
            b.commit_from_file(&path).map_err(|e| SessionError::Model {
                model: label.clone(),
                detail: e.to_string(),
            })
        };
        let session = commit(builder)?;
        let mut me = ModelSession {
            model,
            provider: String::new(),
            placement: serving_provider(&[], CPU_PROVIDER),
            sessions: vec![Mutex::new(session)],
            next: AtomicUsize::new(0),
        };
        me.check_io()?;
        let zeros = vec![0u8; me.model.manifest.input_len()];
        me.run(&[zeros.as_slice()])
            .map_err(|e| SessionError::Model {
                model: label.clone(),
                detail: format!("first (profiled) run failed: {e}"),
            })?;
        let file = me.lock().end_profiling().map_err(ort_err)?;
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let _ = std::fs::remove_file(&file);
        let placements = placements_in_profile(&text).map_err(|detail| SessionError::Model {
            model: label.clone(),
            detail,
        })?;
        let verdict = serving_provider(&placements, requested_provider(cuda_requested));
        if cuda_requested && verdict.count(CUDA_PROVIDER) == 0 {
            let detail = format!(
                "no node ran on CUDAExecutionProvider (nodes per provider: {:?})",
                verdict.nodes
            );
            if opts.allow_cpu_fallback {
                tracing::warn!(model = %label, %detail, "CUDA requested but the graph runs on the CPU (--allow-cpu-fallback)");
            } else {
                return Err(SessionError::CudaUnavailable {
                    device: opts.device.to_string(),
                    detail,
                });
            }
        } else if cuda_requested && !verdict.all_on(CUDA_PROVIDER) {
            // Served, but not called CUDA: each named node costs a copy across the device
            // boundary on every batch.
            tracing::warn!(model = %label, provider = %verdict.provider, nodes = ?verdict.nodes,
                off_cuda = verdict.off_requested.len(), which = %verdict.describe_off(20),
                "CUDA requested but not every compute node runs on CUDA: reported as mixed");
        }
        // The other sessions: built the same way (the provider is proven on the first), each
        // warmed up with one run so that the first studies do not pay for it.
        for _ in 1..opts.sessions.max(1) {
            let (builder, _) = session_builder(env, opts, &label)?;
            let mut s = commit(builder)?;
            run_on(&mut s, &me.model.manifest, &[zeros.as_slice()]).map_err(|e| {
                SessionError::Model {
                    model: label.clone(),
                    detail: format!("first run of another session failed: {e}"),
                }
            })?;
            me.sessions.push(Mutex::new(s));
        }
        tracing::info!(model = %label, provider = %verdict.provider, nodes = ?verdict.nodes, device = %opts.device, sessions = me.sessions.len(), "model session ready");
        me.provider = verdict.provider.clone();
        me.placement = verdict;
        Ok(me)
    }

    /// How many batches can run at once.
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The first session (the profiled one; every session has the same inputs and outputs).
    fn lock(&self) -> MutexGuard<'_, Session> {
        self.sessions[0].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free session if there is one (searching round-robin), else the next one's turn.
    fn free_session(&self) -> MutexGuard<'_, Session> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        for i in 0..n {
            match self.sessions[(start + i) % n].try_lock() {
                Ok(g) => return g,
                Err(TryLockError::Poisoned(p)) => return p.into_inner(),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        self.sessions[start % n]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn check_io(&self) -> Result<(), SessionError> {
        let m = &self.model.manifest;
        let s = self.lock();
        let bad = |detail: String| SessionError::Model {
            model: format!("{}/{}", m.name, m.version),
            detail,
        };
        if !s.inputs().iter().any(|i| i.name() == m.input.name) {
            let names: Vec<&str> = s.inputs().iter().map(|i| i.name()).collect();
            return Err(bad(format!(
                "graph has no input {:?} (inputs: {names:?})",
                m.input.name
            )));
        }
        let outs: Vec<&str> = s.outputs().iter().map(|o| o.name()).collect();
        for want in std::iter::once(&m.outputs.probabilities).chain(m.outputs.features.as_ref()) {
            if !outs.contains(&want.as_str()) {
                return Err(bad(format!(
                    "graph has no output {want:?} (outputs: {outs:?})"
                )));
            }
        }
        Ok(())
    }

    /// Runs one batch of 8-bit images (each exactly `input_len` bytes), normalized per the
    /// manifest, on a free session. Blocking: call from a blocking thread.
    pub fn run(&self, images: &[&[u8]]) -> Result<BatchOutput, SessionError> {
        let mut session = self.free_session();
        run_on(&mut session, &self.model.manifest, images)
    }
}

/// A session builder with the requested threads and provider; `true` when CUDA is registered.
fn session_builder(
    env: &'static Environment,
    opts: &SessionOptions,
    label: &str,
) -> Result<(SessionBuilder, bool), SessionError> {
    let with_threads = |mut b: SessionBuilder| -> Result<SessionBuilder, SessionError> {
        if opts.intra_op_threads > 0 {
            b = b
                .with_intra_threads(opts.intra_op_threads)
                .map_err(ort_err)?;
        }
        Ok(b)
    };
    let builder = with_threads(Session::builder(env).map_err(ort_err)?)?;
    let Device::Cuda(id) = opts.device else {
        return Ok((builder, false));
    };
    let available = CUDA::is_available().unwrap_or(false);
    let registered = if available {
        builder
            .with_execution_providers([cuda_ep(opts, id)])
            .map_err(|e| e.to_string())
    } else {
        Err("the loaded ONNX Runtime has no CUDAExecutionProvider (CPU-only build: install the onnxruntime-gpu library)".to_string())
    };
    match registered {
        Ok(b) => Ok((b, true)),
        Err(detail) if opts.allow_cpu_fallback => {
            tracing::warn!(model = %label, device = %opts.device, %detail, "CUDA requested but unavailable: running on the CPU (--allow-cpu-fallback)");
            Ok((
                with_threads(Session::builder(env).map_err(ort_err)?)?,
                false,
            ))
        }
        Err(detail) => Err(SessionError::CudaUnavailable {
            device: opts.device.to_string(),
            detail,
        }),
    }
}

/// Runs one batch on `session` (see [`ModelSession::run`]).
fn run_on(
    session: &mut Session,
    m: &Manifest,
    images: &[&[u8]],
) -> Result<BatchOutput, SessionError> {
    let len = m.input_len();
    let n = images.len();
    let (scale, offset) = (m.normalization.scale, m.normalization.offset);
    let mut data = Vec::with_capacity(n * len);
    for img in images {
        if img.len() != len {
            return Err(ort_err(format!(
                "image has {} values, model wants {len}",
                img.len()
            )));
        }
        data.extend(img.iter().map(|&p| p as f32 * scale + offset));
    }
    let shape = [
        n as i64,
        m.input.channels as i64,
        m.input.height as i64,
        m.input.width as i64,
    ];
    let tensor = Tensor::from_array((shape, data)).map_err(ort_err)?;
    let outputs = session
        .run(ort::inputs![m.input.name.as_str() => tensor])
        .map_err(ort_err)?;
    let (pshape, probs) = outputs[m.outputs.probabilities.as_str()]
        .try_extract_tensor::<f32>()
        .map_err(ort_err)?;
    if pshape.len() != 2 || pshape[0] as usize != n || pshape[1] != 14 {
        return Err(ort_err(format!(
            "probabilities output has shape {pshape:?}, expected [{n}, 14]"
        )));
    }
    let sigmoid = m.activation == Activation::Sigmoid;
    let probabilities = probs
        .chunks_exact(14)
        .map(|row| {
            let mut r = [0f32; 14];
            for (o, &v) in r.iter_mut().zip(row) {
                *o = if sigmoid { 1.0 / (1.0 + (-v).exp()) } else { v };
            }
            r
        })
        .collect();
    let features = match &m.outputs.features {
        Some(name) => {
            let (fshape, f) = outputs[name.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(ort_err)?;
            if fshape.len() != 2 || fshape[0] as usize != n {
                return Err(ort_err(format!(
                    "features output has shape {fshape:?}, expected [{n}, D]"
                )));
            }
            Some((fshape[1] as usize, f.to_vec()))
        }
        None => None,
    };
    Ok(BatchOutput {
        probabilities,
        features,
    })
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}
