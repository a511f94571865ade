use super::*;
use crate::testmodel::TestModel;

fn good() -> Manifest {
    TestModel::default().manifest("m", "1.0.0", "gray224-v1")
}

fn problems(m: &Manifest) -> String {
    m.validate().expect_err("should be invalid")
}

#[test]
fn the_test_models_manifest_is_valid() {
    good().validate().unwrap();
}

#[test]
fn findings_must_be_the_canonical_fourteen_in_order() {
    let mut m = good();
    m.findings.swap(0, 1);
    assert!(problems(&m).contains("canonical order"));
    let mut m = good();
    m.findings.pop();
    assert!(problems(&m).contains("canonical order"));
    let mut m = good();
    m.findings[3].threshold = 1.5;
    assert!(problems(&m).contains("threshold of \"Lung Opacity\""));
}

#[test]
fn shape_profile_normalization_and_outputs_are_checked() {
    let mut m = good();
    m.preprocessing.width = 320;
    assert!(problems(&m).contains("preprocessing produces 320x224x1"));
    let mut m = good();
    m.preprocessing.profile_id = " ".into();
    assert!(problems(&m).contains("profile_id is empty"));
    let mut m = good();
    m.input.layout = "NHWC".into();
    m.input.dtype = "float16".into();
    let p = problems(&m);
    assert!(
        p.contains("layout") && p.contains("dtype"),
        "all problems reported: {p}"
    );
    let mut m = good();
    m.normalization.scale = 0.0;
    assert!(problems(&m).contains("normalization"));
    let mut m = good();
    m.outputs.probabilities = String::new();
    assert!(problems(&m).contains("outputs.probabilities"));
    let mut m = good();
    m.outputs.features = Some(m.outputs.probabilities.clone());
    assert!(problems(&m).contains("same output"));
}

#[test]
fn directory_loading_reports_clear_errors() {
    let root = tempfile::tempdir().unwrap();
    let err = resolve(root.path(), "absent").unwrap_err();
    assert!(matches!(err, ManifestError::NotFound { .. }), "{err}");
    TestModel::default()
        .write_dir(root.path(), "m", "1.2.0", "gray224-v1")
        .unwrap();
    TestModel::default()
        .write_dir(root.path(), "m", "1.10.0", "gray224-v1")
        .unwrap();
    assert_eq!(
        resolve(root.path(), "m").unwrap().manifest.version,
        "1.10.0",
        "newest by number"
    );
    assert_eq!(
        resolve(root.path(), "m/1.2.0").unwrap().manifest.version,
        "1.2.0"
    );
    // A manifest whose version is not its directory's.
    let dir = root.path().join("m/9.9.9");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec(&good()).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.join("model.onnx"), b"x").unwrap();
    assert!(ModelDir::load(&dir)
        .unwrap_err()
        .to_string()
        .contains("holds manifest version"));
    // Missing model file, unparsable JSON.
    std::fs::remove_file(root.path().join("m/1.2.0/model.onnx")).unwrap();
    assert!(ModelDir::load(&root.path().join("m/1.2.0"))
        .unwrap_err()
        .to_string()
        .contains("does not exist"));
    std::fs::write(root.path().join("m/1.2.0/manifest.json"), "{").unwrap();
    assert!(matches!(
        ModelDir::load(&root.path().join("m/1.2.0")).unwrap_err(),
        ManifestError::Parse { .. }
    ));
}

#[test]
fn the_shipped_manifests_validate_when_present() {
    let root = std::path::PathBuf::from(std::env::var("HOME").unwrap_or_default())
        .join(".cache/cxrflow/data/models");
    for spec in ["densenet121-synthetic", "cxr-small"] {
        if root.join(spec).exists() {
            resolve(&root, spec).unwrap_or_else(|e| panic!("{spec}: {e}"));
        }
    }
}

#[test]
fn precision_defaults_to_fp32_and_fp16_keeps_float32_io() {
    let m = good();
    let mut json = serde_json::to_value(&m).unwrap();
    json.as_object_mut().unwrap().remove("precision");
    let parsed: Manifest = serde_json::from_value(json.clone()).unwrap();
    assert_eq!(parsed.precision, Precision::Fp32, "absent: fp32");
    json["precision"] = "fp16".into();
    let fp16: Manifest = serde_json::from_value(json).unwrap();
    assert_eq!(fp16.precision, Precision::Fp16);
    assert!(fp16.validate().is_ok());
    let mut f16_io = fp16.clone();
    f16_io.input.dtype = "float16".into();
    assert!(problems(&f16_io).contains("keep_io_types"));
}
