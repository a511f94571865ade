//! `cxrflow up`: the embedded single-machine stack. Starts the broker on loopback with on-disk
//! storage (or uses `--bootstrap`), creates the topics, runs every service as a task of this
//! process — each with its own Kafka clients and consumer group, so they still talk only
//! through the broker — synthesizes the dataset if absent, replays it, plays the readers and
//! writes the report. `--keep-running` leaves the stack up for a person to look at.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use cxrflow_common::auth::AuthArgs;
use cxrflow_common::broker::EmbeddedBroker;
use cxrflow_common::kafka::admin::{all_topics, ensure_topics};
use cxrflow_common::{BlobStoreArgs, KafkaArgs, ServiceArgs};
use cxrflow_sim::run::simulate::{simulate, SimConfig};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Where the embedded stack keeps its state: broker storage, blobs, stores, report.
    #[arg(long, env = "CXRFLOW_DATA_DIR", default_value = ".cxrflow")]
    pub data_dir: PathBuf,
    /// Use an existing Kafka cluster instead of starting the embedded broker.
    #[arg(long)]
    pub bootstrap: Option<String>,
    /// Port of the embedded broker.
    #[arg(long, default_value_t = 19092)]
    pub broker_port: u16,
    /// Partitions per topic. The embedded stack runs one replica of each service, which works
    /// on many records at once whatever the partition count, and the embedded broker re-reads
    /// every partition on each poll: idle, it spent 30 % of a core at 4 partitions, 19 % at 2.
    #[arg(long, default_value_t = 2)]
    pub partitions: i32,
    /// First HTTP port; services get consecutive ports in the order
    /// ingest, preprocess, inference, triage, feedback, drift, gateway.
    #[arg(long, default_value_t = 8080)]
    pub http_base_port: u16,
    /// Model directory root (docs/model-manifest.md).
    #[arg(long, env = "CXRFLOW_MODELS_DIR")]
    pub models_dir: PathBuf,
    /// Model to serve, `name` or `name/version`.
    #[arg(long, default_value = "cxr-small")]
    pub model: String,
    /// More API keys files accepted by every service, beside the generated
    /// `<data-dir>/api-keys` (README, Access control).
    #[arg(long = "api-keys", value_delimiter = ',')]
    pub api_keys: Vec<PathBuf>,
    /// No authentication on any route (said so in every log and `/readyz`).
    #[arg(long = "insecure-no-auth", default_value_t = false)]
    pub insecure_no_auth: bool,
    /// Keep the stack running after the report (Ctrl-C stops it).
    #[arg(long)]
    pub keep_running: bool,
    /// Consumer session timeout of every service. A `cxrflow up` killed and started again at
    /// once meets its dead predecessor's group members until their sessions end; the stages'
    /// ownership watchdog acts after the session plus 5 s (`--consumer-stall-ms` of the
    /// services). Each service's shutdown drain is kept under half of it.
    #[arg(long, env = "CXRFLOW_SESSION_TIMEOUT_MS", default_value_t = 30_000)]
    pub session_timeout_ms: u64,
    /// Skip the replay: just run the stack.
    #[arg(long)]
    pub no_replay: bool,
    /// Port of the embedded DICOM gateway (C-STORE SCP, AE title CXRFLOW, on loopback; STOW-RS
    /// on the HTTP port after drift's); 0: no gateway.
    #[arg(long, env = "CXRFLOW_UP_GATEWAY_DICOM_PORT", default_value_t = 11112)]
    pub gateway_dicom_port: u16,
    /// The gateway's pseudonymisation key; unset: a random key generated once and kept in
    /// `<data-dir>/gateway-pseudonym.key` (so pseudonyms stay stable across runs).
    #[arg(long, env = "CXRFLOW_GATEWAY_PSEUDONYM_KEY", hide_env_values = true)]
    pub gateway_pseudonym_key: Option<String>,
    #[command(flatten)]
    pub sim: SimConfig,
}

fn abs(p: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(p).with_context(|| format!("creating {}", p.display()))?;
    Ok(std::fs::canonicalize(p)?)
}

fn svc(port: u16, service: &str, kafka: &KafkaArgs, auth: &AuthArgs) -> ServiceArgs {
    let mut s = ServiceArgs::local();
    s.auth = auth.clone();
    s.http = SocketAddr::from(([127, 0, 0, 1], port));
    s.group_id = Some(format!("cxrflow-{service}"));
    s.drain_timeout_ms = s.drain_timeout_ms.min(kafka.session_timeout_ms / 2);
    s
}

