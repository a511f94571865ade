//! scripts/gpu-check.sh's CPU path, as CI runs it on machines without an NVIDIA GPU: the same
//! JSON the GPU path writes, with the CPU provider proven on every node of the fp32 and the fp16
//! DenseNet-121, the fp16 model agreeing with fp32 within tolerance, throughput measured, and the
//! inference service run through the embedded broker naming the CPU as its provider.
//!
//! Needs what scripts/test.sh prepares: the tools venv, ONNX Runtime, the broker and the
//! DenseNet-121 model (scripts/make-models.sh; `CXRFLOW_MODELS_DIR`).

use std::path::Path;
use std::process::Command;

#[test]
fn the_cpu_path_proves_the_provider_checks_fp16_and_measures_throughput() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpu-check.json");
    let run = Command::new(root.join("scripts/gpu-check.sh"))
        .args(["--cpu-only", "--out"])
        .arg(&out)
        .current_dir(&root)
        .output()
        .expect("scripts/gpu-check.sh runs");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(run.status.success(), "gpu-check.sh failed:\n{log}");
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).expect("the JSON is written")).unwrap();
    let cpu = "CPUExecutionProvider";

    assert_eq!(r["gpu"], false);
    assert_eq!(r["ok"], true, "{r:#}");
    assert!(r["onnxruntime"]["available_providers"]
        .as_array()
        .unwrap()
        .contains(&cpu.into()));
    for precision in ["fp32", "fp16"] {
        let p = &r["placement"][precision];
        assert_eq!(p["provider"], cpu, "{precision}: {p:#}");
        assert_eq!(p["all_on_requested"], true, "{precision}: {p:#}");
        assert!(p["nodes"][cpu].as_u64().unwrap() > 100, "{p:#}");
        assert!(p["off_requested"].as_array().unwrap().is_empty());

        let a = &r["agreement"][precision];
        let diff = a["max_abs_diff_probability"].as_f64().unwrap();
        assert!(diff <= a["tolerance"].as_f64().unwrap(), "{a:#}");
        assert_eq!(a["ok"], true);
        for batch in [1, 8] {
            let t = r["throughput"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["precision"] == precision && t["batch"] == batch)
                .unwrap_or_else(|| panic!("{precision} batch {batch} measured: {r:#}"));
            assert!(t["images_per_s"].as_f64().unwrap() > 0.0, "{t:#}");
        }
    }
    // fp32 on the CPU is the reference itself; the fp16 graph really is a different graph.
    assert_eq!(r["agreement"]["fp32"]["max_abs_diff_probability"], 0.0);
    assert!(
        r["agreement"]["fp16"]["max_abs_diff_probability"]
            .as_f64()
            .unwrap()
            > 0.0
    );

    let s = &r["service"];
    assert_eq!(s["ran"], true, "{s:#}");
    assert_eq!(s["execution_provider"], serde_json::json!([cpu]));
    assert_eq!(s["every_node_on_requested"], true);
    assert!(s["images_per_s"].as_f64().unwrap() > 0.0, "{s:#}");
    assert_eq!(s["placement"]["provider"], cpu);
}
