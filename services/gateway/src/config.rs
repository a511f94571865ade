//! The gateway's configuration: the shared Kafka and service settings plus its own flags, each
//! with a `CXRFLOW_GATEWAY_…` environment variable and a default that suits the embedded stack.

use chrono_tz::Tz;
use cxrflow_common::blob;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use cxrflow_common::{KafkaArgs, ServiceArgs};

pub const MIB: u64 = 1024 * 1024;

/// Smallest receive PDU the upper layer allows (PS3.8 §D.1: 1024 bytes minus the PDU header).
pub const MIN_PDU: u32 = dicom_ul::pdu::MINIMUM_PDU_SIZE;
/// Shortest accepted pseudonym key, in bytes: HMAC-SHA256 keys below this are guessable.
pub const MIN_KEY_BYTES: usize = 16;
/// The key used with `--gateway-insecure-dev-key`: public, so its pseudonyms protect nothing.
pub const DEV_PSEUDONYM_KEY: &str = "cxrflow-insecure-development-pseudonym-key";

/// `Debug` shows [`Config::describe`], so the pseudonym key never reaches a log by accident.
#[derive(Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Address the DICOM upper-layer listener (C-STORE / C-ECHO SCP) binds; use `0.0.0.0:11112`
    /// to accept modalities and PACS on the network.
    #[arg(
        long = "gateway-dicom-listen",
        env = "CXRFLOW_GATEWAY_DICOM_LISTEN",
        default_value = "127.0.0.1:11112"
    )]
    pub dicom_listen: SocketAddr,

    /// This gateway's AE title; associations calling another title are rejected.
    #[arg(
        long = "gateway-ae-title",
        env = "CXRFLOW_GATEWAY_AE_TITLE",
        default_value = "CXRFLOW"
    )]
    pub ae_title: String,

    /// Calling AE titles allowed to associate, repeatable; none: any. In the environment:
    /// comma-separated.
    #[arg(
        long = "gateway-calling-ae",
        env = "CXRFLOW_GATEWAY_CALLING_AES",
        value_delimiter = ','
    )]
    pub calling_aes: Vec<String>,

    /// Largest PDU this gateway receives (advertised at association), in bytes. A peer sending a
    /// larger PDU is aborted.
    #[arg(
        long = "gateway-max-pdu",
        env = "CXRFLOW_GATEWAY_MAX_PDU",
        default_value_t = 65_536
    )]
    pub max_pdu: u32,

    /// Time from TCP connect to a complete A-ASSOCIATE-RQ (the ARTIM timer), in milliseconds.
    #[arg(
        long = "gateway-association-timeout-ms",
        env = "CXRFLOW_GATEWAY_ASSOCIATION_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub association_timeout_ms: u64,

    /// Longest wait for the next PDU of an established association before it is aborted, in
    /// milliseconds.
    #[arg(
        long = "gateway-idle-timeout-ms",
        env = "CXRFLOW_GATEWAY_IDLE_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub idle_timeout_ms: u64,

    /// Associations (and STOW-RS requests) served at once; beyond it, an association is rejected
    /// (A-ASSOCIATE-RJ transient, local limit exceeded) and a STOW-RS request gets 503.
    #[arg(
        long = "gateway-max-associations",
        env = "CXRFLOW_GATEWAY_MAX_ASSOCIATIONS",
        default_value_t = 32
    )]
    pub max_associations: usize,

    /// Largest DICOM instance accepted, in bytes (C-STORE data set or one STOW-RS part). Keep it
    /// at or below ingest's image limit.
    #[arg(long = "gateway-max-instance-bytes", env = "CXRFLOW_GATEWAY_MAX_INSTANCE_BYTES", default_value_t = 64 * MIB)]
    pub max_instance_bytes: u64,

    /// Largest STOW-RS request body, in bytes.
    #[arg(long = "gateway-stow-max-body-bytes", env = "CXRFLOW_GATEWAY_STOW_MAX_BODY_BYTES", default_value_t = 256 * MIB)]
    pub stow_max_body_bytes: u64,

    /// Blob store for the received DICOM files (the hospital's store): `file:///abs/dir` or
    /// `s3://bucket[/prefix]`. Default: `file://<cwd>/.cxrflow/dicom`.
    #[arg(long = "gateway-blob-store", env = "CXRFLOW_GATEWAY_BLOB_STORE")]
    pub blob_store: Option<String>,

    /// Blob store options, `key=value`, repeatable (`aws_endpoint=http://…`, …); over the usual
    /// `AWS_*` environment. In the environment: comma-separated.
    #[arg(long = "gateway-blob-store-option", env = "CXRFLOW_GATEWAY_BLOB_STORE_OPTIONS", value_delimiter = ',', value_parser = cxrflow_common::config::parse_key_value)]
    pub blob_store_options: Vec<(String, String)>,

    /// Secret key of the patient and accession pseudonyms (HMAC-SHA256), at least 16 bytes.
    /// Required unless `--gateway-insecure-dev-key`.
    #[arg(long = "gateway-pseudonym-key", env = "CXRFLOW_GATEWAY_PSEUDONYM_KEY")]
    pub pseudonym_key: Option<String>,

    /// Development only: without a pseudonym key, use a fixed public one (pseudonyms are then
    /// reversible by anyone with a list of patient ids).
    #[arg(
        long = "gateway-insecure-dev-key",
        env = "CXRFLOW_GATEWAY_INSECURE_DEV_KEY",
        default_value_t = false
    )]
    pub insecure_dev_key: bool,

    /// Serve DICOM over TLS (PS3.15 secure transport) with this certificate chain (PEM); needs
    /// `--gateway-dicom-tls-key`. Without it the DICOM port is plain TCP, for a trusted network
    /// segment only.
    #[arg(
        long = "gateway-dicom-tls-cert",
        env = "CXRFLOW_GATEWAY_DICOM_TLS_CERT",
        requires = "dicom_tls_key"
    )]
    pub dicom_tls_cert: Option<PathBuf>,

    /// The DICOM TLS certificate's private key (PEM).
    #[arg(
        long = "gateway-dicom-tls-key",
        env = "CXRFLOW_GATEWAY_DICOM_TLS_KEY",
        requires = "dicom_tls_cert"
    )]
    pub dicom_tls_key: Option<PathBuf>,

    /// With DICOM TLS: require a client certificate issued by a CA in this PEM file (mutual
    /// TLS: only the PACS and modalities holding such a certificate may associate).
    #[arg(
        long = "gateway-dicom-tls-client-ca",
        env = "CXRFLOW_GATEWAY_DICOM_TLS_CLIENT_CA",
        requires = "dicom_tls_cert"
    )]
    pub dicom_tls_client_ca: Option<PathBuf>,

    /// Site id put on every scan event.
    #[arg(
        long = "gateway-site-id",
        env = "CXRFLOW_GATEWAY_SITE_ID",
        default_value = "gateway"
    )]
    pub site_id: String,

    /// The IANA time zone the site's modality clocks keep (`America/New_York`,
    /// `Europe/Berlin`): DICOM dates and times are local, and most modalities send no
    /// TimezoneOffsetFromUTC. Default: the host's zone (`TZ`, else `/etc/localtime`), else UTC.
    #[arg(long = "gateway-timezone", env = "CXRFLOW_GATEWAY_TIMEZONE")]
    pub timezone: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Config {{ kafka: {}, http: {}, {} }}",
            self.kafka.describe(),
            self.service.http,
            self.describe()
        )
    }
}

