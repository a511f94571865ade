//! The check every service's error type runs on its reasons: one example of each variant
//! against the type's `REASONS` list and its conversion to a [`StageError`].

use std::collections::BTreeSet;

use cxrflow_common::StageError;

/// Checks `examples` (one of each variant of an error type) against `listed` (its `REASONS`):
/// every listed reason is an example's, every example's is listed, none twice; and each
/// example becomes a [`StageError`] of its class (transient under its reason as the kind,
/// poison under its reason) with its own words.
pub fn check<E>(
    listed: &[&'static str],
    examples: Vec<E>,
    reason: fn(&E) -> &'static str,
    is_transient: fn(&E) -> bool,
) where
    E: std::fmt::Display,
    StageError: From<E>,
{
    let seen: BTreeSet<_> = examples.iter().map(reason).collect();
    let unique: BTreeSet<_> = listed.iter().copied().collect();
    assert_eq!(
        unique.len(),
        listed.len(),
        "a reason is listed twice: {listed:?}"
    );
    assert_eq!(
        seen, unique,
        "the examples' reasons and the listed ones differ"
    );
    for e in examples {
        let (r, transient, words) = (reason(&e), is_transient(&e), e.to_string());
        match StageError::from(e) {
            StageError::Transient { kind, error } => {
                assert!(transient, "{r} is retried but not transient");
                assert_eq!((kind.as_str(), error.as_str()), (r, words.as_str()));
            }
            StageError::Poison { reason, error, .. } => {
                assert!(!transient, "{r} is dead-lettered but transient");
                assert_eq!((reason.as_str(), error.as_str()), (r, words.as_str()));
            }
        }
    }
}
