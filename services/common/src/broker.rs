//! The embedded broker: a tansu (Kafka-API) process on loopback with on-disk sqlite storage,
//! started by `cxrflow up` and by the test harness. Installed by `scripts/install-broker.sh`.
//!
//! The broker lives and dies with the process that started it: the kernel kills it when its
//! parent ends, however it ends (SIGKILL included), and a lock file in its directory says
//! whether a live process owns that storage. A start refuses — with the broker's own words —
//! when the broker cannot serve: port taken, storage owned by another live process, broker
//! exited early. It never carries on against whatever else answers on the port.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::config::KafkaArgs;

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot start {binary} (install it with scripts/install-broker.sh): {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("broker on {bootstrap} did not answer within {timeout:?}; its log: {log}")]
    NotReady {
        bootstrap: String,
        timeout: Duration,
        log: String,
    },
    #[error("broker log file {path}: {source}")]
    Log {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("port 127.0.0.1:{port} is taken by another process ({source}); the broker cannot listen there (another `cxrflow up`? choose --broker-port)")]
    PortTaken {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("broker storage {dir} belongs to another running process (another `cxrflow up` on this data dir?): {lock} is locked")]
    InUse { dir: PathBuf, lock: PathBuf },
    #[error("broker exited during start-up ({status}); the end of its log {path}:\n{log}")]
    Exited {
        status: String,
        path: PathBuf,
        log: String,
    },
}

/// Where the broker binary is: `$CXRFLOW_TANSU`, `$CXRFLOW_TOOLS/bin/tansu`,
/// `~/.cache/cxrflow/tools/bin/tansu`, or `tansu` on PATH.
pub fn tansu_binary() -> PathBuf {
    if let Ok(p) = std::env::var("CXRFLOW_TANSU") {
        return PathBuf::from(p);
    }
    let tools = std::env::var("CXRFLOW_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/cxrflow/tools")
        });
    let p = tools.join("bin/tansu");
    if p.exists() {
        p
    } else {
        PathBuf::from("tansu")
    }
}

/// Says so when `binary` is not the broker scripts/install-broker.sh builds (no
/// `tansu.patches` stamp beside it): published tansu 0.6.0 holds every fetch for the whole
/// `fetch.wait.max.ms`, records or not, so each hop of a study waits up to that long.
fn warn_if_unpatched(binary: &Path) {
    if !binary.with_file_name("tansu.patches").is_file() {
        tracing::warn!(
            binary = %binary.display(),
            "this broker was not built by scripts/install-broker.sh (no tansu.patches beside \
             it): unpatched tansu holds every fetch for the whole fetch wait, adding up to that \
             much latency to each hop; run scripts/install-broker.sh"
        );
    }
}

/// A running broker process; killed on drop.
pub struct EmbeddedBroker {
    child: Option<Arc<Mutex<Child>>>,
    port: u16,
    dir: PathBuf,
    /// Held for the broker's lifetime: `<dir>/broker.lock`.
    _lock: File,
}

/// The most of the broker's log an error carries.
const LOG_TAIL: usize = 4000;

