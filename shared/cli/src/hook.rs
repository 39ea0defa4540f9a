//! `orch-hook`: the Claude Code hook handler (one event on stdin) and its
//! installer (`install`, `uninstall`, `status`).

use std::io::{self, IsTerminal, Read};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::{Out, Tool};
use orch_core::claude::hooks::{self as settings, Scope, Target};
use orch_core::error::Exit;
use orch_core::hook::{self, Config, Reply, DEFAULT_THRESHOLD};

const EXAMPLES: &str = "\
Examples:
  orch-hook install                      # into this project's .claude/settings.json
  orch-hook install --user --threshold 2 --command
  orch-hook status
  orch-hook uninstall
  orch-hook < event.json                 # what Claude Code runs for each event

As a hook it never breaks the session: a fault is one line on stderr and exit 1;
it blocks a stop (JSON decision) only to hand Claude a batch.";

/// Claude Code hook: auto-batch at a threshold, record every agent's start and end.
#[derive(Debug, Parser)]
#[command(name = "orch-hook", version, after_help = EXAMPLES, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// The database file [default: $ORCH_DB, else the nearest .orch/orch.db]; a hook never creates one.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// The event name [default: the event's "hook_event_name"].
    pub event: Option<String>,
    /// Batch when at least this many tasks are ready (UserPromptSubmit, Stop).
    #[arg(long, default_value_t = DEFAULT_THRESHOLD as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub threshold: u64,
    /// At most this many tasks per batch.
    #[arg(long, default_value_t = orch_core::batch::DEFAULT_MAX as u64, value_parser = clap::value_parser!(u64).range(1..))]
    pub max: u64,
    /// Reconcile agents whose end event never came after this long (2h, 30m, …).
    #[arg(long, value_name = "DURATION", env = "ORCH_STALE_AFTER", default_value = "2h", value_parser = orch_core::time::parse_span)]
    pub stale_after: std::time::Duration,
    #[command(subcommand)]
    pub cmd: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Add orch's hooks to Claude Code's settings (again: update them in place).
    ///
    /// Project settings are .claude/settings.json in the nearest directory with
    /// .claude/ or .git (else here); --here means ./.claude/settings.json;
    /// --user means $CLAUDE_CONFIG_DIR/settings.json (default
    /// ~/.claude/settings.json). Claude Code reads project hooks only from the
    /// directory it is started in. Everything else in the file is kept.
    #[command(after_help = "Example:\n  orch-hook install --threshold 2 --command")]
    Install {
        /// Into the user's settings (every directory) instead of the project's.
        #[arg(long, conflicts_with = "here")]
        user: bool,
        /// Into ./.claude/settings.json: for Claude Code started in this directory.
        #[arg(long)]
        here: bool,
        /// Batch when at least this many tasks are ready.
        #[arg(long, default_value_t = DEFAULT_THRESHOLD as u64, value_parser = clap::value_parser!(u64).range(1..))]
        threshold: u64,
        /// Also install the /orch slash command (.claude/commands/orch.md).
        #[arg(long)]
        command: bool,
    },
    /// Remove exactly orch's hooks (and its /orch command) from the settings.
    #[command(after_help = "Example:\n  orch-hook uninstall --user")]
    Uninstall {
        /// From the user's settings instead of the project's.
        #[arg(long, conflicts_with = "here")]
        user: bool,
        /// From ./.claude/settings.json.
        #[arg(long)]
        here: bool,
    },
    /// Say where orch's hooks are installed and whether Claude Code started
    /// here runs them; exits 1 when it runs none.
    #[command(after_help = "Example:\n  orch-hook status --json")]
    Status {
        #[arg(long)]
        json: bool,
    },
}

impl Tool for Cli {
    const NAME: &'static str = "orch-hook";

    /// Claude Code reads exit 2 as "block": in hook mode (no installer
    /// subcommand named) a usage error is a fault like any other, exit 1.
    fn usage_exit(args: &[std::ffi::OsString]) -> Exit {
        let installer = args
            .iter()
            .skip(1)
            .any(|a| ["install", "uninstall", "status", "help"].contains(&&*a.to_string_lossy()));
        match installer {
            true => Exit::Error,
            false => Exit::No,
        }
    }

    fn run(self) -> anyhow::Result<Exit> {
        match self.cmd {
            None => Ok(run_hook(
                &self.db,
                self.event.as_deref(),
                self.threshold,
                self.max,
                self.stale_after,
            )),
            Some(Cmd::Install {
                user,
                here,
                threshold,
                command,
            }) => install(self.db, scope(user, here), threshold, command),
            Some(Cmd::Uninstall { user, here }) => uninstall(scope(user, here)),
            Some(Cmd::Status { json }) => status(json),
        }
    }
}

fn scope(user: bool, here: bool) -> Scope {
    match (user, here) {
        (true, _) => Scope::User,
        (_, true) => Scope::Here,
        _ => Scope::Project,
    }
}

