//! The connection to an S3-compatible bucket: an `object_store` client,
//! the small tokio runtime the synchronous store blocks on, the key of
//! every store file below the store's prefix, counts of what was sent and
//! received, and the errors of the endpoint turned into messages that say
//! what to do (`s3_error`).
//!
//! Endpoint, region and credentials come from the standard AWS variables,
//! as `object_store`'s `AmazonS3Builder::from_env` reads them. Requests
//! are retried with backoff on throttling and server errors, for a
//! bounded time (`RETRY_SECS`), so nothing hangs on a dead endpoint.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as Key;
use object_store::{
    ClientConfigKey, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use super::{Traffic, s3_error};
use crate::error::{Error, Result};

/// How long one request may be retried (throttling, 5xx, dropped
/// connections) before its error is reported.
const RETRY_SECS: u64 = 20;
/// How long one attempt may take.
const ATTEMPT_SECS: u64 = 30;

/// What a store location names: `s3://BUCKET/PREFIX`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Url {
    /// `None` when `loc` is not an `s3://` URL; an error when it is one
    /// without a usable bucket name.
    pub fn parse(loc: &str) -> Option<Result<S3Url>> {
        let rest = loc.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/').to_string();
        let ok_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        let bad_prefix =
            prefix.split('/').any(|c| c.is_empty() || c == "." || c == "..") && !prefix.is_empty();
        Some(match (ok_bucket, bad_prefix) {
            (true, false) => Ok(S3Url {
                bucket: bucket.to_string(),
                prefix,
            }),
            _ => Err(Error::StoreLocation {
                path: PathBuf::from(loc),
                detail: "an S3 store is s3://BUCKET/PREFIX: a bucket name of 3 to 63 lowercase \
                         letters, digits, '-' or '.', and a prefix without empty, '.' or '..' parts"
                    .into(),
            }),
        })
    }
}

/// One bucket and prefix, and the runtime its requests run on.
pub struct Remote {
    rt: tokio::runtime::Runtime,
    s3: Arc<dyn ObjectStore>,
    pub url: S3Url,
    /// `s3://bucket/prefix`, for messages.
    pub location: PathBuf,
    /// The endpoint as configured, for messages.
    pub endpoint: String,
    requests: AtomicU64,
    sent: AtomicU64,
    received: AtomicU64,
}