/// A configuration the gateway refuses to start with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("no pseudonym key: set CXRFLOW_GATEWAY_PSEUDONYM_KEY (at least {MIN_KEY_BYTES} bytes), or --gateway-insecure-dev-key for development")]
    PseudonymKeyMissing,
    #[error("the pseudonym key is {0} bytes long; at least {MIN_KEY_BYTES} are required")]
    PseudonymKeyShort(usize),
    #[error("AE title {title:?} is not usable: {why}")]
    AeTitle { title: String, why: &'static str },
    #[error("--gateway-max-pdu {0} is below the upper layer's minimum of {MIN_PDU}")]
    MaxPdu(u32),
    #[error("{0} must be greater than zero")]
    Zero(&'static str),
    #[error("--gateway-site-id must not be empty")]
    SiteId,
    #[error("--gateway-timezone {0:?} is not an IANA time zone name (e.g. America/New_York, Europe/Berlin, UTC)")]
    Timezone(String),
    #[error("DICOM TLS: {0}")]
    DicomTls(String),
}

/// Checks an AE title (PS3.5 AE: at most 16 characters of the default repertoire, no backslash
/// or control characters, not only spaces).
pub fn check_ae_title(title: &str) -> Result<(), ConfigError> {
    let err = |why| {
        Err(ConfigError::AeTitle {
            title: title.to_string(),
            why,
        })
    };
    if title.trim().is_empty() {
        return err("empty");
    }
    if title.len() > 16 {
        return err("longer than 16 characters");
    }
    if !title
        .bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'\\')
    {
        return err("only printable ASCII without backslash is allowed");
    }
    Ok(())
}

