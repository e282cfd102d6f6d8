//! A repository in a folder on an SFTP server (OpenSSH's `sftp-server` or
//! `internal-sftp`), reached with the system's `ssh` (see `super::sftp_conn`).
//!
//! A writer spools the object locally (`super::spool`); its commit writes
//! it as on a local disk: to a temporary file beside the target
//! (`.NAME.TOKEN.envarc-tmp`), in chunks of [`CHUNK`] bytes (holding one
//! chunk), fsynced (`fsync@openssh.com`), then hard-linked to
//! their name (`hardlink@openssh.com`: fails if the name exists, so nothing
//! is overwritten) and the temporary name removed. A chunk write is retried
//! at its offset, so a session lost mid-object costs one chunk. When a
//! retried link finds the name taken, the object is read back and compared
//! with what was written (a running SHA-256): our own earlier link (whose
//! answer was lost) counts as success, anything else is `AlreadyExists`.
//! `replace` renames over the old object (`posix-rename@openssh.com`).
//!
//! SFTP cannot fsync a folder: a new name is durable once the server's file
//! system has written its folder (what `sftp-server` gives everyone).

use std::io::{self, Write};
use std::sync::Arc;
use std::time::SystemTime;

use futures_util::StreamExt;
use openssh_sftp_client::error::Error as SftpError;
use openssh_sftp_client::metadata::MetaDataBuilder;
use openssh_sftp_client::UnixTimeStamp;
use sha2::{Digest, Sha256};
use tokio::io::AsyncSeekExt;

use super::refresh_lock::{is_stale, LockObjects, LockTiming, RefreshedLock};
use super::sftp_conn::{is_failure, is_not_found, Connector, Session};
use super::spool::Spool;
use super::url::{RemoteOptions, SftpLocation};
use super::{check_name, HeldLock, LockInfo, ObjectInfo, ObjectWriter, Storage};

/// Bytes a writer buffers before sending them (and keeps until the server
/// acknowledged them, to resend after a lost session).
pub const CHUNK: usize = 4 << 20;

/// Suffix of the temporary files of writers.
const TMP_SUFFIX: &str = ".envarc-tmp";

/// Requests in flight at once that pipelines should aim for (one session
/// carries them all).
pub const MAX_IN_FLIGHT: usize = 8;

/// A folder on an SFTP server.
pub struct SftpStorage {
    inner: Arc<Inner>,
    timing: LockTiming,
}

struct Inner {
    conn: Arc<Connector>,
    base: String,
    location: String,
}

impl SftpStorage {
    /// Connects lazily: ssh starts with the first request.
    pub fn new(loc: &SftpLocation, opts: &RemoteOptions) -> SftpStorage {
        let location = super::Location::Sftp(loc.clone()).to_string();
        SftpStorage {
            inner: Arc::new(Inner {
                conn: Arc::new(Connector::new(
                    loc,
                    location.clone(),
                    opts.timeout,
                    opts.retry.clone(),
                )),
                base: loc.path.clone(),
                location,
            }),
            timing: opts.lock.clone(),
        }
    }

    /// Removes a temporary file that [`Storage::leftovers`] listed.
    pub fn remove_leftover(&self, leftover: &ObjectInfo) -> io::Result<()> {
        let file = leftover.name.rsplit('/').next().unwrap_or_default();
        let dir = leftover
            .name
            .strip_suffix(file)
            .unwrap_or_default()
            .trim_end_matches('/');
        if !dir.is_empty() {
            check_name(dir)?;
        }
        if !(file.starts_with('.') && file.ends_with(TMP_SUFFIX))
            || file.contains('/')
            || file.contains("..")
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a temporary file", leftover.name),
            ));
        }
        self.inner
            .remove_path(&format!("{}/{}", self.inner.base, leftover.name))
    }
}

impl Inner {
    fn path(&self, name: &str) -> io::Result<String> {
        check_name(name)?;
        Ok(format!("{}/{name}", self.base))
    }

    /// A fresh temporary path beside `name`'s.
    fn temp_for(&self, name: &str) -> io::Result<String> {
        let path = self.path(name)?;
        let (dir, file) = path.rsplit_once('/').unwrap_or((".", &path));
        let token = &crate::repo::Id::random().to_hex()[..16];
        Ok(format!("{dir}/.{file}.{token}{TMP_SUFFIX}"))
    }