impl Remote {
    pub fn connect(url: S3Url) -> Result<Self> {
        let location = match url.prefix.is_empty() {
            true => PathBuf::from(format!("s3://{}", url.bucket)),
            false => PathBuf::from(format!("s3://{}/{}", url.bucket, url.prefix)),
        };
        let endpoint = ["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| "the AWS default endpoint".into());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("moat-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::io(&location, e))?;
        let retry = RetryConfig {
            max_retries: 8,
            retry_timeout: Duration::from_secs(RETRY_SECS),
            ..RetryConfig::default()
        };
        let mut b = AmazonS3Builder::from_env()
            .with_bucket_name(&url.bucket)
            .with_retry(retry)
            // Set key by key: `with_client_options` would drop the client
            // settings read from the environment (AWS_ALLOW_HTTP, proxies).
            .with_config(
                AmazonS3ConfigKey::Client(ClientConfigKey::Timeout),
                format!("{ATTEMPT_SECS}s"),
            )
            .with_config(AmazonS3ConfigKey::Client(ClientConfigKey::ConnectTimeout), "5s");
        // A bucket named in the URL wins over AWS_BUCKET; with no region
        // configured anywhere, us-east-1 (what S3-compatible servers
        // expect) instead of an error.
        if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
            b = b.with_region("us-east-1");
        }
        let s3 = b.build().map_err(|e| Error::StoreLocation {
            path: location.clone(),
            detail: format!("cannot set up the S3 client: {}", s3_error::clean(&e.to_string())),
        })?;
        Ok(Self::with(rt, Arc::new(s3), url, location, endpoint))
    }

    /// A bucket in memory (`object_store`'s `InMemory`, which keeps the
    /// same contract: whole objects, conditional creates, listings): the
    /// unit tests of the S3 backend and its lock run against it.
    pub fn in_memory(url: S3Url) -> Result<Self> {
        let location = PathBuf::from(format!("s3://{}/{}", url.bucket, url.prefix));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::io(&location, e))?;
        let mem = Arc::new(object_store::memory::InMemory::new());
        Ok(Self::with(rt, mem, url, location, "memory".into()))
    }

    fn with(
        rt: tokio::runtime::Runtime,
        s3: Arc<dyn ObjectStore>,
        url: S3Url,
        location: PathBuf,
        endpoint: String,
    ) -> Self {
        Remote {
            rt,
            s3,
            url,
            location,
            endpoint,
            requests: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }
    }

    /// Another view of the same bucket and prefix (a second process, in
    /// tests).
    pub fn sibling(&self) -> Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| Error::io(&self.location, e))?;
        Ok(Self::with(
            rt,
            self.s3.clone(),
            self.url.clone(),
            self.location.clone(),
            self.endpoint.clone(),
        ))
    }

    /// The key of `rel` (a `/`-separated path below the store's prefix).
    pub fn key(&self, rel: &str) -> Key {
        match self.url.prefix.is_empty() {
            true => Key::from(rel),
            false => Key::from(format!("{}/{rel}", self.url.prefix)),
        }
    }

    /// `rel` as a URL, for messages.
    pub fn describe(&self, rel: &str) -> PathBuf {
        self.location.join(rel)
    }

    pub fn traffic(&self) -> Traffic {
        Traffic {
            requests: self.requests.load(Ordering::Relaxed),
            bytes_sent: self.sent.load(Ordering::Relaxed),
            bytes_received: self.received.load(Ordering::Relaxed),
        }
    }

    fn count(&self, sent: usize, received: usize) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.received.fetch_add(received as u64, Ordering::Relaxed);
    }

    fn read_err(&self, rel: &str, e: object_store::Error) -> Error {
        Error::Remote {
            path: self.describe(rel),
            detail: s3_error::explain(&e, &self.url.bucket, &self.endpoint),
        }
    }

    fn write_err(&self, rel: &str, e: object_store::Error) -> Error {
        Error::store_write(
            self.describe(rel),
            std::io::Error::other(s3_error::explain(&e, &self.url.bucket, &self.endpoint)),
        )
    }

    /// The whole object, `None` when there is none.
    pub fn get(&self, rel: &str) -> Result<Option<Vec<u8>>> {
        let key = self.key(rel);
        let res = self.rt.block_on(async {
            match self.s3.get(&key).await {
                Ok(r) => r.bytes().await.map(Some),
                Err(object_store::Error::NotFound { source, path })
                    if !s3_error::no_bucket(&source.to_string()) =>
                {
                    let _ = (source, path);
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        });
        match res {
            Ok(b) => {
                self.count(0, b.as_ref().map_or(0, |b| b.len()));
                Ok(b.map(|b| b.to_vec()))
            }
            Err(e) => Err(self.read_err(rel, e)),
        }
    }

    /// Bytes `range` of an object that must exist, cut short at its end.
    pub fn get_range(&self, rel: &str, range: Range<u64>) -> Result<Vec<u8>> {
        if range.is_empty() {
            return Ok(Vec::new());
        }
        let key = self.key(rel);
        let res = self.rt.block_on(async {
            let opts = object_store::GetOptions::new().with_range(Some(range.clone()));
            match self.s3.get_opts(&key, opts).await {
                Ok(r) => r.bytes().await,
                // A range starting at or past the end is "not satisfiable":
                // it is the empty tail of the object.
                Err(e) if range_past_end(&e) => Ok(Default::default()),
                Err(e) => Err(e),
            }
        });
        match res {
            Ok(b) => {
                self.count(0, b.len());
                Ok(b.to_vec())
            }
            Err(e) => Err(self.read_err(rel, e)),
        }
    }

    /// Size and last-modified time (ns) of an object, `None` when absent.
    pub fn head(&self, rel: &str) -> Result<Option<(u64, i64)>> {
        let key = self.key(rel);
        let res = self.rt.block_on(self.s3.head(&key));
        self.count(0, 0);
        match res {
            Ok(m) => Ok(Some((m.size, meta_ns(&m)))),
            Err(object_store::Error::NotFound { source, .. })
                if !s3_error::no_bucket(&source.to_string()) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.read_err(rel, e)),
        }
    }

    /// Every object below `rel_dir/`: its path relative to the store's
    /// prefix, size and last-modified time (ns).
    pub fn list(&self, rel_dir: &str) -> Result<Vec<(String, u64, i64)>> {
        let key = self.key(rel_dir);
        let strip = match self.url.prefix.is_empty() {
            true => String::new(),
            false => format!("{}/", self.url.prefix),
        };
        let res: std::result::Result<Vec<ObjectMeta>, _> = self.rt.block_on(async {
            let mut out = Vec::new();
            let mut s = self.s3.list(Some(&key));
            while let Some(m) = s.next().await {
                out.push(m?);
            }
            Ok(out)
        });
        match res {
            Ok(v) => {
                // One request per page of up to 1000 keys.
                for _ in 0..v.len() / 1000 + 1 {
                    self.count(0, 0);
                }
                Ok(v.into_iter()
                    .filter_map(|m| {
                        let rel = m.location.as_ref().strip_prefix(strip.as_str())?.to_string();
                        Some((rel, m.size, meta_ns(&m)))
                    })
                    .collect())
            }
            Err(e) => {
                self.count(0, 0);
                Err(self.read_err(rel_dir, e))
            }
        }
    }

    /// Writes a whole object, replacing any (`create`: only if there is
    /// none; returns whether it wrote).
    pub fn put(&self, rel: &str, data: Vec<u8>, create: bool) -> Result<bool> {
        let key = self.key(rel);
        let len = data.len();
        let opts = PutOptions {
            mode: match create {
                true => PutMode::Create,
                false => PutMode::Overwrite,
            },
            ..PutOptions::default()
        };
        let res = self
            .rt
            .block_on(self.s3.put_opts(&key, PutPayload::from(data), opts));
        match res {
            Ok(_) => {
                self.count(len, 0);
                Ok(true)
            }
            Err(object_store::Error::AlreadyExists { .. }) if create => {
                self.count(len, 0);
                Ok(false)
            }
            Err(e) => {
                self.count(len, 0);
                Err(self.write_err(rel, e))
            }
        }
    }

    /// Deletes an object (deleting an absent one succeeds).
    pub fn delete(&self, rel: &str) -> Result<()> {
        let key = self.key(rel);
        let res = self.rt.block_on(self.s3.delete(&key));
        self.count(0, 0);
        match res {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.write_err(rel, e)),
        }
    }
}

fn meta_ns(m: &ObjectMeta) -> i64 {
    m.last_modified.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn range_past_end(e: &object_store::Error) -> bool {
    let s = e.to_string();
    s.contains("416") || s.contains("InvalidRange") || s.contains("not satisfiable")
}
