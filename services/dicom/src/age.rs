//! The patient's age at the examination, as the DICOM header gives it: Patient's Age (AS), else
//! the years from Patient's Birth Date to the examination's date (Acquisition, else Content, else
//! Study Date). The gateway publishes it on the scan event; preprocess judges eligibility by it.
//! Lenient where real modalities are (the pre-1993 `YYYY.MM.DD` date form); a value that does not
//! parse is treated as absent.

use chrono::{Datelike, NaiveDate};
use dicom_core::Tag;
use dicom_dictionary_std::tags;

/// DA: `YYYYMMDD` (also the pre-1993 `YYYY.MM.DD`).
pub fn parse_da(s: &str) -> Option<NaiveDate> {
    let digits: String = s.chars().filter(|c| *c != '.').collect();
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    NaiveDate::from_ymd_opt(
        digits[0..4].parse().ok()?,
        digits[4..6].parse().ok()?,
        digits[6..8].parse().ok()?,
    )
}

/// AS: `nnnD`, `nnnW`, `nnnM` or `nnnY`, in whole years.
pub fn parse_age(s: &str) -> Option<i32> {
    if s.len() != 4 {
        return None;
    }
    let n: i32 = s[..3].parse().ok()?;
    match &s[3..] {
        "Y" | "y" => Some(n),
        "M" | "m" => Some(n / 12),
        "W" | "w" => Some(n / 52),
        "D" | "d" => Some(n / 365),
        _ => None,
    }
}

/// Whole years from `birth` to `at`; `None` outside 0..=150 (a date typed wrong).
pub fn years_between(birth: NaiveDate, at: NaiveDate) -> Option<i32> {
    let mut years = at.year() - birth.year();
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    (0..=150).contains(&years).then_some(years)
}

/// The patient's age in whole years from a header, `text` reading one attribute's trimmed
/// value: Patient's Age when it parses, else birth date to the examination's date.
pub fn patient_age_years(text: impl Fn(Tag) -> Option<String>) -> Option<i32> {
    text(tags::PATIENT_AGE)
        .and_then(|a| parse_age(&a))
        .or_else(|| {
            let birth = text(tags::PATIENT_BIRTH_DATE).and_then(|d| parse_da(&d))?;
            let on = text(tags::ACQUISITION_DATE)
                .or_else(|| text(tags::CONTENT_DATE))
                .or_else(|| text(tags::STUDY_DATE))
                .and_then(|d| parse_da(&d))?;
            years_between(birth, on)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_ages_parse() {
        assert_eq!(parse_da("2024.03.14"), NaiveDate::from_ymd_opt(2024, 3, 14));
        assert_eq!(parse_da("20241314"), None);
        assert_eq!(parse_age("045Y"), Some(45));
        assert_eq!(parse_age("018M"), Some(1));
        assert_eq!(parse_age("45Y"), None);
    }

    #[test]
    fn the_age_attribute_wins_else_the_birth_date_counts_to_the_examination() {
        let header = |pairs: &'static [(Tag, &'static str)]| {
            move |tag: Tag| {
                pairs
                    .iter()
                    .find(|(t, _)| *t == tag)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            patient_age_years(header(&[
                (tags::PATIENT_AGE, "004Y"),
                (tags::PATIENT_BIRTH_DATE, "19500101"),
                (tags::STUDY_DATE, "20240101"),
            ])),
            Some(4)
        );
        // The day before the birthday: one year less. Acquisition before Study Date.
        assert_eq!(
            patient_age_years(header(&[
                (tags::PATIENT_BIRTH_DATE, "20100615"),
                (tags::ACQUISITION_DATE, "20240614"),
                (tags::STUDY_DATE, "20250101"),
            ])),
            Some(13)
        );
        // An unparseable age falls back to the dates; no date of the examination: unknown.
        assert_eq!(
            patient_age_years(header(&[
                (tags::PATIENT_AGE, "4 yrs"),
                (tags::PATIENT_BIRTH_DATE, "20100615"),
                (tags::CONTENT_DATE, "2024.06.15"),
            ])),
            Some(14)
        );
        assert_eq!(
            patient_age_years(header(&[(tags::PATIENT_BIRTH_DATE, "20100615")])),
            None
        );
        assert_eq!(patient_age_years(header(&[])), None);
    }
}
