//! The embedded broker: a tansu (Kafka-API) process on loopback with on-disk sqlite storage,
//! started by `cxrflow up` and by the test harness. Installed by `scripts/install-broker.sh`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

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

/// A running broker process; killed on drop.
pub struct EmbeddedBroker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl EmbeddedBroker {
    /// Starts tansu on `127.0.0.1:port` with its sqlite storage in `dir`, and waits until it
    /// answers metadata requests.
    pub fn start(dir: &Path, port: u16) -> Result<Self, BrokerError> {
        let mut b = EmbeddedBroker {
            child: None,
            port,
            dir: dir.to_path_buf(),
        };
        b.spawn()?;
        Ok(b)
    }

    fn spawn(&mut self) -> Result<(), BrokerError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| BrokerError::Log {
            path: self.dir.clone(),
            source: e,
        })?;
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log_path = self.dir.join("tansu.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|e| BrokerError::Log {
                path: log_path.clone(),
                source: e,
            })?;
        let binary = tansu_binary();
        let child = Command::new(&binary)
            .current_dir(&self.dir)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| BrokerError::Spawn {
                binary: binary.display().to_string(),
                source: e,
            })?;
        self.child = Some(child);
        let timeout = Duration::from_secs(30);
        let end = Instant::now() + timeout;
        let kafka = KafkaArgs::for_bootstrap(self.bootstrap());
        while Instant::now() < end {
            if let Ok(c) = kafka.client_config().create::<BaseConsumer>() {
                if c.fetch_metadata(None, Duration::from_millis(500)).is_ok() {
                    return Ok(());
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(BrokerError::NotReady {
            bootstrap: self.bootstrap(),
            timeout,
            log: std::fs::read_to_string(&log_path).unwrap_or_default(),
        })
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Kills the process (SIGKILL) without touching its storage.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Kill and start again on the same port and storage.
    pub fn restart(&mut self) -> Result<(), BrokerError> {
        self.kill();
        self.spawn()
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.kill();
    }
}
