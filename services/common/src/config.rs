//! Configuration shared by every service: Kafka connection, schema registry, HTTP and telemetry.
//! Every flag has a `CXRFLOW_…` environment variable and a default that suits the embedded stack.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Args;
use rdkafka::ClientConfig;

/// Kafka connection settings, with pass-through of any librdkafka property.
#[derive(Debug, Clone, Args)]
pub struct KafkaArgs {
    /// Kafka bootstrap servers.
    #[arg(
        long = "bootstrap",
        env = "CXRFLOW_BOOTSTRAP",
        default_value = "127.0.0.1:9092"
    )]
    pub bootstrap: String,

    /// Extra librdkafka properties, `key=value`, repeatable (TLS, SASL, tuning):
    /// e.g. `--kafka-prop security.protocol=SASL_SSL --kafka-prop sasl.mechanism=SCRAM-SHA-512`.
    /// In the environment: comma-separated.
    #[arg(long = "kafka-prop", env = "CXRFLOW_KAFKA_PROPS", value_delimiter = ',', value_parser = parse_key_value)]
    pub props: Vec<(String, String)>,

    /// Confluent-API schema registry URL (Confluent or Karapace). Empty: the static registry
    /// compiled from schemas/ (the embedded default).
    #[arg(
        long = "schema-registry",
        env = "CXRFLOW_SCHEMA_REGISTRY",
        default_value = ""
    )]
    pub schema_registry: String,

    /// Credentials for the schema registry: `basic:<user>:<password>` (Confluent Cloud API
    /// keys, Karapace with basic auth) or `bearer:<token>` (an OAuth/OIDC access token). Masked
    /// in every log line.
    #[arg(
        long = "schema-registry-auth",
        env = "CXRFLOW_SCHEMA_REGISTRY_AUTH",
        default_value = "",
        hide_env_values = true
    )]
    pub schema_registry_auth: String,

    /// Look each schema up in the registry instead of registering it: for deployments where
    /// schemas are registered by a release pipeline and services hold read-only credentials.
    /// A schema that is not registered stops the service at start, naming the subject.
    #[arg(
        long = "schema-registry-read-only",
        env = "CXRFLOW_SCHEMA_REGISTRY_READ_ONLY",
        default_value_t = false
    )]
    pub schema_registry_read_only: bool,

    /// Prefix added to every topic name (several stacks on one cluster, or test isolation).
    #[arg(
        long = "topic-prefix",
        env = "CXRFLOW_TOPIC_PREFIX",
        default_value = ""
    )]
    pub topic_prefix: String,

    /// Consumer session timeout; the shutdown drain must be shorter.
    #[arg(
        long = "session-timeout-ms",
        env = "CXRFLOW_SESSION_TIMEOUT_MS",
        default_value_t = 30_000
    )]
    pub session_timeout_ms: u64,

    /// Upper bound on librdkafka's prefetch buffer per consumer, in KiB (backpressure).
    #[arg(
        long = "max-prefetch-kib",
        env = "CXRFLOW_MAX_PREFETCH_KIB",
        default_value_t = 16_384
    )]
    pub max_prefetch_kib: u64,

    /// Largest record payload cxrflow produces, in bytes: librdkafka's `message.max.bytes` on
    /// every producer, and `max.message.bytes` on the topics cxrflow creates, both with
    /// [`DEAD_LETTER_HEADROOM`] on top, so any record a service could consume can also be
    /// dead-lettered whole (the envelope adds the reason and the headers). The default keeps
    /// record + headroom at 5 MiB, the most the embedded broker (tansu 0.6.0) returns in one
    /// fetch: a larger record would be stored but never delivered. On a Kafka cluster it may be
    /// raised together with the brokers' `message.max.bytes` / `replica.fetch.max.bytes`.
    #[arg(
        long = "kafka-max-message-bytes",
        env = "CXRFLOW_KAFKA_MAX_MESSAGE_BYTES",
        default_value_t = DEFAULT_MAX_MESSAGE_BYTES
    )]
    pub max_message_bytes: u64,

    /// How long the broker may hold a consumer's fetch open when it has no records for it
    /// (librdkafka `fetch.wait.max.ms`). Unset: 500 ms (Kafka's and librdkafka's default) for a
    /// stage on a study's way to the worklist (ingest, preprocess, inference, triage) and
    /// 1000 ms for consumers off that path (feedback, drift, control-topic followers). Apache
    /// Kafka and the embedded broker as `scripts/install-broker.sh` builds it answer a fetch as
    /// soon as records arrive, so the wait only sets how often an idle consumer asks; published
    /// tansu 0.6.0 holds every fetch for the whole wait, records or not, which adds up to the
    /// wait to each hop (README, Kafka features).
    #[arg(long = "kafka-fetch-wait-ms", env = "CXRFLOW_KAFKA_FETCH_WAIT_MS")]
    pub fetch_wait_ms: Option<u64>,

    /// How long a stage may hold no partitions while its topics have records past the group's
    /// committed offsets (and nobody commits) before it rejoins its group; further recoveries
    /// wait twice as long each (rejoin, recreate the consumer, exit non-zero). `/healthz` fails
    /// after twice this much work without progress. Unset: the session timeout plus 5 s (a
    /// member that replaced a dead one waits out the dead one's session, then a rebalance).
    #[arg(long = "consumer-stall-ms", env = "CXRFLOW_CONSUMER_STALL_MS")]
    pub consumer_stall_ms: Option<u64>,
}

