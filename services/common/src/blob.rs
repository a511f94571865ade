//! The blob store: images are written once under a content address (sha256) so large images
//! never ride on Kafka (claim check). A local directory by default, S3-compatible in production,
//! both through `object_store`.

use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use sha2::{Digest, Sha256};
use url::Url;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob store URL {url:?} is not usable: {reason}")]
    Config { url: String, reason: String },
    #[error("blob {0} not found")]
    NotFound(String),
    #[error("blob {uri} is not in this store (store is {base})")]
    ForeignUri { uri: String, base: String },
    #[error("blob store unavailable: {0}")]
    Unavailable(String),
}

impl BlobError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, BlobError::Unavailable(_))
    }
}

#[derive(Clone, Debug)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    base: String,
    prefix: Path,
}

/// Hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn map_err(e: object_store::Error, what: &str) -> BlobError {
    match e {
        object_store::Error::NotFound { .. } => BlobError::NotFound(what.to_string()),
        other => BlobError::Unavailable(other.to_string()),
    }
}

impl BlobStore {
    /// `file:///abs/dir` (created if missing) or `s3://bucket[/prefix]`. S3 settings come from
    /// the usual `AWS_*` environment variables (`AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, keys, region)
    /// and from `options` (`aws_endpoint=…`), which win.
    pub fn open(url: &str, options: &[(String, String)]) -> Result<Self, BlobError> {
        let cfg = |reason: String| BlobError::Config {
            url: url.to_string(),
            reason,
        };
        let parsed = Url::parse(url).map_err(|e| cfg(e.to_string()))?;
        match parsed.scheme() {
            "file" => {
                let dir = parsed
                    .to_file_path()
                    .map_err(|_| cfg("not an absolute file path".into()))?;
                std::fs::create_dir_all(&dir).map_err(|e| cfg(e.to_string()))?;
                // fsync: a write returns once the object and its directory entry are on disk.
                // The gateway answers a sender's C-STORE (or STOW-RS) with success only after
                // its write returned, and a sender may then delete its copy; without it, a power
                // cut in the next half minute lost an acknowledged image (and its event would
                // name an object that is gone). About 0.3 ms per object on these machines.
                // The object is staged beside its final name and renamed into place, so a
                // failed write (disk full) leaves nothing under the content address.
                let store = LocalFileSystem::new_with_prefix(&dir)
                    .map_err(|e| cfg(e.to_string()))?
                    .with_fsync(true);
                Ok(BlobStore {
                    store: Arc::new(store),
                    base: url.trim_end_matches('/').to_string(),
                    prefix: Path::default(),
                })
            }
            "s3" => {
                let bucket = parsed
                    .host_str()
                    .ok_or_else(|| cfg("missing bucket".into()))?;
                let mut b = AmazonS3Builder::from_env().with_bucket_name(bucket);
                for (k, v) in options {
                    let key = k
                        .parse()
                        .map_err(|e: object_store::Error| cfg(e.to_string()))?;
                    b = b.with_config(key, v);
                }
                let store = b.build().map_err(|e| cfg(e.to_string()))?;
                Ok(BlobStore {
                    store: Arc::new(store),
                    base: format!("s3://{bucket}"),
                    prefix: Path::from(parsed.path().trim_matches('/')),
                })
            }
            other => Err(cfg(format!(
                "unsupported scheme {other:?} (use file:// or s3://)"
            ))),
        }
    }

    pub fn base_uri(&self) -> &str {
        &self.base
    }

    fn content_path(&self, sha: &str) -> Path {
        let rel = format!("sha256/{}/{}", &sha[..2], sha);
        if self.prefix.as_ref().is_empty() {
            Path::from(rel)
        } else {
            Path::from(format!("{}/{}", self.prefix, rel))
        }
    }

    /// The URI content with this sha256 has in this store (whether or not it is there).
    pub fn content_uri(&self, sha: &str) -> String {
        self.uri_of(&self.content_path(sha))
    }

    fn uri_of(&self, path: &Path) -> String {
        format!("{}/{}", self.base, path)
    }

    fn path_of(&self, uri: &str) -> Result<Path, BlobError> {
        uri.strip_prefix(&self.base)
            .and_then(|rest| rest.strip_prefix('/'))
            .map(Path::from)
            .ok_or_else(|| BlobError::ForeignUri {
                uri: uri.to_string(),
                base: self.base.clone(),
            })
    }

    /// Writes `bytes` under their sha256 unless already present. Returns (uri, sha256, written).
    pub async fn put_content_addressed(
        &self,
        bytes: Bytes,
    ) -> Result<(String, String, bool), BlobError> {
        let sha = sha256_hex(&bytes);
        let (uri, written) = self.put_with_sha256(bytes, &sha).await?;
        Ok((uri, sha, written))
    }

    /// [`Self::put_content_addressed`] for a caller that has just hashed `bytes` itself
    /// (`sha256` = [`sha256_hex`] of them): a full-size radiograph is hashed once, not twice.
    /// Returns the URI and whether it was written.
    pub async fn put_with_sha256(
        &self,
        bytes: Bytes,
        sha256: &str,
    ) -> Result<(String, bool), BlobError> {
        debug_assert_eq!(sha256, sha256_hex(&bytes));
        let path = self.content_path(sha256);
        let uri = self.uri_of(&path);
        match self.store.head(&path).await {
            Ok(_) => return Ok((uri, false)),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(BlobError::Unavailable(e.to_string())),
        }
        self.store
            .put(&path, PutPayload::from_bytes(bytes))
            .await
            .map_err(|e| map_err(e, &uri))?;
        Ok((uri, true))
    }

