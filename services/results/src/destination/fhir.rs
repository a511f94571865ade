//! The EHR as a FHIR R4 server: the transaction Bundle is POSTed to the server's base URL with
//! a bearer token (read from a file at each start of a delivery, so a rotated token is used
//! without a restart).
//!
//! Answers: as every HTTP destination ([`super::http`]); a refusal carries the server's
//! OperationOutcome.

use std::path::PathBuf;
use std::time::Duration;

use super::http::HttpEndpoint;
use super::{Destination, Outcome};
use crate::error::ResultsError;

pub struct FhirServer {
    pub base_url: String,
    pub http: HttpEndpoint,
}

impl FhirServer {
    pub fn new(
        base_url: String,
        token_file: Option<PathBuf>,
        timeout: Duration,
    ) -> Result<Self, reqwest::Error> {
        Ok(FhirServer {
            base_url,
            http: HttpEndpoint::new("FHIR", token_file, timeout)?,
        })
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
            self.http.auth_note()
        )
    }

    async fn deliver(&self, body: &[u8]) -> Outcome {
        let fhir = "application/fhir+json";
        self.http
            .post(&self.base_url, fhir, fhir, body.to_vec())
            .await
    }
}
