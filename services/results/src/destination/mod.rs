//! Where results go (the PACS by C-STORE or STOW-RS, the EHR by FHIR), and how each place
//! answers. A destination says one of three things about a
//! delivery: delivered, *refused* (it will never take this one: dead-letter it with the answer)
//! or *unavailable* (down, busy, timing out: retry later with backoff).

pub mod dicom;
pub mod fhir;
pub mod http;
pub mod stow;

use std::future::Future;

use crate::error::ResultsError;

/// A destination's answer to one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Permanent: the destination's own words.
    Refused(String),
    /// Worth retrying: what went wrong.
    Unavailable(String),
}

/// One configured place results go to.
pub trait Destination: Send + Sync + 'static {
    /// Stable, bounded name: the metric label and the dead-letter reason's middle part.
    fn name(&self) -> &'static str;
    /// Where it is, for logs (no secrets).
    fn describe(&self) -> String;
    /// Its refusal of a delivery, in the destination's own words: the dead letter's reason
    /// (`results.<name>_refused`) and error.
    fn refused(&self, answer: String) -> ResultsError;
    fn deliver(&self, body: &[u8]) -> impl Future<Output = Outcome> + Send;
}

/// At most `n` characters of a destination's answer (dead letters and logs stay small).
pub fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n).collect();
        c.push('…');
        c
    }
}
