//! `envarc demo`: the rotation story, end to end, in a scratch folder. Every
//! step runs the same library code as the command it prints, so the output
//! is what those commands do. Exits 0 only if every check passed: verify
//! found nothing wrong, every restore matches what was backed up, and the
//! first snapshot's stored messages are unchanged after two rotations.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::demo_tree::{capture, write_sample, Tree};
use super::fmt::plural;
use super::{GlobalArgs, Output};
use envarc::backup::{backup, BackupOptions};
use envarc::error::exit;
use envarc::keyring::{
    fmt_date, Argon2Params, CreateKey, FixedSecret, KeyringFile, KeyringOptions, Secret,
};
use envarc::maintain::KeyVersion;
use envarc::progress::Silent;
use envarc::providers::ProviderKind;
use envarc::repo::{ChunkId, EntryKind, Id, Index, InitOptions, KeyRef, Pins, Repository};
use envarc::{Error, Result};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Work in DIR (created if missing; it must be empty) and keep it
    /// afterwards. Default: a temporary folder, removed at the end.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The demo keyring's passphrase: a demo only, never for real data.
pub const DEMO_PASSPHRASE: &str = "envarc-demo";
const ALIAS: &str = "alias/demo";
const HOST: &str = "demo";

/// One backup as the demo remembers it.
pub(super) struct Backup {
    pub id: Id,
    /// The tree as it was backed up.
    pub tree: Tree,
    /// The versions wrapping the data keys of each file's chunks.
    pub files: BTreeMap<PathBuf, BTreeSet<u32>>,
}

pub(super) struct Demo<'a> {
    out: &'a Output,
    dir: PathBuf,
    source: PathBuf,
    repo_dir: PathBuf,
    keyring: KeyringFile,
    key_id: String,
    repo: Option<Repository>,
    step: u32,
    failures: Vec<String>,
}

