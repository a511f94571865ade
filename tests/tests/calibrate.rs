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

/// `cxrflow model calibrate-ood` fits the frontal reference and the lateral one on the
/// validation split, and `ood-eval` measures them on the held-out split: every lateral given
/// without a view is refused (by distance or as lateral-looking), few frontal films are, and a
/// corpus image (a scikit-image photograph as PNG, no view) is refused.
#[test]
fn the_ood_references_refuse_laterals_without_a_view_and_keep_frontal_films() {
    let models = required_env("CXRFLOW_MODELS_DIR");
    let dataset = required_env("CXRFLOW_DATASET_ROOT");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("cxr-small").join("1.0.0");
    copy_dir(&models.join("cxr-small").join("1.0.0"), &dir);
    let status = Command::new(cxrflow_bin())
        .args(["model", "calibrate-ood", "--model-dir"])
        .arg(&dir)
        .arg("--dataset")
        .arg(&dataset)
        .status()
        .unwrap();
    assert!(status.success(), "calibrate-ood failed: {status}");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let lateral = &manifest["ood"]["lateral"];
    let limit = lateral["limit"].as_f64().expect("a lateral limit");
    assert!(limit > 0.0 && limit < 1.5, "{limit}");
    assert!(lateral["images"].as_u64().unwrap() >= 20, "{lateral}");

    let corpus = tmp.path().join("corpus");
    std::fs::create_dir_all(corpus.join("photos")).unwrap();
    let mut photo = Command::new(cxrflow_testkit::tools_python());
    photo
        .args([
            "-c",
            "import sys, skimage; from PIL import Image; \
             Image.fromarray(skimage.data.camera()).save(sys.argv[1])",
        ])
        .arg(corpus.join("photos").join("camera.png"));
    cxrflow_testkit::run_tool(photo);
    let out = tmp.path().join("ood-eval.json");
    let status = Command::new(cxrflow_bin())
        .args(["model", "ood-eval", "--model-dir"])
        .arg(&dir)
        .arg("--dataset")
        .arg(&dataset)
        .arg("--corpus")
        .arg(&corpus)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "ood-eval failed: {status}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let count = |k: &str, f: &str| r[k][f].as_u64().unwrap();
    let laterals = count("heldout_lateral_without_view", "images");
    assert!(laterals >= 20, "{r}");
    assert_eq!(
        count("heldout_lateral_without_view", "refused"),
        laterals,
        "every lateral without a view refused: {}",
        r["heldout_lateral_without_view"]
    );
    assert!(
        r["heldout_lateral_without_view"]["by"]["ood.lateral"].as_u64() > Some(0),
        "some by the lateral reference alone: {}",
        r["heldout_lateral_without_view"]
    );
    let frontal = count("heldout_frontal_without_view", "images");
    assert_eq!(frontal, count("heldout", "images"));
    assert!(
        count("heldout_frontal_without_view", "refused") * 100 <= frontal,
        "at most 1 % of frontal films without a view refused: {}",
        r["heldout_frontal_without_view"]
    );
    assert_eq!(count("heldout", "refused"), {
        let by = &r["heldout_frontal_without_view"]["by"];
        by["ood.distance"].as_u64().unwrap_or(0)
    });
    assert_eq!(r["corpus"]["photos"]["refused"], 1, "{r}");
}