impl EmbeddedBroker {
    /// Starts tansu on `127.0.0.1:port` with its sqlite storage in `dir`, and waits until it
    /// answers metadata requests. A broker left over in `dir` by a process that no longer runs
    /// is killed first (its pid is in `<dir>/tansu.pid`).
    pub fn start(dir: &Path, port: u16) -> Result<Self, BrokerError> {
        std::fs::create_dir_all(dir).map_err(|e| BrokerError::Log {
            path: dir.to_path_buf(),
            source: e,
        })?;
        let lock_path = dir.join("broker.lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| BrokerError::Log {
                path: lock_path.clone(),
                source: e,
            })?;
        if lock.try_lock().is_err() {
            return Err(BrokerError::InUse {
                dir: dir.to_path_buf(),
                lock: lock_path,
            });
        }
        let mut b = EmbeddedBroker {
            child: None,
            port,
            dir: dir.to_path_buf(),
            _lock: lock,
        };
        b.kill_leftover();
        b.spawn_when_storage_free()?;
        Ok(b)
    }

    fn pid_path(&self) -> PathBuf {
        self.dir.join("tansu.pid")
    }

    /// Kills a broker that an earlier owner of `dir` left running (it holds our port and our
    /// storage). Only a process that is tansu and runs in `dir` is touched.
    fn kill_leftover(&self) {
        let Some(pid) = std::fs::read_to_string(self.pid_path())
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
        else {
            return;
        };
        let proc_dir = PathBuf::from(format!("/proc/{pid}"));
        let is_ours = std::fs::read(proc_dir.join("cmdline"))
            .map(|c| String::from_utf8_lossy(&c).contains("tansu"))
            .unwrap_or(false)
            && std::fs::read_link(proc_dir.join("cwd")).ok()
                == std::fs::canonicalize(&self.dir).ok();
        if !is_ours {
            return;
        }
        tracing::warn!(
            pid,
            dir = %self.dir.display(),
            "a broker left over by an earlier run still owns this data dir; killing it"
        );
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        let end = Instant::now() + Duration::from_secs(10);
        // Gone, or a zombie of a parent that has not reaped it (its port and files are closed).
        while Instant::now() < end
            && std::fs::read_to_string(proc_dir.join("stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// [`Self::spawn`], again when the broker exits at start because its SQLite storage is
    /// still locked: right after a broker on the same storage was killed, tansu 0.6.0's first
    /// connections can meet the crash recovery of another and exit with "database is locked"
    /// (seen in the leftover-broker test, 1 start in ~10). A few tries, then the error.
    fn spawn_when_storage_free(&mut self) -> Result<(), BrokerError> {
        let mut tries = 0;
        loop {
            match self.spawn() {
                Err(BrokerError::Exited { log, .. })
                    if tries < 4 && log.contains("database is locked") =>
                {
                    tries += 1;
                    tracing::warn!(tries, "broker storage still locked at start; trying again");
                    std::thread::sleep(Duration::from_millis(250 * tries));
                }
                r => return r,
            }
        }
    }

    fn spawn(&mut self) -> Result<(), BrokerError> {
        // Refuse rather than let the broker die on its bind while something else answers here.
        if let Err(source) = TcpListener::bind(("127.0.0.1", self.port)) {
            return Err(BrokerError::PortTaken {
                port: self.port,
                source,
            });
        }
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.log_path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| BrokerError::Log {
                path: log_path.clone(),
                source: e,
            })?;
        let log_start = log.metadata().map(|m| m.len()).unwrap_or(0);
        let binary = tansu_binary();
        warn_if_unpatched(&binary);
        let mut cmd = Command::new(&binary);
        cmd.current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        die_with_parent(&mut cmd);
        let child = spawn_kept(cmd).map_err(|e| BrokerError::Spawn {
            binary: binary.display().to_string(),
            source: e,
        })?;
        let pid = child.lock().expect("broker child lock").id();
        self.child = Some(child);
        let _ = std::fs::write(self.pid_path(), pid.to_string());

        let timeout = Duration::from_secs(30);
        let end = Instant::now() + timeout;
        let kafka = KafkaArgs::for_bootstrap(self.bootstrap());
        let exited = |b: &Self| -> Result<(), BrokerError> {
            match b.exited() {
                Some(status) => Err(BrokerError::Exited {
                    status: status.to_string(),
                    path: log_path.clone(),
                    log: log_tail(&log_path, log_start),
                }),
                None => Ok(()),
            }
        };
        while Instant::now() < end {
            exited(self)?;
            if let Ok(c) = kafka.client_config().create::<BaseConsumer>() {
                if c.fetch_metadata(None, Duration::from_millis(500)).is_ok() {
                    // It answered; make sure the answer came from our broker and not from
                    // something that took the port after our check (ours would have died).
                    std::thread::sleep(Duration::from_millis(200));
                    exited(self)?;
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(BrokerError::NotReady {
            bootstrap: self.bootstrap(),
            timeout,
            log: log_tail(&log_path, log_start),
        })
    }

    /// The broker's own log (stderr), appended across restarts.
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("tansu.log")
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The broker process's id, while it runs (tests pause it with SIGSTOP).
    pub fn pid(&self) -> Option<u32> {
        Some(self.child.as_ref()?.lock().expect("broker child lock").id())
    }

    /// How the broker ended, if it did (it should not while we hold it).
    pub fn exited(&self) -> Option<ExitStatus> {
        let child = self.child.as_ref()?;
        child
            .lock()
            .expect("broker child lock")
            .try_wait()
            .ok()
            .flatten()
    }

    /// Kills the process (SIGKILL) without touching its storage.
    pub fn kill(&mut self) {
        if let Some(c) = self.child.take() {
            let mut c = c.lock().expect("broker child lock");
            let _ = c.kill();
            let _ = c.wait();
            let _ = std::fs::remove_file(self.pid_path());
        }
    }

    /// Kill and start again on the same port and storage.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill();
        self.spawn_when_storage_free()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The end of a log file from `from` on, at most [`LOG_TAIL`] bytes.
fn log_tail(path: &Path, from: u64) -> String {
    let mut s = String::new();
    if let Ok(mut f) = File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        let start = from.max(len.saturating_sub(LOG_TAIL as u64));
        if f.seek(SeekFrom::Start(start)).is_ok() {
            let mut bytes = Vec::new();
            let _ = f.read_to_end(&mut bytes);
            s = String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    s
}

/// Starts `cmd` on a thread that lives exactly as long as the child: the kernel's parent-death
/// signal ([`die_with_parent`]) follows the *thread* that forked the child, so a child started
/// from a short-lived thread (a tokio blocking-pool worker) would be killed when that thread
/// retires, not when the process ends.
fn spawn_kept(mut cmd: Command) -> std::io::Result<Arc<Mutex<Child>>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("broker-keeper".into())
        .spawn(move || {
            let child = match cmd.spawn() {
                Ok(c) => Arc::new(Mutex::new(c)),
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            if tx.send(Ok(child.clone())).is_err() {
                return;
            }
            loop {
                std::thread::sleep(Duration::from_millis(250));
                match child.lock().map(|mut c| c.try_wait()) {
                    Ok(Ok(None)) => {}
                    _ => return,
                }
            }
        })?;
    rx.recv()
        .unwrap_or_else(|_| Err(std::io::Error::other("broker keeper thread ended")))
}

/// Makes the kernel SIGKILL the child when its parent thread ends (PR_SET_PDEATHSIG), so a
/// SIGKILLed `cxrflow up` does not leave its broker holding the port and the storage.
// The one place in cxrflow with `unsafe`: a pre-exec hook is unsafe because it runs in the
// forked child, where only async-signal-safe calls are allowed.
#[allow(unsafe_code)]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id() as i32;
    // SAFETY: the hook makes two system calls (prctl, getppid), both async-signal-safe, and
    // neither allocates nor takes a lock.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| std::io::Error::from_raw_os_error(e as i32))?;
            // The parent may have died between fork and prctl: then nobody would kill us.
            if nix::unistd::getppid().as_raw() != parent {
                return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            Ok(())
        });
    }
}
