//! Shell completions and the man page, generated from the clap definitions:
//! every command `--help` lists is in them.

use std::process::Output;

use super::{expect, Fx};

fn run(fx: &Fx, args: &[&str]) -> String {
    let out: Output = fx.run(args, false);
    expect(&out, 0);
    String::from_utf8(out.stdout).unwrap()
}

/// The commands a `--help` text lists under "Commands:" (two-space indent).
fn listed(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .filter(|c| c != "help")
        .collect()
}

/// Every command path, nested ones included: ["encrypt"], ["key", "create"], …
fn every_command(fx: &Fx) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![vec![]];
    while let Some(path) = todo.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        for c in listed(&run(fx, &args)) {
            let mut p = path.clone();
            p.push(c);
            all.push(p.clone());
            todo.push(p);
        }
    }
    all
}

#[test]
fn completions_name_every_subcommand() {
    let fx = Fx::new();
    let commands = every_command(&fx);
    assert!(commands.len() > 30, "{commands:?}");
    for needed in [
        vec!["encrypt"],
        vec!["completions"],
        vec!["man"],
        vec!["key", "create"],
    ] {
        assert!(
            commands.iter().any(|c| *c == needed),
            "{needed:?} missing from --help"
        );
    }
    let bash = run(&fx, &["completions", "bash"]);
    for c in &commands {
        // bash's script names each command `envarc__subcmd__key__subcmd__create`.
        let name = format!(
            "cmd=\"envarc__subcmd__{}\"",
            c.join("__subcmd__").replace('-', "__subcmd__")
        );
        assert!(bash.contains(&name), "bash: {c:?} ({name})");
    }
    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let s = run(&fx, &["completions", shell]);
        for c in &commands {
            assert!(s.contains(c.last().unwrap().as_str()), "{shell}: {c:?}");
        }
    }
    expect(&fx.run(&["completions", "tcsh"], false), 2);
}

#[test]
fn the_man_page_names_every_command() {
    let fx = Fx::new();
    let page = run(&fx, &["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH envarc"),
        "roff: {}",
        &page[..200.min(page.len())]
    );
    let text = page.replace("\\-", "-");
    for c in every_command(&fx) {
        let name = format!("envarc {}", c.join(" "));
        assert!(text.contains(&name), "man page lacks {name}");
    }
    let dir = fx.p("man");
    run(&fx, &["man", "--output-dir", dir.to_str().unwrap()]);
    for page in [
        "envarc.1",
        "envarc-encrypt.1",
        "envarc-key-create.1",
        "envarc-stats.1",
    ] {
        assert!(dir.join(page).is_file(), "{page} not written");
    }
}
