//! Parsers for the DICOM value representations the gateway reads: TM (time) and the UTC offset of
//! DT and TimezoneOffsetFromUTC here; DA (date) and AS (age) are `cxrflow_dicom::age`'s, shared
//! with preprocess. Lenient where real modalities are (the pre-1993 `HH:MM:SS` form), strict
//! otherwise: a value that does not parse is treated as absent.

use chrono::{FixedOffset, NaiveTime};

pub use cxrflow_dicom::age::parse_da;

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dicom_times_and_offsets_parse() {
        assert_eq!(parse_tm("10"), NaiveTime::from_hms_opt(10, 0, 0));
        assert_eq!(parse_tm("10:15:30"), NaiveTime::from_hms_opt(10, 15, 30));
        assert_eq!(
            parse_tm("101530.5"),
            NaiveTime::from_hms_micro_opt(10, 15, 30, 500_000)
        );
        assert_eq!(parse_tm("1a"), None);
        assert_eq!(
            parse_offset("-0530").map(|o| o.local_minus_utc()),
            Some(-19_800)
        );
    }
}