    /// The size of a blob, by the URI this store returned, without reading it.
    pub async fn size(&self, uri: &str) -> Result<u64, BlobError> {
        let path = self.path_of(uri)?;
        let meta = self.store.head(&path).await.map_err(|e| map_err(e, uri))?;
        Ok(meta.size)
    }

    /// Reads a blob by the URI this store returned.
    pub async fn get(&self, uri: &str) -> Result<Bytes, BlobError> {
        let path = self.path_of(uri)?;
        let r = self.store.get(&path).await.map_err(|e| map_err(e, uri))?;
        r.bytes().await.map_err(|e| map_err(e, uri))
    }
}

/// Where the blob store ingest, preprocess and triage share lives: `--blob-store` and its
/// options, the same flags and `CXRFLOW_…` variables in each service (one store for them all).
/// The gateway names its own store with other flags (`--gateway-blob-store`, the hospital's
/// store), which a derived struct cannot rename, so it keeps its fields and shares
/// [`effective_url`] and [`describe`] instead.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct BlobStoreArgs {
    /// Blob store URL: `file:///abs/dir` or `s3://bucket[/prefix]`. Default: `file://<cwd>/.cxrflow/blobs`.
    #[arg(id = "blob_store", long = "blob-store", env = "CXRFLOW_BLOB_STORE")]
    pub url: Option<String>,

    /// Blob store options, `key=value`, repeatable (`aws_endpoint=http://…`, `aws_allow_http=true`,
    /// `aws_region=…`); over the usual `AWS_*` environment. In the environment: comma-separated.
    #[arg(id = "blob_store_options", long = "blob-store-option", env = "CXRFLOW_BLOB_STORE_OPTIONS", value_delimiter = ',', value_parser = crate::config::parse_key_value)]
    pub options: Vec<(String, String)>,
}

/// The shared store's directory under the working directory when no URL is given.
pub const DEFAULT_BLOB_DIR: &str = ".cxrflow/blobs";

impl BlobStoreArgs {
    /// The store at `url` with no options.
    pub fn at(url: impl Into<String>) -> Self {
        BlobStoreArgs {
            url: Some(url.into()),
            options: vec![],
        }
    }

    /// The URL, defaulting to [`DEFAULT_BLOB_DIR`] under the working directory.
    pub fn effective_url(&self) -> String {
        effective_url(self.url.as_deref(), DEFAULT_BLOB_DIR)
    }

    /// Opens the store these settings name.
    pub fn open(&self) -> Result<BlobStore, BlobError> {
        BlobStore::open(&self.effective_url(), &self.options)
    }

    /// `blob_store=… blob_store_options=[…]`, secrets masked, for the start-up configuration line.
    pub fn describe(&self) -> String {
        describe(&self.effective_url(), &self.options)
    }
}

/// `url`, or `file://<cwd>/<default_dir>` when it is unset or empty (an empty variable in a
/// compose file means unset).
pub fn effective_url(url: Option<&str>, default_dir: &str) -> String {
    match url {
        Some(u) if !u.is_empty() => u.to_string(),
        _ => {
            let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/tmp"));
            format!("file://{}", cwd.join(default_dir).display())
        }
    }
}

/// `blob_store=<url> blob_store_options=[…]` with the values of secret options masked.
pub fn describe(url: &str, options: &[(String, String)]) -> String {
    format!(
        "blob_store={url} blob_store_options=[{}]",
        crate::config::mask_options(options)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_store_is_content_addressed_and_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().join("blobs").display());
        let store = BlobStore::open(&url, &[]).unwrap();
        let (uri, sha, written) = store
            .put_content_addressed(Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert!(written);
        assert_eq!(sha, sha256_hex(b"hello"));
        assert!(uri.starts_with(&url), "{uri}");
        let (uri2, _, written2) = store
            .put_content_addressed(Bytes::from_static(b"hello"))
            .await
            .unwrap();
        assert_eq!(uri, uri2);
        assert!(!written2, "second write of the same content is skipped");
        assert_eq!(&store.get(&uri).await.unwrap()[..], b"hello");
        assert_eq!(store.size(&uri).await.unwrap(), 5);
        let missing = format!("{url}/sha256/00/00");
        assert!(matches!(
            store.get(&missing).await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            store.size(&missing).await,
            Err(BlobError::NotFound(_))
        ));
        assert!(matches!(
            store.get("s3://elsewhere/x").await,
            Err(BlobError::ForeignUri { .. })
        ));
    }

    #[test]
    fn args_parse_default_and_mask() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            blobs: BlobStoreArgs,
        }
        let cli = Cli::try_parse_from([
            "x",
            "--blob-store",
            "s3://b/blobs",
            "--blob-store-option",
            "aws_secret_access_key=hunter2",
        ])
        .unwrap();
        assert_eq!(cli.blobs.effective_url(), "s3://b/blobs");
        let d = cli.blobs.describe();
        assert!(
            d.starts_with("blob_store=s3://b/blobs blob_store_options=["),
            "{d}"
        );
        assert!(!d.contains("hunter2"), "{d}");
        for unset in [BlobStoreArgs::default(), BlobStoreArgs::at("")] {
            assert!(unset.effective_url().ends_with("/.cxrflow/blobs"));
        }
    }
}
