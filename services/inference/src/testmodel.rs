//! A generator of tiny ONNX models for tests (no Python, no binary fixtures): ONNX is protobuf,
//! so a hand-declared subset of `onnx.proto` encoded with `prost` is enough.
//!
//! The graph (opset 17): `image [N,1,H,W]` → GlobalAveragePool → Flatten → `x [N,1]`;
//! `probabilities = Sigmoid(Gemm(x, W[1,14], B[14]))` and `features = MatMul(x, F[1,16])`.
//! With [`TestModel::nan_on_black`] the first weight is +∞, so an all-black image (x = 0)
//! yields `0·∞ = NaN` while every other image still gets finite probabilities: the NaN test can
//! mix poison and good records in one batch.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::manifest::{
    Activation, FindingSpec, FindingTier, InputSpec, Manifest, Normalization, OutputNames,
    Precision, PreprocessingSpec,
};

#[derive(Clone, PartialEq, Message)]
struct ModelProto {
    #[prost(int64, tag = "1")]
    ir_version: i64,
    #[prost(string, tag = "2")]
    producer_name: String,
    #[prost(message, optional, tag = "7")]
    graph: Option<GraphProto>,
    #[prost(message, repeated, tag = "8")]
    opset_import: Vec<OperatorSetIdProto>,
}

#[derive(Clone, PartialEq, Message)]
struct OperatorSetIdProto {
    #[prost(string, tag = "1")]
    domain: String,
    #[prost(int64, tag = "2")]
    version: i64,
}

#[derive(Clone, PartialEq, Message)]
struct GraphProto {
    #[prost(message, repeated, tag = "1")]
    node: Vec<NodeProto>,
    #[prost(string, tag = "2")]
    name: String,
    #[prost(message, repeated, tag = "5")]
    initializer: Vec<TensorProto>,
    #[prost(message, repeated, tag = "11")]
    input: Vec<ValueInfoProto>,
    #[prost(message, repeated, tag = "12")]
    output: Vec<ValueInfoProto>,
}

#[derive(Clone, PartialEq, Message)]
struct NodeProto {
    #[prost(string, repeated, tag = "1")]
    input: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    output: Vec<String>,
    #[prost(string, tag = "3")]
    name: String,
    #[prost(string, tag = "4")]
    op_type: String,
    #[prost(message, repeated, tag = "5")]
    attribute: Vec<AttributeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct AttributeProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(int64, tag = "3")]
    i: i64,
    /// AttributeType: INT = 2.
    #[prost(int32, tag = "20")]
    r#type: i32,
}

#[derive(Clone, PartialEq, Message)]
struct TensorProto {
    #[prost(int64, repeated, tag = "1")]
    dims: Vec<i64>,
    /// DataType: FLOAT = 1.
    #[prost(int32, tag = "2")]
    data_type: i32,
    #[prost(float, repeated, tag = "4")]
    float_data: Vec<f32>,
    #[prost(string, tag = "8")]
    name: String,
}

#[derive(Clone, PartialEq, Message)]
struct ValueInfoProto {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(message, optional, tag = "2")]
    r#type: Option<TypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TypeProto {
    #[prost(message, optional, tag = "1")]
    tensor_type: Option<TensorTypeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorTypeProto {
    #[prost(int32, tag = "1")]
    elem_type: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
}

#[derive(Clone, PartialEq, Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "1")]
    dim: Vec<Dimension>,
}

#[derive(Clone, PartialEq, Message)]
struct Dimension {
    #[prost(int64, optional, tag = "1")]
    dim_value: Option<i64>,
    #[prost(string, optional, tag = "2")]
    dim_param: Option<String>,
}

const FLOAT: i32 = 1;
/// Width of the `features` output.
pub const FEATURES: usize = 16;

/// What the generated model looks like.
#[derive(Debug, Clone)]
pub struct TestModel {
    pub height: u32,
    pub width: u32,
    /// Gemm weights, one per finding: probability_k = sigmoid(x · weights[k] + bias[k]).
    pub weights: [f32; 14],
    pub bias: [f32; 14],
    /// First weight +∞: an all-black image (x = 0) gives NaN.
    pub nan_on_black: bool,
}

impl Default for TestModel {
    fn default() -> Self {
        let mut weights = [0f32; 14];
        let mut bias = [0f32; 14];
        for (k, (w, b)) in weights.iter_mut().zip(bias.iter_mut()).enumerate() {
            *w = (k as f32 - 6.5) * 0.5;
            *b = 0.1 * k as f32 - 0.7;
        }
        TestModel {
            height: 224,
            width: 224,
            weights,
            bias,
            nan_on_black: false,
        }
    }
}

fn dims(d: &[Option<i64>]) -> Option<TypeProto> {
    Some(TypeProto {
        tensor_type: Some(TensorTypeProto {
            elem_type: FLOAT,
            shape: Some(TensorShapeProto {
                dim: d
                    .iter()
                    .map(|v| Dimension {
                        dim_value: *v,
                        dim_param: if v.is_none() { Some("N".into()) } else { None },
                    })
                    .collect(),
            }),
        }),
    })
}

fn node(op: &str, inputs: &[&str], output: &str, attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: vec![output.to_string()],
        name: format!("{op}_{output}"),
        op_type: op.into(),
        attribute,
    }
}

