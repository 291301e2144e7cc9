//! The man pages and shell completions written from the clap definitions (examples/docs.rs, as
//! `cargo run --example docs -- DIR` writes them for the .deb): `man -l` renders each page without
//! a warning and with every flag; each completion script loads in its real shell and completes a
//! flag.
#![allow(clippy::disallowed_methods, reason = "clippy.toml's bans are for the agent, not its tests")]

mod common;

#[path = "../examples/docs.rs"]
mod docs;

use std::path::Path;
use std::process::Command;

use storwatch::sources::REGISTRY;

fn written() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let files = docs::write(dir.path()).unwrap();
    let names = files.iter().map(|f| f.strip_prefix(dir.path()).unwrap().display().to_string()).collect();
    (dir, names)
}

/// Runs `program args`, asserting success; returns stdout and stderr.
fn run(program: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(program).args(args).env("MANWIDTH", "120").output().unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{} {args:?} failed: {stderr}\n{stdout}", program.display());
    (stdout.into_owned(), stderr.into_owned())
}

#[test]
fn the_generator_writes_every_page_and_script() {
    let (_dir, names) = written();
    assert_eq!(
        names,
        [
            "completions/_storwatch",
            "completions/storwatch.bash",
            "completions/storwatch.fish",
            "man/storwatch-check.1",
            "man/storwatch.1"
        ]
    );
}

#[test]
fn man_renders_each_page_with_every_flag() {
    let Some(man) = common::tool("man") else { return };
    let (dir, _) = written();
    let page = dir.path().join("man/storwatch.1");
    let (text, warnings) = run(&man, &["--warnings", "-P", "cat", "-l", page.to_str().unwrap()]);
    assert!(warnings.is_empty(), "groff warned: {warnings}");
    // Rendered text, not roff source.
    assert!(text.contains("NAME") && text.contains("SYNOPSIS") && !text.contains(".TH"), "{text}");
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    for flag in [
        "--web.listen-address",
        "--web.systemd-socket",
        "--web.config.file",
        "--collector.disable-defaults",
        "--path.procfs",
        "--log.format",
    ] {
        assert!(flat.contains(flag), "the man page lacks {flag}");
    }
    for spec in REGISTRY {
        assert!(flat.contains(&format!("--no-collector.{}", spec.name)), "{}", spec.name);
        assert!(flat.contains(&format!("--collector.{}.interval", spec.name)), "{}", spec.name);
    }
    let check = dir.path().join("man/storwatch-check.1");
    let (text, warnings) = run(&man, &["--warnings", "-P", "cat", "-l", check.to_str().unwrap()]);
    assert!(warnings.is_empty(), "groff warned: {warnings}");
    assert!(text.contains("--window") && text.contains("--output"), "{text}");
}

#[test]
fn bash_loads_the_completion_and_completes_a_flag() {
    let Some(bash) = common::tool("bash") else { return };
    let (dir, _) = written();
    let script = dir.path().join("completions/storwatch.bash");
    let (out, _) = run(
        &bash,
        &[
            "--norc",
            "-c",
            "source \"$1\" && complete -p storwatch && COMP_WORDS=(storwatch --web.li) COMP_CWORD=1 && \
             _storwatch storwatch --web.li storwatch && printf '%s\\n' \"${COMPREPLY[@]}\"",
            "bash",
            script.to_str().unwrap(),
        ],
    );
    assert!(out.contains("-F _storwatch") && out.contains("storwatch\n"), "{out}");
    assert!(out.lines().any(|l| l == "--web.listen-address"), "{out}");
}

#[test]
fn zsh_autoloads_the_completion_from_fpath() {
    let Some(zsh) = common::tool("zsh") else { return };
    let (dir, _) = written();
    let completions = dir.path().join("completions");
    // compinit registers the function from its `#compdef` line; `autoload +X` loads and parses it
    // (a syntax error fails), and the loaded function names the flags.
    let (out, _) = run(
        &zsh,
        &[
            "-f",
            "-c",
            "fpath=(\"$1\" $fpath); autoload -Uz compinit && compinit -u -D && print -r -- \"comp=$_comps[storwatch]\" \
             && autoload +X _storwatch && functions _storwatch",
            "zsh",
            completions.to_str().unwrap(),
        ],
    );
    assert!(out.starts_with("comp=_storwatch\n"), "{out}");
    assert!(out.contains("--collector.disable-defaults") && out.contains("--web.systemd-socket"), "{out}");
}

#[test]
fn fish_loads_the_completion_and_completes_a_flag() {
    let Some(fish) = common::tool("fish") else { return };
    let (dir, _) = written();
    let script = dir.path().join("completions/storwatch.fish");
    let (out, _) = run(
        &fish,
        &[
            "--no-config",
            "-c",
            "source $argv[1]; and complete -C 'storwatch --collector.disable'",
            script.to_str().unwrap(),
        ],
    );
    assert!(out.lines().any(|l| l.starts_with("--collector.disable-defaults")), "{out}");
    let (out, _) = run(
        &fish,
        &["--no-config", "-c", "source $argv[1]; and complete -C 'storwatch ch'", script.to_str().unwrap()],
    );
    assert!(out.lines().any(|l| l.starts_with("check")), "{out}");
    // A subcommand's own flags once it is typed (clap_complete's argparse helpers refused the
    // dotted flag names and completed nothing; examples/docs.rs replaces them).
    let (out, _) = run(
        &fish,
        &[
            "--no-config",
            "-c",
            "source $argv[1]; and complete -C 'storwatch check --wi'",
            script.to_str().unwrap(),
        ],
    );
    assert!(out.lines().any(|l| l.starts_with("--window")), "{out}");
}
