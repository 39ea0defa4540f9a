//! Shell completions and man pages for the whole suite, built from the tools'
//! own clap definitions: one `orch` command whose subcommands are every tool
//! (so `orch queue a<TAB>` completes to `add`), and one per `orch-NAME` binary.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Arg, ArgAction};
pub use clap::{Command, CommandFactory};
use clap_complete::{Generator, Shell};

pub use crate::suite::{SuiteTool, BUILT_IN, SUITE};
use crate::Out;
use orch_core::error::Exit;

/// `orch completions SHELL [--dir DIR]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: Shell,
    /// Write one file per binary into DIR, named as the shell looks them up,
    /// instead of printing every script to stdout.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

pub const EXAMPLES: &str = "\
Examples:
  source <(orch completions bash)                   # this shell only
  orch completions zsh --dir ~/.local/share/zsh/site-functions
  orch completions fish > ~/.config/fish/completions/orch.fish";

/// `orch man DIR`.
#[derive(Debug, clap::Args)]
pub struct ManArgs {
    /// Where to write the pages (orch.1, orch-queue.1, orch-queue-add.1, ...).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

pub const MAN_EXAMPLES: &str = "Example:\n  orch man ~/.local/share/man/man1";

/// The `orch` command (`front`: its own verbs) with every tool of the suite
/// (and every third-party `orch-NAME` found) as a subcommand.
pub fn orch_command(front: fn() -> Command) -> Command {
    let mut cmd = front();
    for t in SUITE {
        cmd = cmd.subcommand(
            tool_command(t)
                .name(t.name)
                .bin_name(format!("orch {}", t.name)),
        );
    }
    for (name, path) in crate::suite::discover() {
        let known = SUITE.iter().any(|t| t.name == name) || BUILT_IN.contains(&name.as_str());
        let plain = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if known || !plain {
            continue;
        }
        cmd = cmd.subcommand(
            Command::new(name)
                .about(format!("Runs {}", orch_core::text::path(&path)))
                .disable_help_flag(true)
                .arg(
                    Arg::new("args")
                        .num_args(0..)
                        .trailing_var_arg(true)
                        .allow_hyphen_values(true)
                        .action(ArgAction::Append),
                ),
        );
    }
    cmd
}

/// One tool's command, named as its binary.
pub fn tool_command(t: &SuiteTool) -> Command {
    (t.command)().name(format!("orch-{}", t.name))
}

/// Every binary and its command: `orch`, then each `orch-NAME` of the suite.
pub fn binaries(front: fn() -> Command) -> Vec<(String, Command)> {
    let mut all = vec![("orch".to_string(), orch_command(front))];
    all.extend(
        SUITE
            .iter()
            .map(|t| (format!("orch-{}", t.name), tool_command(t))),
    );
    all
}

/// The completion script for one binary.
pub fn script(shell: Shell, bin: &str, mut cmd: Command) -> Vec<u8> {
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, bin, &mut buf);
    if shell == Shell::Bash && bin.contains('-') {
        // clap_complete's bash script spells a hyphenated binary's verbs two
        // ways (`orch__msg__subcmd__recv` where it dispatches, and
        // `orch__subcmd__msg__subcmd__recv` where it lists the options), so
        // `orch-msg recv --<TAB>` offered nothing; use the dispatch spelling.
        let text = String::from_utf8_lossy(&buf)
            .replace(
                &format!("{}__subcmd__", bin.replace('-', "__subcmd__")),
                &format!("{}__subcmd__", bin.replace('-', "__")),
            )
            .into_bytes();
        buf = text;
    }
    buf
}

/// `orch completions`; `front` is the `orch` command's own definition.
pub fn run(args: Args, front: fn() -> Command) -> anyhow::Result<Exit> {
    match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (bin, cmd) in binaries(front) {
                let path = dir.join(args.shell.file_name(&bin));
                write_file(&path, &script(args.shell, &bin, cmd))?;
            }
            eprintln!(
                "wrote {} {} completion files into {}",
                binaries(front).len(),
                args.shell,
                orch_core::text::path(dir)
            );
        }
        None => {
            let mut out = Out::new();
            for (bin, cmd) in binaries(front) {
                out.text(&String::from_utf8_lossy(&script(args.shell, &bin, cmd)))?;
            }
            out.flush()?;
        }
    }
    Ok(Exit::Ok)
}

/// `orch man DIR`: a page per binary and per verb, like git's; `front` is
/// the `orch` command's own definition.
pub fn man(args: ManArgs, front: fn() -> Command) -> anyhow::Result<Exit> {
    let dir = &args.dir;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // The front's own verbs (orch-doctor.1, ...), then orch.1 listing every tool.
    man_pages(without_help_verb(front()), dir)
        .with_context(|| format!("writing man pages into {}", dir.display()))?;
    let mut full = without_help_verb(orch_command(front));
    full.build();
    write_file(&dir.join("orch.1"), &man_page(full)?)?;
    for t in SUITE {
        man_pages(without_help_verb(tool_command(t)), dir)
            .with_context(|| format!("writing the pages of orch-{}", t.name))?;
    }
    let n = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.path().extension().is_some_and(|x| x == "1"))
                .count()
        })
        .unwrap_or(0);
    eprintln!("{n} man pages in {}", orch_core::text::path(dir));
    Ok(Exit::Ok)
}

/// Writes the page of `cmd` and of each of its visible verbs (`orch-queue-add.1`).
fn man_pages(mut cmd: Command, dir: &Path) -> anyhow::Result<()> {
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub.clone(), dir)?;
    }
    let name = cmd
        .get_display_name()
        .unwrap_or_else(|| cmd.get_name())
        .to_string();
    write_file(&dir.join(format!("{name}.1")), &man_page(cmd)?)
}

/// One page: every `after_help` of the suite holds examples, so the section
/// clap_mangen calls EXTRA is titled EXAMPLES; the footer names the suite and
/// its version rather than the verb.
fn man_page(cmd: Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .source(format!("orch {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)
        .context("rendering a man page")?;
    let text = String::from_utf8_lossy(&page).replace(".SH EXTRA", ".SH EXAMPLES");
    Ok(text.into_bytes())
}

/// The command without clap's `help` verb, which has no page of its own: a
/// page must not send readers to `orch-queue-help(1)`.
fn without_help_verb(cmd: Command) -> Command {
    cmd.disable_help_subcommand(true)
        .mut_subcommands(without_help_verb)
}

/// Writes a completion script or man page atomically, never over the
/// database these commands would use or its `-wal`/`-shm` files.
fn write_file(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    static DB: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    let db = DB.get_or_init(|| orch_core::db::resolve(None).ok().map(|l| l.path));
    if let Some(db) = db {
        orch_core::db::refuse_overwrite(db, path)?;
    }
    orch_core::atomic::write(path, data, orch_core::atomic::Access::Keep)?;
    Ok(())
}
