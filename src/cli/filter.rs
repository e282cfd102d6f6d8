//! `--host`, `--tag` and `--path`: which snapshots a listing or a change
//! considers, as restic spells them (`snapshots`, `forget`, `tag`).

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use envarc::repo::{Id, SnapshotMeta};
use envarc::Result;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Only snapshots of host HOST; repeatable (any of them).
    #[arg(help_heading = "Snapshot filters", long, value_name = "HOST")]
    pub host: Vec<String>,
    /// Only snapshots with tags TAG[,TAG…] (all of them); repeatable (any
    /// of the lists).
    #[arg(help_heading = "Snapshot filters", long, value_name = "TAGS")]
    pub tag: Vec<String>,
    /// Only snapshots that include PATH among their backed-up paths;
    /// repeatable (all of them). Relative paths are taken from the current folder.
    #[arg(help_heading = "Snapshot filters", long, value_name = "PATH")]
    pub path: Vec<PathBuf>,
}

/// A [`SnapshotFilter`] with its paths made absolute, ready to test metadata.
pub struct Filter {
    hosts: Vec<String>,
    tags: Vec<Vec<String>>,
    paths: Vec<Vec<u8>>,
    described: String,
}

impl SnapshotFilter {
    pub fn is_empty(&self) -> bool {
        self.host.is_empty() && self.tag.is_empty() && self.path.is_empty()
    }

    pub fn build(&self) -> Result<Filter> {
        let mut paths = Vec::with_capacity(self.path.len());
        for p in &self.path {
            let abs = envarc::backup::walk::clean_absolute(p)?;
            paths.push(abs.as_os_str().as_bytes().to_vec());
        }
        let tags = self
            .tag
            .iter()
            .map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .collect();
        let mut parts = Vec::new();
        parts.extend(self.host.iter().map(|h| format!("--host {h}")));
        parts.extend(self.tag.iter().map(|t| format!("--tag {t}")));
        parts.extend(
            paths
                .iter()
                .map(|p| format!("--path {}", super::fmt::lossy(p))),
        );
        Ok(Filter {
            hosts: self.host.clone(),
            tags,
            paths,
            described: parts.join(" "),
        })
    }
}

impl Filter {
    /// Whether the snapshot passes every given criterion.
    pub fn matches(&self, m: &SnapshotMeta) -> bool {
        let host = self.hosts.is_empty() || self.hosts.contains(&m.host);
        let tags = self.tags.is_empty()
            || self
                .tags
                .iter()
                .any(|all: &Vec<String>| all.iter().all(|t| m.tags.contains(t)));
        let paths = self.paths.iter().all(|p| m.paths.contains(p));
        host && tags && paths
    }

    /// The snapshots that pass, in the order given.
    pub fn apply(&self, all: Vec<(Id, SnapshotMeta)>) -> Vec<(Id, SnapshotMeta)> {
        all.into_iter().filter(|(_, m)| self.matches(m)).collect()
    }

    /// The options as given (`--host a --tag x`), for messages.
    pub fn describe(&self) -> &str {
        &self.described
    }

    pub fn is_empty(&self) -> bool {
        self.described.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envarc::repo::{Summary, Time, SNAPSHOT_VERSION};

    fn meta(host: &str, tags: &[&str], paths: &[&str]) -> SnapshotMeta {
        SnapshotMeta {
            version: SNAPSHOT_VERSION,
            time: Time::default(),
            host: host.into(),
            paths: paths.iter().map(|p| p.as_bytes().to_vec()).collect(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            parent: None,
            summary: Summary::default(),
            entries: 0,
        }
    }

    #[test]
    fn hosts_any_tag_lists_any_of_all_paths_all() {
        let f = SnapshotFilter {
            host: vec!["a".into(), "b".into()],
            tag: vec!["x,y".into(), "z".into()],
            path: vec!["/home".into()],
        }
        .build()
        .unwrap();
        assert!(f.matches(&meta("a", &["x", "y"], &["/etc", "/home"])));
        assert!(f.matches(&meta("b", &["z"], &["/home"])));
        assert!(!f.matches(&meta("c", &["z"], &["/home"])), "host");
        assert!(!f.matches(&meta("a", &["x"], &["/home"])), "x without y");
        assert!(!f.matches(&meta("a", &["z"], &["/etc"])), "path");
        assert_eq!(
            f.describe(),
            "--host a --host b --tag x,y --tag z --path /home"
        );
        let none = SnapshotFilter::default().build().unwrap();
        assert!(none.is_empty() && none.matches(&meta("q", &[], &[])));
    }
}
