//! The DICOM UID grammar (PS3.5 §9.1): at most 64 characters, components of digits separated
//! by single dots, and no component with a leading zero unless it is exactly "0".

/// Why a string is not a DICOM UID. The text names the rule so a gateway operator can fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("is empty")]
    Empty,
    #[error("is {0} characters long (at most 64 allowed)")]
    TooLong(usize),
    #[error("contains {0:?} (only digits and dots allowed)")]
    BadCharacter(char),
    #[error("has an empty component (leading, trailing or doubled dot)")]
    EmptyComponent,
    #[error("has component {0:?} with a leading zero")]
    LeadingZero(String),
}

/// The longest UID the standard allows.
pub const MAX_UID_LEN: usize = 64;

/// Checks `uid` against the DICOM UID grammar.
pub fn check_uid(uid: &str) -> Result<(), UidError> {
    if uid.is_empty() {
        return Err(UidError::Empty);
    }
    if let Some(c) = uid.chars().find(|c| !c.is_ascii_digit() && *c != '.') {
        return Err(UidError::BadCharacter(c));
    }
    // Only ASCII from here on, so bytes are characters.
    if uid.len() > MAX_UID_LEN {
        return Err(UidError::TooLong(uid.len()));
    }
    for component in uid.split('.') {
        if component.is_empty() {
            return Err(UidError::EmptyComponent);
        }
        if component.len() > 1 && component.starts_with('0') {
            return Err(UidError::LeadingZero(component.to_string()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_real_world_uids() {
        for uid in [
            "1.2.840.10008.5.1.4.1.1.1",
            "1.2.826.0.1.3680043.8.498.10928373649812",
            "0",
            "2.25.329800735698586629295641978511506172918",
            "1.0.0.10",
        ] {
            assert_eq!(check_uid(uid), Ok(()), "{uid}");
        }
    }

    #[test]
    fn rejects_each_rule_with_its_own_error() {
        assert_eq!(check_uid(""), Err(UidError::Empty));
        assert_eq!(check_uid(&"1.".repeat(40)), Err(UidError::TooLong(80)));
        assert_eq!(check_uid("1.2.abc"), Err(UidError::BadCharacter('a')));
        assert_eq!(check_uid("1.2.3\0"), Err(UidError::BadCharacter('\0')));
        assert_eq!(check_uid("1.2 .3"), Err(UidError::BadCharacter(' ')));
        assert_eq!(check_uid("1..2"), Err(UidError::EmptyComponent));
        assert_eq!(check_uid(".1.2"), Err(UidError::EmptyComponent));
        assert_eq!(check_uid("1.2."), Err(UidError::EmptyComponent));
        assert_eq!(check_uid("1.02.3"), Err(UidError::LeadingZero("02".into())));
        assert_eq!(check_uid("00"), Err(UidError::LeadingZero("00".into())));
    }

    fn component() -> impl Strategy<Value = String> {
        prop_oneof![Just("0".to_string()), "[1-9][0-9]{0,8}"]
    }

    fn valid_uid() -> impl Strategy<Value = String> {
        proptest::collection::vec(component(), 1..8)
            .prop_map(|c| c.join("."))
            .prop_filter("at most 64 characters", |s| s.len() <= MAX_UID_LEN)
    }

    proptest! {
        #[test]
        fn generated_valid_uids_are_accepted(uid in valid_uid()) {
            prop_assert_eq!(check_uid(&uid), Ok(()));
        }

        #[test]
        fn a_leading_zero_component_is_rejected(uid in valid_uid(), at in any::<prop::sample::Index>(), tail in "[0-9]{1,4}") {
            let mut parts: Vec<String> = uid.split('.').map(str::to_string).collect();
            let i = at.index(parts.len());
            parts[i] = format!("0{tail}");
            let bad = parts.join(".");
            prop_assume!(bad.len() <= MAX_UID_LEN);
            prop_assert_eq!(check_uid(&bad), Err(UidError::LeadingZero(format!("0{tail}"))));
        }

        #[test]
        fn any_non_digit_non_dot_character_is_rejected(uid in valid_uid(), at in any::<prop::sample::Index>(), c in any::<char>()) {
            prop_assume!(!c.is_ascii_digit() && c != '.');
            let mut s: Vec<char> = uid.chars().collect();
            let i = at.index(s.len() + 1);
            s.insert(i, c);
            let bad: String = s.into_iter().collect();
            prop_assert_eq!(check_uid(&bad), Err(UidError::BadCharacter(c)));
        }

        #[test]
        fn never_panics_and_accepts_only_the_grammar(s in "[0-9.]{0,70}") {
            let ok = !s.is_empty()
                && s.len() <= MAX_UID_LEN
                && s.split('.').all(|c| !c.is_empty() && (c == "0" || !c.starts_with('0')));
            prop_assert_eq!(check_uid(&s).is_ok(), ok);
        }
    }
}