/// How soon a consumer must see a new record; sets its fetch wait (see
/// [`KafkaArgs::fetch_wait_ms`]), which is latency only on a broker that holds every fetch for
/// the whole wait (published tansu 0.6.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Urgency {
    /// On a study's way to the worklist: on such a broker every wait is latency a radiologist
    /// may see.
    StudyPath,
    /// Off that path (feedback joins, drift windows, control topics): seconds do not matter.
    Background,
}

impl Urgency {
    pub fn default_fetch_wait(self) -> Duration {
        match self {
            Urgency::StudyPath => Duration::from_millis(500),
            Urgency::Background => Duration::from_millis(1000),
        }
    }
}

/// Room for a dead-letter envelope around the largest record (reason, error text, headers).
pub const DEAD_LETTER_HEADROOM: u64 = 64 * 1024;

/// Default record limit: with the headroom, exactly the 5 MiB tansu 0.6.0 serves per fetch.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 5 * 1024 * 1024 - DEAD_LETTER_HEADROOM;

/// Parses one `key=value` flag value (librdkafka properties, object-store options).
pub fn parse_key_value(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("expected key=value, got {s:?}"))?;
    if k.trim().is_empty() {
        return Err(format!("empty key in {s:?}"));
    }
    Ok((k.trim().to_string(), v.to_string()))
}

/// Whether a `key=value` setting's value must not be printed: passwords, secrets, tokens,
/// access key ids and keys (librdkafka's `ssl.key.password`, object-store `aws_secret_access_key`,
/// `aws_access_key_id`, `sasl.password`, …).
pub fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k.contains("password")
        || k.contains("secret")
        || k.contains("token")
        || k.contains("key_id")
        || k.ends_with("key")
}

