//! What the results tests share: decisions as triage publishes them, and DCMTK's `storescp` as
//! the PACS.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cxrflow_contracts::*;

pub const T0: i64 = 1_700_000_000_000;

pub fn finding(name: &str, p: f64, threshold: f64, critical: bool) -> FindingScore {
    FindingScore {
        finding: name.into(),
        probability: p,
        threshold,
        critical,
        urgent: false,
    }
}

/// A decision as triage publishes it, decided now.
pub fn decision(uid: &str, version: i64, tier: TriageTier) -> TriageDecision {
    let now = cxrflow_common::time::now_millis();
    let not_assessable = tier == TriageTier::NotAssessable;
    TriageDecision {
        study: StudyContext {
            site_id: "site-a".into(),
            study_instance_uid: uid.into(),
            series_instance_uid: format!("{uid}.1"),
            sop_instance_uid: format!("{uid}.1.1"),
            accession_number: Some("acc-0123".into()),
            patient_ref: "pt-0123".into(),
            modality: "CR".into(),
            view_position: Some("PA".into()),
            patient_age_years: Some(61),
            patient_sex: Some("F".into()),
            acquired_at: now - 60_000,
            published_at: now - 59_000,
            priority_hint: OrderPriority::Routine,
        },
        version,
        status: WorklistStatus::Open,
        tier,
        score: if not_assessable { 0.0 } else { 0.93 },
        deadline: now + 1_800_000,
        top_findings: if not_assessable {
            vec![]
        } else {
            vec![
                finding("Pneumothorax", 0.93, 0.42, true),
                finding("Pleural Effusion", 0.71, 0.5, false),
                finding("Cardiomegaly", 0.12, 0.5, false),
            ]
        },
        model_name: Some("cxr-small".into()),
        model_version: Some("1.2.0".into()),
        reasons: if not_assessable {
            vec!["not assessable by the model: image unlike the training data".into()]
        } else {
            vec!["critical finding Pneumothorax 0.93 >= threshold 0.42".into()]
        },
        escalations: 0,
        blob_uri: "file:///blobs/x".into(),
        decided_at: now,
        not_assessable_reason: not_assessable.then(|| "image unlike the training data".into()),
        not_assessable_code: not_assessable.then(|| "ood.distance".into()),
        read_at: None,
    }
}

/// DCMTK's Storage SCP on a free port, writing what it receives into a directory; killed on
/// drop.
pub struct StoreScp {
    child: Child,
    pub port: u16,
    pub dir: PathBuf,
}

impl StoreScp {
    pub fn start(ae: &str, port: u16, dir: &Path) -> StoreScp {
        StoreScp::spawn(ae, port, dir, &[])
    }

    /// `storescp +tls key cert`, requiring a client certificate from the CA in `ca`.
    pub fn start_tls(
        ae: &str,
        port: u16,
        dir: &Path,
        key: &Path,
        cert: &Path,
        ca: &Path,
    ) -> StoreScp {
        let tls = [
            "+tls".into(),
            key.display().to_string(),
            cert.display().to_string(),
            "+cf".into(),
            ca.display().to_string(),
            "--require-peer-cert".into(),
        ];
        StoreScp::spawn(ae, port, dir, &tls)
    }

    fn spawn(ae: &str, port: u16, dir: &Path, extra: &[String]) -> StoreScp {
        std::fs::create_dir_all(dir).unwrap();
        let child = Command::new("storescp")
            .args(["--aetitle", ae, "--output-directory"])
            .arg(dir)
            .args(extra)
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("storescp (DCMTK, from scripts/prereqs.sh)");
        let end = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < end, "storescp did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        StoreScp {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// The files received so far.
    pub fn received(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for StoreScp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a tool and returns its stdout, failing the test with its output when it exits non-zero.
pub fn output_of(mut cmd: Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?} cannot run: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}