/// What to do when project hooks sit in `t` but Claude Code is started in `cwd`.
fn not_read_here(t: &Target, cwd: &std::path::Path) -> String {
    let dir = t
        .settings
        .parent()
        .and_then(|d| d.parent())
        .unwrap_or(&t.settings);
    format!(
        "Claude Code reads project hooks only from the directory it is started in, so these run only when it is started in {}, not here ({}); start it there, or run `orch-hook install --here` here, or `orch-hook install --user` for every directory",
        orch_core::text::path(dir),
        orch_core::text::path(cwd)
    )
}

/// The largest event orch reads (an agent's whole result can be in it).
const MAX_EVENT: u64 = 64 << 20;

/// Hook mode: never an error exit of 2; faults are one stderr line and exit 1.
fn run_hook(
    db: &Option<PathBuf>,
    event: Option<&str>,
    threshold: u64,
    max: u64,
    stale_after: std::time::Duration,
) -> Exit {
    let fault = |msg: String| {
        let msg = msg.replace(['\n', '\r'], " ");
        eprintln!("orch-hook: error: {}", orch_core::text::escape(&msg, false));
        Exit::No
    };
    let stdin = io::stdin();
    if stdin.is_terminal() {
        return fault("no event on stdin: Claude Code pipes one JSON event to each hook (see orch-hook --help)".into());
    }
    let mut input = Vec::new();
    if let Err(e) = stdin.lock().take(MAX_EVENT).read_to_end(&mut input) {
        return fault(format!("reading the event from stdin: {e}"));
    }
    let cfg = Config {
        db: db.clone(),
        threshold: threshold as usize,
        max: max as usize,
        inside_task: std::env::var_os(hook::TASK_ENV)
            .filter(|v| !v.is_empty())
            .map(|v| v.to_string_lossy().into_owned()),
        stale_after,
    };
    match hook::handle(&cfg, event, &input) {
        Ok(Reply::Silent) => Exit::Ok,
        Ok(Reply::Print(o)) => {
            let mut out = Out::new();
            match out.json(&o).and_then(|_| out.flush()) {
                Ok(()) => Exit::Ok,
                Err(e) => fault(format!("writing the answer: {e}")),
            }
        }
        Err(e) => fault(e.to_string()),
    }
}

fn exe_path() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    Ok(std::fs::canonicalize(&exe).unwrap_or(exe))
}

fn install(
    db: Option<PathBuf>,
    scope: Scope,
    threshold: u64,
    with_command: bool,
) -> anyhow::Result<Exit> {
    let t = settings::target(scope)?;
    let exe = exe_path()?;
    let db = db.map(|d| std::path::absolute(&d).unwrap_or(d));
    let command = settings::hook_command(&exe, threshold as usize, db.as_deref());
    let existing = settings::read(&t.settings)?;
    let mut value = existing
        .clone()
        .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
    let changed = settings::merge(&mut value, &command, &t.settings)?;
    // Everything that can refuse is checked before anything is written.
    let slash = match with_command {
        true => {
            let text = settings::slash_command(exe.parent(), db.as_deref());
            match std::fs::read_to_string(&t.command) {
                Ok(old) if !settings::command_is_ours(&old) => anyhow::bail!(
                    "{} exists and is not orch's; move it away to install /orch (nothing was installed)",
                    orch_core::text::path(&t.command)
                ),
                Ok(old) if old == text => None,
                Ok(_) => Some(text),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Some(text),
                Err(e) => anyhow::bail!(
                    "cannot read {}: {e} (nothing was installed)",
                    orch_core::text::path(&t.command)
                ),
            }
        }
        false => None,
    };
    if changed || existing.is_none() {
        settings::write_atomic(&t.settings, &settings::render(&value))?;
        eprintln!(
            "orch-hook: installed into {} ({} events, threshold {threshold})",
            orch_core::text::path(&t.settings),
            hook::event::Kind::ALL.len()
        );
    } else {
        eprintln!(
            "orch-hook: already installed in {} (threshold {threshold})",
            orch_core::text::path(&t.settings)
        );
    }
    if let Some(text) = slash {
        settings::write_atomic(&t.command, &text)?;
        eprintln!(
            "orch-hook: installed the /orch command at {}",
            orch_core::text::path(&t.command)
        );
    }
    let cwd = settings::current_dir()?;
    if !settings::read_when_started_in(&t, &cwd) {
        eprintln!("orch-hook: note: {}", not_read_here(&t, &cwd));
    }
    if db.is_none() && scope != Scope::User {
        // A note only: what is installed stays installed whatever this finds.
        match orch_core::db::resolve(None) {
            Ok(loc) if loc.source == orch_core::db::Source::User => eprintln!(
                "orch-hook: note: no .orch/orch.db in this project; the hook does nothing here until `orch-queue init` makes one (it never uses the per-user database)"
            ),
            Ok(loc) if !loc.path.is_file() => eprintln!(
                "orch-hook: note: {} does not exist yet; the hook records nothing until it does ({})",
                orch_core::text::escape(&loc.path.display().to_string(), false),
                match loc.source {
                    orch_core::db::Source::Flag | orch_core::db::Source::Env => "`orch-queue add` makes it",
                    _ => "`orch-queue init` makes one",
                },
            ),
            _ => {}
        }
    }
    Ok(Exit::Ok)
}