    fn remove_path(&self, path: &str) -> io::Result<()> {
        let p = path.to_string();
        self.conn.call(&format!("deleting {path}"), move |s, _| {
            let p = p.clone();
            async move {
                match s.sftp.fs().remove_file(&p).await {
                    Err(e) if is_not_found(&e) => Ok(()),
                    r => r,
                }
            }
        })
    }

    /// Writes `data` at `offset` of the temporary file `tmp` (created, with
    /// its folders, if missing).
    fn write_at(&self, tmp: &str, offset: u64, data: Arc<Vec<u8>>) -> io::Result<()> {
        let t = tmp.to_string();
        self.conn.call(&format!("writing {tmp}"), move |s, _| {
            let (t, d) = (t.clone(), data.clone());
            async move {
                let mut f = match open_tmp(&s, &t).await {
                    Err(e) if is_not_found(&e) => {
                        make_dirs(&s, &t).await;
                        open_tmp(&s, &t).await?
                    }
                    r => r?,
                };
                f.seek(io::SeekFrom::Start(offset))
                    .await
                    .map_err(SftpError::from)?;
                f.write_all(&d).await?;
                f.close().await
            }
        })
    }

    /// Makes `tmp` durable, then gives it the name `path` unless taken.
    /// `digest`/`len` describe the content, to recognise our own object.
    fn link(
        &self,
        tmp: &str,
        path: &str,
        name: &str,
        digest: [u8; 32],
        len: u64,
    ) -> io::Result<()> {
        let t = tmp.to_string();
        self.conn.call(&format!("syncing {tmp}"), move |s, _| {
            let t = t.clone();
            async move {
                let mut f = s.sftp.options().write(true).open(&t).await?;
                match f.sync_all().await {
                    // A server without fsync@openssh.com: what it has.
                    Err(SftpError::UnsupportedExtension(_)) | Ok(()) => f.close().await,
                    Err(e) => Err(e),
                }
            }
        })?;
        let (t, p) = (tmp.to_string(), path.to_string());
        let linked = self.conn.call(&format!("creating {path}"), move |s, n| {
            let (t, p) = (t.clone(), p.clone());
            async move {
                match s.sftp.fs().hard_link(&t, &p).await {
                    Ok(()) => Ok(true),
                    // The name is taken; after a lost answer, maybe by us.
                    Err(e) if is_failure(&e) && n > 1 => Ok(false),
                    Err(e) => Err(e),
                }
            }
        });
        let outcome = match linked {
            Ok(true) => Ok(()),
            Ok(false) => match self.read_path(path) {
                Ok(d)
                    if d.len() as u64 == len && <[u8; 32]>::from(Sha256::digest(&d)) == digest =>
                {
                    Ok(())
                }
                _ => Err(self.exists_error(name)),
            },
            Err(e) if e.kind() == io::ErrorKind::Other && self.read_path(path).is_ok() => {
                Err(self.exists_error(name))
            }
            Err(e) => Err(e),
        };
        let _ = self.remove_path(tmp);
        outcome
    }

    fn exists_error(&self, name: &str) -> io::Error {
        io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{name} already exists in {}", self.location),
        )
    }

    fn read_path(&self, path: &str) -> io::Result<Vec<u8>> {
        let p = path.to_string();
        self.conn.call(&format!("reading {path}"), move |s, _| {
            let p = p.clone();
            async move { s.sftp.fs().read(&p).await.map(|b| b.to_vec()) }
        })
    }

    /// Writes `data` to a temporary file and renames it over `name`.
    fn replace_with(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let (path, tmp) = (self.path(name)?, self.temp_for(name)?);
        self.write_at(&tmp, 0, Arc::new(data.to_vec()))?;
        let (t, p) = (tmp.clone(), path.clone());
        let r = self.conn.call(&format!("replacing {path}"), move |s, _| {
            let (t, p) = (t.clone(), p.clone());
            async move {
                let mut f = s.sftp.options().write(true).open(&t).await?;
                let _ = f.sync_all().await;
                f.close().await?;
                s.sftp.fs().rename(&t, &p).await
            }
        });
        if r.is_err() {
            let _ = self.remove_path(&tmp);
        }
        r
    }

    /// Every regular file under `dir` (relative name `rel`), recursively:
    /// objects (`temps` false) or writers' temporary files (`temps` true).
    fn walk(&self, rel: &str, prefix: &str, temps: bool) -> io::Result<Vec<ObjectInfo>> {
        let (base, rel0, prefix0) = (self.base.clone(), rel.to_string(), prefix.to_string());
        self.conn
            .call(&format!("listing {}/{rel}", self.base), move |s, _| {
                let (base, rel, prefix) = (base.clone(), rel0.clone(), prefix0.clone());
                async move { walk(&s, &base, &rel, &prefix, temps).await }
            })
    }
}