impl Config {
    /// All gateway settings at their defaults (no pseudonym key: set one, or the dev flag).
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            dicom_listen: "127.0.0.1:11112".parse().expect("static address"),
            ae_title: "CXRFLOW".into(),
            calling_aes: vec![],
            max_pdu: 65_536,
            association_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_associations: 32,
            max_instance_bytes: 64 * MIB,
            stow_max_body_bytes: 256 * MIB,
            blob_store: None,
            blob_store_options: vec![],
            pseudonym_key: None,
            insecure_dev_key: false,
            dicom_tls_cert: None,
            dicom_tls_key: None,
            dicom_tls_client_ca: None,
            site_id: "gateway".into(),
            timezone: None,
        }
    }

    /// Refuses settings the gateway cannot run safely with.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.key()?;
        check_ae_title(&self.ae_title)?;
        for ae in &self.calling_aes {
            check_ae_title(ae)?;
        }
        if self.max_pdu < MIN_PDU {
            return Err(ConfigError::MaxPdu(self.max_pdu));
        }
        for (name, v) in [
            (
                "--gateway-association-timeout-ms",
                self.association_timeout_ms,
            ),
            ("--gateway-idle-timeout-ms", self.idle_timeout_ms),
            ("--gateway-max-associations", self.max_associations as u64),
            ("--gateway-max-instance-bytes", self.max_instance_bytes),
            ("--gateway-stow-max-body-bytes", self.stow_max_body_bytes),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.site_id.trim().is_empty() {
            return Err(ConfigError::SiteId);
        }
        self.zone()?;
        self.dicom_tls()?;
        Ok(())
    }

    /// The zone DICOM times without an offset are read in, and where it came from.
    pub fn zone(&self) -> Result<(Tz, &'static str), ConfigError> {
        match self
            .timezone
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            Some(name) => name
                .parse::<Tz>()
                .map(|z| (z, "--gateway-timezone"))
                .map_err(|_| ConfigError::Timezone(name.to_string())),
            None => Ok(host_zone()),
        }
    }

    /// The pseudonym key bytes, or why there is none.
    pub fn key(&self) -> Result<Vec<u8>, ConfigError> {
        match self.pseudonym_key.as_deref() {
            Some(k) if k.len() >= MIN_KEY_BYTES => Ok(k.as_bytes().to_vec()),
            Some(k) if !k.is_empty() => Err(ConfigError::PseudonymKeyShort(k.len())),
            _ if self.insecure_dev_key => Ok(DEV_PSEUDONYM_KEY.as_bytes().to_vec()),
            _ => Err(ConfigError::PseudonymKeyMissing),
        }
    }

    /// The blob store URL, defaulting to `.cxrflow/dicom` under the working directory.
    pub fn blob_store_url(&self) -> String {
        blob::effective_url(self.blob_store.as_deref(), ".cxrflow/dicom")
    }

    /// The DICOM listener's TLS configuration, or `None` for plain TCP.
    pub fn dicom_tls(&self) -> Result<Option<rustls::ServerConfig>, ConfigError> {
        cxrflow_common::tls::server_config_from(
            "gateway-dicom-tls",
            self.dicom_tls_cert.as_deref(),
            self.dicom_tls_key.as_deref(),
            self.dicom_tls_client_ca.as_deref(),
        )
        .map_err(|e| ConfigError::DicomTls(e.to_string()))
    }

    pub fn association_timeout(&self) -> Duration {
        Duration::from_millis(self.association_timeout_ms)
    }

    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The effective gateway settings as a person should see them at start: secrets masked.
    pub fn describe(&self) -> String {
        let key = match (&self.pseudonym_key, self.insecure_dev_key) {
            (Some(k), _) if !k.is_empty() => "****",
            (_, true) => "(insecure development key)",
            _ => "(unset)",
        };
        format!(
            "dicom_listen={} ae_title={} calling_aes=[{}] max_pdu={} association_timeout_ms={} idle_timeout_ms={} max_associations={} max_instance_bytes={} stow_max_body_bytes={} {} pseudonym_key={} dicom_tls={} site_id={} timezone={}",
            self.dicom_listen,
            self.ae_title,
            if self.calling_aes.is_empty() {
                "(any)".to_string()
            } else {
                self.calling_aes.join(", ")
            },
            self.max_pdu,
            self.association_timeout_ms,
            self.idle_timeout_ms,
            self.max_associations,
            self.max_instance_bytes,
            self.stow_max_body_bytes,
            blob::describe(&self.blob_store_url(), &self.blob_store_options),
            key,
            match (&self.dicom_tls_cert, &self.dicom_tls_client_ca) {
                (None, _) => "off".to_string(),
                (Some(c), None) => format!("{} (any client)", c.display()),
                (Some(c), Some(ca)) => format!("{} (client certificate from {})", c.display(), ca.display()),
            },
            self.site_id,
            match self.zone() {
                Ok((zone, from)) => format!("{zone} ({from})"),
                Err(e) => e.to_string(),
            },
        )
    }
}

