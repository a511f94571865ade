//! `cxrflow`: one binary, one subcommand per service, plus `up` (the embedded single-machine
//! stack), `sim` (the simulator), `topics`, `dlq`, `model` and `drift-reference`.

use clap::{Args, Parser, Subcommand};
use cxrflow_common::shutdown;
use cxrflow_common::telemetry::{self, LogFormat};

use cxrflow::{auth_cmd, dlq, sim, up};

#[derive(Debug, Parser)]
#[command(
    name = "cxrflow",
    version,
    about = "Streaming triage of chest X-rays on Kafka"
)]
struct Cli {
    /// Log format: pretty for a terminal, json for production.
    #[arg(
        long,
        global = true,
        env = "CXRFLOW_LOG_FORMAT",
        value_enum,
        default_value = "pretty"
    )]
    log_format: LogFormat,
    /// OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); empty: no export.
    #[arg(long, global = true, env = "CXRFLOW_OTLP_ENDPOINT", default_value = "")]
    otlp_endpoint: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(clippy::large_enum_variant)]
enum Command {
    /// DICOM C-STORE SCP and STOW-RS → cxr.scan.v1: store the file once, pseudonymise the
    /// patient, publish a scan event, answer success only once Kafka has it.
    Gateway(Box<cxrflow_gateway::Config>),
    /// cxr.scan.v1 → cxr.ingested.v1: validate, fetch, store once, dedup.
    Ingest(cxrflow_ingest::Config),
    /// cxr.ingested.v1 → cxr.preprocessed.v1: decode, gate, resize, statistics.
    Preprocess(cxrflow_preprocess::Config),
    /// cxr.preprocessed.v1 → cxr.predictions.v1: ONNX Runtime, micro-batching, rollouts.
    Inference(cxrflow_inference::Config),
    /// cxr.predictions.v1 + cxr.feedback.v1 → cxr.triage.v1: the worklist.
    Triage(cxrflow_triage::Config),
    /// cxr.feedback.v1 + cxr.predictions.v1 → cxr.labeled.v1; `feedback export` writes CSV.
    Feedback(FeedbackArgs),
    /// Drift detection → cxr.drift.v1.
    Drift(cxrflow_drift::Config),
    /// cxr.triage.v1 → the PACS (DICOM SR by C-STORE) and the EHR (FHIR R4 DiagnosticReport).
    Results(cxrflow_results::Config),
    /// Reference consumer of cxr.drift.v1 that triggers retraining.
    RetrainTrigger(cxrflow_drift::TriggerConfig),
    /// Replace drift's reference window for a model (it collects a new one).
    DriftReference(cxrflow_drift::cli::DriftReferenceArgs),
    /// Model rollout decisions on cxr.models.v1.
    Model {
        #[command(subcommand)]
        cmd: ModelCmd,
    },
    /// The embedded single-machine stack: broker, stores, every service, replay and report.
    Up(Box<up::UpArgs>),
    /// The simulator: synthesize a CheXpert-format dataset, or replay one against a stack.
    Sim {
        #[command(subcommand)]
        cmd: sim::SimCmd,
    },
    /// Topic administration.
    Topics {
        #[command(subcommand)]
        cmd: TopicsCmd,
    },
    /// Dead-letter topic tools.
    Dlq {
        #[command(subcommand)]
        cmd: DlqCmd,
    },
    /// Access-control tools.
    Auth {
        #[command(subcommand)]
        cmd: auth_cmd::AuthCmd,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
struct FeedbackArgs {
    #[command(subcommand)]
    cmd: Option<FeedbackCmd>,
    #[command(flatten)]
    cfg: cxrflow_feedback::Config,
}

#[derive(Debug, Subcommand)]
enum FeedbackCmd {
    /// Write labeled examples as a CheXpert-style CSV.
    Export(cxrflow_feedback::export::ExportArgs),
}

#[derive(Debug, Subcommand)]
enum ModelCmd {
    /// Put a candidate version beside production, as canary or shadow. Named `candidate`, not
    /// `stage`, which is the name of the services' consumer runtime; `stage` still parses.
    #[command(alias = "stage")]
    Candidate(cxrflow_inference::cli::CandidateArgs),
    /// Make a version the production model.
    Promote(cxrflow_inference::cli::RolloutArgs),
    /// Withdraw a version (canary or shadow) or go back from it.
    Rollback(cxrflow_inference::cli::RolloutArgs),
    /// Choose the worklist tiers' thresholds on a labelled split (default: valid) to their
    /// targets, the CRITICAL tier held to its budget; write them into the version's manifest
    /// and report tier sizes, sensitivity and PPV.
    Calibrate(cxrflow::calibrate::CalibrateArgs),
    /// Fit the out-of-distribution gate's reference on a dataset split (default: valid) and
    /// write it into the version's manifest.
    CalibrateOod(cxrflow::ood::CalibrateArgs),
    /// Measure the OOD and eligibility gates: a corpus of images the model must refuse
    /// against a held-out chest split that must pass; JSON report.
    OodEval(cxrflow::ood::EvalArgs),
}

#[derive(Debug, Subcommand)]
enum TopicsCmd {
    /// Create every cxrflow topic (compaction for the worklist and model control).
    Create {
        #[command(flatten)]
        kafka: cxrflow_common::KafkaArgs,
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication: i32,
    },
}

#[derive(Debug, Subcommand)]
enum DlqCmd {
    /// Re-publish dead-lettered records to their source topic (after a fix).
    Replay(dlq::ReplayArgs),
}

async fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Gateway(cfg) => cxrflow_gateway::run(*cfg, shutdown::on_signal()).await,
        Command::Ingest(cfg) => cxrflow_ingest::run(cfg, shutdown::on_signal()).await,
        Command::Preprocess(cfg) => cxrflow_preprocess::run(cfg, shutdown::on_signal()).await,
        Command::Inference(cfg) => cxrflow_inference::run(cfg, shutdown::on_signal()).await,
        Command::Triage(cfg) => cxrflow_triage::run(cfg, shutdown::on_signal()).await,
        Command::Feedback(FeedbackArgs { cmd: None, cfg }) => {
            cxrflow_feedback::run(cfg, shutdown::on_signal()).await
        }
        Command::Feedback(FeedbackArgs {
            cmd: Some(FeedbackCmd::Export(args)),
            ..
        }) => {
            let n = cxrflow_feedback::export::export(&args).await?;
            eprintln!("exported {n} labeled examples");
            Ok(())
        }
        Command::Drift(cfg) => cxrflow_drift::run(cfg, shutdown::on_signal()).await,
        Command::Results(cfg) => cxrflow_results::run(cfg, shutdown::on_signal()).await,
        Command::RetrainTrigger(cfg) => {
            cxrflow_drift::run_retrain_trigger(cfg, shutdown::on_signal()).await
        }
        Command::DriftReference(a) => {
            cxrflow_drift::reset_reference(&a.drift_db, &a.model, a.version.as_deref())?;
            println!(
                "drift reference for {} reset; a new one is collected from the next studies",
                a.model
            );
            Ok(())
        }
        Command::Model {
            cmd: ModelCmd::Calibrate(a),
        } => tokio::task::spawn_blocking(move || cxrflow::calibrate::calibrate(&a)).await?,
        Command::Model {
            cmd: ModelCmd::CalibrateOod(a),
        } => tokio::task::spawn_blocking(move || cxrflow::ood::calibrate(&a)).await?,
        Command::Model {
            cmd: ModelCmd::OodEval(a),
        } => tokio::task::spawn_blocking(move || cxrflow::ood::evaluate(&a)).await?,
        Command::Model { cmd } => {
            let decision = match cmd {
                ModelCmd::Candidate(a) => {
                    cxrflow_inference::stage_model_dir(
                        &a.kafka,
                        &a.model_dir,
                        a.role,
                        a.fraction,
                        &a.by,
                        &a.reason,
                    )
                    .await?
                }
                ModelCmd::Promote(a) => {
                    cxrflow_inference::rollout::promote(
                        &a.kafka, &a.model, &a.version, &a.by, &a.reason,
                    )
                    .await?
                }
                ModelCmd::Rollback(a) => {
                    cxrflow_inference::rollout::rollback(
                        &a.kafka, &a.model, &a.version, &a.by, &a.reason,
                    )
                    .await?
                }
                ModelCmd::Calibrate(_) | ModelCmd::CalibrateOod(_) | ModelCmd::OodEval(_) => {
                    unreachable!("handled above")
                }
            };
            println!(
                "{}: production {} (revision {}), candidates {:?}",
                decision.model_name,
                decision.production_version,
                decision.revision,
                decision.candidates
            );
            Ok(())
        }
        Command::Up(args) => up::up(*args, shutdown::on_signal()).await,
        Command::Sim { cmd } => sim::run(cmd, shutdown::on_signal()).await,
        Command::Topics {
            cmd:
                TopicsCmd::Create {
                    kafka,
                    partitions,
                    replication,
                },
        } => {
            cxrflow_common::kafka::admin::ensure_topics(
                &kafka,
                &cxrflow_common::kafka::admin::all_topics(),
                partitions,
                replication,
            )
            .await?;
            println!("topics ready");
            Ok(())
        }
        Command::Dlq {
            cmd: DlqCmd::Replay(args),
        } => dlq::replay(args).await,
        Command::Auth { cmd } => auth_cmd::run(cmd),
    }
}

