//! Path patterns, shared by backup (`--exclude`) and restore (`--include`,
//! `--exclude`), with one syntax and errors that name the option.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::{Error, Result};

/// A set of patterns. A pattern without `/` matches an entry's name at any
/// depth (`*.tmp`, `node_modules`); a pattern with `/` matches the whole
/// absolute path (`/home/*/.cache`, `**/build/*.o`), where `*` does not cross
/// a `/` and `**` does. A matched folder takes in everything below it
/// (backup does not enter an excluded folder; restore checks ancestors).
pub struct PathMatcher {
    names: GlobSet,
    paths: GlobSet,
}

impl PathMatcher {
    /// Builds the set; `option` names the option the patterns came from
    /// (`--exclude`, `--include`), for errors.
    pub fn new(option: &str, patterns: &[String]) -> Result<PathMatcher> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Usage(format!("bad {option} pattern '{p}': {e}")))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::Usage(format!("bad {option} pattern: {e}")))
        };
        Ok(PathMatcher {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Reads a pattern file (`--exclude-file`): one pattern per line; blank lines and lines
    /// starting with `#` are ignored.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading the pattern file {}", path.display()), e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// Whether `path` itself matches (not its ancestors).
    pub fn is_match(&self, path: &Path) -> bool {
        if let Some(name) = path.file_name() {
            if self
                .names
                .is_match_candidate(&Candidate::from_bytes(name.as_bytes()))
            {
                return true;
            }
        }
        self.paths.is_match(path)
    }
}

/// The proper ancestors of a raw path, nearest first (`/a/b/c` → `/a/b`, `/a`).
pub fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let slash = path[..end].iter().rposition(|b| *b == b'/')?;
        if slash == 0 {
            return None;
        }
        end = slash;
        Some(&path[..slash])
    })
}

impl PathMatcher {
    /// Whether a raw path or one of its ancestors matches (a matched folder
    /// takes in everything below it).
    pub fn covers(&self, path: &[u8]) -> bool {
        let p = |b: &[u8]| self.is_match(Path::new(std::ffi::OsStr::from_bytes(b)));
        p(path) || ancestors(path).any(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_anywhere_and_paths_from_the_root() {
        let ex = PathMatcher::new(
            "--exclude",
            &[
                "*.tmp".into(),
                "node_modules/".into(),
                "/home/*/.cache".into(),
                "**/build/*.o".into(),
            ],
        )
        .unwrap();
        for yes in [
            "/a/b/x.tmp",
            "/x/node_modules",
            "/home/u/.cache",
            "/p/q/build/m.o",
        ] {
            assert!(ex.is_match(Path::new(yes)), "{yes}");
        }
        for no in [
            "/a/b/x.tmpl",
            "/home/u/v/.cache",
            "/p/build/sub/m.o",
            "/home/u/.cachex",
        ] {
            assert!(!ex.is_match(Path::new(no)), "{no}");
        }
        let e = PathMatcher::new("--include", &["a[".into()]).err().unwrap();
        assert!(e.to_string().contains("bad --include pattern"), "{e}");
    }
}