/// The host's zone: `TZ` when it names an IANA zone (a leading `:` allowed), else the
/// system's (`/etc/localtime`, read by `iana-time-zone`), else UTC.
pub fn host_zone() -> (Tz, &'static str) {
    let tz_env = std::env::var("TZ").ok();
    if let Some(zone) = tz_env.and_then(|v| v.trim_start_matches(':').parse::<Tz>().ok()) {
        return (zone, "the host's TZ");
    }
    match iana_time_zone::get_timezone()
        .ok()
        .and_then(|name| name.parse::<Tz>().ok())
    {
        Some(zone) => (zone, "the host's zone"),
        None => (Tz::UTC, "no zone found on the host"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        cfg: Config,
    }

    #[test]
    fn flags_parse_defaults_match_and_the_key_is_masked() {
        let cli = Cli::try_parse_from([
            "gateway",
            "--gateway-pseudonym-key",
            "hunter2-hunter2-hunter2",
            "--gateway-calling-ae",
            "MODALITY1",
            "--gateway-calling-ae",
            "PACS",
            "--gateway-blob-store-option",
            "aws_secret_access_key=s3cr3t",
        ])
        .unwrap();
        assert_eq!(cli.cfg.calling_aes, vec!["MODALITY1", "PACS"]);
        assert!(cli.cfg.validate().is_ok());
        let d = cli.cfg.describe();
        assert!(!d.contains("hunter2"), "{d}");
        assert!(!d.contains("s3cr3t"), "{d}");
        assert!(d.contains("pseudonym_key=****"), "{d}");
        let debug = format!("{:?}", cli.cfg);
        assert!(
            !debug.contains("hunter2") && !debug.contains("s3cr3t"),
            "{debug}"
        );

        let parsed = Cli::try_parse_from(["gateway"]).unwrap().cfg;
        let defaults = Config::defaults(parsed.kafka.clone(), parsed.service.clone());
        assert_eq!(parsed.dicom_listen, defaults.dicom_listen);
        assert_eq!(parsed.ae_title, defaults.ae_title);
        assert_eq!(parsed.max_pdu, defaults.max_pdu);
        assert_eq!(parsed.max_associations, defaults.max_associations);
        assert_eq!(parsed.max_instance_bytes, defaults.max_instance_bytes);
        assert_eq!(parsed.stow_max_body_bytes, defaults.stow_max_body_bytes);
        assert_eq!(parsed.idle_timeout_ms, defaults.idle_timeout_ms);
        assert_eq!(
            parsed.association_timeout_ms,
            defaults.association_timeout_ms
        );
        assert_eq!(parsed.site_id, defaults.site_id);
        assert!(defaults.blob_store_url().ends_with("/.cxrflow/dicom"));
    }

    #[test]
    fn the_sites_zone_is_an_iana_name_and_a_wrong_one_stops_the_start() {
        let mut cfg = Config::defaults(KafkaArgs::for_bootstrap("h:1"), ServiceArgs::local());
        cfg.insecure_dev_key = true;
        cfg.timezone = Some(" America/New_York ".into());
        assert_eq!(
            cfg.zone(),
            Ok((Tz::America__New_York, "--gateway-timezone"))
        );
        assert!(cfg
            .describe()
            .contains("timezone=America/New_York (--gateway-timezone)"));
        cfg.timezone = Some("EST+5".into());
        assert_eq!(cfg.validate(), Err(ConfigError::Timezone("EST+5".into())));
        // Unset or empty (a blank chart value): the host's.
        for unset in [None, Some(String::new())] {
            cfg.timezone = unset;
            assert_eq!(cfg.zone(), Ok(host_zone()));
        }
    }

    #[test]
    fn refuses_to_start_without_a_key_unless_told_it_is_development() {
        let mut cfg = Config::defaults(KafkaArgs::for_bootstrap("h:1"), ServiceArgs::local());
        assert_eq!(cfg.validate(), Err(ConfigError::PseudonymKeyMissing));
        cfg.pseudonym_key = Some("short".into());
        assert_eq!(cfg.validate(), Err(ConfigError::PseudonymKeyShort(5)));
        cfg.pseudonym_key = None;
        cfg.insecure_dev_key = true;
        assert!(cfg.validate().is_ok());
        assert!(cfg.describe().contains("insecure development key"));
        cfg.ae_title = "A-TITLE-LONGER-THAN-16".into();
        assert!(matches!(cfg.validate(), Err(ConfigError::AeTitle { .. })));
        cfg.ae_title = "CXRFLOW".into();
        cfg.max_pdu = 100;
        assert_eq!(cfg.validate(), Err(ConfigError::MaxPdu(100)));
    }
}
