//! The PACS as a DICOMweb origin server: the SR is stored with STOW-RS (PS3.18 §10.5), one
//! `multipart/related; type="application/dicom"` POST to `<base>/studies` per SR, with a bearer
//! token read from a file at each delivery when one is configured.
//!
//! Answers: 200 is delivered, and so is 202 (stored with warnings, e.g. coerced attributes); 408,
//! 429 and 5xx, a refused connection or a timeout are retried; 409 (the instance failed: the
//! response lists why), 400, 401/403, 415 and any other 4xx are refusals, dead-lettered with the
//! status and the server's response.

use std::path::PathBuf;
use std::time::Duration;

use super::{clip, Destination, Outcome};
use crate::error::ResultsError;

pub struct StowServer {
    /// The DICOMweb base URL: `…/studies` is appended.
    pub base_url: String,
    pub token_file: Option<PathBuf>,
    pub client: reqwest::Client,
}

/// The part boundary: fixed, and never found in an SR we wrote (checked before sending).
const BOUNDARY: &str = "cxrflow-results-8c1f0e6a2b";

impl StowServer {
    pub fn new(
        base_url: String,
        token_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(StowServer {
            base_url,
            token_file,
            client,
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

/// What an HTTP status means for a STOW-RS delivery.
pub fn status_outcome(status: u16, body: &str) -> Outcome {
    let words = || format!("HTTP {status}: {}", clip(body.trim(), 2_000));
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Unavailable(words()),
        _ => Outcome::Refused(words()),
    }
}

impl Destination for StowServer {
    fn name(&self) -> &'static str {
        "stow"
    }

    fn refused(&self, answer: String) -> ResultsError {
        ResultsError::StowRefused(answer)
    }

    fn describe(&self) -> String {
        format!(
            "STOW-RS POST to {}{}",
            self.url(),
            if self.token_file.is_some() {
                " (bearer token)"
            } else {
                ""
            }
        )
    }

    async fn deliver(&self, body: &[u8]) -> Outcome {
        let Some(payload) = multipart(body) else {
            return Outcome::Refused("the SR contains the multipart boundary".into());
        };
        let token = match &self.token_file {
            None => None,
            Some(p) => match std::fs::read_to_string(p) {
                Ok(t) => Some(t.trim().to_string()),
                Err(e) => {
                    return Outcome::Unavailable(format!("STOW-RS token file {}: {e}", p.display()))
                }
            },
        };
        let mut req = self
            .client
            .post(self.url())
            .header(
                "Content-Type",
                format!("multipart/related; type=\"application/dicom\"; boundary={BOUNDARY}"),
            )
            .header("Accept", "application/dicom+json")
            .body(payload);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                status_outcome(status, &text)
            }
            Err(e) => Outcome::Unavailable(clip(&e.to_string(), 500)),
        }
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
        assert_eq!(status_outcome(202, ""), Outcome::Delivered);
        assert!(matches!(status_outcome(409, "failed"), Outcome::Refused(_)));
        assert!(matches!(status_outcome(503, ""), Outcome::Unavailable(_)));
    }
}
