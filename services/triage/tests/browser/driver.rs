//! The browser side of the worklist test: a `chromedriver` started on a free port driving a
//! headless Debian Chromium with a throwaway profile, and a [`Page`] that reads the worklist
//! page's DOM with a deadline and saves screenshots.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxrflow_testkit::free_port;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};

/// How long the page may take to show what the service already knows.
const PAGE_DEADLINE: Duration = Duration::from_secs(15);

/// `<target>/test-artifacts`, created.
pub fn artifacts_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| {
            if t.is_relative() {
                workspace.join(t)
            } else {
                t
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create test-artifacts dir");
    dir
}

/// A `chromedriver` on a free loopback port, killed on drop, starting `chromium`.
pub struct ChromeDriver {
    child: Child,
    url: String,
    chromium: PathBuf,
    _profile: tempfile::TempDir,
    profile_dir: PathBuf,
}

impl ChromeDriver {
    pub async fn start(binary: &Path, chromium: &Path, log: &Path) -> ChromeDriver {
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!("--port={port}"))
            .arg(format!("--log-path={}", log.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn chromedriver");
        let profile = tempfile::tempdir().expect("profile dir");
        let profile_dir = profile.path().to_path_buf();
        let driver = ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            chromium: chromium.to_path_buf(),
            _profile: profile,
            profile_dir,
        };
        let http = reqwest::Client::new();
        let status = format!("{}/status", driver.url);
        cxrflow_testkit::eventually(Duration::from_secs(10), "chromedriver ready", || async {
            match http.get(&status).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            }
        })
        .await;
        driver
    }

    pub async fn browser(&self) -> Client {
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--window-size=1280,1200",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", self.profile_dir.display())])
        .collect::<Vec<_>>();
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": { "binary": self.chromium, "args": args },
            "goog:loggingPrefs": { "browser": "ALL" },
        });
        let Value::Object(caps) = caps else {
            unreachable!("capabilities are an object")
        };
        ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .expect("a Chromium session through chromedriver")
    }

    /// The page's console messages at level SEVERE (JS errors, failed loads), through
    /// chromedriver's log endpoint.
    pub async fn severe_console_entries(&self, browser: &Client) -> Vec<String> {
        let session = browser
            .session_id()
            .await
            .ok()
            .flatten()
            .expect("session id");
        let logs: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.url))
            .json(&json!({ "type": "browser" }))
            .send()
            .await
            .expect("chromedriver log endpoint")
            .json()
            .await
            .expect("log entries");
        logs["value"]
            .as_array()
            .expect("log entries are a list")
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the page shows, read in the browser.
pub struct Page<'a> {
    pub browser: &'a Client,
    pub shots: PathBuf,
}

impl Page<'_> {
    /// Fills the sign-in form (served with a 401 to a browser without a session) and submits.
    pub async fn sign_in(&self, key: &str) {
        let field = self
            .browser
            .find(Locator::Id("credential"))
            .await
            .expect("the sign-in form");
        field.send_keys(key).await.unwrap();
        self.browser
            .find(Locator::Id("signin"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }

    /// Chooses the option of value `value` in the `<select>` whose id is `id`.
    pub async fn select(&self, id: &str, value: &str) {
        self.browser
            .find(Locator::Id(id))
            .await
            .unwrap_or_else(|e| panic!("no <select id={id}>: {e}"))
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("<select id={id}> has no option {value:?}: {e}"));
    }

    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.browser.screenshot().await.expect("screenshot");
        let path = self.shots.join(format!("triage-worklist{name}.png"));
        std::fs::write(&path, png).expect("write screenshot");
        path
    }

    /// Evaluates `script` (a function body returning JSON) until `ok` accepts its value, or
    /// fails after [`PAGE_DEADLINE`] with the last value and a screenshot.
    pub async fn until(&self, what: &str, script: &str, ok: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + PAGE_DEADLINE;
        let mut last = Value::Null;
        while Instant::now() < end {
            match self.browser.execute(script, vec![]).await {
                Ok(v) if ok(&v) => return v,
                Ok(v) => last = v,
                Err(e) => last = Value::String(format!("script failed: {e}")),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let shot = self.screenshot("-failure").await;
        panic!(
            "timed out after {PAGE_DEADLINE:?} waiting for the page to show {what}; last: {last}; \
             screenshot: {}",
            shot.display()
        );
    }

    /// The worklist rows top to bottom: `[uid, tier, status cell text]`.
    pub async fn rows_until(
        &self,
        what: &str,
        ok: impl Fn(&[(String, String, String)]) -> bool,
    ) -> Vec<(String, String, String)> {
        const ROWS: &str = "return [...document.querySelectorAll('#rows tr.study')]
            .map(tr => [tr.dataset.uid, tr.dataset.tier, tr.cells[8].textContent.trim()]);";
        let parse = |v: &Value| -> Vec<(String, String, String)> {
            serde_json::from_value(v.clone()).unwrap_or_default()
        };
        parse(&self.until(what, ROWS, |v| ok(&parse(v))).await)
    }

    /// The studies whose row carries the "age unknown" badge, in page order; the badge's text
    /// and hover words are checked on each.
    pub async fn age_badges(&self) -> Vec<String> {
        const BADGES: &str = "return [...document.querySelectorAll('#rows tr.study .badge.age')]
            .map(b => [b.closest('tr').dataset.uid, b.textContent, b.title]);";
        let found: Vec<(String, String, String)> =
            serde_json::from_value(self.browser.execute(BADGES, vec![]).await.unwrap()).unwrap();
        for (uid, text, title) in &found {
            assert_eq!(text, "age unknown", "{uid}");
            assert!(
                title.starts_with("no patient age in the image header"),
                "{uid}: {title}"
            );
        }
        found.into_iter().map(|(uid, ..)| uid).collect()
    }

    pub async fn text_until(&self, what: &str, id: &str, ok: impl Fn(&str) -> bool) -> String {
        let script = format!("return document.getElementById('{id}').textContent;");
        let v = self
            .until(what, &script, |v| v.as_str().is_some_and(&ok))
            .await;
        v.as_str().unwrap_or_default().to_string()
    }
}