fn uninstall(scope: Scope) -> anyhow::Result<Exit> {
    let t = settings::target(scope)?;
    let mut removed = 0;
    if let Some(mut value) = settings::read(&t.settings)? {
        removed = settings::remove(&mut value);
        if removed > 0 {
            settings::write_atomic(&t.settings, &settings::render(&value))?;
        }
    }
    let mut command_removed = false;
    if let Ok(text) = std::fs::read_to_string(&t.command) {
        if settings::command_is_ours(&text) {
            std::fs::remove_file(&t.command)?;
            command_removed = true;
            if let Some(dir) = t.command.parent() {
                // Only succeeds when empty, i.e. when /orch was all it held.
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
    if removed == 0 && !command_removed {
        eprintln!(
            "orch-hook: nothing of orch's in {}",
            orch_core::text::path(&t.settings)
        );
    } else {
        eprintln!(
            "orch-hook: removed {removed} hook entries from {}{}",
            orch_core::text::path(&t.settings),
            if command_removed {
                " and the /orch command"
            } else {
                ""
            }
        );
    }
    Ok(Exit::Ok)
}

/// One line of `orch-hook status`.
#[derive(Debug, Serialize)]
struct ScopeStatus {
    scope: Scope,
    settings: PathBuf,
    /// Whether Claude Code started in the current directory reads this file.
    read_here: bool,
    exists: bool,
    events: Vec<String>,
    command: Option<String>,
    threshold: Option<usize>,
    slash_command: bool,
    error: Option<String>,
}

fn scope_status(t: Target, cwd: &std::path::Path) -> ScopeStatus {
    let mut s = ScopeStatus {
        read_here: settings::read_when_started_in(&t, cwd),
        scope: t.scope,
        exists: t.settings.is_file(),
        settings: t.settings.clone(),
        events: Vec::new(),
        command: None,
        threshold: None,
        // The /orch command is the project's: shown once, on its own line.
        slash_command: t.scope != Scope::Local
            && std::fs::read_to_string(&t.command).is_ok_and(|c| settings::command_is_ours(&c)),
        error: None,
    };
    match settings::read(&t.settings) {
        Ok(Some(v)) => {
            for (event, command) in settings::installed(&v) {
                s.threshold = s.threshold.or(settings::threshold_of(&command));
                s.command.get_or_insert(command);
                s.events.push(event);
            }
        }
        Ok(None) => {}
        Err(e) => s.error = Some(e.to_string()),
    }
    s
}

fn status(json: bool) -> anyhow::Result<Exit> {
    let mut out = Out::new();
    let mut any = false;
    let cwd = settings::current_dir()?;
    let mut targets = vec![settings::target(Scope::Project)?];
    let here = settings::target(Scope::Here)?;
    if here.settings != targets[0].settings {
        targets.push(here);
    }
    targets.push(settings::target(Scope::User)?);
    // The local settings Claude Code reads, or could, from here: shown when
    // the file exists (it is never installed into), from the same list
    // `orch doctor` judges.
    for f in settings::settings_files(&cwd) {
        if f.scope == Scope::Local && f.path.is_file() {
            let command = f.path.with_file_name("commands").join("orch.md");
            targets.push(Target {
                scope: Scope::Local,
                settings: f.path,
                command,
            });
        }
    }
    for t in targets {
        let scope = t.scope;
        let note = (!settings::read_when_started_in(&t, &cwd)).then(|| not_read_here(&t, &cwd));
        let s = scope_status(t, &cwd);
        any |= !s.events.is_empty() && s.read_here;
        if json {
            out.json(&s)?;
            continue;
        }
        let name = match scope {
            Scope::Project => "project",
            Scope::Here => "here",
            Scope::User => "user",
            Scope::Local => "local",
        };
        let what = if let Some(e) = &s.error {
            format!("unreadable: {e}")
        } else if s.events.is_empty() {
            if s.exists {
                "not installed".to_string()
            } else {
                "not installed (no file)".to_string()
            }
        } else {
            format!(
                "installed for {} events ({}), threshold {}: {}",
                s.events.len(),
                s.events.join(", "),
                s.threshold
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "?".into()),
                s.command.as_deref().unwrap_or("")
            )
        };
        // The path, the command and an error's text come from files anyone
        // may have written: escaped for the terminal.
        let esc = |t: &str| orch_core::text::escape(t, false).into_owned();
        out.line(format!(
            "{name:<8} {}: {}",
            esc(&s.settings.display().to_string()),
            esc(&what)
        ))?;
        if let (Some(note), false) = (&note, s.events.is_empty()) {
            out.line(format!("{:<8} not run here: {}", "", esc(note)))?;
        }
        if s.slash_command {
            out.line(format!("{:<8} /orch command installed", ""))?;
        }
    }
    Ok(if any { Exit::Ok } else { Exit::No })
}
