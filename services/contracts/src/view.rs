//! The projection a view position names, one vocabulary for every service: preprocess's
//! frontal gate, and inference, which looks at the pixels of a film whose view nothing names.

/// What the view position says about the projection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Frontal,
    Lateral,
    /// No usable view position: preprocess treats it as frontal and counts it; inference
    /// asks the pixels (the out-of-distribution gate's lateral reference).
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

#[cfg(test)]
mod tests {
    use super::*;

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
