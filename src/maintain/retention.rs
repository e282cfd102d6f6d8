//! restic's `forget` policy, as a pure function over snapshot metadata.
//!
//! Snapshots are grouped by host and paths (restic's default `--group-by
//! host,paths`); the policy applies to each group on its own, newest first:
//!
//! - `last N`: the N most recent snapshots;
//! - `hourly/daily/weekly/monthly/yearly N`: for the last N hours (days, ISO
//!   weeks Monday to Sunday, months, years) that have snapshots, the most
//!   recent snapshot of each;
//! - while a rule still has counts left when the group's oldest snapshot is
//!   reached, that oldest snapshot is kept too (restic ≥ 0.17: "oldest");
//! - `tag T` (T may be `a,b`: all of them): every snapshot with those tags,
//!   not counted; an empty T matches snapshots without tags.
//!
//! A snapshot kept by any rule is kept. Calendar periods are taken in UTC
//! (restic uses the local time zone): the result does not depend on where or
//! in which season `forget` runs, and a machine's nightly backup falls into
//! one UTC day per night unless it runs within a few hours of midnight UTC.
//! `unlimited` counts are written as `None` in [`Count::Unlimited`].

use serde::Serialize;
use time::OffsetDateTime;

use crate::repo::{Id, SnapshotMeta};

/// A `--keep-*` count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Count {
    N(u32),
    Unlimited,
}

impl std::str::FromStr for Count {
    type Err = String;
    fn from_str(s: &str) -> Result<Count, String> {
        if s == "unlimited" {
            return Ok(Count::Unlimited);
        }
        s.parse::<u32>()
            .map(Count::N)
            .map_err(|_| format!("'{s}' is not a count: give a number or 'unlimited'"))
    }
}

#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub last: Option<Count>,
    pub hourly: Option<Count>,
    pub daily: Option<Count>,
    pub weekly: Option<Count>,
    pub monthly: Option<Count>,
    pub yearly: Option<Count>,
    /// Each: tags a snapshot must all have (empty: no tags at all).
    pub tags: Vec<Vec<String>>,
}

impl Policy {
    /// No rule at all (restic then keeps everything; envarc refuses).
    pub fn is_empty(&self) -> bool {
        let zero = |c: &Option<Count>| matches!(c, None | Some(Count::N(0)));
        [
            &self.last,
            &self.hourly,
            &self.daily,
            &self.weekly,
            &self.monthly,
            &self.yearly,
        ]
        .iter()
        .all(|c| zero(c))
            && self.tags.is_empty()
    }
}

/// One group's decision.
#[derive(Clone, Debug, Serialize)]
pub struct GroupDecision {
    pub host: String,
    pub paths: Vec<String>,
    /// Newest first, each with why it is kept.
    pub keep: Vec<(Id, Vec<String>)>,
    /// Newest first.
    pub remove: Vec<Id>,
}

fn utc(meta: &SnapshotMeta) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(meta.time.sec).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// The calendar period of a time for each rule (`last` uses the position).
fn bucket(rule: usize, t: OffsetDateTime, pos: usize) -> i64 {
    let (y, m, d, h) = (
        i64::from(t.year()),
        i64::from(u8::from(t.month())),
        i64::from(t.day()),
        i64::from(t.hour()),
    );
    match rule {
        0 => pos as i64,
        1 => ((y * 100 + m) * 100 + d) * 100 + h,
        2 => (y * 100 + m) * 100 + d,
        3 => {
            let (iy, w, _) = t.to_iso_week_date();
            i64::from(iy) * 100 + i64::from(w)
        }
        4 => y * 100 + m,
        _ => y,
    }
}

const RULES: [&str; 6] = ["last", "hourly", "daily", "weekly", "monthly", "yearly"];

fn has_tags(meta: &SnapshotMeta, want: &[String]) -> bool {
    if want.is_empty() || want.iter().all(|t| t.is_empty()) {
        return meta.tags.is_empty();
    }
    want.iter()
        .filter(|t| !t.is_empty())
        .all(|t| meta.tags.contains(t))
}

/// Applies the policy to one group (any order in; newest first out).
pub fn apply_group(
    policy: &Policy,
    group: &[(Id, SnapshotMeta)],
) -> (Vec<(Id, Vec<String>)>, Vec<Id>) {
    let mut list: Vec<&(Id, SnapshotMeta)> = group.iter().collect();
    // Newest first; equal times in a fixed order.
    list.sort_by(|a, b| b.1.time.cmp(&a.1.time).then(b.0.cmp(&a.0)));
    let counts = [
        policy.last,
        policy.hourly,
        policy.daily,
        policy.weekly,
        policy.monthly,
        policy.yearly,
    ];
    // Per rule: counts left (None: unlimited) and the last period kept.
    let mut left: Vec<Option<u32>> = counts
        .iter()
        .map(|c| match c {
            None => Some(0),
            Some(Count::N(n)) => Some(*n),
            Some(Count::Unlimited) => None,
        })
        .collect();
    let mut last_bucket: [Option<i64>; 6] = [None; 6];
    let mut keep = Vec::new();
    let mut remove = Vec::new();
    for (pos, (id, meta)) in list.iter().enumerate() {
        let oldest = pos + 1 == list.len();
        let mut reasons = Vec::new();
        for t in &policy.tags {
            if has_tags(meta, t) {
                reasons.push(format!("tags {}", t.join(",")));
            }
        }
        let t = utc(meta);
        for rule in 0..RULES.len() {
            if left[rule] == Some(0) {
                continue;
            }
            let b = bucket(rule, t, pos);
            let new_period = last_bucket[rule] != Some(b);
            if new_period || oldest {
                last_bucket[rule] = Some(b);
                if let Some(n) = left[rule].as_mut() {
                    *n -= 1;
                }
                reasons.push(if new_period {
                    RULES[rule].to_string()
                } else {
                    format!("oldest {}", RULES[rule])
                });
            }
        }
        if reasons.is_empty() {
            remove.push(*id);
        } else {
            keep.push((*id, reasons));
        }
    }
    (keep, remove)
}

/// Groups by host and paths and applies the policy to each group. With
/// `host`, only that host's snapshots are considered (others are untouched).
pub fn apply(
    policy: &Policy,
    snapshots: &[(Id, SnapshotMeta)],
    host: Option<&str>,
) -> Vec<GroupDecision> {
    type Group = Vec<(Id, SnapshotMeta)>;
    let mut groups: std::collections::BTreeMap<(String, Vec<Vec<u8>>), Group> = Default::default();
    for (id, m) in snapshots {
        if host.is_some_and(|h| h != m.host) {
            continue;
        }
        groups
            .entry((m.host.clone(), m.paths.clone()))
            .or_default()
            .push((*id, m.clone()));
    }
    groups
        .into_iter()
        .map(|((host, paths), list)| {
            let (keep, remove) = apply_group(policy, &list);
            GroupDecision {
                host,
                paths: paths
                    .iter()
                    .map(|p| String::from_utf8_lossy(p).into_owned())
                    .collect(),
                keep,
                remove,
            }
        })
        .collect()
}
