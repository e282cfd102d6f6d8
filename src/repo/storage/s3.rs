//! A repository in an S3 bucket (AWS, SeaweedFS, MinIO, Ceph, …), through
//! Apache OpenDAL's S3 service.
//!
//! - Objects are created with `If-None-Match: *` (a single PUT, or the
//!   completion of a multipart upload), so a name that exists is never
//!   overwritten where the store honours the header. Each create carries a
//!   random token in its metadata (`x-amz-meta-envarc-token`): when a retried
//!   create meets an existing object, the token tells our own earlier attempt
//!   (whose answer was lost) from another writer's object.
//! - A writer spools the object locally (`super::spool`) and sends it on
//!   commit: up to [`PUT_MAX`] bytes as one PUT (holding the object in
//!   memory while it is sent), larger ones as a multipart upload of
//!   [`PART`]-byte parts read back one at a time (holding one part).
//! - Every request is retried on 5xx, 429, connection errors and timeouts
//!   (OpenDAL's retry layer, with [`super::retry::RetryPolicy`]'s bounds), and
//!   each attempt is bounded by the request timeout.
//! - Credentials come from the usual AWS places (OpenDAL's reqsign chain):
//!   `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`, the
//!   shared `~/.aws/config` and `~/.aws/credentials` files (`AWS_PROFILE`),
//!   SSO, web identity, `credential_process`, ECS and EC2 instance roles.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::SystemTime;

use opendal::layers::{RetryLayer, TimeoutLayer};
use opendal::options::{ListOptions, ReadOptions, WriteOptions};
use opendal::{ErrorKind, Operator};

use super::refresh_lock::{is_stale, LockObjects, LockTiming, RefreshedLock};
use super::runtime;
use super::s3_error::to_io;
use super::spool::{Spool, SpoolReader};
use super::url::{RemoteOptions, S3Location};
use super::{check_name, HeldLock, LockInfo, ObjectInfo, ObjectWriter, Storage};

/// Part size of multipart uploads (S3's minimum is 5 MiB).
pub const PART: usize = 8 << 20;

/// Largest object sent in one PUT (a pack of the default 16 MiB and its
/// last chunk is one request, not five).
pub const PUT_MAX: usize = 3 * PART;

/// The user metadata key of the create token.
const TOKEN: &str = "envarc-token";

/// Requests in flight at once that pipelines should aim for.
pub const MAX_IN_FLIGHT: usize = 16;

/// A bucket (and prefix) on an S3-compatible endpoint.
pub struct S3Storage {
    inner: Arc<Inner>,
    timing: LockTiming,
}

struct Inner {
    op: Operator,
    location: String,
    /// Tries of a retried request, for messages.
    attempts: usize,
}

/// The region of `loc`: from the AWS environment, else from an AWS host
/// name (`s3.REGION.amazonaws.com`), else `us-east-1` (what S3-compatible
/// servers expect when they care at all).
fn region_of(loc: &S3Location) -> String {
    if let Some(r) = ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|s| !s.is_empty()))
    {
        return r;
    }
    let host = loc
        .endpoint
        .split_once("://")
        .map_or(loc.endpoint.as_str(), |(_, h)| h);
    host.strip_suffix(".amazonaws.com")
        .and_then(|h| h.strip_prefix("s3.").or_else(|| h.strip_prefix("s3-")))
        .filter(|r| !r.is_empty() && !r.contains('.'))
        .unwrap_or("us-east-1")
        .to_string()
}

impl S3Storage {
    /// Connects lazily: nothing is sent until the first request.
    pub fn new(loc: &S3Location, opts: &RemoteOptions) -> io::Result<S3Storage> {
        let host = loc.endpoint.split_once("://").map_or("", |(_, h)| h);
        let aws = host == "s3.amazonaws.com" || host.ends_with(".amazonaws.com");
        let mut b = opendal::services::S3::default()
            .bucket(&loc.bucket)
            .root(&format!("/{}", loc.prefix))
            .region(&region_of(loc));
        if aws {
            // AWS: the regional endpoint, virtual-host addressing.
            b = b.enable_virtual_host_style();
            if host != "s3.amazonaws.com" {
                b = b.endpoint(&loc.endpoint);
            }
        } else {
            b = b.endpoint(&loc.endpoint);
        }
        let p = &opts.retry;
        let location = super::Location::S3(loc.clone()).to_string();
        let _rt = runtime::enter()?;
        let op = Operator::new(b)
            .map_err(|e| to_io(&location, "configuring", "", p.attempts, e))?
            .layer(
                TimeoutLayer::new()
                    .with_timeout(opts.timeout)
                    .with_io_timeout(opts.timeout),
            )
            .layer(
                RetryLayer::new()
                    .with_max_times(p.attempts.saturating_sub(1))
                    .with_min_delay(p.first_delay)
                    .with_max_delay(p.max_delay)
                    .with_factor(2.0)
                    .with_jitter(),
            );
        Ok(S3Storage {
            inner: Arc::new(Inner {
                op,
                location,
                attempts: p.attempts,
            }),
            timing: opts.lock.clone(),
        })
    }
}