impl Demo<'_> {
    pub(super) fn heading(&mut self, title: &str) {
        self.step += 1;
        self.out.say("");
        self.out.say(format!("{}. {title}", self.step));
    }

    pub(super) fn cmd(&self, args: &str) {
        self.out.say(format!("   $ envarc {args}"));
    }

    pub(super) fn say(&self, line: impl AsRef<str>) {
        self.out.say(format!("   {}", line.as_ref()));
    }

    pub(super) fn work_dir(&self) -> &Path {
        &self.dir
    }

    pub(super) fn repo_dir(&self) -> &Path {
        &self.repo_dir
    }

    pub(super) fn source_dir(&self) -> &Path {
        &self.source
    }

    pub(super) fn repo(&self) -> &Repository {
        self.repo.as_ref().expect("created in step 2")
    }

    pub(super) fn fail(&mut self, why: String) {
        self.say(format!("CHECK FAILED: {why}"));
        self.failures.push(why);
    }

    fn version(&self) -> Result<u32> {
        let kr = self.keyring.load()?;
        Ok(kr.get(&self.key_id)?.current().map_or(0, |b| b.version))
    }

    /// Points the repository at the keyring as it is now (after a rotation).
    fn refresh_provider(&mut self) -> Result<()> {
        let p = self.keyring.load()?.provider(&self.key_id)?;
        if let Some(r) = self.repo.as_mut() {
            r.set_provider(Box::new(p));
        }
        Ok(())
    }

    fn rel(&self, abs: &[u8]) -> PathBuf {
        let p = Path::new(std::ffi::OsStr::from_bytes(abs));
        p.strip_prefix(&self.source).unwrap_or(p).to_path_buf()
    }

    fn create_key(&mut self) -> Result<()> {
        self.heading("A keyring and a customer master key (CMK) that rotates every year");
        self.cmd("key create --alias alias/demo --enable-rotation --description \"envarc demo\"");
        let id = self.keyring.create_or_update(|kr| {
            kr.create_key(CreateKey {
                description: "envarc demo".into(),
                alias: Some(ALIAS.into()),
                rotation_period_days: Some(envarc::keyring::rotation::DEFAULT_PERIOD_DAYS),
                ..CreateKey::default()
            })
        })?;
        self.key_id = id.to_string();
        let kr = self.keyring.load()?;
        let next = kr.next_rotation(kr.get(&self.key_id)?);
        self.say(format!(
            "The keyring {} is encrypted with the demo passphrase '{DEMO_PASSPHRASE}' \
             (Argon2id); never use it for real data.",
            self.keyring.path().display()
        ));
        self.say(format!(
            "Created key {id} ({ALIAS}): backing key v1 wraps new data keys; next automatic rotation {}.",
            next.map(fmt_date).unwrap_or_else(|| "never".into())
        ));
        Ok(())
    }

    fn init(&mut self) -> Result<()> {
        self.heading("A repository whose data keys this CMK wraps");
        self.cmd(&format!(
            "init -r {} --key {ALIAS}",
            self.repo_dir.display()
        ));
        let p = self.keyring.load()?.provider(&self.key_id)?;
        let key = KeyRef {
            provider: ProviderKind::Keyring,
            key: self.key_id.clone(),
            params: Default::default(),
        };
        let storage = super::repo::open_storage(&self.repo_dir)?;
        let at = storage.location();
        let repo = Repository::init(storage, vec![key], Box::new(p), &InitOptions::default())?;
        // As `envarc init` does, so that the commands shown can be repeated.
        Pins::default_location()?.record(&at, repo.config(), true)?;
        self.say(format!(
            "Created repository {}: file contents are cut into chunks, each stored once, each an \
             AWS Encryption SDK message under the data key of the file that first stored it.",
            repo.config().id
        ));
        self.repo = Some(repo);
        Ok(())
    }

    /// The versions wrapping the data keys of `chunks`.
    fn versions_of(index: &Index, chunks: &[ChunkId]) -> BTreeSet<u32> {
        chunks
            .iter()
            .filter_map(|c| index.copies(c).next())
            .flat_map(|c| c.key_set.iter().filter_map(|kv| kv.version))
            .collect()
    }

    fn backup(&mut self, parent: Option<&Backup>) -> Result<Backup> {
        // Files changed within 50 ms of a backup's start are read again by the
        // next one; wait that out so unchanged files show as unchanged.
        std::thread::sleep(std::time::Duration::from_millis(120));
        self.cmd(&format!(
            "backup -r {} --host {HOST} {}",
            self.repo_dir.display(),
            self.source.display()
        ));
        let tree = capture(&self.source)?;
        let before = self.repo().load_index()?;
        let opts = BackupOptions {
            paths: vec![self.source.clone()],
            host: Some(HOST.into()),
            ..Default::default()
        };
        let r = backup(self.repo(), &opts, &Silent)?;
        let id = r.snapshot.expect("not a dry run");
        // What `envarc backup` prints, then what the demo adds to it.
        for line in super::backup::summary_lines(&r, false) {
            self.say(line);
        }
        self.say(format!(
            "{} under the current key version",
            plural(r.summary.data_keys, "fresh data key", "fresh data keys")
        ));
        let index = self.repo().load_index()?;
        let (_, entries) = self.repo().load_snapshot(&id)?;
        let mut files = BTreeMap::new();
        for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
            let rel = self.rel(&e.path);
            let added = e.chunks.iter().filter(|c| !before.contains(c)).count() as u64;
            let how = match parent.and_then(|p| p.tree.get(&rel)) {
                Some(old) if tree.get(&rel) == Some(old) => {
                    "unchanged: its chunks are referenced as they are".to_string()
                }
                Some(_) => format!(
                    "changed: {} under a fresh data key",
                    plural(added, "new chunk", "new chunks")
                ),
                None if added == 0 => "new path, content already stored: nothing new".into(),
                None => format!(
                    "new: {} under a fresh data key",
                    plural(added, "chunk", "chunks")
                ),
            };
            let vs = Self::versions_of(&index, &e.chunks);
            let names: Vec<String> = vs.iter().map(|v| format!("v{v}")).collect();
            self.say(format!(
                "  {:<4} {:<24} {how}",
                names.join("+"),
                rel.display()
            ));
            files.insert(rel, vs);
        }
        Ok(Backup { id, tree, files })
    }

    /// SHA-256 of the stored bytes of every chunk message `b` refers to.
    pub(super) fn stored_hashes(&self, b: &Backup) -> Result<BTreeMap<ChunkId, [u8; 32]>> {
        let index = self.repo().load_index()?;
        let (_, entries) = self.repo().load_snapshot(&b.id)?;
        let mut out = BTreeMap::new();
        for c in entries.iter().flat_map(|e| e.chunks.iter()) {
            let loc = index.get(c).ok_or_else(|| {
                Error::Integrity(format!("chunk {} is not in the index", c.short()))
            })?;
            let bytes = self
                .repo()
                .storage()
                .read_range(&envarc::repo::pack_name(&loc.pack), loc.offset, loc.length)
                .map_err(|e| Error::io("reading a stored chunk", e))?;
            out.insert(*c, Sha256::digest(&bytes).into());
        }
        Ok(out)
    }

    fn rotate_on_demand(&mut self) -> Result<()> {
        self.heading("Rotate the CMK on demand");
        self.cmd(&format!("key rotate-on-demand {ALIAS}"));
        let (_, v) = self.keyring.update(|kr| kr.rotate_on_demand(ALIAS))?;
        self.refresh_provider()?;
        self.say(format!(
            "Backing key v{v} now wraps every new data key. v{} stays in the keyring, only to \
             unwrap what it wrapped: nothing is re-encrypted.",
            v - 1
        ));
        Ok(())
    }

    fn rotate_due(&mut self) -> Result<()> {
        self.heading("A year later: the automatic rotation");
        let kr = self.keyring.load()?;
        let due = kr
            .next_rotation(kr.get(&self.key_id)?)
            .ok_or_else(|| Error::Other("the demo key has no rotation schedule".into()))?;
        // The day after it is due, at midnight: what `--as-of DATE` means.
        let as_of = (due + time::Duration::days(1)).replace_time(time::Time::MIDNIGHT);
        let date = as_of
            .format(time::macros::format_description!("[year]-[month]-[day]"))
            .map_err(|e| Error::Other(e.to_string()))?;
        self.cmd(&format!("key rotate-due --as-of {date} --force"));
        self.say(format!(
            "(due {}; cron would run `envarc key rotate-due` daily, and --as-of pretends that day has come)",
            fmt_date(due)
        ));
        let r = self.keyring.run_due(Some(as_of))?;
        self.refresh_provider()?;
        match r.rotated.first() {
            Some((_, v, _)) => self.say(format!(
                "Rotated automatically: backing key v{v} wraps new data keys from now on."
            )),
            None => self
                .failures
                .push("the automatic rotation did not happen".into()),
        }
        Ok(())
    }

    fn edit(&self, rel: &str, append: &str) -> Result<()> {
        let p = self.source.join(rel);
        let mut bytes = std::fs::read(&p).unwrap_or_default();
        bytes.extend_from_slice(append.as_bytes());
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
        }
        std::fs::write(&p, bytes).map_err(|e| Error::io(format!("writing {}", p.display()), e))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let (a, b) = (self.source.join(from), self.source.join(to));
        std::fs::rename(&a, &b).map_err(|e| Error::io(format!("renaming {}", a.display()), e))
    }

    fn stats(&self) -> Result<()> {
        let current = KeyVersion {
            provider: ProviderKind::Keyring.into(),
            key: self.key_id.clone(),
            version: Some(self.version()?),
        };
        let is_current = |kv: &KeyVersion| *kv == current;
        let facts = envarc::maintain::stats::KeyFacts {
            is_current: &is_current,
            keyring_retired: &[],
        };
        let s = envarc::maintain::stats::stats(self.repo(), &facts, &Silent)?;
        let label = |kv: &KeyVersion| {
            if kv.key == self.key_id {
                format!("keyring key {} ({ALIAS})", kv.key)
            } else {
                kv.to_string()
            }
        };
        for l in super::stats::render(&s, &label) {
            self.say(l);
        }
        Ok(())
    }
}

