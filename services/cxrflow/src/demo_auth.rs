//! The secrets `cxrflow up` makes for itself, none with a default: an API key generated at
//! first start, kept hashed in the data directory (the plain key is printed once, never
//! stored), a key for this run's simulated readers (regenerated at every start, so it dies
//! with the run), and the embedded gateway's pseudonymisation key.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cxrflow_common::auth::{keys, AuthArgs, Role};

/// What the services and the simulator of one `up` run use.
pub struct DemoAuth {
    pub args: AuthArgs,
    /// The plain key of the simulated readers (reader role).
    pub sim_key: String,
    /// The plain demo key, only on the start that created it.
    pub new_demo_key: Option<String>,
    pub keys_file: PathBuf,
}

fn write_private(path: &Path, text: &str, create_new: bool) -> anyhow::Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true);
    if create_new {
        opts.create_new(true);
    } else {
        opts.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    opts.open(path)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .with_context(|| format!("writing {}", path.display()))
}

/// Sets up the keys under `data`; `extra` keys files are accepted too; `insecure` turns
/// authentication off (said so by every service).
pub fn prepare(data: &Path, extra: &[PathBuf], insecure: bool) -> anyhow::Result<DemoAuth> {
    let keys_file = data.join("api-keys");
    if insecure {
        return Ok(DemoAuth {
            args: AuthArgs::insecure(),
            sim_key: String::new(),
            new_demo_key: None,
            keys_file,
        });
    }
    let mut new_demo_key = None;
    if !keys_file.exists() {
        let (key, line) = keys::generate("demo", &Role::ALL.into_iter().collect());
        write_private(
            &keys_file,
            &format!("# cxrflow API keys: sha256:<hash> <name> <roles>; `cxrflow auth new-key` adds one\n{line}\n"),
            true,
        )?;
        new_demo_key = Some(key);
    }
    let run_file = data.join("run-api-keys");
    let (sim_key, line) =
        keys::generate("simulated-readers", &[Role::Reader].into_iter().collect());
    write_private(&run_file, &format!("{line}\n"), false)?;
    let mut files = vec![keys_file.clone(), run_file];
    files.extend(extra.iter().cloned());
    Ok(DemoAuth {
        args: AuthArgs::with_keys(files),
        sim_key,
        new_demo_key,
        keys_file,
    })
}

/// Tells the person at the terminal how to get in.
pub fn print_how_to_use(auth: &DemoAuth, triage_port: u16) {
    if auth.args.insecure_no_auth {
        println!("INSECURE: --insecure-no-auth: every route answers anyone who reaches the port");
        return;
    }
    match &auth.new_demo_key {
        Some(key) => println!(
            "API key (shown once; stored hashed in {file}; roles reader, uploader, operator, metrics):\n  {key}\n\
             page: http://127.0.0.1:{triage_port}/ (paste the key to sign in)\n\
             curl: curl -H 'Authorization: Bearer {key}' http://127.0.0.1:{triage_port}/worklist",
            file = auth.keys_file.display()
        ),
        None => println!(
            "API keys: {} (hashed; a lost key: delete the file for a new one at the next start, or add one with `cxrflow auth new-key`)",
            auth.keys_file.display()
        ),
    }
}

/// The embedded gateway's key: the configured one, else one generated once for this data dir.
pub fn gateway_key(data: &Path, configured: Option<&str>) -> anyhow::Result<String> {
    if let Some(k) = configured.filter(|k| !k.is_empty()) {
        return Ok(k.to_string());
    }
    let path = data.join("gateway-pseudonym.key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        let k = k.trim().to_string();
        if !k.is_empty() {
            return Ok(k);
        }
    }
    let key = hex::encode(rand::random::<[u8; 32]>());
    write_private(&path, &key, true)?;
    Ok(key)
}
