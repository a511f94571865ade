//! The frontal gate: cleared triage devices assess frontal (AP/PA) chest films only, so a
//! lateral view flows on marked not assessable and triage places it without a score.

/// What the view position says about the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Frontal,
    Lateral,
    /// No usable view position: treated as frontal (the model still scores it), counted.
    Unknown,
}

impl View {
    /// Classifies a DICOM ViewPosition (0018,5101) or a gateway's/CheXpert's view string.
    pub fn classify(view_position: Option<&str>) -> View {
        let Some(v) = view_position
            .map(|v| v.trim().to_ascii_uppercase())
            .filter(|v| !v.is_empty())
        else {
            return View::Unknown;
        };
        match v.as_str() {
            "LL" | "RL" | "LAT" | "LATERAL" => View::Lateral,
            "PA" | "AP" | "FRONTAL" | "AP SUPINE" | "APS" | "PA/AP" | "AP/PA" => View::Frontal,
            _ => View::Unknown,
        }
    }

    /// Picks the file's own view position when it has a usable one (the header wins over what
    /// the scan event claims), the record's otherwise.
    pub fn of(record: Option<&str>, file: Option<&str>) -> View {
        match View::classify(file) {
            View::Unknown => View::classify(record),
            known => known,
        }
    }
}

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

    #[test]
    fn the_file_wins_over_the_record_unless_it_says_nothing() {
        assert_eq!(View::of(Some("PA"), Some("LL")), View::Lateral);
        assert_eq!(View::of(Some("LL"), Some("PA")), View::Frontal);
        assert_eq!(View::of(None, Some("LL")), View::Lateral);
        assert_eq!(View::of(Some("LL"), Some("??")), View::Lateral);
        assert_eq!(View::of(Some("??"), Some("RL")), View::Lateral);
        assert_eq!(View::of(None, None), View::Unknown);
    }
}