/// The demo's folder: the one given (which must be empty), else a temporary one.
fn workdir(dir: &Option<PathBuf>) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)
                .map_err(|e| Error::io(format!("creating {}", d.display()), e))?;
            let d = d
                .canonicalize()
                .map_err(|e| Error::io(format!("reading {}", d.display()), e))?;
            let mut entries = std::fs::read_dir(&d)
                .map_err(|e| Error::io(format!("reading {}", d.display()), e))?;
            if entries.next().is_some() {
                return Err(Error::Usage(format!(
                    "{} is not empty; give `envarc demo --dir` a new or empty folder",
                    d.display()
                )));
            }
            Ok((d, None))
        }
        None => {
            let t = tempfile::Builder::new()
                .prefix("envarc-demo.")
                .tempdir()
                .map_err(|e| Error::io("creating a temporary folder", e))?;
            let d = t
                .path()
                .canonicalize()
                .map_err(|e| Error::io("reading the temporary folder", e))?;
            Ok((d, Some(t)))
        }
    }
}

pub fn demo(out: &Output, _g: &GlobalArgs, a: DemoArgs) -> Result<i32> {
    if out.json {
        // A walk-through for people: refuse rather than print nothing.
        return Err(envarc::Error::Usage(
            "demo prints a walk-through for people and has no JSON output; run the commands \
             it shows (backup, verify, stats, …) with --json"
                .into(),
        ));
    }
    let (dir, _temp) = workdir(&a.dir)?;
    let mut d = new_demo(out, &dir)?;
    intro(out, &dir, a.dir.is_some());
    std::fs::create_dir_all(&d.source)
        .map_err(|e| Error::io(format!("creating {}", d.source.display()), e))?;
    write_sample(&d.source)?;

    d.create_key()?;
    d.init()?;
    let (backups, first_hashes) = backups(&mut d)?;
    super::demo_check::check(&mut d, &backups, &first_hashes)?;

    d.heading("The blast radius of each backing key");
    d.cmd(&format!("stats -r {}", d.repo_dir.display()));
    d.stats()?;
    Ok(verdict(out, &d.failures))
}

