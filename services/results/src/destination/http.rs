//! What the two HTTP destinations (STOW-RS and FHIR) share: one client with the delivery
//! timeout, a bearer token read from a file at each delivery (a rotated Secret is used without a
//! restart; a token not mounted yet is retried), and one reading of the server's answer.
//!
//! Answers: 2xx is delivered (STOW-RS's 202, stored with warnings, included); 408, 429 and 5xx,
//! a refused connection or a timeout are retried; any other answer (400, 401/403, 404, 409, 415,
//! 422, …) is a refusal, dead-lettered with the status and the server's body.

use std::path::PathBuf;
use std::time::Duration;

use super::{clip, Outcome};

pub struct HttpEndpoint {
    /// What the token is for, in error messages ("STOW-RS", "FHIR").
    what: &'static str,
    pub token_file: Option<PathBuf>,
    pub client: reqwest::Client,
}

impl HttpEndpoint {
    pub fn new(
        what: &'static str,
        token_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(HttpEndpoint {
            what,
            token_file,
            client,
        })
    }

    /// `" (bearer token)"` when one is configured, for [`super::Destination::describe`].
    pub fn auth_note(&self) -> &'static str {
        if self.token_file.is_some() {
            " (bearer token)"
        } else {
            ""
        }
    }

    /// POSTs `body` to `url` and reads the answer.
    pub async fn post(
        &self,
        url: &str,
        content_type: &str,
        accept: &str,
        body: Vec<u8>,
    ) -> Outcome {
        let mut req = self
            .client
            .post(url)
            .header("Content-Type", content_type)
            .header("Accept", accept)
            .body(body);
        if let Some(p) = &self.token_file {
            match std::fs::read_to_string(p) {
                Ok(t) => req = req.bearer_auth(t.trim()),
                // The token may be mounted a little later (a rotated Secret): retry.
                Err(e) => {
                    return Outcome::Unavailable(format!(
                        "{} token file {}: {e}",
                        self.what,
                        p.display()
                    ))
                }
            }
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

/// What an HTTP status means for the delivery.
pub fn status_outcome(status: u16, body: &str) -> Outcome {
    let words = || format!("HTTP {status}: {}", clip(body.trim(), 2_000));
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Unavailable(words()),
        _ => Outcome::Refused(words()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_classify() {
        assert_eq!(status_outcome(201, ""), Outcome::Delivered);
        assert_eq!(status_outcome(202, "warnings"), Outcome::Delivered);
        assert!(matches!(status_outcome(503, ""), Outcome::Unavailable(_)));
        assert!(matches!(status_outcome(429, ""), Outcome::Unavailable(_)));
        assert!(matches!(status_outcome(408, ""), Outcome::Unavailable(_)));
        assert_eq!(
            status_outcome(400, "bad resource"),
            Outcome::Refused("HTTP 400: bad resource".into())
        );
        assert!(matches!(status_outcome(409, ""), Outcome::Refused(_)));
    }

    #[tokio::test]
    async fn a_missing_token_file_is_retried_not_refused() {
        let http = HttpEndpoint::new(
            "FHIR",
            Some("/nonexistent/cxrflow-token".into()),
            Duration::from_secs(1),
        )
        .unwrap();
        let out = http.post("http://127.0.0.1:9/", "a/b", "a/b", vec![]).await;
        match out {
            Outcome::Unavailable(why) => assert!(why.starts_with("FHIR token file"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
