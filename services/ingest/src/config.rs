//! Ingest's configuration: the shared Kafka and service settings plus its own flags, each with a
//! `CXRFLOW_…` environment variable and a default that suits the embedded stack.

use cxrflow_common::config::mask_options;
use std::path::PathBuf;
use std::time::Duration;

use cxrflow_common::{BlobStoreArgs, KafkaArgs, ServiceArgs};

use crate::egress::{EgressPolicy, S3Allow};
use crate::fetch::FetchSettings;
use crate::validate::Limits;

pub const MIB: u64 = 1024 * 1024;

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub service: ServiceArgs,

    #[command(flatten)]
    pub blob_store: BlobStoreArgs,

    /// SQLite database of ingested SOP instance UIDs (deduplication across restarts).
    #[arg(
        long = "ingest-db",
        env = "CXRFLOW_INGEST_DB",
        default_value = ".cxrflow/ingest.db"
    )]
    pub ingest_db: PathBuf,

    /// Largest image accepted, inline or fetched, in bytes.
    #[arg(long = "ingest-max-image-bytes", env = "CXRFLOW_INGEST_MAX_IMAGE_BYTES", default_value_t = 64 * MIB)]
    pub max_image_bytes: u64,

    /// Largest image accepted inline in a scan event, in bytes (never above the image limit).
    /// Inline images ride in Kafka records: keep this well under the record limit
    /// (`--kafka-max-message-bytes`, 5 MiB less 64 KiB); larger images go by reference (`file://`, `s3://`).
    #[arg(long = "ingest-max-inline-bytes", env = "CXRFLOW_INGEST_MAX_INLINE_BYTES", default_value_t = 4 * MIB)]
    pub max_inline_bytes: u64,

    /// Connect timeout for HTTP(S) image URLs, in milliseconds.
    #[arg(
        long = "ingest-connect-timeout-ms",
        env = "CXRFLOW_INGEST_CONNECT_TIMEOUT_MS",
        default_value_t = 5_000
    )]
    pub connect_timeout_ms: u64,

    /// Total timeout for fetching one image (HTTP request and body, S3 object), in milliseconds.
    #[arg(
        long = "ingest-fetch-timeout-ms",
        env = "CXRFLOW_INGEST_FETCH_TIMEOUT_MS",
        default_value_t = 60_000
    )]
    pub fetch_timeout_ms: u64,

    /// How long an image source that does not answer (connection refused, timeouts, HTTP 5xx)
    /// is retried before the study is dead-lettered as `ingest.source_unreachable` (and so
    /// listed as not assessable), in milliseconds. The blob store and the ledger, ingest's own
    /// infrastructure, are retried without end.
    #[arg(
        long = "ingest-source-give-up-ms",
        env = "CXRFLOW_INGEST_SOURCE_GIVE_UP_MS",
        default_value_t = 300_000
    )]
    pub source_give_up_ms: u64,

    /// S3 options for `s3://` image URIs, `key=value`, repeatable, over the `AWS_*` environment.
    #[arg(long = "ingest-s3-option", env = "CXRFLOW_INGEST_S3_OPTIONS", value_delimiter = ',', value_parser = cxrflow_common::config::parse_key_value)]
    pub s3_options: Vec<(String, String)>,

    /// When set, `file://` image URIs must point inside one of these directories (repeatable;
    /// comma-separated in the environment).
    #[arg(
        long = "ingest-file-root",
        env = "CXRFLOW_INGEST_FILE_ROOT",
        value_delimiter = ','
    )]
    pub file_roots: Vec<PathBuf>,

    /// Where `http(s)://` images may come from: URL prefixes (`https://pacs.example/wado/`,
    /// end them with `/`) or host[:port] names, comma-separated in the environment. Empty: any
    /// host whose addresses are public. An entry also allows its host's internal addresses.
    #[arg(
        long = "ingest-http-allow",
        env = "CXRFLOW_INGEST_HTTP_ALLOW",
        value_delimiter = ','
    )]
    pub http_allow: Vec<String>,

    /// Internal networks (CIDR) that `http(s)://` images may come from although loopback,
    /// link-local or private (e.g. the PACS subnet `10.20.0.0/16`); comma-separated in the
    /// environment. Other internal addresses are refused (`ingest.address_forbidden`).
    #[arg(
        long = "ingest-allow-networks",
        env = "CXRFLOW_INGEST_ALLOW_NETWORKS",
        value_delimiter = ','
    )]
    pub allow_networks: Vec<String>,

    /// Which S3 objects `s3://` images may name: `bucket` or `bucket/prefix/` entries,
    /// comma-separated in the environment. Ingest's own blob store is always allowed when a list
    /// is given. Empty: any bucket the S3 credentials can read. A refusal dead-letters the study
    /// (`ingest.uri_not_allowed`).
    #[arg(
        long = "ingest-s3-allow",
        env = "CXRFLOW_INGEST_S3_ALLOW",
        value_delimiter = ','
    )]
    pub s3_allow: Vec<String>,
}

