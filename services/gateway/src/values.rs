//! Parsers for the DICOM value representations the gateway reads: DA (date), TM (time), the
//! UTC offset of DT and TimezoneOffsetFromUTC, and AS (age). Lenient where real modalities are
//! (the pre-1993 `YYYY.MM.DD` and `HH:MM:SS` forms), strict otherwise: a value that does not
//! parse is treated as absent.

use chrono::{Datelike, FixedOffset, NaiveDate, NaiveTime};

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

/// TM: `HH[MM[SS[.FFFFFF]]]` (also the pre-1993 `HH:MM:SS`).
pub fn parse_tm(s: &str) -> Option<NaiveTime> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    let (whole, frac) = s.split_once('.').unwrap_or((&s, ""));
    if whole.len() < 2 || whole.len() % 2 != 0 || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let part = |i: usize| -> u32 {
        whole
            .get(i..i + 2)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    };
    let micros = if frac.is_empty() {
        0
    } else {
        let f: String = frac.chars().take(6).collect();
        if !f.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        f.parse::<u32>().ok()? * 10u32.pow(6 - f.len() as u32)
    };
    NaiveTime::from_hms_micro_opt(part(0), part(2), part(4).min(59), micros)
}

/// `&ZZXX`: a UTC offset such as `+0100`.
pub fn parse_offset(s: &str) -> Option<FixedOffset> {
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1, &s[1..]),
        b'-' => (-1, &s[1..]),
        _ => return None,
    };
    if rest.len() != 4 || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: i32 = rest[0..2].parse().ok()?;
    let m: i32 = rest[2..4].parse().ok()?;
    FixedOffset::east_opt(sign * (h * 3600 + m * 60))
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

pub fn years_between(birth: NaiveDate, at: NaiveDate) -> Option<i32> {
    let mut years = at.year() - birth.year();
    if (at.month(), at.day()) < (birth.month(), birth.day()) {
        years -= 1;
    }
    (0..=150).contains(&years).then_some(years)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_dates_times_and_ages_parse() {
        assert_eq!(parse_da("2024.03.14"), NaiveDate::from_ymd_opt(2024, 3, 14));
        assert_eq!(parse_da("20241314"), None);
        assert_eq!(parse_tm("10"), NaiveTime::from_hms_opt(10, 0, 0));
        assert_eq!(parse_tm("10:15:30"), NaiveTime::from_hms_opt(10, 15, 30));
        assert_eq!(
            parse_tm("101530.5"),
            NaiveTime::from_hms_micro_opt(10, 15, 30, 500_000)
        );
        assert_eq!(parse_tm("1a"), None);
        assert_eq!(parse_age("045Y"), Some(45));
        assert_eq!(parse_age("018M"), Some(1));
        assert_eq!(parse_age("45Y"), None);
        assert_eq!(
            parse_offset("-0530").map(|o| o.local_minus_utc()),
            Some(-19_800)
        );
    }
}
