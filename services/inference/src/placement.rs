//! Which execution provider ran each node of a graph, read from an ONNX Runtime profile, and
//! the verdict a replica reports: one provider only when *every* compute node ran there.
//!
//! Why so strict: ONNX Runtime assigns each node to the first registered provider that has a
//! kernel for it and silently gives the rest to the CPU. A CUDA session whose convolutions run
//! on the GPU but whose one unsupported op runs on the CPU pays a device-to-host copy and back
//! at that node on every batch; naming such a session "CUDA" hides the cost. So a graph split
//! between providers is reported as [`MIXED`], with the nodes that are off the requested
//! provider named (node, op type, provider) in the log and counted per provider in the metric.

use std::collections::BTreeMap;

use crate::session::{CPU_PROVIDER, CUDA_PROVIDER};

/// The provider label of a graph split between providers.
pub const MIXED: &str = "mixed";

/// Nodes ONNX Runtime inserts itself to move tensors across a device boundary: they belong to
/// the split, not to the model's computation, so they do not count as compute nodes.
const TRANSFER_OPS: [&str; 2] = ["MemcpyFromHost", "MemcpyToHost"];

/// Where one node of the graph ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodePlacement {
    /// The node's name in the graph (the profile's event name without `_kernel_time`).
    pub node: String,
    pub op_type: String,
    pub provider: String,
}

impl NodePlacement {
    fn is_compute(&self) -> bool {
        !TRANSFER_OPS.contains(&self.op_type.as_str())
    }
}

impl std::fmt::Display for NodePlacement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}) on {}", self.node, self.op_type, self.provider)
    }
}

/// The placement of every node the profile saw, once each (a profile of several runs repeats
/// them), in the order they first ran. Node events (`cat: "Node"`) carry `args.provider` and
/// `args.op_name`; their name is the node's with a `_kernel_time` suffix.
pub fn placements_in_profile(json: &str) -> Result<Vec<NodePlacement>, String> {
    let events: Vec<serde_json::Value> =
        serde_json::from_str(json).map_err(|e| format!("profile is not JSON: {e}"))?;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for ev in &events {
        if ev.get("cat").and_then(|c| c.as_str()) != Some("Node") {
            continue;
        }
        let Some(provider) = ev.pointer("/args/provider").and_then(|p| p.as_str()) else {
            continue;
        };
        let name = ev.get("name").and_then(|n| n.as_str()).unwrap_or("");
        let node = name
            .strip_suffix("_kernel_time")
            .unwrap_or(name)
            .to_string();
        let op_type = ev
            .pointer("/args/op_name")
            .and_then(|o| o.as_str())
            .unwrap_or("?")
            .to_string();
        if seen.insert((node.clone(), provider.to_string())) {
            out.push(NodePlacement {
                node,
                op_type,
                provider: provider.to_string(),
            });
        }
    }
    Ok(out)
}

/// What a session reports about where its graph runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderVerdict {
    /// The label: the one provider every compute node ran on, else [`MIXED`]; a profile without
    /// node events proves nothing and reads as the CPU (ONNX Runtime's fallback).
    pub provider: String,
    /// Compute nodes per provider.
    pub nodes: BTreeMap<String, usize>,
    /// The compute nodes not on the requested provider, in the order they ran.
    pub off_requested: Vec<NodePlacement>,
}

impl ProviderVerdict {
    /// Whether every compute node ran on `provider` (and there was at least one).
    pub fn all_on(&self, provider: &str) -> bool {
        self.provider == provider && self.nodes.get(provider).is_some_and(|n| *n > 0)
    }

    /// Compute nodes that ran on `provider`.
    pub fn count(&self, provider: &str) -> usize {
        self.nodes.get(provider).copied().unwrap_or(0)
    }

    /// The nodes off the requested provider, for a log line: the first `limit` of them and how
    /// many more there are.
    pub fn describe_off(&self, limit: usize) -> String {
        let mut s = self
            .off_requested
            .iter()
            .take(limit)
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        if self.off_requested.len() > limit {
            s.push_str(&format!(" and {} more", self.off_requested.len() - limit));
        }
        s
    }
}

/// The verdict for a graph whose nodes ran as `placements`, `requested` being the provider the
/// session asked for (CUDA or CPU).
pub fn serving_provider(placements: &[NodePlacement], requested: &str) -> ProviderVerdict {
    let compute: Vec<&NodePlacement> = placements.iter().filter(|n| n.is_compute()).collect();
    let mut nodes = BTreeMap::new();
    for n in &compute {
        *nodes.entry(n.provider.clone()).or_insert(0) += 1;
    }
    let provider = match nodes.len() {
        0 => CPU_PROVIDER.to_string(),
        1 => nodes.keys().next().cloned().unwrap_or_default(),
        _ => MIXED.to_string(),
    };
    let off_requested = compute
        .into_iter()
        .filter(|n| n.provider != requested)
        .cloned()
        .collect();
    ProviderVerdict {
        provider,
        nodes,
        off_requested,
    }
}

