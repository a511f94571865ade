//! The frontal gate: cleared triage devices assess frontal (AP/PA) chest films only, so a
//! lateral view flows on marked not assessable and triage places it without a score.

pub use cxrflow_contracts::view::View;

/// The gate's decision as carried in `PreprocessedImage`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateDecision {
    pub frontal: bool,
    pub assessable: bool,
    pub not_assessable_reason: Option<String>,
    /// Stable code behind `assessable == false` (`view.lateral`).
    pub not_assessable_code: Option<String>,
}

impl From<View> for GateDecision {
    fn from(v: View) -> Self {
        match v {
            View::Lateral => GateDecision {
                frontal: false,
                assessable: false,
                not_assessable_reason: Some("lateral view".into()),
                not_assessable_code: Some("view.lateral".into()),
            },
            View::Frontal | View::Unknown => GateDecision {
                frontal: true,
                assessable: true,
                not_assessable_reason: None,
                not_assessable_code: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateral_codes_are_not_assessable() {
        for v in ["LL", "RL", "lat", " Lateral "] {
            assert_eq!(View::classify(Some(v)), View::Lateral, "{v}");
            let g = GateDecision::from(View::classify(Some(v)));
            assert!(!g.frontal && !g.assessable);
            assert_eq!(g.not_assessable_reason.as_deref(), Some("lateral view"));
        }
        for v in ["PA", "ap", "Frontal"] {
            assert_eq!(View::classify(Some(v)), View::Frontal, "{v}");
        }
        assert_eq!(View::classify(None), View::Unknown);
        assert_eq!(View::classify(Some("")), View::Unknown);
        assert!(
            GateDecision::from(View::Unknown).assessable,
            "unknown is treated as frontal"
        );
    }
}
