//! The model tools (Python) keep their own copy of the findings list, which orders the model's
//! outputs and the toy dataset's columns; it must stay the Rust list, name for name and in order.

use cxrflow_contracts::FINDINGS;

#[test]
fn the_python_model_tools_list_the_same_findings_in_the_same_order() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/tools/cxr_common.py"
    );
    let source = std::fs::read_to_string(path).expect("models/tools/cxr_common.py");
    let list = source
        .split_once("\nFINDINGS = [")
        .and_then(|(_, rest)| rest.split_once(']'))
        .map(|(list, _)| list)
        .expect("a FINDINGS = [...] list in cxr_common.py");
    let python: Vec<&str> = list
        .split(',')
        .map(|item| item.trim().trim_matches('"'))
        .filter(|item| !item.is_empty())
        .collect();
    assert_eq!(python, FINDINGS);
}