fn tensor(name: &str, d: &[i64], data: Vec<f32>) -> TensorProto {
    TensorProto {
        dims: d.to_vec(),
        data_type: FLOAT,
        float_data: data,
        name: name.into(),
    }
}

impl TestModel {
    /// The x value (pooled input) the model sees for a uniform image of `pixel` under
    /// [`TestModel::manifest`]'s normalization.
    pub fn pooled(pixel: u8) -> f32 {
        pixel as f32 / 255.0
    }

    /// The probabilities the model gives for pooled value `x`, as ONNX Runtime computes them.
    pub fn expected(&self, x: f32) -> [f32; 14] {
        let mut p = [0f32; 14];
        for (k, o) in p.iter_mut().enumerate() {
            *o = 1.0 / (1.0 + (-(x * self.weights[k] + self.bias[k])).exp());
        }
        p
    }

    /// The serialized ONNX model.
    pub fn onnx_bytes(&self) -> Vec<u8> {
        let mut w = self.weights;
        if self.nan_on_black {
            w[0] = f32::INFINITY;
        }
        let feat: Vec<f32> = (1..=FEATURES).map(|i| i as f32 / FEATURES as f32).collect();
        let graph = GraphProto {
            name: "cxrflow-test".into(),
            node: vec![
                node("GlobalAveragePool", &["image"], "pooled", vec![]),
                node(
                    "Flatten",
                    &["pooled"],
                    "x",
                    vec![AttributeProto {
                        name: "axis".into(),
                        i: 1,
                        r#type: 2,
                    }],
                ),
                node("Gemm", &["x", "W", "B"], "logits", vec![]),
                node("Sigmoid", &["logits"], "probabilities", vec![]),
                node("MatMul", &["x", "F"], "features", vec![]),
            ],
            initializer: vec![
                tensor("W", &[1, 14], w.to_vec()),
                tensor("B", &[14], self.bias.to_vec()),
                tensor("F", &[1, FEATURES as i64], feat),
            ],
            input: vec![ValueInfoProto {
                name: "image".into(),
                r#type: dims(&[
                    None,
                    Some(1),
                    Some(self.height as i64),
                    Some(self.width as i64),
                ]),
            }],
            output: vec![
                ValueInfoProto {
                    name: "probabilities".into(),
                    r#type: dims(&[None, Some(14)]),
                },
                ValueInfoProto {
                    name: "features".into(),
                    r#type: dims(&[None, Some(FEATURES as i64)]),
                },
            ],
        };
        ModelProto {
            ir_version: 8,
            producer_name: "cxrflow-testmodel".into(),
            graph: Some(graph),
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 17,
            }],
        }
        .encode_to_vec()
    }

    /// A manifest for this model (profile `gray224-v1` style id `profile`, ImageNet-style [0,1]
    /// normalization, activation none, thresholds 0.5, the default CRITICAL and URGENT tiers).
    pub fn manifest(&self, name: &str, version: &str, profile: &str) -> Manifest {
        Manifest {
            name: name.into(),
            version: version.into(),
            file: "model.onnx".into(),
            input: InputSpec {
                name: "image".into(),
                layout: "NCHW".into(),
                channels: 1,
                height: self.height,
                width: self.width,
                dtype: "float32".into(),
            },
            preprocessing: PreprocessingSpec {
                profile_id: profile.into(),
                width: self.width,
                height: self.height,
                channels: 1,
                interpolation: Some("bilinear".into()),
                fit: Some("letterbox".into()),
            },
            normalization: Normalization {
                scale: 1.0 / 255.0,
                offset: 0.0,
            },
            outputs: OutputNames {
                probabilities: "probabilities".into(),
                features: Some("features".into()),
            },
            activation: Activation::None,
            precision: Precision::Fp32,
            findings: cxrflow_contracts::FINDINGS
                .iter()
                .map(|f| {
                    let tier = if cxrflow_contracts::CRITICAL_FINDINGS.contains(f) {
                        FindingTier::Critical
                    } else if cxrflow_contracts::URGENT_FINDINGS.contains(f) {
                        FindingTier::Urgent
                    } else {
                        FindingTier::None
                    };
                    FindingSpec {
                        name: f.to_string(),
                        threshold: 0.5,
                        critical: tier == FindingTier::Critical,
                        tier: Some(tier),
                        operating_point: None,
                    }
                })
                .collect(),
            training: serde_json::json!({"dataset": "none: cxrflow test model"}),
            calibration: None,
            ood: None,
        }
    }

    /// Writes `<root>/<name>/<version>/{model.onnx, manifest.json}` and returns the directory.
    pub fn write_dir(
        &self,
        root: &Path,
        name: &str,
        version: &str,
        profile: &str,
    ) -> std::io::Result<PathBuf> {
        let dir = root.join(name).join(version);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("model.onnx"), self.onnx_bytes())?;
        let manifest = serde_json::to_vec_pretty(&self.manifest(name, version, profile))
            .map_err(std::io::Error::other)?;
        // Manifest last: a directory counts as a version once its manifest exists (hot reload).
        let tmp = dir.join("manifest.json.tmp");
        std::fs::write(&tmp, manifest)?;
        std::fs::rename(tmp, dir.join("manifest.json"))?;
        Ok(dir)
    }
}
