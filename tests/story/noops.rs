//! Issue 19: flags that would do nothing say so (`backup --key` of another
//! key, a `forget` filter that matches nothing, `demo --json`), and the help
//! puts each command's own flags first, with every option described.

use std::process::Output;

use crate::support::Story;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn backup_with_another_key_warns_that_the_repositorys_own_is_used() {
    let s = Story::new(&[]);
    s.ok(&["key", "create", "--alias", "alias/other"]);
    s.files("a", 2, 4, 5);
    let src = s.src.to_str().unwrap();
    let o = s
        .cmd(&s.on_repo("backup", &["-q", "--key", "alias/other", src]))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(0), "{err}");
    assert!(
        err.contains("warning: --key alias/other is not a key of this repository"),
        "{err}"
    );
    assert!(
        err.contains("the repository's own key set (keyring key "),
        "{err}"
    );
    // Its own key, by alias: nothing to say.
    let o = s
        .cmd(&s.on_repo("backup", &["-q", "--key", "alias/t", src]))
        .output()
        .unwrap();
    assert_eq!(stderr(&o), "");
}

#[test]
fn forget_with_a_filter_that_matches_nothing_says_so() {
    let s = Story::new(&[]);
    s.files("a", 2, 4, 6);
    s.backup();
    let o = s
        .cmd(&s.on_repo(
            "forget",
            &["-q", "--keep-daily", "7", "--host", "nosuchhost"],
        ))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("warning: no snapshot matches --host nosuchhost: nothing to remove"),
        "{}",
        stderr(&o)
    );
    // A filter that matches: no warning.
    let o = s
        .cmd(&s.on_repo("forget", &["-q", "--keep-daily", "7", "--host", "h"]))
        .output()
        .unwrap();
    assert_eq!(stderr(&o), "");
}

#[test]
fn demo_refuses_json_instead_of_printing_nothing() {
    let o = crate::util::envarc()
        .args(["demo", "--json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no JSON output"), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

/// `envarc [PATH…] --help`.
fn help(path: &[&str]) -> String {
    let o = crate::util::envarc()
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(o.status.success(), "{path:?}");
    String::from_utf8(o.stdout).unwrap()
}

/// The names listed under `Commands:`.
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|n| n != "help")
        .collect()
}

/// Each option or argument line (`  -r, --repo <LOCATION>`) with whether a
/// description follows it, on its line or indented below.
fn options(text: &str) -> Vec<(String, bool)> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut in_section = false;
    for (i, l) in lines.iter().enumerate() {
        if !l.starts_with(' ') && l.ends_with(':') {
            in_section = *l != "Commands:";
            continue;
        }
        let indent = l.len() - l.trim_start().len();
        let t = l.trim_start();
        let is_item = in_section && (2..=6).contains(&indent) && t.starts_with(['-', '<', '[']);
        if !is_item {
            continue;
        }
        let (spec, same_line) = match t.find("  ") {
            Some(at) => (&t[..at], !t[at..].trim().is_empty()),
            None => (t, false),
        };
        let below = lines.get(i + 1).is_some_and(|n| {
            let ni = n.len() - n.trim_start().len();
            ni > 6 && !n.trim().is_empty()
        });
        out.push((spec.to_string(), same_line || below));
    }
    out
}

#[test]
fn help_puts_own_flags_first_and_describes_every_option() {
    let mut todo: Vec<Vec<String>> = subcommands(&help(&[]))
        .into_iter()
        .map(|c| vec![c])
        .collect();
    assert!(todo.len() > 20, "{todo:?}");
    let mut seen = 0;
    while let Some(path) = todo.pop() {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        let text = help(&p);
        for sub in subcommands(&text) {
            let mut deeper = path.clone();
            deeper.push(sub);
            todo.push(deeper);
        }
        for (spec, described) in options(&text) {
            assert!(
                described,
                "`envarc {} --help`: {spec} has no description",
                p.join(" ")
            );
            seen += 1;
        }
    }
    assert!(seen > 200, "only {seen} options seen: is the help parsed?");

    let restore = options(&help(&["restore"]));
    let at = restore
        .iter()
        .position(|(s, _)| s.contains("--target"))
        .unwrap();
    assert!(at < 15, "--target is option {at} of restore --help");
    let text = help(&["restore"]);
    for heading in [
        "Repository:",
        "Key provider:",
        "Keyring:",
        "Locking:",
        "AWS KMS:",
    ] {
        assert!(
            text.lines().any(|l| l == heading),
            "no {heading} in:\n{text}"
        );
    }
    // Options the command reads come before the provider's.
    let pos = |s: &str| text.find(s).unwrap();
    assert!(pos("--target") < pos("Repository:") && pos("Repository:") < pos("--keyring "));
    // Listings take no --key: a repository's key set is in its config.
    for cmd in ["snapshots", "ls", "backup"] {
        let t = help(&[cmd]);
        assert!(!t.contains("      --key <KEY>"), "{cmd} offers --key:\n{t}");
    }
    assert!(help(&["init"]).contains("--key <KEY>"));
}
