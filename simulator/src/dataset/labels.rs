//! The CheXpert vocabulary: the 14 findings, label states and the per-image metadata columns.

use serde::Serialize;

pub use cxrflow_contracts::Finding;

/// A label cell: `1.0`, `0.0`, `-1.0` or empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub enum LabelState {
    Positive,
    Negative,
    Uncertain,
    #[default]
    Blank,
}

impl LabelState {
    /// Parses a label cell as CheXpert writes it (`1.0`), also accepting integers (`1`).
    pub fn parse(cell: &str) -> Option<Self> {
        match cell.trim() {
            "" => Some(LabelState::Blank),
            "1.0" | "1" => Some(LabelState::Positive),
            "0.0" | "0" => Some(LabelState::Negative),
            "-1.0" | "-1" => Some(LabelState::Uncertain),
            other => {
                let v = other.parse::<f64>().ok()?;
                if v == 1.0 {
                    Some(LabelState::Positive)
                } else if v == 0.0 {
                    Some(LabelState::Negative)
                } else if v == -1.0 {
                    Some(LabelState::Uncertain)
                } else {
                    None
                }
            }
        }
    }

    /// The cell text CheXpert uses.
    pub fn as_cell(self) -> &'static str {
        match self {
            LabelState::Positive => "1.0",
            LabelState::Negative => "0.0",
            LabelState::Uncertain => "-1.0",
            LabelState::Blank => "",
        }
    }
}

/// The 14 label cells of one image row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Labels(pub [LabelState; Finding::COUNT]);

impl Labels {
    pub fn get(&self, finding: Finding) -> LabelState {
        self.0[finding.index()]
    }

    pub fn set(&mut self, finding: Finding, state: LabelState) {
        self.0[finding.index()] = state;
    }

    /// Builder-style [`Labels::set`].
    pub fn with(mut self, finding: Finding, state: LabelState) -> Self {
        self.set(finding, state);
        self
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Sex {
    Male,
    Female,
    Unknown,
}

impl Sex {
    pub fn parse(cell: &str) -> Option<Self> {
        match cell.trim() {
            "Male" | "M" => Some(Sex::Male),
            "Female" | "F" => Some(Sex::Female),
            "Unknown" | "" => Some(Sex::Unknown),
            _ => None,
        }
    }

    pub fn as_cell(self) -> &'static str {
        match self {
            Sex::Male => "Male",
            Sex::Female => "Female",
            Sex::Unknown => "Unknown",
        }
    }
}

/// The `Frontal/Lateral` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum ViewKind {
    Frontal,
    Lateral,
}

impl ViewKind {
    pub fn parse(cell: &str) -> Option<Self> {
        match cell.trim() {
            "Frontal" => Some(ViewKind::Frontal),
            "Lateral" => Some(ViewKind::Lateral),
            _ => None,
        }
    }

    pub fn as_cell(self) -> &'static str {
        match self {
            ViewKind::Frontal => "Frontal",
            ViewKind::Lateral => "Lateral",
        }
    }
}

/// The `AP/PA` column (empty for most laterals; CheXpert also has a few `LL` and `RL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Projection {
    Ap,
    Pa,
    Ll,
    Rl,
}

impl Projection {
    /// `Ok(None)` for an empty cell, `Err(())` for an unknown value.
    pub(crate) fn parse(cell: &str) -> Result<Option<Self>, ()> {
        match cell.trim() {
            "" => Ok(None),
            "AP" => Ok(Some(Projection::Ap)),
            "PA" => Ok(Some(Projection::Pa)),
            "LL" => Ok(Some(Projection::Ll)),
            "RL" => Ok(Some(Projection::Rl)),
            _ => Err(()),
        }
    }

    pub fn as_cell(self) -> &'static str {
        match self {
            Projection::Ap => "AP",
            Projection::Pa => "PA",
            Projection::Ll => "LL",
            Projection::Rl => "RL",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_cells_round_trip() {
        for s in [
            LabelState::Positive,
            LabelState::Negative,
            LabelState::Uncertain,
            LabelState::Blank,
        ] {
            assert_eq!(LabelState::parse(s.as_cell()), Some(s));
        }
        assert_eq!(LabelState::parse("1"), Some(LabelState::Positive));
        assert_eq!(LabelState::parse("-1.00"), Some(LabelState::Uncertain));
        assert_eq!(LabelState::parse("0.5"), None);
        assert_eq!(LabelState::parse("yes"), None);
    }

    #[test]
    fn findings_are_in_column_order() {
        for (i, f) in Finding::ALL.iter().enumerate() {
            assert_eq!(f.index(), i);
        }
        assert_eq!(Finding::ALL[13].name(), "Support Devices");
    }
}
