//! The PACS as a DICOMweb origin server: the SR is stored with STOW-RS (PS3.18 §10.5), one
//! `multipart/related; type="application/dicom"` POST to `<base>/studies` per SR, with a bearer
//! token read from a file at each delivery when one is configured.
//!
//! Answers: as every HTTP destination ([`super::http`]): 200 and 202 (stored with warnings,
//! e.g. coerced attributes) are delivered; a 409 (the instance failed) lists why in the refusal.

use std::path::PathBuf;
use std::time::Duration;

use super::http::HttpEndpoint;
use super::{Destination, Outcome};
use crate::error::ResultsError;

pub struct StowServer {
    /// The DICOMweb base URL: `…/studies` is appended.
    pub base_url: String,
    pub http: HttpEndpoint,
}

/// The part boundary: fixed, and never found in an SR we wrote (checked before sending).
const BOUNDARY: &str = "cxrflow-results-8c1f0e6a2b";

impl StowServer {
    pub fn new(
        base_url: String,
        token_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(StowServer {
            base_url,
            http: HttpEndpoint::new("STOW-RS", token_file, timeout)?,
        })
    }

    fn url(&self) -> String {
        format!("{}/studies", self.base_url.trim_end_matches('/'))
    }
}

/// The multipart/related body holding one DICOM file.
pub fn multipart(file: &[u8]) -> Option<Vec<u8>> {
    let delimiter = format!("--{BOUNDARY}");
    if file
        .windows(delimiter.len())
        .any(|w| w == delimiter.as_bytes())
    {
        return None;
    }
    let mut body = Vec::with_capacity(file.len() + 200);
    body.extend_from_slice(
        format!("{delimiter}\r\nContent-Type: application/dicom\r\n\r\n").as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend_from_slice(format!("\r\n{delimiter}--\r\n").as_bytes());
    Some(body)
}

impl Destination for StowServer {
    fn name(&self) -> &'static str {
        "stow"
    }

    fn refused(&self, answer: String) -> ResultsError {
        ResultsError::StowRefused(answer)
    }

    fn describe(&self) -> String {
        format!("STOW-RS POST to {}{}", self.url(), self.http.auth_note())
    }

    async fn deliver(&self, body: &[u8]) -> Outcome {
        let Some(payload) = multipart(body) else {
            return Outcome::Refused("the SR contains the multipart boundary".into());
        };
        let content_type =
            format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}");
        self.http
            .post(
                &self.url(),
                &content_type,
                "application/dicom+json",
                payload,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_part_framed_by_the_boundary() {
        let body = multipart(b"DICM-bytes").unwrap();
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(&format!(
            "--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\nDICM-bytes"
        )));
        assert!(text.ends_with(&format!("\r\n--{BOUNDARY}--\r\n")));
        assert!(multipart(format!("x--{BOUNDARY}y").as_bytes()).is_none());
    }
}