/// The provider a session asks for: CUDA when the CUDA provider was registered.
pub fn requested_provider(cuda_registered: bool) -> &'static str {
    if cuda_registered {
        CUDA_PROVIDER
    } else {
        CPU_PROVIDER
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, op: &str, provider: &str) -> NodePlacement {
        NodePlacement {
            node: name.into(),
            op_type: op.into(),
            provider: provider.into(),
        }
    }

    /// A profile event as ONNX Runtime 1.31 writes it (trimmed to the fields read here).
    fn event(name: &str, op: &str, provider: &str) -> String {
        format!(
            r#"{{"cat":"Node","pid":1,"tid":1,"dur":10,"ts":5,"ph":"X","name":"{name}_kernel_time","args":{{"op_name":"{op}","provider":"{provider}","node_index":"3"}}}}"#
        )
    }

    #[test]
    fn the_profile_names_each_node_once_with_op_type_and_provider() {
        let profile = format!(
            r#"[{{"cat":"Session","name":"model_loading_uri","args":{{}}}},{},{},{},{}]"#,
            event("conv0", "Conv", CUDA_PROVIDER),
            event("head/tanh", "Tanh", CPU_PROVIDER),
            // a second run repeats the nodes
            event("conv0", "Conv", CUDA_PROVIDER),
            event("head/tanh", "Tanh", CPU_PROVIDER),
        );
        let p = placements_in_profile(&profile).unwrap();
        assert_eq!(
            p,
            vec![
                node("conv0", "Conv", CUDA_PROVIDER),
                node("head/tanh", "Tanh", CPU_PROVIDER)
            ]
        );
        assert!(placements_in_profile("not json").is_err());
    }

    #[test]
    fn cuda_only_when_every_compute_node_ran_there() {
        let all = vec![
            node("conv0", "Conv", CUDA_PROVIDER),
            node("relu0", "Relu", CUDA_PROVIDER),
            node("fc", "Gemm", CUDA_PROVIDER),
        ];
        let v = serving_provider(&all, CUDA_PROVIDER);
        assert_eq!(v.provider, CUDA_PROVIDER);
        assert!(v.all_on(CUDA_PROVIDER));
        assert!(v.off_requested.is_empty());
        assert_eq!(v.count(CUDA_PROVIDER), 3);
    }

    #[test]
    fn one_cpu_node_makes_a_cuda_session_mixed_and_is_named() {
        // Before: any CUDA node was enough to report CUDA.
        let split = vec![
            node("conv0", "Conv", CUDA_PROVIDER),
            node("odd", "NonMaxSuppression", CPU_PROVIDER),
            node("fc", "Gemm", CUDA_PROVIDER),
        ];
        let v = serving_provider(&split, CUDA_PROVIDER);
        assert_eq!(v.provider, MIXED);
        assert!(!v.all_on(CUDA_PROVIDER));
        assert_eq!(v.off_requested, vec![split[1].clone()]);
        assert_eq!(v.count(CUDA_PROVIDER), 2);
        assert_eq!(v.count(CPU_PROVIDER), 1);
        assert_eq!(
            v.describe_off(5),
            "odd (NonMaxSuppression) on CPUExecutionProvider"
        );
    }

    #[test]
    fn a_graph_that_fell_back_entirely_reads_as_cpu_with_every_node_named() {
        let cpu = vec![
            node("conv0", "Conv", CPU_PROVIDER),
            node("fc", "Gemm", CPU_PROVIDER),
            node("sig", "Sigmoid", CPU_PROVIDER),
        ];
        let v = serving_provider(&cpu, CUDA_PROVIDER);
        assert_eq!(v.provider, CPU_PROVIDER);
        assert_eq!(v.count(CUDA_PROVIDER), 0);
        assert_eq!(v.off_requested.len(), 3);
        assert_eq!(
            v.describe_off(2),
            "conv0 (Conv) on CPUExecutionProvider, fc (Gemm) on CPUExecutionProvider and 1 more"
        );
        // Asked for the CPU, the same graph is simply CPU.
        let v = serving_provider(&cpu, CPU_PROVIDER);
        assert!(v.all_on(CPU_PROVIDER));
        assert!(v.off_requested.is_empty());
    }

    #[test]
    fn copies_at_the_device_boundary_are_not_compute_nodes() {
        let p = vec![
            node("in_copy", "MemcpyFromHost", CUDA_PROVIDER),
            node("conv0", "Conv", CUDA_PROVIDER),
            node("out_copy", "MemcpyToHost", CUDA_PROVIDER),
        ];
        let v = serving_provider(&p, CUDA_PROVIDER);
        assert!(v.all_on(CUDA_PROVIDER));
        assert_eq!(v.count(CUDA_PROVIDER), 1);
    }

    #[test]
    fn an_empty_profile_proves_nothing() {
        let v = serving_provider(&[], CUDA_PROVIDER);
        assert_eq!(v.provider, CPU_PROVIDER);
        assert!(!v.all_on(CUDA_PROVIDER));
        assert!(!v.all_on(CPU_PROVIDER));
    }
}