async fn open_tmp(s: &Session, tmp: &str) -> Result<openssh_sftp_client::file::File, SftpError> {
    s.sftp.options().write(true).create(true).open(tmp).await
}

/// Creates the folders of `path` (mode 0700), ignoring those that exist;
/// the open that follows says whether it worked.
async fn make_dirs(s: &Session, path: &str) {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    let mut at = String::new();
    for (i, part) in dir.split('/').enumerate() {
        if i > 0 {
            at.push('/');
        }
        at.push_str(part);
        if part.is_empty() {
            continue;
        }
        let mut fs = s.sftp.fs();
        let mut b = fs.dir_builder();
        b.permissions(openssh_sftp_client::metadata::Permissions::from(0o700u16));
        let _ = b.create(&at).await;
    }
}

async fn walk(
    s: &Session,
    base: &str,
    start: &str,
    prefix: &str,
    temps: bool,
) -> Result<Vec<ObjectInfo>, SftpError> {
    let mut out = Vec::new();
    let mut pending = vec![start.to_string()];
    while let Some(rel) = pending.pop() {
        let dir = if rel.is_empty() {
            base.to_string()
        } else {
            format!("{base}/{rel}")
        };
        let mut fs = s.sftp.fs();
        let d = match fs.open_dir(&dir).await {
            Ok(d) => d,
            Err(e) if is_not_found(&e) => continue,
            Err(e) => return Err(e),
        };
        let mut entries = Box::pin(d.read_dir());
        while let Some(entry) = entries.next().await {
            let entry = entry?;
            let Some(file) = entry.filename().to_str().map(str::to_string) else {
                continue;
            };
            if file == "." || file == ".." {
                continue;
            }
            let name = if rel.is_empty() {
                file.clone()
            } else {
                format!("{rel}/{file}")
            };
            let md = entry.metadata();
            let ty = md.file_type();
            if ty.is_some_and(|t| t.is_dir()) {
                if !file.starts_with('.')
                    && (temps
                        || name.starts_with(prefix)
                        || prefix.starts_with(&format!("{name}/")))
                {
                    pending.push(name);
                }
            } else if ty.is_some_and(|t| t.is_file()) {
                let temp = file.starts_with('.') && file.ends_with(TMP_SUFFIX);
                let wanted = if temps {
                    temp
                } else {
                    !file.starts_with('.') && name.starts_with(prefix)
                };
                if wanted && (temps || check_name(&name).is_ok()) {
                    out.push(ObjectInfo {
                        name,
                        size: md.len().unwrap_or(0),
                        modified: md.modified().map(|t| t.as_system_time()),
                    });
                }
            }
        }
    }
    Ok(out)
}

impl LockObjects for Inner {
    fn refresh(&self, name: &str, _data: &[u8]) -> io::Result<()> {
        // Set the times of the existing file: a removed lock stays removed.
        let p = self.path(name)?;
        self.conn.call(&format!("refreshing {p}"), move |s, _| {
            let p = p.clone();
            async move {
                let now = UnixTimeStamp::new(SystemTime::now())
                    .map_err(|e| SftpError::from(io::Error::other(e)))?;
                let md = MetaDataBuilder::new().time(now, now).create();
                s.sftp.fs().set_metadata(&p, md).await
            }
        })
    }
    fn remove(&self, name: &str) -> io::Result<()> {
        self.remove_path(&self.path(name)?)
    }
}