impl Inner {
    fn err(&self, what: &str, name: &str, e: opendal::Error) -> io::Error {
        to_io(&self.location, what, name, self.attempts, e)
    }

    fn stat(&self, name: &str) -> io::Result<opendal::Metadata> {
        check_name(name)?;
        let (op, n) = (self.op.clone(), name.to_string());
        runtime::run(async move { Ok(op.stat(&n).await) })?
            .map_err(|e| self.err("stat of", name, e))
    }

    /// A conditional create of `data` under `name`, tagged with `token`.
    fn put_new(&self, name: &str, data: opendal::Buffer, token: &str) -> io::Result<()> {
        let (op, n) = (self.op.clone(), name.to_string());
        let opts = create_options(token);
        let r = runtime::run(async move { Ok(op.write_options(&n, data, opts).await) })?;
        match r {
            Ok(_) => Ok(()),
            Err(e) => self.settle(name, token, self.err("writing", name, e)),
        }
    }

    /// After a create failed with `e`: success if `e` says the name exists
    /// and holds our own token (a retried attempt found the first one's
    /// object), else `e`.
    fn settle(&self, name: &str, token: &str, e: io::Error) -> io::Result<()> {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        match self.stat(name) {
            Ok(md) if md.user_metadata().and_then(|m| m.get(TOKEN)) == Some(token) => Ok(()),
            _ => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{name} already exists in {}", self.location),
            )),
        }
    }
}

fn create_options(token: &str) -> WriteOptions {
    WriteOptions {
        if_not_exists: true,
        user_metadata: Some(HashMap::from([(TOKEN.to_string(), token.to_string())])),
        ..Default::default()
    }
}

impl Inner {
    /// One unconditional PUT: replaces `name` atomically.
    fn overwrite(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let (op, n, d) = (self.op.clone(), name.to_string(), data.to_vec());
        runtime::run(async move { Ok(op.write(&n, d).await) })?
            .map(|_| ())
            .map_err(|e| self.err("writing", name, e))
    }
}

impl LockObjects for Inner {
    /// A PUT conditional on the ETag just read (`If-Match`), so that a lock
    /// removed between the check and the write fails the write (412, or 404
    /// where the server says so) instead of being put back. A server that
    /// gives no ETag or refuses the condition otherwise (an old S3
    /// look-alike answering 501) gets the plain PUT: the window is then
    /// the milliseconds between the two requests, as it was before.
    fn refresh(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let md = self.stat(name)?; // NotFound: removed by someone else
        let Some(etag) = md.etag() else {
            return self.overwrite(name, data);
        };
        let opts = WriteOptions {
            if_match: Some(etag.to_string()),
            ..Default::default()
        };
        let (op, n, d) = (self.op.clone(), name.to_string(), data.to_vec());
        match runtime::run(async move { Ok(op.write_options(&n, d, opts).await) })? {
            Ok(_) => Ok(()),
            Err(e) if matches!(e.kind(), ErrorKind::ConditionNotMatch | ErrorKind::NotFound) => {
                // Our own write may have landed with its answer lost, and
                // the retry been refused: then the object holds `data`.
                let (op, n) = (self.op.clone(), name.to_string());
                let now = runtime::run(async move { Ok(op.read(&n).await) })?;
                if now.is_ok_and(|b| b.to_vec() == data) {
                    return Ok(());
                }
                Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{name} was removed or replaced while being refreshed"),
                ))
            }
            Err(_) => self.overwrite(name, data),
        }
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        let (op, n) = (self.op.clone(), name.to_string());
        runtime::run(async move { Ok(op.delete(&n).await) })?
            .map_err(|e| self.err("deleting", name, e))
    }
}

/// Spools the object (see [`super::spool`]) and sends it on commit: one
/// conditional PUT up to [`PUT_MAX`] bytes, else a multipart upload of
/// [`PART`]-byte parts read back from the spool one at a time, completed
/// conditionally, aborted on failure.
struct S3Writer {
    inner: Arc<Inner>,
    name: String,
    token: String,
    spool: Spool,
}

impl Write for S3Writer {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.spool.write_all(data)?;
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Aborts a multipart upload, so that no part lingers (best effort: a
/// bucket lifecycle rule for incomplete uploads catches the rest).
fn abort(mut w: opendal::Writer) {
    let _ = runtime::run(async move {
        let _ = w.abort().await;
        Ok(())
    });
}

impl S3Writer {
    fn multipart(self, mut parts: SpoolReader) -> io::Result<()> {
        let (op, n) = (self.inner.op.clone(), self.name.clone());
        let opts = WriteOptions {
            chunk: Some(PART),
            concurrent: 1,
            ..create_options(&self.token)
        };
        let started = runtime::run(async move { Ok(op.writer_options(&n, opts).await) })?;
        let mut w = started.map_err(|e| self.inner.err("starting the upload of", &self.name, e))?;
        while parts.left() > 0 {
            let part = match parts.next_body(PART) {
                Ok(p) => p,
                Err(e) => {
                    abort(w);
                    return Err(e);
                }
            };
            let (back, r) = runtime::run(async move {
                let r = w.write(part).await;
                Ok((w, r))
            })?;
            w = back;
            if let Err(e) = r {
                abort(w);
                return Err(self.inner.err("uploading a part of", &self.name, e));
            }
        }
        let (back, r) = runtime::run(async move {
            let r = w.close().await;
            Ok((w, r))
        })?;
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                abort(back);
                let e = self.inner.err("completing the upload of", &self.name, e);
                self.inner.settle(&self.name, &self.token, e)
            }
        }
    }
}

