//! `cxrflow model calibrate` on the fitted test model and the synthetic dataset, as a site would
//! run it on its own validation split: the tiers and thresholds land in the manifest, the CRITICAL
//! tier keeps to its budget on the calibration split, and the report measures a second split.

mod support;

use std::path::Path;
use std::process::Command;

use support::{cxrflow_bin, required_env};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn calibrate(model_dir: &Path, extra: &[&str]) -> serde_json::Value {
    let dataset = required_env("CXRFLOW_DATASET_ROOT");
    let out = model_dir.join("report.json");
    let status = Command::new(cxrflow_bin())
        .args(["model", "calibrate", "--model-dir"])
        .arg(model_dir)
        .arg("--dataset")
        .arg(&dataset)
        .arg("--out")
        .arg(&out)
        .args(extra)
        .status()
        .unwrap();
    assert!(status.success(), "calibrate failed: {status}");
    serde_json::from_slice(&std::fs::read(out).unwrap()).unwrap()
}

#[test]
fn calibration_writes_tiers_within_the_critical_budget_and_measures_held_out() {
    let models = required_env("CXRFLOW_MODELS_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cxr-small").join("1.0.0");
    copy_dir(&models.join("cxr-small").join("1.0.0"), &dir);

    let report = calibrate(&dir, &[]);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let tier_of = |name: &str| -> String {
        manifest["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["name"] == name)
            .unwrap()["tier"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(tier_of("Pneumothorax"), "critical");
    for f in cxrflow_contracts::URGENT_FINDINGS {
        assert_eq!(tier_of(f), "urgent", "{f}");
    }
    assert_eq!(tier_of("Support Devices"), "none");
    for f in manifest["findings"].as_array().unwrap() {
        assert_eq!(f["critical"], f["tier"] == "critical", "{f}");
        assert!(
            f["operating_point"]["images"].as_u64().unwrap() > 100,
            "{f}"
        );
    }
    let critical = &manifest["calibration"]["tiers"]["critical"];
    assert!(
        critical["flag_rate"].as_f64().unwrap() <= 0.15,
        "{critical}"
    );
    assert!(critical["flagged"].as_u64().unwrap() > 0, "{critical}");
    // Measured on held-out images the thresholds never saw.
    assert_eq!(report["evaluate_split"], "heldout");
    let held = &report["evaluate_tiers"]["critical"];
    assert!(held["images"].as_u64().unwrap() > 500, "{held}");
    assert!(held["sensitivity"].as_f64().is_some(), "{held}");

    // A tighter budget is kept too, and says the sensitivity target was given up.
    let report = calibrate(&dir, &["--critical-budget", "0.05", "--dry-run"]);
    let rate = report["tiers"]["critical"]["flag_rate"].as_f64().unwrap();
    assert!(rate <= 0.05, "{rate}");
    let pneumothorax = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["finding"] == "Pneumothorax")
        .unwrap();
    assert_eq!(pneumothorax["calibration"]["met"], false, "{pneumothorax}");
}

#[test]
fn calibration_refuses_a_finding_the_model_does_not_have() {
    let models = required_env("CXRFLOW_MODELS_DIR");
    let dataset = required_env("CXRFLOW_DATASET_ROOT");
    let out = Command::new(cxrflow_bin())
        .args([
            "model",
            "calibrate",
            "--dry-run",
            "--critical",
            "Pneumothorax,Tension",
        ])
        .arg("--model-dir")
        .arg(models.join("cxr-small").join("1.0.0"))
        .arg("--dataset")
        .arg(dataset)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"Tension\" is not one of the model's findings"),
        "{err}"
    );
}
