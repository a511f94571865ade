//! `cxrflow auth`: access-control tools for operators (README, Access control).

use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum AuthCmd {
    /// Make an API key: prints the key (once; give it to the client) and appends its hashed
    /// line to the keys file (or prints the line when no file is given).
    NewKey {
        /// Who holds the key (pseudonymous, goes into audit events): `pacs-router`.
        #[arg(long)]
        name: String,
        /// Roles, comma-separated: reader, uploader, operator, metrics.
        #[arg(long, value_parser = cxrflow_common::auth::parse_roles)]
        roles: std::collections::BTreeSet<cxrflow_common::auth::Role>,
        /// Keys file to append the hashed line to (`--auth-api-keys` of the services).
        #[arg(long)]
        keys_file: Option<std::path::PathBuf>,
    },
}

pub fn run(cmd: AuthCmd) -> anyhow::Result<()> {
    match cmd {
        AuthCmd::NewKey {
            name,
            roles,
            keys_file,
        } => new_key(&name, &roles, keys_file.as_deref()),
    }
}

fn new_key(
    name: &str,
    roles: &std::collections::BTreeSet<cxrflow_common::auth::Role>,
    keys_file: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && !name.contains(char::is_whitespace),
        "--name must be one word"
    );
    anyhow::ensure!(!roles.is_empty(), "--roles: at least one role");
    let (key, line) = cxrflow_common::auth::keys::generate(name, roles);
    match keys_file {
        Some(path) => {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            writeln!(f, "{line}")?;
            eprintln!("hashed key appended to {}", path.display());
        }
        None => eprintln!("keys-file line: {line}"),
    }
    println!("{key}");
    Ok(())
}