impl ObjectWriter for S3Writer {
    fn written(&self) -> u64 {
        self.spool.len()
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        let mut parts = std::mem::replace(&mut self.spool, Spool::new()).into_reader()?;
        if parts.left() <= PUT_MAX as u64 {
            let data = parts.next_body(PUT_MAX)?;
            return self.inner.put_new(&self.name, data, &self.token);
        }
        self.multipart(parts)
    }
}

impl Storage for S3Storage {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<ObjectInfo>> {
        // List the deepest folder the prefix names, then filter by name.
        let dir = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        if !dir.is_empty() {
            check_name(dir.trim_end_matches('/'))?;
        }
        let (op, d) = (
            self.inner.op.clone(),
            if dir.is_empty() { "/" } else { dir }.to_string(),
        );
        let opts = ListOptions {
            recursive: true,
            ..Default::default()
        };
        let entries = runtime::run(async move { Ok(op.list_options(&d, opts).await) })?
            .map_err(|e| self.inner.err("listing", prefix, e))?;
        Ok(entries
            .into_iter()
            .filter(|e| e.metadata().is_file() && e.path().starts_with(prefix))
            .filter(|e| check_name(e.path()).is_ok())
            .map(|e| ObjectInfo {
                name: e.path().to_string(),
                size: e.metadata().content_length(),
                modified: e.metadata().last_modified().map(SystemTime::from),
            })
            .collect())
    }

    fn stat(&self, name: &str) -> io::Result<ObjectInfo> {
        let md = self.inner.stat(name)?;
        Ok(ObjectInfo {
            name: name.to_string(),
            size: md.content_length(),
            modified: md.last_modified().map(SystemTime::from),
        })
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        check_name(name)?;
        let (op, n) = (self.inner.op.clone(), name.to_string());
        runtime::run(async move { Ok(op.read(&n).await) })?
            .map(|b| b.to_vec())
            .map_err(|e| self.inner.err("reading", name, e))
    }

    fn read_range(&self, name: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        check_name(name)?;
        if length == 0 {
            return Ok(Vec::new());
        }
        let (op, n) = (self.inner.op.clone(), name.to_string());
        let opts = ReadOptions {
            range: (offset..offset.saturating_add(length)).into(),
            ..Default::default()
        };
        let data =
            runtime::run(async move { Ok(op.read_options(&n, opts).await) })?.map(|b| b.to_vec());
        let data = match data {
            // OpenDAL checks the length it got against the range asked.
            Err(e) if e.to_string().contains("too little data") => Vec::new(),
            r => r.map_err(|e| self.inner.err("reading", name, e))?,
        };
        if data.len() as u64 != length {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{name} in {}: {length} bytes at {offset} asked, the object is shorter",
                    self.inner.location
                ),
            ));
        }
        Ok(data)
    }

    fn create_writer(&self, name: &str) -> io::Result<Box<dyn ObjectWriter>> {
        check_name(name)?;
        Ok(Box::new(S3Writer {
            inner: self.inner.clone(),
            name: name.to_string(),
            token: crate::repo::Id::random().to_hex(),
            spool: Spool::new(),
        }))
    }

    fn create(&self, name: &str, data: &[u8]) -> io::Result<()> {
        check_name(name)?;
        if data.len() > PUT_MAX {
            let mut w = self.create_writer(name)?;
            w.write_all(data)?;
            return w.commit();
        }
        let token = crate::repo::Id::random().to_hex();
        self.inner.put_new(name, data.to_vec().into(), &token)
    }

    fn replace(&self, name: &str, data: &[u8]) -> io::Result<()> {
        // One PUT replaces an object atomically on S3.
        check_name(name)?;
        self.inner.overwrite(name, data)
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        check_name(name)?;
        self.inner.remove(name)
    }

    fn max_in_flight(&self) -> usize {
        MAX_IN_FLIGHT
    }

    fn create_lock(&self, name: &str, data: &[u8]) -> io::Result<Box<dyn HeldLock>> {
        let objects: Arc<dyn LockObjects> = self.inner.clone();
        RefreshedLock::create(self, objects, name, data, &self.timing)
    }

    fn lock_is_stale(&self, object: &ObjectInfo, info: &LockInfo) -> bool {
        is_stale(object, info, &self.timing, SystemTime::now())
    }
}
