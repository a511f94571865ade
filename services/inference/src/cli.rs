//! The operator's model commands' arguments (`cxrflow model candidate|promote|rollback`): the
//! rollout decisions this crate publishes on `cxr.models.v1` and follows.

#[derive(Debug, clap::Args)]
pub struct RolloutArgs {
    #[command(flatten)]
    pub kafka: cxrflow_common::KafkaArgs,
    /// Model name.
    #[arg(long)]
    pub model: String,
    /// Version to promote or roll back.
    #[arg(long)]
    pub version: String,
    /// Who decided (operator pseudonym).
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
    /// Why (kept in the audit trail).
    #[arg(long, default_value = "")]
    pub reason: String,
}

#[derive(Debug, clap::Args)]
pub struct CandidateArgs {
    #[command(flatten)]
    pub kafka: cxrflow_common::KafkaArgs,
    /// The candidate's version directory (`<models-dir>/<name>/<version>`, with its manifest).
    #[arg(long)]
    pub model_dir: std::path::PathBuf,
    /// `canary` serves a fraction of studies (chosen by study UID); `shadow` scores beside
    /// production and is never used by triage.
    #[arg(long, value_enum)]
    pub role: crate::CandidateRole,
    /// Canary: fraction of studies served. Shadow: fraction of studies scored.
    #[arg(long, default_value_t = 0.1)]
    pub fraction: f64,
    /// Who decided (operator pseudonym).
    #[arg(long, env = "USER", default_value = "operator")]
    pub by: String,
    /// Why (kept in the audit trail).
    #[arg(long, default_value = "")]
    pub reason: String,
}
