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
//! - `within D`: every snapshot less than D older than the group's newest
//!   (restic's `--keep-within`: relative to the newest, not to now, so a
//!   host that stopped backing up keeps its last week).
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
    /// Keep snapshots taken less than this before the group's newest.
    pub within: Option<std::time::Duration>,
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
            && self.within.is_none_or(|d| d.is_zero())
    }
}

/// One group's decision.
#[derive(Clone, Debug, Serialize)]
pub struct GroupDecision {
    pub host: String,
    pub paths: Vec<String>,
    /// Newest first, each with why it is kept.
    #[serde(serialize_with = "keep_as_hex")]
    pub keep: Vec<(Id, Vec<String>)>,
    /// Newest first.
    #[serde(serialize_with = "ids_as_hex")]
    pub remove: Vec<Id>,
}

/// Snapshot IDs in `--json` output as the hex every listing shows, not as
/// the 32 numbers of their bytes.
fn ids_as_hex<S: serde::Serializer>(ids: &[Id], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(ids.iter().map(Id::to_hex))
}

fn keep_as_hex<S: serde::Serializer>(keep: &[(Id, Vec<String>)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(keep.iter().map(|(id, why)| (id.to_hex(), why)))
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
    let newest = list.first().map_or(0, |(_, m)| m.time.as_nanos());
    for (pos, (id, meta)) in list.iter().enumerate() {
        let oldest = pos + 1 == list.len();
        let mut reasons = Vec::new();
        if let Some(d) = policy.within.filter(|d| !d.is_zero()) {
            if newest - meta.time.as_nanos() < d.as_nanos() as i128 {
                reasons.push(format!("within {}", crate::text::fmt_duration(d)));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{Summary, Time, SNAPSHOT_VERSION};
    use time::macros::datetime;

    fn meta(t: OffsetDateTime, tags: &[&str]) -> SnapshotMeta {
        SnapshotMeta {
            version: SNAPSHOT_VERSION,
            time: Time {
                sec: t.unix_timestamp(),
                nsec: 0,
            },
            host: "mopped".into(),
            paths: vec![b"/home/user/work".to_vec()],
            tags: tags.iter().map(|s| s.to_string()).collect(),
            parent: None,
            summary: Summary::default(),
            entries: 0,
        }
    }

    /// Snapshots at the given times; the ID's first bytes number them.
    fn snaps(times: &[OffsetDateTime]) -> Vec<(Id, SnapshotMeta)> {
        times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let mut id = [0u8; 32];
                id[..4].copy_from_slice(&(i as u32).to_be_bytes());
                (Id(id), meta(*t, &[]))
            })
            .collect()
    }

    fn kept_times(policy: &Policy, list: &[(Id, SnapshotMeta)]) -> Vec<String> {
        let (keep, remove) = apply_group(policy, list);
        assert_eq!(keep.len() + remove.len(), list.len());
        let mut v: Vec<String> = keep
            .iter()
            .map(|(id, _)| {
                let m = &list.iter().find(|(i, _)| i == id).unwrap().1;
                m.time.to_rfc3339()
            })
            .collect();
        v.sort();
        v
    }

    /// restic's documentation: one backup every Sunday for 12 weeks;
    /// `--keep-daily 4` keeps the last four Sundays.
    #[test]
    fn restic_doc_twelve_sundays_keep_daily_4() {
        let first = datetime!(2019-09-01 11:00 UTC);
        let times: Vec<_> = (0..12).map(|w| first + time::Duration::weeks(w)).collect();
        let policy = Policy {
            daily: Some(Count::N(4)),
            ..Default::default()
        };
        assert_eq!(
            kept_times(&policy, &snaps(&times)),
            [
                "2019-10-27T11:00:00Z",
                "2019-11-03T11:00:00Z",
                "2019-11-10T11:00:00Z",
                "2019-11-17T11:00:00Z"
            ]
        );
    }

    /// restic's documentation: daily backups for 100 years and
    /// `--keep-daily 7 --keep-weekly 5 --keep-monthly 12 --keep-yearly 75`.
    /// Derived by hand for 1925-01-01 .. 2024-12-31 (a Tuesday): the 7 last
    /// days (Dec 25-31); weekly adds Dec 22, 15, 8 (Dec 31 and 29 end ISO
    /// weeks 2025-W01 and 2024-W52 and are daily already); monthly adds the
    /// last day of Jan..Nov 2024; yearly adds Dec 31 of 1950..2023.
    #[test]
    fn restic_doc_hundred_years_of_dailies() {
        let start = datetime!(1925-01-01 11:00 UTC);
        let end = datetime!(2024-12-31 11:00 UTC);
        let days = (end - start).whole_days();
        let times: Vec<_> = (0..=days)
            .map(|d| start + time::Duration::days(d))
            .collect();
        let policy = Policy {
            daily: Some(Count::N(7)),
            weekly: Some(Count::N(5)),
            monthly: Some(Count::N(12)),
            yearly: Some(Count::N(75)),
            ..Default::default()
        };
        let mut want: Vec<String> = Vec::new();
        for d in 25..=31 {
            want.push(format!("2024-12-{d}T11:00:00Z"));
        }
        for d in [8, 15, 22] {
            want.push(format!("2024-12-{d:02}T11:00:00Z"));
        }
        let month_ends = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30];
        for (m, d) in month_ends.iter().enumerate() {
            want.push(format!("2024-{:02}-{d}T11:00:00Z", m + 1));
        }
        for y in 1950..=2023 {
            want.push(format!("{y}-12-31T11:00:00Z"));
        }
        want.sort();
        assert_eq!(want.len(), 95);
        assert_eq!(kept_times(&policy, &snaps(&times)), want);
    }

    /// restic ≥ 0.17: with counts left at the oldest snapshot, it is kept too.
    #[test]
    fn oldest_is_kept_while_counts_are_left() {
        let times: Vec<_> = (0..36)
            .map(|i| datetime!(2022-01-15 12:00 UTC) + time::Duration::days(30 * i))
            .collect();
        let list = snaps(&times);
        let policy = Policy {
            yearly: Some(Count::N(10)),
            ..Default::default()
        };
        let (keep, _) = apply_group(&policy, &list);
        let kept = kept_times(&policy, &list);
        // The newest of 2024, 2023 and 2022, and the oldest of all.
        assert_eq!(
            kept,
            [
                "2022-01-15T12:00:00Z",
                "2022-12-11T12:00:00Z",
                "2023-12-06T12:00:00Z",
                "2024-11-30T12:00:00Z"
            ]
        );
        assert_eq!(keep.last().unwrap().1, ["oldest yearly"]);
        // Counts used up: the oldest goes.
        let policy = Policy {
            yearly: Some(Count::N(2)),
            ..Default::default()
        };
        assert_eq!(kept_times(&policy, &list).len(), 2);
    }

    #[test]
    fn last_hourly_tags_and_unlimited() {
        let t0 = datetime!(2024-03-01 10:05 UTC);
        // Three in one hour, then one per hour.
        let mut times = vec![
            t0,
            t0 + time::Duration::minutes(10),
            t0 + time::Duration::minutes(20),
        ];
        times.extend((1..5).map(|h| t0 + time::Duration::hours(h)));
        let mut list = snaps(&times);
        let hourly = Policy {
            hourly: Some(Count::N(2)),
            ..Default::default()
        };
        assert_eq!(
            kept_times(&hourly, &list),
            ["2024-03-01T13:05:00Z", "2024-03-01T14:05:00Z"]
        );
        let last = Policy {
            last: Some(Count::N(3)),
            ..Default::default()
        };
        assert_eq!(kept_times(&last, &list).len(), 3);
        let all_hours = Policy {
            hourly: Some(Count::Unlimited),
            ..Default::default()
        };
        // One per hour: 10:25 (the newest of the 10 o'clock three) and 4
        // more; an unlimited count is never used up, so the oldest (10:05)
        // is kept too, as in restic.
        assert_eq!(kept_times(&all_hours, &list).len(), 6);
        // Tags: kept whatever the counts, and not counted.
        list[0].1.tags = vec!["important".into(), "db".into()];
        list[1].1.tags = vec!["important".into()];
        let tagged = Policy {
            last: Some(Count::N(1)),
            tags: vec![vec!["important".into(), "db".into()]],
            ..Default::default()
        };
        assert_eq!(
            kept_times(&tagged, &list),
            ["2024-03-01T10:05:00Z", "2024-03-01T14:05:00Z"]
        );
        // An empty tag list matches untagged snapshots only.
        let untagged = Policy {
            tags: vec![vec![String::new()]],
            ..Default::default()
        };
        assert_eq!(kept_times(&untagged, &list).len(), list.len() - 2);
        assert!(Policy::default().is_empty());
        assert!(Policy {
            last: Some(Count::N(0)),
            ..Default::default()
        }
        .is_empty());
        assert_eq!("unlimited".parse::<Count>(), Ok(Count::Unlimited));
        assert!("-1".parse::<Count>().is_err());
    }

    #[test]
    fn keep_within_counts_back_from_the_newest_snapshot() {
        let t = datetime!(2024-01-01 0:00 UTC);
        let list = snaps(&[
            t,
            t + time::Duration::days(3),
            t + time::Duration::days(8),
            t + time::Duration::days(9) + time::Duration::hours(23),
            t + time::Duration::days(10),
        ]);
        let policy = Policy {
            within: Some(std::time::Duration::from_secs(7 * 86400)),
            ..Default::default()
        };
        // Day 3 is exactly 7 days before day 10: not within (restic: "newer than").
        assert_eq!(
            kept_times(&policy, &list),
            [
                "2024-01-09T00:00:00Z",
                "2024-01-10T23:00:00Z",
                "2024-01-11T00:00:00Z"
            ]
        );
        let (keep, _) = apply_group(&policy, &list);
        assert_eq!(keep[0].1, ["within 7d"]);
        assert!(!policy.is_empty());
        assert!(Policy {
            within: Some(std::time::Duration::ZERO),
            ..Default::default()
        }
        .is_empty());
    }

    #[test]
    fn groups_by_host_and_paths_and_filters_by_host() {
        let t = datetime!(2024-01-01 0:00 UTC);
        let mut list = snaps(&[
            t,
            t + time::Duration::hours(1),
            t + time::Duration::hours(2),
        ]);
        list[2].1.host = "other".into();
        let policy = Policy {
            last: Some(Count::N(1)),
            ..Default::default()
        };
        let groups = apply(&policy, &list, None);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups.iter().map(|g| g.keep.len()).sum::<usize>(), 2);
        let only = apply(&policy, &list, Some("other"));
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].host, "other");
        assert!(only[0].remove.is_empty());
    }
}
