//! `orch doctor`: what is set up and what is not, one line per check with
//! the fix. Reads only: it never creates or changes a database or a setting.

use std::collections::BTreeSet;
use std::io::{IsTerminal, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::suite::SUITE;
use crate::{color_ok, DbArg, Out};
use orch_core::db::{self, schema};
use orch_core::error::Exit;

/// `orch doctor [--json]`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub db: DbArg,
    /// One JSON object per check (JSON Lines).
    #[arg(long)]
    pub json: bool,
}

pub const EXAMPLES: &str = "\
Examples:
  orch doctor
  orch doctor --json | jq -r 'select(.status != \"ok\") | .fix'";

/// The version every tool of the suite should report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// How a check came out: `ok` ✓, `warn` ! (something optional is missing),
/// `fail` ✗ (something the main job needs is missing or wrong).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mark {
    Ok,
    Warn,
    Fail,
}

impl Mark {
    pub fn symbol(self) -> &'static str {
        match self {
            Mark::Ok => "✓",
            Mark::Warn => "!",
            Mark::Fail => "✗",
        }
    }
}

/// One `orch-*` tool found.
#[derive(Debug, Clone, Serialize)]
pub struct ToolInfo {
    pub name: String,
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    /// Part of this suite (as opposed to a third-party `orch-NAME`).
    pub suite: bool,
}

/// One check: the `--json` record.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub check: &'static str,
    pub status: Mark,
    /// Whether the main job (queue, batch, emit) needs this.
    pub required: bool,
    pub message: String,
    pub fix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ToolInfo>,
}

impl Check {
    fn new(check: &'static str, required: bool, status: Mark, message: impl Into<String>) -> Check {
        Check {
            check,
            status,
            required,
            message: message.into(),
            fix: None,
            path: None,
            tools: Vec::new(),
        }
    }

    fn fix(mut self, fix: impl Into<String>) -> Check {
        self.fix = Some(fix.into());
        self
    }

    fn path(mut self, p: &Path) -> Check {
        self.path = Some(p.to_path_buf());
        self
    }
}

/// `orch doctor`.
pub fn run(args: Args) -> anyhow::Result<Exit> {
    let checks = checks(args.db.path());
    let mut out = Out::new();
    if args.json {
        for c in &checks {
            out.json(c)?;
        }
    } else {
        let color = color_ok(std::io::stdout().is_terminal());
        for c in &checks {
            out.line(render(c, color))?;
        }
    }
    out.flush()?;
    Ok(if checks.iter().any(|c| c.status == Mark::Fail) {
        Exit::No
    } else {
        Exit::Ok
    })
}

/// One human line: mark, name, what was found, and the fix.
pub fn render(c: &Check, color: bool) -> String {
    let mark = match (color, c.status) {
        (false, _) => c.status.symbol().to_string(),
        (true, Mark::Ok) => format!("\x1b[32m{}\x1b[0m", c.status.symbol()),
        (true, Mark::Warn) => format!("\x1b[33m{}\x1b[0m", c.status.symbol()),
        (true, Mark::Fail) => format!("\x1b[31m{}\x1b[0m", c.status.symbol()),
    };
    let message = orch_core::text::escape(&c.message, false);
    match &c.fix {
        Some(fix) => format!(
            "{mark} {:<9} {message}; fix: {}",
            c.check,
            orch_core::text::escape(fix, false)
        ),
        None => format!("{mark} {:<9} {message}", c.check),
    }
}

/// Every check, in the order shown.
pub fn checks(db_flag: Option<&Path>) -> Vec<Check> {
    // The slow ones (other processes) run while the file checks do.
    let tools = std::thread::spawn(tools);
    let claude = std::thread::spawn(claude);
    let mut all = vec![];
    let database = database(db_flag);
    let hooks = hooks();
    let mcp = mcp();
    let clipboard = clipboard();
    let agent = agent_cli();
    all.push(
        tools
            .join()
            .unwrap_or_else(|_| Check::new("tools", true, Mark::Fail, "the check itself failed")),
    );
    all.push(database);
    all.push(
        claude
            .join()
            .unwrap_or_else(|_| Check::new("claude", false, Mark::Warn, "the check itself failed")),
    );
    all.extend([hooks, mcp, clipboard, agent, limits(db_flag)]);
    all
}

