//! Which manifest entries a restore writes: `--include` / `--exclude`.
//!
//! Every entry's path is absolute in the manifest; it is restored at the same
//! path below the target (`/home/a/x` → `TARGET/home/a/x`), as restic does.
//! The safety checks of each entry are rules of the snapshot format
//! ([`crate::repo::manifest`]); this module only selects.

use std::collections::HashSet;

use crate::pathmatch::{ancestors, PathMatcher};
use crate::repo::{Entry, EntryKind};
use crate::Result;

/// `--include` and `--exclude` patterns, with the syntax of `backup
/// --exclude`: without a `/` a pattern matches a name at any depth, with one
/// the whole absolute path. A pattern that matches a folder takes in (or
/// leaves out) everything below it; the folders above an included entry are
/// restored too, so it has somewhere to go.
pub struct Selection {
    include: Option<PathMatcher>,
    exclude: PathMatcher,
}

impl Selection {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selection> {
        Ok(Selection {
            include: if include.is_empty() {
                None
            } else {
                Some(PathMatcher::new("--include", include)?)
            },
            exclude: PathMatcher::new("--exclude", exclude)?,
        })
    }

    /// Which entries to restore. `ok[i]` is false for refused entries.
    pub fn select(&self, entries: &[Entry], ok: &[bool]) -> Vec<bool> {
        let mut chosen: Vec<bool> = entries
            .iter()
            .zip(ok)
            .map(|(e, ok)| {
                *ok && !self.exclude.covers(&e.path)
                    && self.include.as_ref().is_none_or(|inc| inc.covers(&e.path))
            })
            .collect();
        if self.include.is_some() {
            let holders: HashSet<&[u8]> = entries
                .iter()
                .zip(&chosen)
                .filter(|(_, c)| **c)
                .flat_map(|(e, _)| ancestors(&e.path))
                .collect();
            for (i, e) in entries.iter().enumerate() {
                if ok[i]
                    && e.kind == EntryKind::Dir
                    && holders.contains(e.path.as_slice())
                    && !self.exclude.covers(&e.path)
                {
                    chosen[i] = true;
                }
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::manifest::test_entry as entry;

    #[test]
    fn include_takes_folders_above_and_exclude_wins() {
        use EntryKind::*;
        let entries = vec![
            entry("/s", Dir),
            entry("/s/a", Dir),
            entry("/s/a/keep.txt", File),
            entry("/s/a/other.bin", File),
            entry("/s/b", Dir),
            entry("/s/b/x.txt", File),
            entry("/s/b/skip", Dir),
            entry("/s/b/skip/y.txt", File),
        ];
        let ok = vec![true; entries.len()];
        let sel = Selection::new(&["*.txt".into()], &["/s/b/skip".into()]).unwrap();
        let chosen = sel.select(&entries, &ok);
        assert_eq!(
            chosen,
            vec![true, true, true, false, true, true, false, false]
        );
        let all = Selection::new(&[], &[]).unwrap().select(&entries, &ok);
        assert!(all.iter().all(|c| *c));
    }
}
