//! API keys for tests that are about access control or that run a service as deployed: a
//! keys file with one key per role (and one with every role), and clients that send them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cxrflow_common::auth::{keys, AuthArgs, Role};

pub struct TestKeys {
    _dir: tempfile::TempDir,
    pub file: PathBuf,
    by_role: BTreeMap<Role, String>,
    all: String,
}

impl Default for TestKeys {
    fn default() -> Self {
        Self::new()
    }
}

impl TestKeys {
    /// Keys named after their role (`reader`, …) plus `all` with every role.
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut lines = String::new();
        let mut by_role = BTreeMap::new();
        for r in Role::ALL {
            let (key, line) = keys::generate(r.as_str(), &[r].into_iter().collect());
            lines.push_str(&line);
            lines.push('\n');
            by_role.insert(r, key);
        }
        let (all, line) = keys::generate("all", &Role::ALL.into_iter().collect());
        lines.push_str(&line);
        lines.push('\n');
        let file = dir.path().join("api-keys");
        std::fs::write(&file, lines).expect("keys file");
        TestKeys {
            _dir: dir,
            file,
            by_role,
            all,
        }
    }

    /// The key holding only `role`.
    pub fn key(&self, role: Role) -> &str {
        &self.by_role[&role]
    }

    /// The key holding every role.
    pub fn all(&self) -> &str {
        &self.all
    }

    /// Service flags accepting these keys.
    pub fn auth_args(&self) -> AuthArgs {
        AuthArgs::with_keys(vec![self.file.clone()])
    }

    /// A client that sends `key` on every request.
    pub fn client(key: &str) -> reqwest::Client {
        let mut h = reqwest::header::HeaderMap::new();
        let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
            .expect("a key is a header value");
        h.insert(reqwest::header::AUTHORIZATION, v);
        reqwest::Client::builder()
            .default_headers(h)
            .build()
            .expect("http client")
    }
}
