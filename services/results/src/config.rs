//! Results' configuration: the shared Kafka and service settings plus the destinations (DICOM
//! C-STORE with optional TLS, STOW-RS, FHIR), their queues and retry policy, each with a
//! `CXRFLOW_…` environment variable and a default that suits the embedded stack (no
//! destination).

use std::path::PathBuf;
use std::time::Duration;

use cxrflow_common::{KafkaArgs, ServiceArgs};

use crate::deliver::Retry;
use crate::destination::dicom::DicomAddress;

pub const DEFAULT_STATE_DIR: &str = ".cxrflow/results";
pub const DEFAULT_IDENTIFIER_SYSTEM: &str = "urn:cxrflow:triage-result";

/// `cxrflow results` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    /// The PACS's Storage SCP, `AE@host:port`: each result is stored there as a DICOM
    /// Comprehensive SR with C-STORE. Unset: no DICOM delivery.
    #[arg(long = "dicom-destination", env = "CXRFLOW_RESULTS_DICOM_DESTINATION")]
    pub dicom_destination: Option<DicomAddress>,

    /// C-STORE over TLS (DICOM secure transport): trust the PACS certificate's CA in this PEM
    /// file. Unset: plain DICOM, for a trusted network segment only.
    #[arg(long = "dicom-tls-ca", env = "CXRFLOW_RESULTS_DICOM_TLS_CA")]
    pub dicom_tls_ca: Option<PathBuf>,

    /// With DICOM TLS: the client certificate (PEM) to present when the PACS requires one
    /// (mutual TLS); needs `--dicom-tls-key`.
    #[arg(
        long = "dicom-tls-cert",
        env = "CXRFLOW_RESULTS_DICOM_TLS_CERT",
        requires_all = ["dicom_tls_key", "dicom_tls_ca"]
    )]
    pub dicom_tls_cert: Option<PathBuf>,

    /// The client certificate's private key (PEM).
    #[arg(
        long = "dicom-tls-key",
        env = "CXRFLOW_RESULTS_DICOM_TLS_KEY",
        requires = "dicom_tls_cert"
    )]
    pub dicom_tls_key: Option<PathBuf>,

    /// With DICOM TLS: the name the PACS certificate must carry. Default: the destination's
    /// host.
    #[arg(
        long = "dicom-tls-server-name",
        env = "CXRFLOW_RESULTS_DICOM_TLS_SERVER_NAME"
    )]
    pub dicom_tls_server_name: Option<String>,

    /// Our calling AE title towards the PACS.
    #[arg(
        long = "calling-ae",
        env = "CXRFLOW_RESULTS_CALLING_AE",
        default_value = "CXRFLOW"
    )]
    pub calling_ae: String,

    /// The PACS's DICOMweb base URL: each result is also stored there as the same SR with
    /// STOW-RS (`POST <url>/studies`). Unset: no STOW-RS delivery.
    #[arg(long = "stow-url", env = "CXRFLOW_RESULTS_STOW_URL")]
    pub stow_url: Option<String>,

    /// A file holding the DICOMweb server's bearer token (read at each delivery). Unset: no
    /// Authorization header.
    #[arg(long = "stow-token-file", env = "CXRFLOW_RESULTS_STOW_TOKEN_FILE")]
    pub stow_token_file: Option<PathBuf>,

    /// The FHIR R4 server's base URL: each result is POSTed there as a transaction Bundle
    /// (DiagnosticReport, Observations, Device). Unset: no FHIR delivery.
    #[arg(long = "fhir-url", env = "CXRFLOW_RESULTS_FHIR_URL")]
    pub fhir_url: Option<String>,

    /// A file holding the FHIR server's bearer token (read at each delivery: rotation needs
    /// no restart). Unset: no Authorization header.
    #[arg(long = "fhir-token-file", env = "CXRFLOW_RESULTS_FHIR_TOKEN_FILE")]
    pub fhir_token_file: Option<PathBuf>,

    /// `Identifier.system` of the FHIR resources (their conditional creates match on it).
    #[arg(long = "fhir-identifier-system", env = "CXRFLOW_RESULTS_FHIR_IDENTIFIER_SYSTEM", default_value = DEFAULT_IDENTIFIER_SYSTEM)]
    pub fhir_identifier_system: String,

    /// Where pending deliveries are kept (one directory per destination; survive restarts:
    /// a volume in containers).
    #[arg(long = "state-dir", env = "CXRFLOW_RESULTS_STATE_DIR", default_value = DEFAULT_STATE_DIR)]
    pub state_dir: PathBuf,

    /// Decisions older than this many seconds are not delivered (a first start on a long
    /// worklist topic does not flood the PACS); 0: no limit.
    #[arg(
        long = "max-age-s",
        env = "CXRFLOW_RESULTS_MAX_AGE_S",
        default_value_t = 86_400
    )]
    pub max_age_s: u64,

    /// First retry delay for an unavailable destination, in milliseconds (doubling, jittered).
    #[arg(
        long = "retry-min-ms",
        env = "CXRFLOW_RESULTS_RETRY_MIN_MS",
        default_value_t = 1_000
    )]
    pub retry_min_ms: u64,

    /// Longest retry delay, in milliseconds.
    #[arg(
        long = "retry-max-ms",
        env = "CXRFLOW_RESULTS_RETRY_MAX_MS",
        default_value_t = 300_000
    )]
    pub retry_max_ms: u64,

    /// Connect, read and write timeout towards a destination, in seconds.
    #[arg(
        long = "destination-timeout-s",
        env = "CXRFLOW_RESULTS_DESTINATION_TIMEOUT_S",
        default_value_t = 30
    )]
    pub destination_timeout_s: u64,

    /// How long a delivered result is remembered (no second delivery of a re-read decision
    /// within it), in hours.
    #[arg(
        long = "done-retention-h",
        env = "CXRFLOW_RESULTS_DONE_RETENTION_H",
        default_value_t = 168
    )]
    pub done_retention_h: u64,
}

impl Config {
    /// All service-specific settings at their defaults (no destination).
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            dicom_destination: None,
            dicom_tls_ca: None,
            dicom_tls_cert: None,
            dicom_tls_key: None,
            dicom_tls_server_name: None,
            calling_ae: "CXRFLOW".into(),
            stow_url: None,
            stow_token_file: None,
            fhir_url: None,
            fhir_token_file: None,
            fhir_identifier_system: DEFAULT_IDENTIFIER_SYSTEM.into(),
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            max_age_s: 86_400,
            retry_min_ms: 1_000,
            retry_max_ms: 300_000,
            destination_timeout_s: 30,
            done_retention_h: 168,
        }
    }

    pub(crate) fn retry(&self) -> Retry {
        Retry {
            min: Duration::from_millis(self.retry_min_ms.max(1)),
            max: Duration::from_millis(self.retry_max_ms.max(self.retry_min_ms.max(1))),
        }
    }
}