/// Orchestrators often render an unset optional setting as an empty variable
/// (`CXRFLOW_KAFKA_PROPS=""` from a Helm value or `${VAR:-}` in compose); to cxrflow an empty
/// `CXRFLOW_…` variable means "not set", as an absent one does, instead of an empty list item
/// that fails to parse. Runs before any thread exists.
fn unset_empty_settings() {
    let empty: Vec<std::ffi::OsString> = std::env::vars_os()
        .filter(|(k, v)| v.is_empty() && k.to_string_lossy().starts_with("CXRFLOW_"))
        .map(|(k, _)| k)
        .collect();
    for k in empty {
        std::env::remove_var(k);
    }
}

fn main() -> anyhow::Result<()> {
    unset_empty_settings();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let _guard = telemetry::init(
            service_name(&cli.command),
            cli.log_format,
            Some(&cli.otlp_endpoint),
        )?;
        dispatch(cli.command).await
    })
}

/// The `service.name` a process reports in traces: one per service, so a study's trace shows
/// which service each span came from (the embedded stack is one process: `cxrflow-up`).
fn service_name(command: &Command) -> &'static str {
    match command {
        Command::Gateway(_) => "cxrflow-gateway",
        Command::Ingest(_) => "cxrflow-ingest",
        Command::Preprocess(_) => "cxrflow-preprocess",
        Command::Inference(_) => "cxrflow-inference",
        Command::Triage(_) => "cxrflow-triage",
        Command::Feedback(_) => "cxrflow-feedback",
        Command::Drift(_) => "cxrflow-drift",
        Command::Results(_) => "cxrflow-results",
        Command::RetrainTrigger(_) => "cxrflow-retrain-trigger",
        Command::Up(_) => "cxrflow-up",
        _ => "cxrflow",
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn every_subcommand_parses_its_flags_consistently() {
        // clap checks every subcommand's arguments (unique ids, valid defaults) here, the
        // same checks that would otherwise panic on `cxrflow <cmd> --help` at run time.
        super::Cli::command().debug_assert();
    }

    #[test]
    fn an_empty_setting_is_an_unset_one() {
        use clap::Parser;
        std::env::set_var("CXRFLOW_KAFKA_PROPS", "");
        std::env::set_var("CXRFLOW_BLOB_STORE_OPTIONS", "");
        assert!(super::Cli::try_parse_from(["cxrflow", "preprocess"]).is_err());
        super::unset_empty_settings();
        let cli = super::Cli::try_parse_from(["cxrflow", "preprocess"]);
        assert!(cli.is_ok(), "{:?}", cli.err());
    }

    #[test]
    fn inference_sessions_are_bounded_and_the_old_drift_flag_still_parses() {
        use clap::Parser;
        let parse = |args: &[&str]| super::Cli::try_parse_from(args).map(|c| c.command);
        match parse(&["cxrflow", "inference", "--sessions", "2"]) {
            Ok(super::Command::Inference(c)) => assert_eq!(c.sessions, 2),
            other => panic!("{:?}", other.err()),
        }
        assert!(parse(&["cxrflow", "inference", "--sessions", "0"]).is_err());
        // `--drift-join-capacity` was renamed when drift stopped joining the preprocessed
        // stream; deployments that set it keep working.
        match parse(&["cxrflow", "drift", "--drift-join-capacity", "5"]) {
            Ok(super::Command::Drift(c)) => assert_eq!(c.dedup_capacity, 5),
            other => panic!("{:?}", other.err()),
        }
    }

    #[test]
    fn a_candidate_is_put_beside_production_by_its_new_name_and_its_documented_old_one() {
        use clap::Parser;
        for name in ["candidate", "stage"] {
            let cli = super::Cli::try_parse_from([
                "cxrflow",
                "model",
                name,
                "--model-dir",
                "/m/cxr-small/2",
                "--role",
                "canary",
            ]);
            match cli.map(|c| c.command) {
                Ok(super::Command::Model {
                    cmd: super::ModelCmd::Candidate(a),
                }) => assert_eq!(a.model_dir, std::path::Path::new("/m/cxr-small/2")),
                other => panic!("{name}: {:?}", other.err()),
            }
        }
    }
}