/// The demo's state in `dir`: a keyring with a demo passphrase, nothing
/// made yet.
fn new_demo<'a>(out: &'a Output, dir: &Path) -> Result<Demo<'a>> {
    let keyring_path = dir.join("keyring");
    let mut opts = KeyringOptions::new(
        keyring_path.clone(),
        Arc::new(FixedSecret(Secret::Passphrase(zeroize::Zeroizing::new(
            DEMO_PASSPHRASE.as_bytes().to_vec(),
        )))),
    );
    // OWASP's minimum Argon2id cost: the demo keyring guards nothing real.
    opts.argon2 = Argon2Params {
        m_kib: 19 * 1024,
        t: 2,
        p: 1,
    };
    Ok(Demo {
        out,
        source: dir.join("source"),
        repo_dir: dir.join("repo"),
        keyring: KeyringFile::new(opts),
        key_id: String::new(),
        repo: None,
        step: 0,
        failures: Vec::new(),
        dir: dir.to_path_buf(),
    })
}

/// What the demo does and how to repeat its steps.
fn intro(out: &Output, dir: &Path, kept: bool) {
    let keyring_path = dir.join("keyring");
    out.say("envarc demo: envelope encryption with a rotating key, end to end");
    out.say(format!(
        "Working in {}{}.",
        dir.display(),
        if kept {
            " (kept afterwards)"
        } else {
            " (removed at the end; keep it with --dir DIR)"
        }
    ));
    out.say("To repeat a step yourself, first:");
    out.say(format!(
        "   export ENVARC_KEYRING={} ENVARC_PASSPHRASE={DEMO_PASSPHRASE}",
        keyring_path.display()
    ));
}

/// SHA-256 of each stored chunk message, by chunk.
type MessageHashes = BTreeMap<ChunkId, [u8; 32]>;

/// The four backups between rotations and edits; with the stored-message
/// hashes of the first.
fn backups(d: &mut Demo<'_>) -> Result<([Backup; 4], MessageHashes)> {
    d.heading("First backup: the sample tree");
    let b1 = d.backup(None)?;
    let first_hashes = d.stored_hashes(&b1)?;
    d.say(format!(
        "Recorded the SHA-256 of these {} stored chunk messages, to show later that no rotation rewrote them.",
        first_hashes.len()
    ));

    d.rotate_on_demand()?;
    d.heading("Change a file, add one, back up again");
    d.edit(
        "docs/notes.md",
        "- Rotated on demand: new data keys now use v2.\n",
    )?;
    d.edit(
        "docs/todo.txt",
        "Check the blast radius with `envarc stats`.\n",
    )?;
    d.say("(appended a line to docs/notes.md; added docs/todo.txt)");
    let b2 = d.backup(Some(&b1))?;

    d.rotate_due()?;
    d.heading("Change and add again, third backup");
    d.edit("docs/2026/report.csv", "2026-13,1,1\n")?;
    d.edit("docs/2026/q3.csv", "quarter,files\n2026-Q3,42\n")?;
    d.say("(appended a row to docs/2026/report.csv; added docs/2026/q3.csv)");
    let b3 = d.backup(Some(&b2))?;
    let b4 = rename_and_backup(d, &b3)?;
    Ok(([b1, b2, b3, b4], first_hashes))
}

/// A renamed folder stores nothing new: every chunk is already there.
fn rename_and_backup(d: &mut Demo<'_>, b3: &Backup) -> Result<Backup> {
    d.heading("Rename a folder and back up: nothing new is stored");
    d.rename("data", "assets")?;
    d.say("(renamed data/ to assets/, which holds the 120 KB blob.bin)");
    let b4 = d.backup(Some(b3))?;
    let (_, entries) = d.repo().load_snapshot(&b4.id)?;
    let meta = d.repo().load_snapshot_meta(&b4.id)?;
    if meta.summary.chunks_added != 0 || meta.summary.data_keys != 0 {
        d.fail(format!(
            "the renamed folder stored {} new chunks",
            meta.summary.chunks_added
        ));
    } else {
        let moved = entries
            .iter()
            .filter(|e| d.rel(&e.path).starts_with("assets") && e.kind == EntryKind::File)
            .count();
        d.say(format!(
            "{} under the new name: every chunk was already stored, so 0 bytes were added and no \
             data key was made.",
            plural(moved as u64, "file", "files")
        ));
    }

    Ok(b4)
}

/// The last line, and the exit code: 4 when a check failed.
fn verdict(out: &Output, failures: &[String]) -> i32 {
    out.say("");
    if failures.is_empty() {
        out.say("Result: every check passed.");
        exit::OK
    } else {
        for f in failures {
            out.warn(format!("check failed: {f}"));
        }
        out.say(format!("Result: {} checks failed.", failures.len()));
        exit::INTEGRITY
    }
}