/// Spools the object (see [`super::spool`]); on commit, sends it into a
/// temporary file one [`CHUNK`] at a time and links it to its name.
struct SftpWriter {
    inner: Arc<Inner>,
    name: String,
    tmp: String,
    spool: Spool,
    hash: Sha256,
}

impl Write for SftpWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.spool.write_all(data)?;
        self.hash.update(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl SftpWriter {
    /// Sends the spooled bytes into the temporary file (an empty object
    /// still creates it); returns how many.
    fn send(&mut self) -> io::Result<u64> {
        let mut parts = std::mem::replace(&mut self.spool, Spool::new()).into_reader()?;
        let mut sent = 0u64;
        loop {
            let part = parts.next_part(CHUNK)?;
            let n = part.len() as u64;
            self.inner.write_at(&self.tmp, sent, Arc::new(part))?;
            sent += n;
            if parts.left() == 0 {
                return Ok(sent);
            }
        }
    }
}

impl ObjectWriter for SftpWriter {
    fn written(&self) -> u64 {
        self.spool.len()
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        let sent = match self.send() {
            Ok(n) => n,
            Err(e) => {
                let _ = self.inner.remove_path(&self.tmp);
                return Err(e);
            }
        };
        let digest: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
        let path = self.inner.path(&self.name)?;
        self.inner.link(&self.tmp, &path, &self.name, digest, sent)
    }
}

impl Storage for SftpStorage {
    fn location(&self) -> String {
        self.inner.location.clone()
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<ObjectInfo>> {
        let dir = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        if !dir.is_empty() {
            check_name(dir)?;
        }
        self.inner.walk(dir, prefix, false)
    }

    fn stat(&self, name: &str) -> io::Result<ObjectInfo> {
        let p = self.inner.path(name)?;
        let md = self.inner.conn.call(&format!("stat of {p}"), move |s, _| {
            let p = p.clone();
            async move { s.sftp.fs().metadata(&p).await }
        })?;
        if !md.file_type().is_some_and(|t| t.is_file()) {
            return Err(io::Error::other(format!(
                "{name} in {}: not a regular file",
                self.inner.location
            )));
        }
        Ok(ObjectInfo {
            name: name.to_string(),
            size: md.len().unwrap_or(0),
            modified: md.modified().map(|t| t.as_system_time()),
        })
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        self.inner.read_path(&self.inner.path(name)?)
    }

    fn read_range(&self, name: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        let p = self.inner.path(name)?;
        let len = usize::try_from(length)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
        let path = p.clone();
        let data = self.inner.conn.call(&format!("reading {p}"), move |s, _| {
            let p = path.clone();
            async move {
                let mut f = s.sftp.open(&p).await?;
                f.seek(io::SeekFrom::Start(offset))
                    .await
                    .map_err(SftpError::from)?;
                let mut out = bytes::BytesMut::with_capacity(len);
                while out.len() < len {
                    let want = u32::try_from(len - out.len()).unwrap_or(u32::MAX);
                    let got = out.len();
                    match f.read(want, out.split_off(got)).await? {
                        Some(b) => out.unsplit(b),
                        None => break, // end of file
                    }
                }
                f.close().await?;
                Ok(out.to_vec())
            }
        })?;
        if data.len() != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{name} in {}: {length} bytes at {offset} asked, {} there",
                    self.inner.location,
                    data.len()
                ),
            ));
        }
        Ok(data)
    }

    fn create_writer(&self, name: &str) -> io::Result<Box<dyn ObjectWriter>> {
        let tmp = self.inner.temp_for(name)?;
        Ok(Box::new(SftpWriter {
            inner: self.inner.clone(),
            name: name.to_string(),
            tmp,
            spool: Spool::new(),
            hash: Sha256::new(),
        }))
    }

    fn replace(&self, name: &str, data: &[u8]) -> io::Result<()> {
        self.inner.replace_with(name, data)
    }

    fn delete(&self, name: &str) -> io::Result<()> {
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

    fn leftovers(&self) -> io::Result<Vec<ObjectInfo>> {
        self.inner.walk("", "", true)
    }

    fn remove_leftover(&self, leftover: &ObjectInfo) -> io::Result<()> {
        SftpStorage::remove_leftover(self, leftover)
    }
}
