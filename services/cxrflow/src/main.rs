//! `cxrflow`: one binary, one subcommand per service, plus `up` (the embedded single-machine
//! stack), `sim` (the simulator), `topics`, `dlq` and `model`.

use clap::{Parser, Subcommand};
use cxrflow_common::telemetry::{self, LogFormat};

mod dlq;

#[derive(Debug, Parser)]
#[command(name = "cxrflow", version, about = "Streaming triage of chest X-rays on Kafka")]
struct Cli {
    /// Log format: pretty for a terminal, json for production.
    #[arg(long, global = true, env = "CXRFLOW_LOG_FORMAT", value_enum, default_value = "pretty")]
    log_format: LogFormat,
    /// OTLP/HTTP traces endpoint (e.g. http://collector:4318/v1/traces); empty: no export.
    #[arg(long, global = true, env = "CXRFLOW_OTLP_ENDPOINT", default_value = "")]
    otlp_endpoint: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
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

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async move {
        let _guard = telemetry::init("cxrflow", cli.log_format, Some(&cli.otlp_endpoint))?;
        match cli.command {
            Command::Topics {
                cmd: TopicsCmd::Create { kafka, partitions, replication },
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
        }
    })
}
