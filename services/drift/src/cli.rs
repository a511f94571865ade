//! `cxrflow drift-reference`'s arguments: which model's reference window to drop from drift's
//! store ([`crate::reset_reference`]).

#[derive(Debug, clap::Args)]
pub struct DriftReferenceArgs {
    /// Drift's database.
    #[arg(long, env = "CXRFLOW_DRIFT_DB", default_value = ".cxrflow/drift.db")]
    pub drift_db: std::path::PathBuf,
    /// Model name.
    #[arg(long)]
    pub model: String,
    /// Only this version (default: every version of the model).
    #[arg(long)]
    pub version: Option<String>,
}