impl Config {
    /// All ingest settings at their defaults.
    pub fn defaults(kafka: KafkaArgs, service: ServiceArgs) -> Self {
        Config {
            kafka,
            service,
            blob_store: BlobStoreArgs::default(),
            ingest_db: PathBuf::from(".cxrflow/ingest.db"),
            max_image_bytes: 64 * MIB,
            max_inline_bytes: 4 * MIB,
            connect_timeout_ms: 5_000,
            fetch_timeout_ms: 60_000,
            source_give_up_ms: 300_000,
            s3_options: vec![],
            file_roots: vec![],
            http_allow: vec![],
            allow_networks: vec![],
            s3_allow: vec![],
        }
    }

    pub fn limits(&self) -> Limits {
        Limits {
            max_image_bytes: self.max_image_bytes,
            max_inline_bytes: self.max_inline_bytes,
        }
    }

    /// The fetch settings; a malformed allow-list entry or network is an error.
    pub fn fetch_settings(&self) -> Result<FetchSettings, String> {
        let egress = EgressPolicy::parse(&self.http_allow, &self.allow_networks)?;
        let mut s3_allow = S3Allow::parse(&self.s3_allow)?;
        if let Some(own) = self.blob_store.effective_url().strip_prefix("s3://") {
            let (bucket, prefix) = own.split_once('/').unwrap_or((own, ""));
            s3_allow = s3_allow.with(bucket, prefix);
        }
        Ok(FetchSettings {
            max_bytes: self.max_image_bytes,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            total_timeout: Duration::from_millis(self.fetch_timeout_ms),
            s3_options: self.s3_options.clone(),
            file_roots: self.file_roots.clone(),
            egress: std::sync::Arc::new(egress),
            s3_allow,
        })
    }

    /// The effective ingest settings as a person should see them at start: secrets masked.
    pub fn describe(&self) -> String {
        format!(
            "{} ingest_db={} max_image_bytes={} max_inline_bytes={} connect_timeout_ms={} fetch_timeout_ms={} source_give_up_ms={} s3_options=[{}] file_roots=[{}] http_allow=[{}] allow_networks=[{}] s3_allow=[{}]",
            self.blob_store.describe(),
            self.ingest_db.display(),
            self.max_image_bytes,
            self.max_inline_bytes,
            self.connect_timeout_ms,
            self.fetch_timeout_ms,
            self.source_give_up_ms,
            mask_options(&self.s3_options),
            if self.file_roots.is_empty() {
                "(any)".to_string()
            } else {
                self.file_roots
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            self.http_allow.join(","),
            self.allow_networks.join(","),
            if self.s3_allow.is_empty() {
                "(any bucket)".to_string()
            } else {
                self.s3_allow.join(",")
            },
        )
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
    fn flags_parse_defaults_match_and_secrets_are_masked() {
        let cli = Cli::try_parse_from([
            "ingest",
            "--blob-store",
            "s3://b/blobs",
            "--ingest-s3-option",
            "aws_secret_access_key=hunter2",
            "--ingest-s3-option",
            "aws_endpoint=http://127.0.0.1:9000",
        ])
        .unwrap();
        assert_eq!(cli.cfg.blob_store.effective_url(), "s3://b/blobs");
        let d = cli.cfg.describe();
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("aws_endpoint=http://127.0.0.1:9000"), "{d}");

        let parsed = Cli::try_parse_from(["ingest"]).unwrap().cfg;
        let defaults = Config::defaults(parsed.kafka.clone(), parsed.service.clone());
        assert_eq!(parsed.ingest_db, defaults.ingest_db);
        assert_eq!(parsed.limits(), defaults.limits());
        assert_eq!(parsed.fetch_timeout_ms, defaults.fetch_timeout_ms);
        assert!(defaults
            .blob_store
            .effective_url()
            .ends_with("/.cxrflow/blobs"));
        assert!(Cli::try_parse_from(["ingest", "--ingest-s3-option", "novalue"]).is_err());
    }
}
