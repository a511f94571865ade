//! HTTPS for a service's HTTP endpoint: rustls (ring provider) with a certificate chain and key
//! from PEM files, e.g. a Kubernetes TLS Secret mounted into the pod. Without them the endpoint
//! is plain HTTP (behind a TLS-terminating ingress or on loopback).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

#[derive(Debug, Clone, Default, Args)]
pub struct TlsArgs {
    /// Serve the HTTP endpoint over HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long = "tls-cert", env = "CXRFLOW_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long = "tls-key", env = "CXRFLOW_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A certificate without its key or the other way round (or a client CA without both); the
    /// flags' common prefix, e.g. `tls` for `--tls-cert`/`--tls-key`.
    #[error("--{0}-cert and --{0}-key go together")]
    Incomplete(&'static str),
    #[error("certificate {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("private key {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

impl TlsArgs {
    /// The server configuration, or `None` for plain HTTP.
    pub fn server_config(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let Some(mut config) = server_config_from(
            "tls",
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            None,
        )?
        else {
            return Ok(None);
        };
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(Arc::new(config)))
    }
}

/// The certificates of a PEM file, at least one.
pub fn load_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let cert_err = |reason: String| TlsError::Cert {
        path: path.display().to_string(),
        reason,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if chain.is_empty() {
        return Err(cert_err("no certificate in the file".into()));
    }
    Ok(chain)
}

/// A root store of the CAs in a PEM file, at least one.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in load_certificates(path)? {
        roots.add(c).map_err(|e| TlsError::Cert {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// The crypto provider every TLS endpoint uses. Named, because the tree carries two (ring,
/// aws-lc-rs), so rustls has no implicit default.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration from a certificate chain and key (PEM). With `client_ca`, a client
/// must present a certificate issued by one of the CAs in that file (mutual TLS, as DICOM's
/// secure transport connection profiles expect); without, any client may connect.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let chain = load_certificates(cert)?;
    let key = load_key(key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let roots = load_roots(ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Cert {
                    path: ca.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    Ok(builder.with_single_cert(chain, key)?)
}

/// The server side of a `--<prefix>-cert`, `--<prefix>-key`, `--<prefix>-client-ca` triple of
/// options: `None` (plain TCP) without a certificate; a certificate needs its key, and a
/// client CA (mutual TLS) needs both.
pub fn server_config_from(
    prefix: &'static str,
    cert: Option<&Path>,
    key: Option<&Path>,
    client_ca: Option<&Path>,
) -> Result<Option<ServerConfig>, TlsError> {
    match (cert, key, client_ca) {
        (None, None, None) => Ok(None),
        (Some(cert), Some(key), ca) => server_config(cert, key, ca).map(Some),
        _ => Err(TlsError::Incomplete(prefix)),
    }
}

/// The client side of a `--<prefix>-ca`, `--<prefix>-cert`, `--<prefix>-key` triple of
/// options: `None` (a plain connection) without a CA; a client certificate (mutual TLS) needs
/// its key.
pub fn client_config_from(
    prefix: &'static str,
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
) -> Result<Option<rustls::ClientConfig>, TlsError> {
    let identity = match (cert, key) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        _ => return Err(TlsError::Incomplete(prefix)),
    };
    match ca {
        None if identity.is_some() => Err(TlsError::Incomplete(prefix)),
        None => Ok(None),
        Some(ca) => client_config(ca, identity).map(Some),
    }
}

/// A client configuration that trusts the CAs in `ca` (PEM) and, with `identity` (certificate
/// chain, key), presents a client certificate.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let roots = load_roots(ca)?;
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    Ok(match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            builder.with_client_auth_cert(load_certificates(cert)?, load_key(key)?)?
        }
    })
}
