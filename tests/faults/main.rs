//! Faults: unreadable files, concurrent runs, full disks, SIGKILL at random points, races, crashes mid-backup.
//! One binary for all of these: each test binary links the whole crate, so fewer build faster.

#[path = "../fault_support/mod.rs"]
mod fault_support;
#[path = "../repo_support/mod.rs"]
mod repo_support;
#[path = "../story/support.rs"]
#[allow(dead_code)]
mod support;
#[path = "../util/mod.rs"]
mod util;

mod access;
mod concurrent;
mod disk;
mod kill;
mod race;
