//! How much Argon2id work envarc agrees to do to open a keyring.
//!
//! A keyring's preamble names its own Argon2id cost, and that cost must be
//! paid before anything in the file is authenticated. So whoever can write the
//! file could make every envarc that opens it allocate gigabytes and spin for
//! minutes (or abort on a failed allocation). Two bounds stop that, both
//! checked before Argon2 runs and before any passphrase is asked for:
//!
//! - **work**: m × t is at most [`MAX_WORK_KIB_PASSES`] (16 GiB·passes: the
//!   default m = 64 MiB, t = 3 is 0.19 GiB·passes; RFC 9106's first
//!   recommendation, m = 2 GiB, t = 1, is 2). The same on every machine, so a
//!   keyring that opens on one opens on any machine with the memory.
//! - **memory**: m is at most three quarters of what this process can
//!   allocate now ([`memory_cap_kib`]): the smallest of the kernel's
//!   `MemAvailable`, the room left in the cgroup's memory limit, and the room
//!   left under `RLIMIT_AS`/`RLIMIT_DATA`, optionally lowered further by the
//!   caller (`ENVARC_ARGON2_MAX_MIB`).
//!
//! A keyring created with a cost above either bound is refused up front: it
//! could not be opened here.

use std::fs;

use super::kdf::Argon2Params;

/// The most Argon2 work of one open: m (KiB) × t.
pub const MAX_WORK_KIB_PASSES: u64 = 16 * 1024 * 1024;

/// What a cost that is refused exceeds, for the error message.
pub(crate) fn work_problem(p: &Argon2Params) -> Option<String> {
    let work = p.m_kib as u64 * p.t as u64;
    (work > MAX_WORK_KIB_PASSES).then(|| {
        format!(
            "{:.1} GiB·passes of work (m × t), more than the {} GiB·passes envarc runs",
            work as f64 / (1024.0 * 1024.0),
            MAX_WORK_KIB_PASSES / (1024 * 1024)
        )
    })
}

/// Why `p` needs more memory than `cap_kib`, if it does.
pub(crate) fn memory_problem(p: &Argon2Params, cap_kib: u64) -> Option<String> {
    (p.m_kib as u64 > cap_kib).then(|| {
        format!(
            "{} of memory, more than the {} envarc lets it use here now (three quarters of \
             this machine's free memory, or ENVARC_ARGON2_MAX_MIB)",
            human_kib(p.m_kib as u64),
            human_kib(cap_kib)
        )
    })
}

/// `65536` → "64 MiB".
pub(crate) fn human_kib(kib: u64) -> String {
    if kib >= 1024 * 1024 && kib.is_multiple_of(1024 * 1024) {
        format!("{} GiB", kib / (1024 * 1024))
    } else if kib >= 1024 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

/// The most memory (KiB) Argon2 may use in this process now: three quarters
/// of the smallest room the kernel, the cgroup and the resource limits leave,
/// and never more than `limit_mib` when it is given. Where none of them can
/// be read (another OS), only `limit_mib` and the format's own 4 GiB bound
/// apply.
pub fn memory_cap_kib(limit_mib: Option<u64>) -> u64 {
    let format_max = 4 * 1024 * 1024;
    let machine = room_bytes().map_or(format_max, |b| b / 1024 / 4 * 3);
    let cap = machine.min(format_max);
    match limit_mib {
        Some(mib) => cap.min(mib.saturating_mul(1024)),
        None => cap,
    }
}

/// The smallest of the rooms this process can allocate in, in bytes.
fn room_bytes() -> Option<u64> {
    let vm_size = status_kib("VmSize:").map(|k| k * 1024);
    let rlimit = |r: rustix::process::Resource| {
        rustix::process::getrlimit(r)
            .current
            .map(|limit| limit.saturating_sub(vm_size.unwrap_or(0)))
    };
    [
        meminfo_kib("MemAvailable:").map(|k| k * 1024),
        cgroup_v2_room(),
        cgroup_v1_room(),
        rlimit(rustix::process::Resource::As),
        rlimit(rustix::process::Resource::Data),
    ]
    .into_iter()
    .flatten()
    .min()
}

/// A `Name:   123 kB` line of a /proc file.
fn kib_field(text: &str, name: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(name))?;
    line[name.len()..].split_whitespace().next()?.parse().ok()
}

fn meminfo_kib(name: &str) -> Option<u64> {
    kib_field(&fs::read_to_string("/proc/meminfo").ok()?, name)
}

fn status_kib(name: &str) -> Option<u64> {
    kib_field(&fs::read_to_string("/proc/self/status").ok()?, name)
}

fn read_u64(path: &str) -> Option<u64> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// cgroup v2: `memory.max` ("max" when unlimited) less `memory.current`, of
/// the cgroup this process is in.
fn cgroup_v2_room() -> Option<u64> {
    let own = fs::read_to_string("/proc/self/cgroup").ok()?;
    let rel = own.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = format!("/sys/fs/cgroup{}", rel.trim_end_matches('/'));
    let max = read_u64(&format!("{dir}/memory.max"))?;
    let current = read_u64(&format!("{dir}/memory.current")).unwrap_or(0);
    Some(max.saturating_sub(current))
}

/// cgroup v1: `limit_in_bytes` less `usage_in_bytes` (an unlimited cgroup
/// reports a limit near 2^63, which the other bounds undercut).
fn cgroup_v1_room() -> Option<u64> {
    let limit = read_u64("/sys/fs/cgroup/memory/memory.limit_in_bytes")?;
    let usage = read_u64("/sys/fs/cgroup/memory/memory.usage_in_bytes").unwrap_or(0);
    Some(limit.saturating_sub(usage))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_and_their_messages() {
        let p = |m_kib, t| Argon2Params { m_kib, t, p: 1 };
        assert!(work_problem(&Argon2Params::INTERACTIVE).is_none());
        assert!(work_problem(&p(4 * 1024 * 1024, 4)).is_none());
        let w = work_problem(&p(4 * 1024 * 1024, 100)).unwrap();
        assert!(w.contains("400.0 GiB·passes") && w.contains("16"), "{w}");
        assert!(memory_problem(&p(1024, 1), 1024).is_none());
        let m = memory_problem(&p(2048, 1), 1024).unwrap();
        assert!(m.contains("2 MiB") && m.contains("1 MiB"), "{m}");
        assert_eq!(human_kib(4 * 1024 * 1024), "4 GiB");
        assert_eq!(human_kib(8), "8 KiB");
    }

    #[test]
    fn the_cap_is_positive_and_lowered_by_the_limit() {
        let cap = memory_cap_kib(None);
        assert!(cap > 0 && cap <= 4 * 1024 * 1024);
        assert_eq!(memory_cap_kib(Some(1)), cap.min(1024));
        let text = "MemTotal:  100 kB\nMemAvailable:   42 kB\n";
        assert_eq!(kib_field(text, "MemAvailable:"), Some(42));
        assert_eq!(kib_field(text, "Nope:"), None);
    }
}
