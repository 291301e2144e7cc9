//! Writes the man pages and the bash, zsh and fish completions from the clap definitions in
//! src/cli.rs, so they never drift from the flags:
//!
//! ```sh
//! cargo run --locked --example docs -- target/docs
//! ```
//!
//! gives `man/storwatch.1`, `man/storwatch-check.1`, `completions/storwatch.bash`,
//! `completions/_storwatch` (zsh) and `completions/storwatch.fish`. The .deb ships them
//! (`[package.metadata.deb]` in Cargo.toml); tests/docs.rs renders them with `man -l` and loads
//! them in each shell.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;
use storwatch::cli::Cli;

/// Writes every page and script under `out`; returns the files written.
pub fn write(out: &Path) -> std::io::Result<Vec<PathBuf>> {
    let (man, completions) = (out.join("man"), out.join("completions"));
    std::fs::create_dir_all(&man)?;
    std::fs::create_dir_all(&completions)?;
    // One page for the agent and one per subcommand (`storwatch-check.1`), as clap_mangen names them.
    clap_mangen::generate_to(Cli::command(), &man)?;
    let mut written: Vec<PathBuf> =
        std::fs::read_dir(&man)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        written.push(clap_complete::generate_to(shell, &mut Cli::command(), "storwatch", &completions)?);
    }
    let fish = completions.join("storwatch.fish");
    std::fs::write(&fish, fish_without_argparse(&std::fs::read_to_string(&fish)?)?)?;
    written.sort();
    Ok(written)
}

/// clap_complete's fish script finds the subcommand with fish's `argparse`, which refuses option
/// names with a dot (`--web.listen-address`): every condition failed and fish completed nothing.
/// Its two helper functions are replaced by ones that look for the subcommand's name instead.
fn fish_without_argparse(script: &str) -> std::io::Result<String> {
    let start = script.find("# Print an optspec for argparse");
    let end_marker = "function __fish_storwatch_using_subcommand";
    let end = script.find(end_marker).and_then(|i| script[i..].find("\nend\n").map(|e| i + e + 5));
    let (Some(start), Some(end)) = (start, end) else {
        return Err(std::io::Error::other(
            "clap_complete's fish script changed shape; see fish_without_argparse",
        ));
    };
    let mut names: Vec<String> = Cli::command().get_subcommands().map(|c| c.get_name().to_owned()).collect();
    names.push("help".into());
    let names = names.join(" ");
    let helpers = format!(
        "# storwatch's flags have dots in their names, which fish's argparse refuses: the subcommand
# is found by its name among the words typed.
function __fish_storwatch_needs_command
    not __fish_seen_subcommand_from {names}
end

function __fish_storwatch_using_subcommand
    for word in (commandline -opc)[2..-1]
        if contains -- $word {names}
            contains -- $word $argv
            return
        end
    end
    return 1
end
"
    );
    Ok(format!("{}{helpers}{}", &script[..start], &script[end..]))
}

#[allow(dead_code, reason = "tests/docs.rs includes this file for `write` only")]
fn main() -> ExitCode {
    let Some(out) = std::env::args_os().nth(1) else {
        eprintln!("usage: cargo run --example docs -- OUTDIR");
        return ExitCode::from(2);
    };
    match write(Path::new(&out)) {
        Ok(files) => {
            files.iter().for_each(|f| println!("{}", f.display()));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("docs: {e}");
            ExitCode::FAILURE
        }
    }
}
