//! Shared helpers of the inference integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use cxrflow_common::kafka::Producer;
use cxrflow_common::{KafkaArgs, ServiceArgs};
use cxrflow_contracts::*;
use cxrflow_inference::Config;

/// The service's configuration for a test: small batches, one intra-op thread, no directory
/// polling, a short drain.
pub fn config(kafka: KafkaArgs, models: &std::path::Path, model: &str) -> Config {
    let mut cfg = Config::defaults(kafka, ServiceArgs::local());
    cfg.models_dir = models.to_path_buf();
    cfg.model = model.into();
    cfg.max_wait_ms = 50;
    cfg.max_batch = 8;
    cfg.reload_interval_ms = 0;
    cfg.intra_op_threads = 1;
    cfg.service.drain_timeout_ms = 5_000;
    cfg
}

/// Models `name` at `versions`, each with its own bias (version i scores `bias = i`).
pub fn write_versions(root: &std::path::Path, name: &str, versions: &[&str]) {
    for (i, v) in versions.iter().enumerate() {
        let m = cxrflow_inference::testmodel::TestModel {
            bias: [i as f32; 14],
            ..Default::default()
        };
        m.write_dir(root, name, v, "gray224-v1").unwrap();
    }
}

/// The ONNX Runtime library, or a panic telling how to install it.
pub fn require_ort() -> PathBuf {
    match cxrflow_inference::session::locate_runtime(None) {
        Ok(p) if p.exists() => p,
        other => panic!(
            "ONNX Runtime is needed by this test and was not found ({other:?}): run scripts/install-onnxruntime.sh or set ORT_DYLIB_PATH"
        ),
    }
}

pub use cxrflow_testkit::records::study;

/// A uniform 224×224 image of `pixel`.
pub fn image(uid: &str, pixel: u8) -> PreprocessedImage {
    PreprocessedImage {
        study: study(uid),
        blob_uri: format!("file:///blobs/{uid}"),
        sha256: "00".into(),
        profile_id: "gray224-v1".into(),
        width: 224,
        height: 224,
        channels: 1,
        pixels: vec![pixel; 224 * 224],
        frontal: true,
        assessable: true,
        not_assessable_reason: None,
        stats: ImageStats {
            mean: pixel as f64,
            std: 0.0,
            p01: 0.0,
            p05: 0.0,
            p50: 0.0,
            p95: 0.0,
            p99: 0.0,
            histogram: vec![],
            original_width: 224,
            original_height: 224,
            bits_stored: 8,
            photometric: "MONOCHROME2".into(),
        },
        preprocessed_at: 3,
        preprocess_ms: 1.0,
        not_assessable_code: None,
    }
}

pub async fn produce(kafka: &KafkaArgs, codec: &Codec, images: &[PreprocessedImage]) {
    let p = Producer::new(kafka).unwrap();
    for i in images {
        p.send(codec, i, &BTreeMap::new()).await.unwrap();
    }
}
