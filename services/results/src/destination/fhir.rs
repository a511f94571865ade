//! The EHR as a FHIR R4 server: the transaction Bundle is POSTed to the server's base URL with
//! a bearer token (read from a file at each start of a delivery, so a rotated token is used
//! without a restart).
//!
//! Answers: 2xx is delivered; 408, 429 and 5xx, a refused connection or a timeout are retried;
//! any other answer (400 invalid resource, 401/403 bad token, 404, 422 business rule, …) is a
//! refusal, dead-lettered with the status and the server's body (its OperationOutcome).

use std::path::PathBuf;
use std::time::Duration;

use super::{clip, Destination, Outcome};
use crate::error::ResultsError;

pub struct FhirServer {
    pub base_url: String,
    pub token_file: Option<PathBuf>,
    pub client: reqwest::Client,
}

impl FhirServer {
    pub fn new(
        base_url: String,
        token_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(FhirServer {
            base_url,
            token_file,
            client,
        })
    }

    fn token(&self) -> Result<Option<String>, String> {
        match &self.token_file {
            None => Ok(None),
            Some(p) => std::fs::read_to_string(p)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| format!("FHIR token file {}: {e}", p.display())),
        }
    }
}

/// What an HTTP status means for the delivery.
pub fn status_outcome(status: u16, body: &str) -> Outcome {
    let words = || format!("HTTP {status}: {}", clip(body.trim(), 2_000));
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Unavailable(words()),
        _ => Outcome::Refused(words()),
    }
}

impl Destination for FhirServer {
    fn name(&self) -> &'static str {
        "fhir"
    }

    fn refused(&self, answer: String) -> ResultsError {
        ResultsError::FhirRefused(answer)
    }

    fn describe(&self) -> String {
        format!(
            "FHIR transaction POST to {}{}",
            self.base_url,
            if self.token_file.is_some() {
                " (bearer token)"
            } else {
                ""
            }
        )
    }

    async fn deliver(&self, body: &[u8]) -> Outcome {
        let token = match self.token() {
            Ok(t) => t,
            // The token may be mounted a little later (a rotated Secret): retry.
            Err(e) => return Outcome::Unavailable(e),
        };
        let mut req = self
            .client
            .post(&self.base_url)
            .header("Content-Type", "application/fhir+json")
            .header("Accept", "application/fhir+json")
            .body(body.to_vec());
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
    fn statuses_classify() {
        assert_eq!(status_outcome(201, ""), Outcome::Delivered);
        assert!(matches!(status_outcome(503, ""), Outcome::Unavailable(_)));
        assert!(matches!(status_outcome(429, ""), Outcome::Unavailable(_)));
        assert_eq!(
            status_outcome(400, "bad resource"),
            Outcome::Refused("HTTP 400: bad resource".into())
        );
    }
}