/// Runs `program ARGS` with no stdin; its stdout, or why not, within `timeout`.
/// It runs in a process group of its own that dies with doctor; the group is
/// killed when it ends or times out, so nothing it started outlives the check.
pub fn output_within(program: &Path, args: &[&str], timeout: Duration) -> Result<String, String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = orch_core::child::spawn(&mut cmd).map_err(|e| format!("cannot run it: {e}"))?;
    let group = child.id() as i32;
    let mut stdout = child.stdout.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(out) = stdout.as_mut() {
            let _ = out.take(64 * 1024).read_to_string(&mut s);
        }
        s
    });
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                orch_core::child::kill_group(group, libc::SIGKILL);
                let text = reader.join().unwrap_or_default();
                return if status.success() {
                    Ok(text)
                } else {
                    Err(format!("{status}"))
                };
            }
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                orch_core::child::kill_group(group, libc::SIGKILL);
                let _ = child.wait();
                return Err(format!(
                    "no answer within {}",
                    orch_core::time::whole_secs(orch_core::time::ms(timeout))
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

const REINSTALL: &str =
    "reinstall the suite: ./install.sh in the orch sources (or cargo install --path .)";

/// Which `orch-*` tools are found and whether their versions match this one.
pub fn tools() -> Check {
    let found = crate::suite::discover();
    let mut handles = Vec::new();
    for (name, path) in &found {
        let (name, path) = (name.clone(), path.clone());
        let suite = SUITE.iter().any(|t| t.name == name);
        handles.push(std::thread::spawn(move || {
            let version = if suite {
                output_within(&path, &["--version"], Duration::from_secs(3))
                    .ok()
                    .and_then(|s| s.split_whitespace().last().map(str::to_string))
            } else {
                None
            };
            ToolInfo {
                name,
                path: Some(path),
                version,
                suite,
            }
        }));
    }
    let mut infos: Vec<ToolInfo> = handles.into_iter().filter_map(|h| h.join().ok()).collect();
    for t in SUITE {
        if !found.contains_key(t.name) {
            infos.push(ToolInfo {
                name: t.name.to_string(),
                path: None,
                version: None,
                suite: true,
            });
        }
    }
    infos.sort_by(|a, b| a.name.cmp(&b.name));
    let missing: Vec<String> = infos
        .iter()
        .filter(|t| t.suite && t.path.is_none())
        .map(|t| format!("orch-{}", t.name))
        .collect();
    let wrong: Vec<String> = infos
        .iter()
        .filter(|t| t.suite && t.path.is_some() && t.version.as_deref() != Some(VERSION))
        .map(|t| {
            format!(
                "orch-{} is {}",
                t.name,
                t.version.as_deref().unwrap_or("unknown (--version failed)")
            )
        })
        .collect();
    let others: Vec<String> = infos
        .iter()
        .filter(|t| !t.suite)
        .map(|t| format!("orch-{}", t.name))
        .collect();
    let dirs: BTreeSet<String> = infos
        .iter()
        .filter(|t| t.suite)
        .filter_map(|t| t.path.as_ref()?.parent().map(|p| p.display().to_string()))
        .collect();
    let extra = if others.is_empty() {
        String::new()
    } else {
        format!("; also {} (third-party)", others.join(", "))
    };
    let mut c = if !missing.is_empty() {
        Check::new(
            "tools",
            true,
            Mark::Fail,
            format!(
                "{} not found beside orch or on PATH{extra}",
                missing.join(", ")
            ),
        )
        .fix(REINSTALL)
    } else if !wrong.is_empty() {
        Check::new(
            "tools",
            true,
            Mark::Fail,
            format!("{} but orch is {VERSION}{extra}", wrong.join(", ")),
        )
        .fix(format!(
            "{REINSTALL}, or remove the stale copies from {}",
            dirs.into_iter().collect::<Vec<_>>().join(", ")
        ))
    } else {
        Check::new(
            "tools",
            true,
            Mark::Ok,
            format!(
                "{} orch-* tools, all {VERSION}, in {}{extra}",
                SUITE.len(),
                dirs.into_iter().collect::<Vec<_>>().join(", ")
            ),
        )
    };
    c.tools = infos;
    c
}

fn mode(p: &Path) -> Option<u32> {
    std::fs::metadata(p)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

fn access(p: &Path, how: rustix::fs::Access) -> bool {
    rustix::fs::access(p, how).is_ok()
}

/// The database in use, why, its permissions and schema; never creates it.
pub fn database(flag: Option<&Path>) -> Check {
    let loc = match db::resolve(flag) {
        Ok(l) => l,
        Err(e) => {
            return Check::new("database", true, Mark::Fail, e.to_string())
                .fix("pass --db PATH or set ORCH_DB")
        }
    };
    let path = &loc.path;
    let shown = format!("{} ({})", path.display(), loc.source.explain());
    // What can never be a database orch uses: a dangling symlink, a special
    // file, a hard-linked file (the same refusal every command makes).
    if let Err(e) = db::check_file(path) {
        return Check::new("database", true, Mark::Fail, e.to_string())
            .fix("as the message says; orch leaves this path alone until then")
            .path(path);
    }
    let init = match loc.source {
        db::Source::Flag | db::Source::Env => "nothing to do",
        db::Source::Project | db::Source::User => {
            "nothing to do, or `orch queue init` for a database of this project"
        }
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            // Creatable when the nearest existing ancestor is a writable directory.
            let parent = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let existing = parent
                .ancestors()
                .find(|a| a.exists())
                .unwrap_or(Path::new("/"));
            return if existing.is_dir()
                && access(
                    existing,
                    rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK,
                ) {
                Check::new(
                    "database",
                    true,
                    Mark::Warn,
                    format!("{shown} does not exist yet; it is made (mode 0600) on first use"),
                )
                .fix(init)
                .path(path)
            } else {
                Check::new(
                    "database",
                    true,
                    Mark::Fail,
                    format!(
                        "{shown} cannot be made: {} is not a writable directory",
                        existing.display()
                    ),
                )
                .fix("pass --db PATH or set ORCH_DB to a file in a writable directory")
                .path(path)
            };
        }
        Err(e) => {
            return Check::new("database", true, Mark::Fail, format!("{shown}: {e}"))
                .fix("check the path and its permissions")
                .path(path)
        }
    };
    if meta.is_dir() {
        return Check::new(
            "database",
            true,
            Mark::Fail,
            format!("{shown} is a directory"),
        )
        .fix("point --db or ORCH_DB at a file")
        .path(path);
    }
    let mut leaks = Vec::new();
    for p in [path.clone(), sidecar(path, "-wal"), sidecar(path, "-shm")] {
        if let Some(m) = mode(&p) {
            if m & 0o077 != 0 {
                leaks.push((p, m));
            }
        }
    }
    if !leaks.is_empty() {
        let names: Vec<String> = leaks
            .iter()
            .map(|(p, m)| format!("{} is {m:04o}", p.display()))
            .collect();
        let files: Vec<String> = leaks
            .iter()
            .map(|(p, _)| orch_core::text::sh_word(&p.display().to_string()))
            .collect();
        return Check::new(
            "database",
            true,
            Mark::Fail,
            format!(
                "{shown}: {}: other users can read the prompts",
                names.join(", ")
            ),
        )
        .fix(format!("chmod 600 {}", files.join(" ")))
        .path(path);
    }
    if !access(
        path,
        rustix::fs::Access::READ_OK | rustix::fs::Access::WRITE_OK,
    ) {
        return Check::new(
            "database",
            true,
            Mark::Fail,
            format!("{shown} is not readable and writable by you"),
        )
        .fix(format!(
            "chmod 600 {} (as its owner)",
            orch_core::text::sh_word(&path.display().to_string())
        ))
        .path(path);
    }
    let dir_note = private_dir_note(path, loc.source);
    if meta.len() == 0 {
        return Check::new(
            "database",
            true,
            Mark::Ok,
            format!("{shown}, mode 0600, empty: becomes a database on first use{dir_note}"),
        )
        .path(path);
    }
    match orch_core::task::peek(path) {
        Ok((version, tasks)) if version <= schema::current_version() => {
            let upgrade = if version < schema::current_version() {
                " (upgraded on next use)"
            } else {
                ""
            };
            let warn = if dir_note.is_empty() {
                Mark::Ok
            } else {
                Mark::Warn
            };
            let c = Check::new(
                "database",
                true,
                warn,
                format!(
                    "{shown}, mode 0600, schema {version}{upgrade}, {tasks} task{}{dir_note}",
                    if tasks == 1 { "" } else { "s" }
                ),
            );
            let c = match (warn, path.parent()) {
                (Mark::Warn, Some(dir)) => c.fix(format!(
                    "chmod 700 {}",
                    orch_core::text::sh_word(&dir.display().to_string())
                )),
                _ => c,
            };
            c.path(path)
        }
        Ok((version, _)) => Check::new(
            "database",
            true,
            Mark::Fail,
            format!(
                "{shown} has schema {version}, newer than this orch knows ({})",
                schema::current_version()
            ),
        )
        .fix(REINSTALL)
        .path(path),
        Err(why) => Check::new("database", true, Mark::Fail, format!("{shown}: {why}"))
            .fix("point --db or ORCH_DB at another file; orch leaves this one alone")
            .path(path),
    }
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A note when the directory orch made for the database lets others in.
fn private_dir_note(path: &Path, source: db::Source) -> String {
    let Some(dir) = path.parent() else {
        return String::new();
    };
    let ours = dir.file_name().is_some_and(|n| n == ".orch") || (source == db::Source::User);
    match mode(dir) {
        Some(m) if ours && m & 0o077 != 0 => {
            format!("; its directory {} is {m:04o}", dir.display())
        }
        _ => String::new(),
    }
}

/// Claude Code on PATH, and its version.
pub fn claude() -> Check {
    let Ok(path) = which::which("claude") else {
        return Check::new(
            "claude",
            false,
            Mark::Warn,
            "Claude Code (claude) not on PATH",
        )
        .fix("npm install -g @anthropic-ai/claude-code");
    };
    match output_within(&path, &["--version"], Duration::from_secs(5)) {
        Ok(v) => Check::new(
            "claude",
            false,
            Mark::Ok,
            match v.lines().next().map(str::trim).filter(|l| !l.is_empty()) {
                Some(v) => format!("Claude Code {v} at {}", path.display()),
                None => format!("Claude Code (it printed no version) at {}", path.display()),
            },
        )
        .path(&path),
        Err(why) => Check::new(
            "claude",
            false,
            Mark::Warn,
            format!("{} --version failed: {why}", path.display()),
        )
        .fix("run `claude --version` yourself to see what is wrong")
        .path(&path),
    }
}

use orch_core::claude::home;

/// Shows `p` relative to the current directory or HOME where it is inside one.
fn short(p: &Path) -> String {
    // The more specific of the two bases wins (HOME may lie inside the project).
    let cwd = std::env::current_dir().ok();
    let home = home();
    let mut bases: Vec<(&PathBuf, bool)> = cwd
        .iter()
        .map(|c| (c, false))
        .chain(home.iter().map(|h| (h, true)))
        .collect();
    bases.sort_by_key(|(b, _)| std::cmp::Reverse(b.as_os_str().len()));
    for (base, is_home) in bases {
        if let Ok(rel) = p.strip_prefix(base) {
            return if is_home {
                format!("~/{}", rel.display())
            } else {
                rel.display().to_string()
            };
        }
    }
    p.display().to_string()
}

fn read_json(p: &Path) -> Option<Result<serde_json::Value, String>> {
    let text = std::fs::read_to_string(p).ok()?;
    Some(serde_json::from_str(&text).map_err(|e| format!("{} is not valid JSON: {e}", short(p))))
}

/// Hook events in a settings file whose command runs orch-hook: the same
/// test `orch-hook status` and `uninstall` use.
fn orch_hook_events(settings: &serde_json::Value) -> Vec<String> {
    let mut events: Vec<String> = Vec::new();
    for (event, _) in orch_core::claude::hooks::installed(settings) {
        if !events.contains(&event) {
            events.push(event);
        }
    }
    events
}

/// orch hooks in the Claude Code settings that a session started here reads,
/// judged from the list `orch-hook status` uses
/// ([`orch_core::claude::hooks::settings_files`]): `./.claude/settings.json`
/// (project settings are read from the launch directory only),
/// `settings.local.json` here or at the repository root, and the user's
/// settings (`$CLAUDE_CONFIG_DIR`, default `~/.claude`). orch hooks in a
/// parent's `settings.json` are reported as not run here.
pub fn hooks() -> Check {
    let files: Vec<(PathBuf, bool)> = match std::env::current_dir() {
        Ok(cwd) => orch_core::claude::hooks::settings_files(&cwd)
            .into_iter()
            .map(|f| (f.path, f.read_here))
            .collect(),
        Err(_) => Vec::new(),
    };
    let mut found = Vec::new();
    let mut elsewhere = Vec::new();
    let mut broken = Vec::new();
    for (f, read_here) in &files {
        match read_json(f) {
            Some(Ok(v)) => {
                let events = orch_hook_events(&v);
                if events.is_empty() {
                    continue;
                }
                let line = format!("{} ({})", short(f), events.join(", "));
                if *read_here {
                    found.push(line);
                } else {
                    elsewhere.push((
                        line,
                        f.parent().and_then(Path::parent).map(Path::to_path_buf),
                    ));
                }
            }
            Some(Err(why)) => broken.push(why),
            None => {}
        }
    }
    if !found.is_empty() {
        return Check::new(
            "hooks",
            false,
            Mark::Ok,
            format!("orch-hook runs from {}", found.join("; ")),
        );
    }
    if let Some((line, dir)) = elsewhere.first() {
        let dir = dir.as_deref().map(short).unwrap_or_default();
        return Check::new(
            "hooks",
            false,
            Mark::Warn,
            format!("orch-hook is in {line}, but Claude Code reads project hooks only from the directory it is started in: started here, it runs none"),
        )
        .fix(format!("start Claude Code in {dir}, or orch hook install --here, or orch hook install --user"));
    }
    let why = if broken.is_empty() {
        String::new()
    } else {
        format!(" ({})", broken.join("; "))
    };
    Check::new(
        "hooks",
        false,
        Mark::Warn,
        format!("no orch-hook in .claude/settings.json, .claude/settings.local.json or ~/.claude/settings.json{why}: agent calls are not tracked"),
    )
    .fix("orch hook install (this project), or orch hook install --user")
}

/// orch registered as an MCP server for Claude Code or Claude Desktop
/// (found by [`orch_core::claude::mcp::registrations`]).
pub fn mcp() -> Check {
    use orch_core::claude::mcp::{registrations, Scope};
    let cwd = std::env::current_dir().unwrap_or_default();
    let found: Vec<String> = registrations(&cwd)
        .into_iter()
        .map(|r| match r.scope {
            Scope::Project => format!("{} ({})", short(&r.file), r.name),
            Scope::User => format!("{}, user scope ({})", short(&r.file), r.name),
            Scope::Local(dir) => {
                format!("{}, local scope of {dir} ({})", short(&r.file), r.name)
            }
            Scope::Desktop => format!("Claude Desktop ({})", r.name),
        })
        .collect();
    if found.is_empty() {
        Check::new(
            "mcp",
            false,
            Mark::Warn,
            "orch-mcp not registered in .mcp.json, ~/.claude.json or Claude Desktop",
        )
        .fix("claude mcp add orch -- \"$(command -v orch-mcp)\" (every form: orch mcp --config)")
    } else {
        Check::new(
            "mcp",
            false,
            Mark::Ok,
            format!("orch-mcp registered in {}", found.join("; ")),
        )
    }
}

/// A clipboard tool for `--copy`.
pub fn clipboard() -> Check {
    match orch_core::clipboard::find() {
        Some(c) => Check::new(
            "clipboard",
            false,
            Mark::Ok,
            format!("{} (for --copy)", c.program),
        ),
        None => Check::new(
            "clipboard",
            false,
            Mark::Warn,
            "no clipboard tool for --copy",
        )
        .fix("install wl-clipboard, xclip or xsel (pbcopy on macOS)"),
    }
}

/// An agent CLI for `orch-run --agent`.
pub fn agent_cli() -> Check {
    let found: Vec<String> = ["claude", "codex", "gemini"]
        .iter()
        .filter(|a| which::which(a).is_ok())
        .map(|a| a.to_string())
        .collect();
    if found.is_empty() {
        Check::new(
            "agent",
            false,
            Mark::Warn,
            "no agent CLI (claude, codex, gemini) on PATH for orch-run",
        )
        .fix("install one, or give orch-run a command: orch run -- my-agent {prompt}")
    } else {
        Check::new(
            "agent",
            false,
            Mark::Ok,
            format!("{} on PATH (for orch-run --agent)", found.join(", ")),
        )
    }
}

/// What holds runners back: Claude Code's sub-agent cap, this database's
/// limit, a pause in force, and batches whose runner's lease expired.
pub fn limits(flag: Option<&Path>) -> Check {
    let (cap, from) = orch_core::limits::claude_cap();
    let mut msg = format!("Claude Code runs at most {cap} sub-agents at once ({from})");
    let mut mark = Mark::Ok;
    let mut fix = None;
    if let Ok(loc) = db::resolve(flag) {
        if db::check_file(&loc.path).ok() == Some(db::Found::Data) {
            if let Ok(d) = db::Db::open_existing(&loc) {
                let state = d.read(|tx| {
                    let now = orch_core::time::now_ms();
                    Ok((
                        orch_core::limits::limit_in(tx)?,
                        orch_core::limits::paused_in(tx, now)?,
                        orch_core::batch::expired_with_tasks_in(tx, now)?,
                    ))
                });
                if let Ok((limit, pause, expired)) = state {
                    if let Some(l) = limit {
                        msg.push_str(&format!("; orch-queue limit {l} for every runner"));
                    }
                    if let Some(p) = pause {
                        msg.push_str(&format!("; {}", orch_core::limits::describe(&p)));
                        mark = Mark::Warn;
                        fix = Some("wait, or `orch-queue resume` to start tasks again now".into());
                    }
                    for (b, holder, until) in &expired {
                        msg.push_str(&format!(
                            "; batch {b}: the lease of its runner {holder} expired at {}",
                            orch_core::time::rfc3339(*until)
                        ));
                        mark = Mark::Warn;
                        fix = Some(format!(
                            "`orch-batch create` takes it over (its tasks back in the queue), or `orch-run {b}` runs what is left"
                        ));
                    }
                }
            }
        }
    }
    let c = Check::new("limits", false, mark, msg);
    match fix {
        Some(f) => c.fix(f),
        None => c,
    }
}