/// `key=value, …` of a list of settings, with the values of secret ones masked.
pub fn mask_options(options: &[(String, String)]) -> String {
    options
        .iter()
        .map(|(k, v)| {
            if is_secret(k) {
                format!("{k}=****")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl KafkaArgs {
    /// Settings for a given bootstrap address, everything else default.
    pub fn for_bootstrap(bootstrap: impl Into<String>) -> Self {
        KafkaArgs {
            bootstrap: bootstrap.into(),
            props: vec![],
            schema_registry: String::new(),
            schema_registry_auth: String::new(),
            schema_registry_read_only: false,
            topic_prefix: String::new(),
            session_timeout_ms: 30_000,
            max_prefetch_kib: 16_384,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            fetch_wait_ms: None,
            consumer_stall_ms: None,
        }
    }

    /// See [`KafkaArgs::consumer_stall_ms`].
    pub fn consumer_stall(&self) -> Duration {
        self.consumer_stall_ms
            .map(Duration::from_millis)
            .unwrap_or_else(|| self.session_timeout() + Duration::from_secs(5))
    }

    /// The fetch wait of a consumer of the given urgency: the flag when set, else the default.
    pub fn fetch_wait(&self, urgency: Urgency) -> Duration {
        self.fetch_wait_ms
            .map(Duration::from_millis)
            .unwrap_or_else(|| urgency.default_fetch_wait())
    }

    /// The full name of a logical topic (`cxr.scan.v1` → `<prefix>cxr.scan.v1`).
    pub fn topic(&self, logical: &str) -> String {
        format!("{}{}", self.topic_prefix, logical)
    }

    /// The logical name of a physical topic (inverse of [`KafkaArgs::topic`]).
    pub fn logical<'a>(&self, physical: &'a str) -> &'a str {
        physical
            .strip_prefix(self.topic_prefix.as_str())
            .unwrap_or(physical)
    }

    /// A consumer's config: [`KafkaArgs::client_config`] plus a per-partition fetch size that
    /// holds one record of the record limit (a broker that does not return an oversized first
    /// batch anyway, KIP-74, would otherwise stall the partition behind it forever) and the
    /// study path's fetch wait. Pass-through properties win.
    pub fn consumer_config(&self) -> ClientConfig {
        self.consumer_config_for(Urgency::StudyPath)
    }

    /// [`KafkaArgs::consumer_config`] with the fetch wait of `urgency`.
    pub fn consumer_config_for(&self, urgency: Urgency) -> ClientConfig {
        self.consumer_config_with(urgency, |_| {})
    }

    /// [`KafkaArgs::consumer_config_for`] plus a consumer's own settings (`ours`: group,
    /// commits, offsets), still under the pass-through properties.
    pub fn consumer_config_with(
        &self,
        urgency: Urgency,
        ours: impl FnOnce(&mut ClientConfig),
    ) -> ClientConfig {
        self.client_config_with(|c| {
            c.set(
                "max.partition.fetch.bytes",
                self.message_limit_bytes().to_string(),
            )
            .set(
                "fetch.wait.max.ms",
                self.fetch_wait(urgency).as_millis().to_string(),
            );
            ours(c);
        })
    }

    /// `message.max.bytes` / `max.message.bytes`: the record limit plus the dead-letter headroom.
    pub fn message_limit_bytes(&self) -> u64 {
        self.max_message_bytes + DEAD_LETTER_HEADROOM
    }

    pub fn session_timeout(&self) -> Duration {
        Duration::from_millis(self.session_timeout_ms)
    }

    /// A client config with the bootstrap servers and every pass-through property.
    pub fn client_config(&self) -> ClientConfig {
        self.client_config_with(|_| {})
    }

    /// The bootstrap servers, then a client's own settings (`ours`), then every pass-through
    /// property: the one place they are applied, last, so they win over any of our defaults.
    pub fn client_config_with(&self, ours: impl FnOnce(&mut ClientConfig)) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        ours(&mut c);
        for (k, v) in &self.props {
            c.set(k, v);
        }
        c
    }

    /// The effective configuration as a person should see it at start: secrets masked.
    pub fn describe(&self) -> String {
        format!(
            "bootstrap={} schema_registry={}{}{} topic_prefix={:?} session_timeout_ms={} consumer_stall_ms={} max_message_bytes={} props=[{}]",
            self.bootstrap,
            if self.schema_registry.is_empty() {
                "static"
            } else {
                &self.schema_registry
            },
            match self.schema_registry_auth.split_once(':') {
                Some((kind, _)) => format!(" (auth {kind}:***)"),
                None if self.schema_registry_auth.is_empty() => String::new(),
                None => " (auth ***)".to_string(),
            },
            if self.schema_registry_read_only {
                " read-only"
            } else {
                ""
            },
            self.topic_prefix,
            self.session_timeout_ms,
            self.consumer_stall().as_millis(),
            self.max_message_bytes,
            mask_options(&self.props)
        )
    }
}

/// Per-service runtime settings: HTTP endpoint, logging, tracing, drain.
#[derive(Debug, Clone, Args)]
pub struct ServiceArgs {
    /// Address of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`, service routes).
    #[arg(long = "http", env = "CXRFLOW_HTTP", default_value = "127.0.0.1:0")]
    pub http: SocketAddr,

    /// Consumer group id; defaults to `cxrflow-<service>`.
    #[arg(long = "group-id", env = "CXRFLOW_GROUP_ID")]
    pub group_id: Option<String>,

    /// Records processed concurrently per service instance (backpressure bound).
    #[arg(
        long = "max-in-flight",
        env = "CXRFLOW_MAX_IN_FLIGHT",
        default_value_t = 64
    )]
    pub max_in_flight: usize,

    /// How long shutdown waits for in-flight records before giving them back uncommitted.
    #[arg(
        long = "drain-timeout-ms",
        env = "CXRFLOW_DRAIN_TIMEOUT_MS",
        default_value_t = 10_000
    )]
    pub drain_timeout_ms: u64,

    /// Who may call the HTTP routes (README, Access control).
    #[command(flatten)]
    pub auth: crate::auth::AuthArgs,

    /// HTTPS for the HTTP endpoint.
    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

