//! The object store Cadenza's daemons share: the control plane writes raw uploads and packaged
//! media, the origin serves the media. A local directory by default, any S3-compatible service
//! when the URL says `s3://`; both through the `object_store` crate.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload, WriteMultipart};
use tokio::io::AsyncReadExt as _;

use serde::{Deserialize, Serialize};
use telemetry::Secret;

/// S3 settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct S3Config {
    /// Endpoint of an S3-compatible service (SeaweedFS, MinIO…); unset: AWS.
    pub endpoint: Option<String>,
    /// Region.
    pub region: String,
    /// Access key id; unset: anonymous (or the environment's credentials).
    pub access_key_id: Option<Secret>,
    /// Secret access key.
    pub secret_access_key: Option<Secret>,
}

impl Default for S3Config {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".to_owned(),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// A failure of the object store.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// The store refused or failed.
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    /// A local file could not be read.
    #[error("reading {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The configuration is not usable.
    #[error("object store configuration: {0}")]
    Config(String),
}

/// A handle to the object store.
#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    kind: &'static str,
}

impl Objects {
    /// `file:///path` (created if missing) or `s3://bucket[/prefix]` with the S3 settings.
    pub fn from_url(url: &str, s3: &S3Config) -> Result<Self, ObjectError> {
        if let Some(dir) = url.strip_prefix("file://") {
            std::fs::create_dir_all(dir).map_err(|source| ObjectError::Io {
                path: dir.to_owned(),
                source,
            })?;
            let store = LocalFileSystem::new_with_prefix(dir)?;
            return Ok(Self {
                store: Arc::new(store),
                kind: "local",
            });
        }
        if let Some(rest) = url.strip_prefix("s3://") {
            let rest = rest.trim_end_matches('/');
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(ObjectError::Config(
                    "expected s3://BUCKET[/PREFIX]".to_owned(),
                ));
            }
            let mut builder = AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(&s3.region)
                .with_virtual_hosted_style_request(false);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            builder = match (&s3.access_key_id, &s3.secret_access_key) {
                (Some(id), Some(secret)) => builder
                    .with_access_key_id(id.expose())
                    .with_secret_access_key(secret.expose()),
                (None, None) => {
                    // Anonymous: requests go unsigned. Without this the client would look
                    // for credentials in the cloud's instance-metadata service.
                    builder.with_skip_signature(true)
                }
                _ => {
                    return Err(ObjectError::Config(
                        "give both s3.access_key_id and s3.secret_access_key, or neither"
                            .to_owned(),
                    ));
                }
            };
            let s3_store = builder.build()?;
            // Keys live under the prefix, so that deployments (and test runs) can share a bucket.
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3_store)
            } else {
                Arc::new(PrefixStore::new(s3_store, prefix))
            };
            return Ok(Self { store, kind: "s3" });
        }
        Err(ObjectError::Config(format!(
            "unsupported object store URL {url:?} (file:// or s3://)"
        )))
    }

    /// The underlying store, for reads the methods here do not cover (ranges, metadata).
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// `local` or `s3`.
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// Stores a local file under `key`, in parts for large files. The object appears whole or
    /// not at all.
    pub async fn put_file(&self, key: &str, file: &Path) -> Result<u64, ObjectError> {
        let io = |source| ObjectError::Io {
            path: file.display().to_string(),
            source,
        };
        let mut reader = tokio::fs::File::open(file).await.map_err(io)?;
        let upload = self.store.put_multipart(&Key::from(key)).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, 8 * 1024 * 1024);
        let mut buffer = vec![0u8; 1024 * 1024];
        let mut total = 0u64;
        loop {
            let read = reader.read(&mut buffer).await.map_err(io)?;
            if read == 0 {
                break;
            }
            writer.wait_for_capacity(4).await?;
            writer.write(&buffer[..read]);
            total += read as u64;
        }
        writer.finish().await?;
        Ok(total)
    }

    /// Stores bytes under `key`.
    pub async fn put(&self, key: &str, bytes: Bytes) -> Result<(), ObjectError> {
        self.store
            .put(&Key::from(key), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Reads a whole object.
    pub async fn get(&self, key: &str) -> Result<Bytes, ObjectError> {
        Ok(self.store.get(&Key::from(key)).await?.bytes().await?)
    }

    /// Streams an object's bytes.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<futures::stream::BoxStream<'static, Result<Bytes, object_store::Error>>, ObjectError>
    {
        Ok(self.store.get(&Key::from(key)).await?.into_stream())
    }

    /// Deletes an object; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        match self.store.delete(&Key::from(key)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// The keys under `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ObjectError> {
        use futures::TryStreamExt as _;
        let prefix = Key::from(prefix);
        let listed: Vec<_> = self.store.list(Some(&prefix)).try_collect().await?;
        Ok(listed
            .into_iter()
            .map(|meta| meta.location.to_string())
            .collect())
    }
}
