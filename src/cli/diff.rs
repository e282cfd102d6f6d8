//! `envarc diff`.

use std::io::Write;

use base64::Engine;
use serde_json::json;

use envarc::diff::{diff as run_diff, Change};
use envarc::error::exit;
use envarc::{Error, Result};

use super::repo::RepoArgs;
use super::{GlobalArgs, Output};

#[derive(clap::Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The earlier snapshot (`latest`, an ID or a prefix).
    pub from: String,
    /// The later snapshot.
    pub to: String,
}

fn path_json(p: &[u8]) -> serde_json::Value {
    let mut v = json!({ "path": String::from_utf8_lossy(p) });
    if std::str::from_utf8(p).is_err() {
        v["path_base64"] = base64::engine::general_purpose::STANDARD.encode(p).into();
    }
    v
}

pub fn diff(out: &Output, g: &GlobalArgs, a: DiffArgs) -> Result<i32> {
    let repo = a.repo.open(g, out)?;
    let from = repo.resolve_snapshot(&a.from)?;
    let to = repo.resolve_snapshot(&a.to)?;
    let (_, old) = repo.load_snapshot(&from)?;
    let (_, new) = repo.load_snapshot(&to)?;
    let changes = run_diff(&old, &new);
    let (mut added, mut removed, mut content, mut meta) = (0u64, 0u64, 0u64, 0u64);
    for c in &changes {
        match c {
            Change::Added(_) => added += 1,
            Change::Removed(_) => removed += 1,
            Change::Changed { what, .. } if what.iter().any(|w| w.is_content()) => content += 1,
            Change::Changed { .. } => meta += 1,
        }
    }
    if out.json {
        let mut add = Vec::new();
        let mut rem = Vec::new();
        let mut chg = Vec::new();
        for c in &changes {
            match c {
                Change::Added(e) => add.push(path_json(&e.path)),
                Change::Removed(e) => rem.push(path_json(&e.path)),
                Change::Changed { new, what, .. } => {
                    let mut v = path_json(&new.path);
                    v["content"] = what.iter().any(|w| w.is_content()).into();
                    v["what"] = what.iter().map(|w| w.name()).collect::<Vec<_>>().into();
                    chg.push(v);
                }
            }
        }
        out.json(&json!({
            "from": from.to_hex(),
            "to": to.to_hex(),
            "added": add,
            "removed": rem,
            "changed": chg,
        }))?;
        return Ok(exit::OK);
    }
    if !out.quiet {
        let stdout = std::io::stdout();
        let mut o = std::io::BufWriter::new(stdout.lock());
        let io_err = |e| Error::io("writing to stdout", e);
        for c in &changes {
            let (mark, suffix) = match c {
                Change::Added(_) => ("+", String::new()),
                Change::Removed(_) => ("-", String::new()),
                Change::Changed { what, .. } => {
                    let names: Vec<&str> = what.iter().map(|w| w.name()).collect();
                    let kind = if what.iter().any(|w| w.is_content()) {
                        "content"
                    } else {
                        "metadata"
                    };
                    ("M", format!("  [{kind}: {}]", names.join(", ")))
                }
            };
            write!(o, "{mark}  ").map_err(io_err)?;
            // Raw bytes: a non-UTF-8 name prints exactly as it is.
            o.write_all(c.path()).map_err(io_err)?;
            writeln!(o, "{suffix}").map_err(io_err)?;
        }
        o.flush().map_err(io_err)?;
    }
    out.say(format!(
        "{} → {}: {added} added, {removed} removed, {} changed ({content} in content, {meta} in metadata only)",
        from.short(),
        to.short(),
        content + meta
    ));
    Ok(exit::OK)
}