async fn wait_ready(name: &str, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let end = Instant::now() + timeout;
    let http = reqwest::Client::new();
    while Instant::now() < end {
        if let Ok(r) = http.get(&url).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    anyhow::bail!("{name} not ready on {url} after {timeout:?}")
}

/// Resolves when the embedded broker has ended (never without one): the stack cannot work on.
async fn broker_exit(broker: Option<&EmbeddedBroker>) -> anyhow::Error {
    let Some(b) = broker else {
        return std::future::pending().await;
    };
    loop {
        if let Some(status) = b.exited() {
            return anyhow::anyhow!(
                "the embedded broker ended ({status}); see {}",
                b.log_path().display()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

pub async fn up(args: UpArgs, shutdown: CancellationToken) -> anyhow::Result<()> {
    let data = abs(&args.data_dir)?;
    // The embedded broker dies with this process (however it ends) and `up` refuses to start
    // when its own broker cannot serve (port taken, storage in use, broker exited at start).
    let mut broker = None;
    let bootstrap = match &args.bootstrap {
        Some(b) => b.clone(),
        None => {
            let dir = data.join("broker");
            let b =
                tokio::task::spawn_blocking(move || EmbeddedBroker::start(&dir, args.broker_port))
                    .await?
                    .context("the embedded broker did not start")?;
            let addr = b.bootstrap();
            tracing::info!(bootstrap = %addr, "embedded broker started (sqlite storage under {})", data.join("broker").display());
            broker = Some(b);
            addr
        }
    };
    let mut kafka = KafkaArgs::for_bootstrap(&bootstrap);
    kafka.session_timeout_ms = args.session_timeout_ms;
    ensure_topics(&kafka, &all_topics(), args.partitions, 1).await?;
    let blobs = format!("file://{}", abs(&data.join("blobs"))?.display());
    let dataset = std::fs::canonicalize(&args.sim.dataset).with_context(|| {
        format!(
            "dataset {} (scripts/make-test-data.sh builds one)",
            args.sim.dataset.display()
        )
    })?;

    let base = args.http_base_port;
    let auth = crate::demo_auth::prepare(&data, &args.api_keys, args.insecure_no_auth)?;
    let services = CancellationToken::new();
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();

    let mut ingest =
        cxrflow_ingest::Config::defaults(kafka.clone(), svc(base, "ingest", &kafka, &auth.args));
    ingest.blob_store = BlobStoreArgs::at(&blobs);
    ingest.ingest_db = data.join("ingest.db");
    // file:// images from the replay's dataset and from the embedded gateway, which writes the
    // received DICOM files into this same store: ingest references them, one copy at rest.
    let blob_dir = abs(&data.join("blobs"))?;
    std::fs::create_dir_all(&blob_dir)?;
    ingest.file_roots = vec![dataset.clone(), blob_dir];
    let t = services.clone();
    tasks.spawn(async move { ("ingest", cxrflow_ingest::run(ingest, t).await) });

    let mut preprocess = cxrflow_preprocess::Config::defaults(
        kafka.clone(),
        svc(base + 1, "preprocess", &kafka, &auth.args),
    );
    preprocess.blob_store = BlobStoreArgs::at(&blobs);
    let t = services.clone();
    tasks.spawn(async move { ("preprocess", cxrflow_preprocess::run(preprocess, t).await) });

    let mut inference = cxrflow_inference::Config::defaults(
        kafka.clone(),
        svc(base + 2, "inference", &kafka, &auth.args),
    );
    inference.models_dir = args.models_dir.clone();
    inference.model = args.model.clone();
    let t = services.clone();
    tasks.spawn(async move { ("inference", cxrflow_inference::run(inference, t).await) });

    let mut triage = cxrflow_triage::Config::defaults(
        kafka.clone(),
        svc(base + 3, "triage", &kafka, &auth.args),
    );
    triage.blob_store = BlobStoreArgs::at(&blobs);
    // One pooled list: the simulated readers serve every site (teleradiology).
    triage.ordering = cxrflow_triage::worklist::OrderingMode::Pooled;
    let t = services.clone();
    tasks.spawn(async move { ("triage", cxrflow_triage::run(triage, t).await) });

    let mut feedback = cxrflow_feedback::Config::defaults(
        kafka.clone(),
        svc(base + 4, "feedback", &kafka, &auth.args),
    );
    feedback.store = cxrflow_feedback::StoreUri::Sqlite(data.join("feedback.db"));
    let t = services.clone();
    tasks.spawn(async move { ("feedback", cxrflow_feedback::run(feedback, t).await) });

    let mut drift =
        cxrflow_drift::Config::defaults(kafka.clone(), svc(base + 5, "drift", &kafka, &auth.args));
    drift.drift_db = data.join("drift.db");
    let t = services.clone();
    tasks.spawn(async move { ("drift", cxrflow_drift::run(drift, t).await) });

    let mut names = vec![
        "ingest",
        "preprocess",
        "inference",
        "triage",
        "feedback",
        "drift",
    ];
    if args.gateway_dicom_port != 0 {
        let mut gateway = cxrflow_gateway::Config::defaults(
            kafka.clone(),
            svc(base + 6, "gateway", &kafka, &auth.args),
        );
        gateway.dicom_listen = SocketAddr::from(([127, 0, 0, 1], args.gateway_dicom_port));
        gateway.blob_store = Some(blobs.clone());
        gateway.pseudonym_key = Some(crate::demo_auth::gateway_key(
            &data,
            args.gateway_pseudonym_key.as_deref(),
        )?);
        let t = services.clone();
        tasks.spawn(async move { ("gateway", cxrflow_gateway::run(gateway, t).await) });
        names.push("gateway");
    }
    for (i, name) in names.iter().enumerate() {
        tokio::select! {
            r = wait_ready(name, base + i as u16, Duration::from_secs(120)) => r?,
            Some(done) = tasks.join_next() => {
                let (svc, r) = done?;
                anyhow::bail!("{svc} stopped during start-up: {:?}", r.err());
            }
        }
    }
    println!("cxrflow is up: broker {bootstrap}; worklist http://127.0.0.1:{}/ ; metrics on ports {base}..{}", base + 3, base + names.len() as u16 - 1);
    crate::demo_auth::print_how_to_use(&auth, base + 3);
    if args.gateway_dicom_port != 0 {
        println!(
            "DICOM gateway: AE CXRFLOW on 127.0.0.1:{} (C-STORE, C-ECHO); STOW-RS http://127.0.0.1:{}/studies",
            args.gateway_dicom_port,
            base + 6
        );
    }

    let outcome = if args.no_replay {
        Ok(())
    } else {
        let mut sim = args.sim.clone();
        sim.dataset = dataset;
        sim.triage_url = format!("http://127.0.0.1:{}", base + 3);
        sim.triage_api_key = auth.sim_key.clone();
        if sim.report_dir.is_relative() {
            sim.report_dir = data.join("report");
        }
        tokio::select! {
            r = simulate(&kafka, &sim, shutdown.clone()) => r.map(|report| {
                // The clinical question first, on a reading room's time scale, with this run's
                // model on this run's studies; then the live run as a pipeline check.
                // Blocking reads and seconds of simulation: off the async workers.
                match tokio::task::block_in_place(|| reading_room(&kafka, &sim)) {
                    Ok(table) => print!("{table}"),
                    Err(e) => println!("reading-room simulation skipped: {e}"),
                }
                print!("{}", summary(&report));
                println!(
                    "report: {} (all figures: {})",
                    sim.report_dir.join("report.html").display(),
                    sim.report_dir.join("report.json").display()
                );
            }).map_err(anyhow::Error::from),
            Some(done) = tasks.join_next() => {
                let (svc, r) = done?;
                Err(anyhow::anyhow!("{svc} stopped during the run: {:?}", r.err()))
            }
            e = broker_exit(broker.as_ref()) => Err(e),
        }
    };
    let outcome = if args.keep_running && outcome.is_ok() {
        println!("--keep-running: stack stays up; Ctrl-C to stop");
        tokio::select! {
            _ = shutdown.cancelled() => Ok(()),
            Some(done) = tasks.join_next() => {
                let (svc, r) = done?;
                Err(anyhow::anyhow!("{svc} stopped: {:?}", r.err()))
            }
            e = broker_exit(broker.as_ref()) => Err(e),
        }
    } else {
        outcome
    };
    services.cancel();
    while let Some(done) = tasks.join_next().await {
        if let Ok((svc, Err(e))) = done {
            tracing::error!(service = svc, error = %e, "service ended with an error");
        }
    }
    outcome
}

/// Runs the reading room on a simulated clock (`cxrflow sim reading-room`'s defaults: 7 days, 2
/// sites, 85% reader utilisation) with this run's predictions and the replayed table's labels;
/// writes `reading-room.json` and `reading-room.html` beside the report and returns the table
/// to print.
fn reading_room(
    kafka: &cxrflow_common::KafkaArgs,
    sim: &cxrflow_sim::run::simulate::SimConfig,
) -> anyhow::Result<String> {
    use clap::Parser;
    use cxrflow_contracts::{topics, Codec, Prediction};
    use std::io::Write;
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        room: cxrflow_sim::reading_room::RoomConfig,
    }
    let codec = Codec::with_static_registry()?;
    let records = cxrflow_common::kafka::read::snapshot(
        kafka,
        topics::PREDICTIONS,
        std::time::Duration::from_secs(60),
    )?;
    std::fs::create_dir_all(&sim.report_dir)?;
    let predictions = sim.report_dir.join("predictions.jsonl");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&predictions)?);
    for r in records {
        if let Some(p) = r.payload.and_then(|b| codec.decode::<Prediction>(&b).ok()) {
            writeln!(out, "{}", serde_json::to_string(&p)?)?;
        }
    }
    out.flush()?;
    drop(out);
    let dataset = cxrflow_sim::dataset::open_dataset(&sim.dataset)?;
    let mut room = Defaults::try_parse_from(["reading-room"])?.room;
    room.predictions = Some(predictions);
    room.labels = Some(dataset.dir.join(&sim.table));
    let (report, _) = cxrflow_sim::reading_room::simulate_room(&room)?;
    std::fs::write(
        sim.report_dir.join("reading-room.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(
        sim.report_dir.join("reading-room.html"),
        cxrflow_sim::reading_room::html::render(&report),
    )?;
    Ok(format!(
        "\nReading room on a simulated clock ({} days, {} sites, {:.0}% reader utilisation; this run's model on its {} studies, AUROC {}):\n{}",
        room.days,
        room.sites,
        100.0 * room.utilisation,
        report.pool_studies,
        report
            .pool_auroc
            .map_or_else(|| "n/a".to_string(), |a| format!("{a:.2}")),
        cxrflow_sim::reading_room::render_table(&report)
    ))
}

/// The few lines a person reads at the end of a run; everything else is in the report files.
pub fn summary(r: &cxrflow_sim::report::Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{} studies published, {} on the worklist, {} read ({} duplicate entries, {} dead letters) in {:.0} s",
        r.studies_published,
        r.studies_on_worklist,
        r.studies_read,
        r.duplicate_worklist_entries,
        r.dead_letters,
        r.duration_s
    );
    let l = &r.e2e_latency;
    let _ = writeln!(
        out,
        "scan -> AI decision: p50 {:.0} ms, p99 {:.0} ms ({} studies)",
        l.p50_ms, l.p99_ms, l.n
    );
    for w in &r.time_to_read {
        let _ = writeln!(
            out,
            "wait, {}: mean {:.1} s with AI triage vs {:.1} s in arrival order (max {:.1} vs {:.1} s)",
            w.group,
            w.ai_triage.mean_ms / 1e3,
            w.fifo.mean_ms / 1e3,
            w.ai_triage.max_ms / 1e3,
            w.fifo.max_ms / 1e3
        );
    }
    let _ = writeln!(
        out,
        "(seconds-scale waits of a live replay: a pipeline check, not a clinical estimate; `cxrflow sim reading-room` simulates days of reading)"
    );
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_summary_is_a_few_lines_not_the_report() {
        let facts = cxrflow_sim::report::RunFacts {
            published: 3,
            on_worklist: 3,
            latency_ms: vec![300.0, 400.0, 500.0],
            duration_s: 12.0,
            ..Default::default()
        };
        let text = super::summary(&cxrflow_sim::report::build(&facts));
        assert!(
            text.contains("3 studies published, 3 on the worklist"),
            "{text}"
        );
        assert!(text.contains("scan -> AI decision: p50 400 ms"), "{text}");
        assert!(text.contains("not a clinical estimate"), "{text}");
        assert!(text.lines().count() < 12, "{text}");
    }
}