impl ServiceArgs {
    /// Loopback, any port, and no authentication (said out loud: `--insecure-no-auth`): for
    /// in-process tests. `cxrflow up` and every deployment set [`ServiceArgs::auth`].
    pub fn local() -> Self {
        ServiceArgs {
            http: "127.0.0.1:0".parse().expect("static address"),
            group_id: None,
            max_in_flight: 64,
            drain_timeout_ms: 10_000,
            auth: crate::auth::AuthArgs::insecure(),
            tls: crate::tls::TlsArgs::default(),
        }
    }

    pub fn group_id(&self, service: &str) -> String {
        self.group_id
            .clone()
            .unwrap_or_else(|| format!("cxrflow-{service}"))
    }

    pub fn drain_timeout(&self) -> Duration {
        Duration::from_millis(self.drain_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fetch_wait_follows_urgency_unless_set() {
        let mut k = KafkaArgs::for_bootstrap("h:1");
        assert_eq!(k.fetch_wait(Urgency::StudyPath), Duration::from_millis(500));
        assert_eq!(
            k.fetch_wait(Urgency::Background),
            Duration::from_millis(1000)
        );
        k.fetch_wait_ms = Some(50);
        assert_eq!(k.fetch_wait(Urgency::Background), Duration::from_millis(50));
    }

    #[test]
    fn props_parse_and_secrets_are_masked() {
        assert_eq!(
            parse_key_value("a.b=c=d").unwrap(),
            ("a.b".into(), "c=d".into())
        );
        assert!(parse_key_value("novalue").is_err());
        let mut k = KafkaArgs::for_bootstrap("h:1");
        k.props = vec![
            ("sasl.password".into(), "hunter2".into()),
            ("security.protocol".into(), "SASL_SSL".into()),
        ];
        let d = k.describe();
        assert!(!d.contains("hunter2"), "{d}");
        assert!(d.contains("security.protocol=SASL_SSL"));
        assert_eq!(k.client_config().get("sasl.password"), Some("hunter2"));
    }

    #[test]
    fn tls_and_sasl_scram_settings_are_accepted_by_librdkafka() {
        // librdkafka refuses these at client creation when built without OpenSSL; the
        // workspace builds rdkafka with `ssl`, so TLS/SASL need only pass-through properties.
        let mut k = KafkaArgs::for_bootstrap("127.0.0.1:1");
        k.props = vec![
            ("security.protocol".into(), "SASL_SSL".into()),
            ("sasl.mechanism".into(), "SCRAM-SHA-512".into()),
            ("sasl.username".into(), "cxrflow".into()),
            ("sasl.password".into(), "secret".into()),
        ];
        let producer: Result<rdkafka::producer::BaseProducer, _> = k.client_config().create();
        assert!(producer.is_ok(), "{:?}", producer.err());
    }

    #[test]
    fn topic_prefix_round_trips() {
        let mut k = KafkaArgs::for_bootstrap("h:1");
        k.topic_prefix = "t1.".into();
        assert_eq!(k.topic("cxr.scan.v1"), "t1.cxr.scan.v1");
        assert_eq!(k.logical("t1.cxr.scan.v1"), "cxr.scan.v1");
    }
}
