//! `orch-queue`: add, list, show, cancel tasks; record their start and result.

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::{DbArg, Out, Tool};
use orch_core::agent_options;
use orch_core::db::{self, Db};
use orch_core::error::Exit;
use orch_core::jsonl;
use orch_core::task::{self, Dep, NewTask, Outcome, Status, Task};
use orch_core::text;
use orch_core::time::rfc3339;

const EXAMPLES: &str = "\
Examples:
  orch-queue init
  orch-queue add reviewer 'Review the diff in src/db.rs for locking bugs'
  orch-queue add tester -p 5 --after 1 'Write tests for the fix in task 1'
  printf '%s\\n' '{\"role\":\"dev\",\"prompt\":\"Fix #12\"}' | orch-queue add --stdin
  orch-queue list --status queued --json";

/// Add, list, show and cancel agent tasks; record their start and result.
#[derive(Debug, Parser)]
#[command(name = "orch-queue", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Make .orch/orch.db in this directory (like `git init`), or the file --db names.
    #[command(
        after_help = "Examples:\n  cd my-project && orch-queue init\n  orch-queue --db \"$ORCH_DB\" init      # make a script's database before its workers start"
    )]
    Init,
    /// Mirror the unfinished tasks into Claude Code's native task list.
    #[command(
        after_help = "Example:\n  orch-queue export --claude-tasks my-feature\n\nThe list is CLAUDE_CONFIG_DIR (else ~/.claude)/tasks/LIST; Claude Code reads it with\nCLAUDE_CODE_TASK_LIST_ID=LIST."
    )]
    Export(super::claude_tasks::Args),
    /// Read the statuses of the mirrored tasks back from Claude Code's task list.
    #[command(after_help = "Example:\n  orch-queue import --claude-tasks my-feature")]
    Import(super::claude_tasks::Args),
    /// Print the database in use and which rule chose it.
    #[command(after_help = "Example:\n  orch-queue where")]
    Where {
        #[arg(long)]
        json: bool,
    },
    /// Add a task; prints its id. With --stdin, JSON Lines in, ids out, all or nothing.
    #[command(after_help = "Examples:
  orch-queue add reviewer Review the locking in src/db.rs
  orch-queue add dev -d 'Fix login test' -p 5 --after 3 'Fix the flaky login test'
  git diff | orch-queue add reviewer -      # the prompt from stdin
  orch-queue add dev -- -v is broken        # a prompt that looks like an option
  orch-queue add --stdin < tasks.jsonl      # one {\"role\",\"prompt\",...} per line
  orch-queue add --stdin --role dev < tasks.jsonl   # the role of lines that name none

JSON Lines keys: role, prompt, description?, priority?, after? (ids or keys), key?")]
    Add(Box<AddArgs>),
    /// List tasks, oldest first.
    #[command(
        after_help = "Examples:\n  orch-queue list --status queued\n  orch-queue list --batch 3 --json | jq .result"
    )]
    List {
        #[arg(long, value_parser = status_arg())]
        status: Option<Status>,
        #[arg(long)]
        role: Option<String>,
        #[arg(long)]
        batch: Option<i64>,
        /// Only tasks that are ready (queued, with every `after` done).
        #[arg(long)]
        ready: bool,
        /// JSON Lines: one task object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one task in full.
    #[command(after_help = "Example:\n  orch-queue show 12 --json")]
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// What the agent of a task printed under orch-run (stdout and stderr, in order, with times).
    #[command(
        after_help = "Examples:\n  orch-queue logs 12\n  orch-queue logs 12 --follow      # live, until the task ends\n  orch-queue logs 12 --since 5m --json"
    )]
    Logs {
        id: i64,
        /// Keep printing new lines until the task is done, failed or cancelled.
        #[arg(long, short)]
        follow: bool,
        /// Only lines printed at or after TIME (RFC 3339, or a duration ago: 10m).
        #[arg(long, value_name = "TIME", value_parser = orch_core::time::parse_since)]
        since: Option<i64>,
        /// JSON Lines: {"at","stream","line"} per line.
        #[arg(long)]
        json: bool,
    },
    /// Cancel queued or batched tasks (all or nothing).
    #[command(after_help = "Example:\n  orch-queue cancel 4 5")]
    Cancel {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Mark a task running.
    #[command(after_help = "Example:\n  orch-queue start 12")]
    Start { id: i64 },
    /// Mark a task done, with its result (`-` reads it from stdin).
    #[command(after_help = "Example:\n  claude -p \"$prompt\" | orch-queue done 12 --result -")]
    Done {
        id: i64,
        #[arg(long, value_name = "TEXT|-")]
        result: Option<String>,
    },
    /// Mark a task failed, with the reason.
    #[command(after_help = "Example:\n  orch-queue fail 12 --error 'timed out'")]
    Fail {
        id: i64,
        #[arg(long, value_name = "TEXT|-")]
        error: Option<String>,
        /// The agent's exit status.
        #[arg(long)]
        exit_code: Option<i64>,
    },
    /// Count tasks by status; spend and tokens per batch and in total.
    #[command(after_help = "Example:\n  orch-queue stats --json")]
    Stats {
        #[arg(long)]
        json: bool,
    },
    /// Remove the git worktrees of tasks that are done, landed, cancelled or
    /// failed (orch-run --worktree), and the branches of landed tasks.
    #[command(after_help = "Example:\n  orch-queue clean --dry-run")]
    Clean {
        /// Only say what would be removed.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
    },
    /// Every attempt of a task: runner, times, outcome, error class, cost.
    #[command(after_help = "Example:\n  orch-queue attempts 12 --json")]
    Attempts {
        id: i64,
        /// JSON Lines: one attempt per line.
        #[arg(long)]
        json: bool,
    },
    /// Put failed tasks back in the queue as a new attempt (all or nothing; history kept).
    #[command(after_help = "Example:\n  orch-queue retry 4 5")]
    Retry {
        #[arg(required = true)]
        ids: Vec<i64>,
    },
    /// Start nothing new on this database (every runner) until TIME or `resume`.
    #[command(
        after_help = "Examples:\n  orch-queue pause                 # until resumed\n  orch-queue pause --until 30m\n  orch-queue pause --until 2026-12-01T09:00:00Z"
    )]
    Pause {
        /// A duration from now (90s, 30m, 2h) or an RFC 3339 time.
        #[arg(long, value_name = "TIME", value_parser = orch_core::time::parse_until)]
        until: Option<i64>,
    },
    /// End a pause (set by hand or by a usage limit).
    #[command(after_help = "Example:\n  orch-queue resume")]
    Resume,
    /// The most agents running at once on this database, across every runner;
    /// with no argument, print it and how many run now.
    #[command(
        after_help = "Examples:\n  orch-queue limit 4\n  orch-queue limit\n  orch-queue limit --clear"
    )]
    Limit {
        #[arg(value_parser = clap::value_parser!(i64).range(1..=10_000), conflicts_with = "clear")]
        n: Option<i64>,
        #[arg(long)]
        clear: bool,
    },
    /// How much of the event journal this database keeps (the older of the
    /// two goes); with no option, print it.
    #[command(
        after_help = "Examples:\n  orch-queue retention\n  orch-queue retention --days 7 --max 100000\n  orch-queue retention --json"
    )]
    Retention {
        /// Keep events younger than N days [default: 30].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=36_500))]
        days: Option<i64>,
        /// Keep at most the newest N events [default: 1000000].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(i64).range(1..=1_000_000_000))]
        max: Option<i64>,
        /// One JSON object: {"days":N,"max":N}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The agent type (1-64 of A-Z a-z 0-9 _ . -).
    #[arg(required_unless_present = "stdin")]
    pub role: Option<String>,
    /// What the agent should do: words joined by spaces, `-` reads stdin. A word
    /// starting with `-` that is not an option (`-rf is a prompt`) is prompt text;
    /// put `--` before a prompt that looks like an option.
    #[arg(required_unless_present = "stdin", num_args = 0..)]
    pub prompt: Vec<OsString>,
    /// A 3-5 word summary for the Agent call [default: the prompt's first words].
    #[arg(short, long)]
    pub description: Option<String>,
    /// Higher runs first.
    #[arg(short, long, default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i64,
    /// Wait for this task to be done first (repeatable).
    #[arg(long, value_name = "ID")]
    pub after: Vec<i64>,
    /// The model the agent runs on (the Agent tool's `model`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(agent_options::MODELS))]
    pub model: Option<String>,
    /// Run the agent in its own git worktree, or remotely (the Agent tool's `isolation`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(agent_options::ISOLATIONS))]
    pub isolation: Option<String>,
    /// Launch the agent in the background (`run_in_background: true`).
    #[arg(long)]
    pub background: bool,
    /// A name SendMessage can address the agent by (the Agent tool's `name`).
    #[arg(long)]
    pub name: Option<String>,
    /// The agent's permission mode (the Agent tool's `mode`).
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(agent_options::MODES))]
    pub mode: Option<String>,
    /// A glob of the paths the task expects to change (repeatable); tasks whose
    /// globs overlap never share a batch.
    #[arg(long, value_name = "GLOB")]
    pub touches: Vec<String>,
    /// Read tasks as JSON Lines from stdin; print one id per line.
    #[arg(long, conflicts_with_all = ["role", "prompt", "description", "priority", "after", "model", "isolation", "background", "name", "mode", "touches"])]
    pub stdin: bool,
    /// With --stdin: the role of every line that names none.
    #[arg(
        long = "role",
        id = "default_role",
        value_name = "ROLE",
        requires = "stdin"
    )]
    pub default_role: Option<String>,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-queue";

    fn preprocess(args: Vec<OsString>) -> Vec<OsString> {
        hyphen_prompts(args)
    }

    fn run(self) -> anyhow::Result<Exit> {
        let mut out = Out::new();
        match self.cmd {
            Cmd::Init => {
                // `--db PATH` names the file to make (a script's ORCH_DB file,
                // made before many processes start at once); otherwise
                // .orch/orch.db here, like `git init`.
                let path = match self.db.path() {
                    Some(p) => p.to_path_buf(),
                    None => std::env::current_dir()
                        .context("finding the current directory")?
                        .join(".orch")
                        .join("orch.db"),
                };
                let existed = path.exists();
                crate::check_stdout()?;
                let db = Db::open(&path)?;
                drop(db);
                if self.db.path().is_none() {
                    if let Some(dot) = path.parent() {
                        db::ignore_in_git(dot)?;
                    }
                }
                out.answer(
                    || format!("the database {}", path.display()),
                    |out| out.line(orch_core::text::path(&path)),
                )?;
                eprintln!(
                    "{}",
                    if existed {
                        "an orch database was already here; nothing changed"
                    } else {
                        "initialized an empty orch database"
                    }
                );
                let loc = db::resolve(self.db.path())?;
                if !matches!(loc.source, db::Source::Project | db::Source::Flag) {
                    eprintln!(
                        "note: commands here use {} ({}), not this file",
                        text::escape(&loc.path.display().to_string(), false),
                        loc.source.explain()
                    );
                }
            }
            Cmd::Export(a) => return super::claude_tasks::export(&self.db, a, &mut out),
            Cmd::Import(a) => return super::claude_tasks::import(&self.db, a, &mut out),
            Cmd::Where { json } => {
                let loc = db::resolve(self.db.path())?;
                if json {
                    out.json(&loc)?;
                } else {
                    out.line(orch_core::text::path(&loc.path))?;
                    out.flush()?;
                    eprintln!("({})", loc.source.explain());
                }
            }
            Cmd::Add(a) => return add(&self.db, *a, &mut out),
            Cmd::List {
                status,
                role,
                batch,
                ready,
                json,
            } => {
                let db = self.db.open_existing()?;
                let tasks = task::list(
                    &db,
                    &task::TaskFilter {
                        status,
                        role,
                        batch,
                        ready,
                        limit: None,
                    },
                )?;
                if json {
                    for t in &tasks {
                        out.json(t)?;
                    }
                } else {
                    print_table(&mut out, &tasks)?;
                }
            }
            Cmd::Logs {
                id,
                follow,
                since,
                json,
            } => return logs(&self.db, id, follow, since, json, &mut out),
            Cmd::Show { id, json } => {
                let db = self.db.open_existing()?;
                let t = task::get(&db, id)?;
                if json {
                    out.json(&t)?;
                } else {
                    let attempts = orch_core::attempt::list(&db, id)?;
                    print_task(&mut out, &t, &attempts)?;
                }
            }
            Cmd::Cancel { mut ids } => {
                // `cancel 4 4` cancels task 4 once.
                let mut seen = std::collections::HashSet::new();
                ids.retain(|id| seen.insert(*id));
                let db = self.db.open_existing()?;
                task::cancel(&db, &ids)?;
                eprintln!(
                    "cancelled {} task{}",
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" }
                );
                note_blocked(&db, Some(&ids), None);
            }
            Cmd::Start { id } => {
                let db = self.db.open_existing()?;
                db.write(|tx| {
                    let now = orch_core::time::now_ms();
                    task::start_in(tx, id, Some(now))?;
                    orch_core::attempt::begin_in(tx, id, "manual", now)
                })?;
            }
            Cmd::Done { id, result } => {
                let result = text_or_stdin(result, "the result")?;
                let db = self.db.open_existing()?;
                finish_manual(
                    &db,
                    id,
                    Outcome {
                        ok: true,
                        result,
                        ..Default::default()
                    },
                )?;
            }
            Cmd::Fail {
                id,
                error,
                exit_code,
            } => {
                let error = text_or_stdin(error, "the error")?;
                let db = self.db.open_existing()?;
                finish_manual(
                    &db,
                    id,
                    Outcome {
                        ok: false,
                        error,
                        exit_code,
                        ..Default::default()
                    },
                )?;
                note_blocked(&db, Some(&[id]), None);
            }
            Cmd::Clean { dry_run, json } => {
                if !dry_run {
                    crate::check_stdout()?;
                }
                let db = self.db.open_existing()?;
                let gone = orch_core::worktree::clean(&db, dry_run)?;
                let print = |out: &mut Out| -> std::io::Result<()> {
                    for c in &gone {
                        if json {
                            out.json(c)?;
                        } else {
                            out.line(format_args!(
                                "{} {} (task {}, {}){}",
                                if dry_run { "would remove" } else { "removed" },
                                text::escape(&c.worktree, false),
                                c.task,
                                c.status,
                                c.branch_deleted
                                    .as_ref()
                                    .map(|b| format!(" and branch {}", text::escape(b, false)))
                                    .unwrap_or_default()
                            ))?;
                        }
                    }
                    Ok(())
                };
                if dry_run {
                    print(&mut out)?;
                } else {
                    out.answer(
                        || {
                            crate::ids_text(
                                "the removal of the worktrees of task",
                                gone.iter().map(|c| c.task),
                            )
                        },
                        print,
                    )?;
                }
            }
            Cmd::Attempts { id, json } => {
                let db = self.db.open_existing()?;
                let list = orch_core::attempt::list(&db, id)?;
                if json {
                    for a in &list {
                        out.json(a)?;
                    }
                } else {
                    print_attempts(&mut out, &list)?;
                }
            }
            Cmd::Retry { mut ids } => {
                let mut seen = std::collections::HashSet::new();
                ids.retain(|id| seen.insert(*id));
                let db = self.db.open_existing()?;
                orch_core::attempt::retry(&db, &ids)?;
                eprintln!(
                    "{} task{} back in the queue",
                    ids.len(),
                    if ids.len() == 1 { "" } else { "s" }
                );
            }
            Cmd::Pause { until } => {
                let db = self.db.open()?;
                orch_core::limits::pause(&db, until, "paused by hand")?;
                if let Some(p) = orch_core::limits::paused(&db)? {
                    eprintln!("{}", orch_core::limits::describe(&p));
                }
            }
            Cmd::Resume => {
                let db = self.db.open_existing()?;
                if orch_core::limits::resume(&db)? {
                    eprintln!("resumed");
                } else {
                    eprintln!("not paused");
                }
            }
            Cmd::Limit { n, clear } => {
                let set = n.is_some() || clear;
                if set {
                    crate::check_stdout()?;
                    let db = self.db.open()?;
                    orch_core::limits::set_limit(&db, n)?;
                }
                let db = self.db.open_existing()?;
                let (limit, used) = db.read(|tx| {
                    Ok((
                        orch_core::limits::limit_in(tx)?,
                        orch_core::limits::slots_in_use_in(tx, orch_core::time::now_ms())?,
                    ))
                })?;
                let print = |out: &mut Out| match limit {
                    Some(l) => out.line(format_args!("limit {l} ({used} running)")),
                    None => out.line("no limit"),
                };
                if set {
                    let what = || match n {
                        Some(n) => format!("the limit of {n}"),
                        None => "clearing the limit".to_string(),
                    };
                    out.answer(what, print)?;
                } else {
                    print(&mut out)?;
                }
            }
            Cmd::Retention { days, max, json } => {
                let set = days.is_some() || max.is_some();
                let r = if set {
                    crate::check_stdout()?;
                    let db = self.db.open()?;
                    orch_core::event::set_retention(&db, days, max)?
                } else {
                    let db = self.db.open_existing()?;
                    db.read(orch_core::event::retention_in)?
                };
                let print = |out: &mut Out| match json {
                    true => out.json(&r),
                    false => out.line(format_args!(
                        "keep {} days or {} events, whichever is less",
                        r.days, r.max
                    )),
                };
                if set {
                    out.answer(|| "the new retention".to_string(), print)?;
                } else {
                    print(&mut out)?;
                }
            }
            Cmd::Stats { json } => {
                let db = self.db.open_existing()?;
                let s = task::stats(&db)?;
                let ledger = db.read(orch_core::attempt::ledger_in)?;
                if json {
                    #[derive(serde::Serialize)]
                    struct WithSpend<'a> {
                        #[serde(flatten)]
                        counts: &'a task::Stats,
                        #[serde(skip_serializing_if = "Option::is_none")]
                        spend: Option<&'a orch_core::attempt::Ledger>,
                    }
                    out.json(&WithSpend {
                        counts: &s,
                        spend: ledger.total.any().then_some(&ledger),
                    })?;
                } else {
                    for st in Status::ALL {
                        let n = s.of(st);
                        if st == Status::Landed && n == 0 {
                            continue;
                        }
                        out.line(format_args!("{:<10} {n}", st.as_str()))?;
                        if st == Status::Queued {
                            out.line(format_args!("{:<10} {}", "  ready", s.ready))?;
                        }
                    }
                    out.line(format_args!("{:<10} {}", "total", s.total))?;
                    print_ledger(&mut out, &ledger)?;
                }
            }
        }
        out.flush()?;
        Ok(Exit::Ok)
    }
}

/// Options of `add` (and the global `--db`) that take a value as the next argument.
const ADD_VALUE_OPTIONS: &[&str] = &[
    "-d",
    "--description",
    "-p",
    "--priority",
    "--after",
    "--role",
    "--db",
    "--model",
    "--isolation",
    "--name",
    "--mode",
    "--touches",
];

/// Lets a prompt start with `-`: in `add`, an argument that starts with `-` but
/// cannot be an option (`-rf is a prompt`, `-5`, `-> x`, `--- notes`) is prompt
/// text. Options may still come in any order around the prompt, so the
/// arguments are regrouped as `OPTIONS… -- ROLE PROMPT…` for clap. Something
/// shaped like an option (`-x`, `--frob`) stays an option, so a typo is an error
/// rather than part of a prompt; `--` before the prompt passes anything through.
fn hyphen_prompts(args: Vec<OsString>) -> Vec<OsString> {
    // Find the subcommand, skipping `--db PATH` / `--db=PATH` and flags before it.
    let mut i = 1;
    while i < args.len() {
        let a = args[i].as_encoded_bytes();
        if a == b"--db" {
            i += 2;
        } else if a.starts_with(b"-") {
            i += 1;
        } else {
            break;
        }
    }
    if args.get(i).map(|a| a.as_encoded_bytes()) != Some(b"add") {
        return args;
    }
    let mut out: Vec<OsString> = args[..=i].to_vec();
    let mut words: Vec<OsString> = Vec::new();
    let mut rest = args[i + 1..].iter();
    while let Some(a) = rest.next() {
        let b = a.as_encoded_bytes();
        if b == b"--" {
            words.extend(rest.by_ref().cloned());
            break;
        }
        if is_option(b) {
            out.push(a.clone());
            let takes_value = ADD_VALUE_OPTIONS.iter().any(|o| o.as_bytes() == b);
            if takes_value {
                if let Some(v) = rest.next() {
                    out.push(v.clone());
                }
            }
        } else {
            words.push(a.clone());
        }
    }
    if !words.is_empty() {
        out.push("--".into());
        out.extend(words);
    }
    out
}

/// Whether an argument is shaped like an option: `-X…` with a letter and no
/// whitespace, or `--name[=value]`.
fn is_option(b: &[u8]) -> bool {
    if let Some(long) = b.strip_prefix(b"--") {
        let name = long.split(|&c| c == b'=').next().unwrap_or_default();
        return name.first().is_some_and(u8::is_ascii_alphabetic)
            && name.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-');
    }
    match b {
        [b'-', c, ..] if c.is_ascii_alphabetic() => !b.iter().any(u8::is_ascii_whitespace),
        _ => false,
    }
}

fn text_or_stdin(v: Option<String>, what: &str) -> anyhow::Result<Option<String>> {
    match v.as_deref() {
        Some("-") => Ok(Some(crate::read_stdin_text(16 * task::MAX_PROMPT, what)?)),
        _ => Ok(v),
    }
}

fn add(db: &DbArg, a: AddArgs, out: &mut Out) -> anyhow::Result<Exit> {
    if a.stdin {
        return add_stdin(db, a.default_role.as_deref(), out);
    }
    let role = a.role.unwrap_or_default();
    let prompt = if a.prompt.len() == 1 && a.prompt[0] == "-" {
        if io::stdin().is_terminal() {
            bail!("the prompt is `-` but stdin is a terminal: pipe the prompt in");
        }
        crate::read_stdin_text(task::MAX_PROMPT, "the prompt")?
    } else {
        let mut words = Vec::with_capacity(a.prompt.len());
        for w in a.prompt {
            words.push(w.into_string().map_err(|w| {
                anyhow::anyhow!(
                    "the prompt is not valid UTF-8 (near {:?}); prompts are text",
                    orch_core::text::clip(&w.to_string_lossy(), 20)
                )
            })?);
        }
        words.join(" ")
    };
    let t = NewTask {
        role: Some(role),
        prompt,
        description: a.description,
        priority: Some(a.priority),
        after: a.after.into_iter().map(Dep::Id).collect(),
        key: None,
        model: a.model,
        isolation: a.isolation,
        background: a.background.then_some(true),
        name: a.name,
        mode: a.mode,
        touches: a.touches,
    }
    .validate(None)?;
    crate::check_stdout()?;
    let db = db.open()?;
    let id = task::add(&db, vec![t], |_| "task".to_string())?[0];
    out.answer(|| crate::ids_text("task", [id]), |out| out.line(id))?;
    note_blocked(&db, None, Some((id, id)));
    Ok(Exit::Ok)
}

/// `add --stdin`: all or nothing, in two passes over the input so that memory
/// stays at one line whatever its length. The first pass validates every line
/// and checks the keys before the database is even opened; the second parses
/// the lines again and inserts each one as it goes, inside one IMMEDIATE
/// transaction. The input is read from stdin once: a regular file is read
/// again in place, anything else is kept in a spooled temporary file.
fn add_stdin(db: &DbArg, default_role: Option<&str>, out: &mut Out) -> anyhow::Result<Exit> {
    if let Some(r) = default_role {
        task::validate_role(r)?;
    }
    let label = |n: usize| format!("line {n}");
    let mut keys = task::KeyCheck::default();
    let mut input = Replay::stdin()?;
    input.each_line(|n, line| {
        let t = jsonl::parse_line(line, default_role).with_context(|| format!("line {n}"))?;
        Ok(keys.note(&t, n, &label)?)
    })?;
    if keys.is_empty() {
        bail!("no tasks on stdin (expected JSON Lines: {{\"role\":…,\"prompt\":…}} per line)");
    }
    keys.check(&label)?;
    crate::check_stdout()?;
    let db = db.open()?;
    let ids = db.write(|tx| {
        let mut ins = task::Inserter::new(tx, &keys);
        input
            .replay(|n, line| {
                let t =
                    jsonl::parse_line(line, default_role).with_context(|| format!("line {n}"))?;
                ins.push(t, n, &label)?;
                Ok(())
            })
            .map_err(|e| match e.downcast::<orch_core::error::Error>() {
                Ok(e) => e,
                Err(e) => orch_core::error::Error::invalid(crate::one_line(&e)),
            })?;
        ins.finish()
    })?;
    out.answer(
        || crate::ids_text("task", ids.iter()),
        |out| ids.iter().try_for_each(|id| out.line(id)),
    )?;
    if let (Some(lo), Some(hi)) = (ids.iter().min(), ids.iter().max()) {
        note_blocked(&db, None, Some((lo, hi)));
    }
    Ok(Exit::Ok)
}

/// Notes on stderr the queued tasks that can never become ready: those behind
/// `roots` (just cancelled or failed), or those in `within` (just added) that
/// wait for a failed or cancelled task. Best effort: the write is committed
/// whatever this finds.
fn note_blocked(db: &Db, roots: Option<&[i64]>, within: Option<(i64, i64)>) {
    let Ok(blocked) = task::blocked(db, roots, within) else {
        return;
    };
    let mut behind: std::collections::BTreeMap<i64, Vec<i64>> = Default::default();
    for b in blocked {
        behind.entry(b.behind).or_default().push(b.id);
    }
    for (root, ids) in behind {
        let status = task::get(db, root)
            .map(|t| t.status.as_str())
            .unwrap_or("gone");
        let one = ids.len() == 1;
        let list = crate::ids_text("task", ids.iter().copied());
        eprintln!(
            "orch-queue: note: {list} can never become ready: {} for task {root}, which is {status} (`orch-queue cancel {}` takes {} out of the queue)",
            if one { "it waits (directly or through others)" } else { "they wait (directly or through others)" },
            ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(" "),
            if one { "it" } else { "them" },
        );
    }
}

/// Stdin, readable twice without holding it in memory.
struct Replay {
    src: ReplaySrc,
    /// Bytes read by the first pass.
    len: u64,
}

enum ReplaySrc {
    /// Stdin is a regular file: read it again from where it started.
    File(std::fs::File, u64),
    /// A pipe or terminal: what was read, in memory up to 1 MiB, then on disk.
    Spool(tempfile::SpooledTempFile),
}

impl Replay {
    fn stdin() -> anyhow::Result<Replay> {
        use std::io::Seek;
        use std::os::fd::AsFd;
        let fd = io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .context("reading stdin")?;
        let mut file = std::fs::File::from(fd);
        let src = match file.metadata() {
            Ok(m) if m.is_file() => match file.stream_position() {
                Ok(start) => ReplaySrc::File(file, start),
                Err(_) => ReplaySrc::Spool(tempfile::SpooledTempFile::new(1 << 20)),
            },
            _ => ReplaySrc::Spool(tempfile::SpooledTempFile::new(1 << 20)),
        };
        Ok(Replay { src, len: 0 })
    }

    /// The first pass: reads stdin to the end, calling `f` with each non-blank
    /// line and its number.
    fn each_line(
        &mut self,
        mut f: impl FnMut(usize, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        use std::io::Write;
        let stdin = io::stdin();
        let mut reader = io::BufReader::with_capacity(64 * 1024, stdin.lock());
        let (len, src) = (&mut self.len, &mut self.src);
        for_each_line(
            &mut reader,
            "reading stdin",
            |raw| {
                *len += raw.len() as u64;
                if let ReplaySrc::Spool(spool) = src {
                    spool
                        .write_all(raw)
                        .context("keeping stdin in a temporary file")?;
                }
                Ok(())
            },
            &mut f,
        )
    }

    /// The second pass: the same lines again (what the first pass read, no more).
    fn replay(
        &mut self,
        mut f: impl FnMut(usize, &str) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        use std::io::{Read, Seek, SeekFrom};
        let src: &mut dyn Read = match &mut self.src {
            ReplaySrc::File(file, start) => {
                file.seek(SeekFrom::Start(*start))
                    .context("reading stdin again")?;
                file
            }
            ReplaySrc::Spool(spool) => {
                spool.rewind().context("reading stdin again")?;
                spool
            }
        };
        let mut reader = io::BufReader::with_capacity(64 * 1024, src.take(self.len));
        for_each_line(&mut reader, "reading stdin again", |_| Ok(()), &mut f)
    }
}

/// Reads `reader` to the end: `raw` sees each line's bytes, then `f` gets each
/// non-blank line as text with its number (counting blank lines too).
fn for_each_line(
    reader: &mut dyn BufRead,
    what: &'static str,
    mut raw: impl FnMut(&[u8]) -> anyhow::Result<()>,
    f: &mut dyn FnMut(usize, &str) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf).context(what)? == 0 {
            return Ok(());
        }
        raw(&buf)?;
        n += 1;
        if let Some(line) = jsonl::text_line(&buf, n)? {
            f(n, line)?;
        }
    }
}

fn print_table(out: &mut Out, tasks: &[Task]) -> io::Result<()> {
    if tasks.is_empty() {
        eprintln!("no tasks");
        return Ok(());
    }
    let role_w = tasks
        .iter()
        .map(|t| t.role.len())
        .max()
        .unwrap_or(4)
        .clamp(4, 24);
    out.line(format_args!(
        "{:>5}  {:<9}  {:<role_w$}  {:>4}  {:>5}  DESCRIPTION",
        "ID", "STATUS", "ROLE", "PRIO", "BATCH"
    ))?;
    for t in tasks {
        out.line(format_args!(
            "{:>5}  {:<9}  {:<role_w$}  {:>4}  {:>5}  {}{}",
            t.id,
            t.status.as_str(),
            text::cell(&t.role, role_w),
            t.priority,
            t.batch.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            text::first_line(&t.description, 60),
            due(t)
        ))?;
    }
    Ok(())
}

/// `done`/`fail`: the task ends, and so does its attempt (runner `manual`
/// when no runner opened one).
fn finish_manual(db: &Db, id: i64, o: Outcome) -> orch_core::Result<()> {
    db.write(|tx| {
        let at = orch_core::time::now_ms();
        let end = orch_core::attempt::End {
            ok: o.ok,
            error: o.error.clone(),
            exit_code: o.exit_code,
            at,
            ..Default::default()
        };
        task::finish_in(tx, id, Outcome { at: Some(at), ..o })?;
        orch_core::attempt::end_in(tx, id, "manual", &end)
    })
}

/// " (retry due HH:MM:SS)" for a task waiting for its next attempt.
fn due(t: &Task) -> String {
    match t.not_before {
        Some(ms)
            if matches!(t.status, Status::Queued | Status::Batched)
                && ms > orch_core::time::now_ms() =>
        {
            format!(" (retry due {})", orch_core::limits::hhmm(ms))
        }
        _ => String::new(),
    }
}

fn print_attempts(out: &mut Out, list: &[orch_core::attempt::Attempt]) -> io::Result<()> {
    for a in list {
        let mut l = format!(
            "  #{} {} {} {}",
            a.attempt,
            a.runner,
            a.started_at,
            a.outcome.as_deref().unwrap_or("running")
        );
        if let Some(c) = &a.error_class {
            l.push_str(&format!(" ({c})"));
        }
        if let Some(c) = a.metrics.cost_usd {
            l.push_str(&format!(" ${c:.4}"));
        }
        let m = &a.metrics;
        match (m.input_tokens, m.output_tokens, m.total_tokens) {
            (Some(i), Some(o), Some(t)) => {
                l.push_str(&format!(" {i} in/{o} out tokens, {t} in all"))
            }
            (Some(i), Some(o), None) => l.push_str(&format!(" {i} in/{o} out tokens")),
            (_, _, Some(t)) => l.push_str(&format!(" {t} tokens in all")),
            _ => {}
        }
        if let Some(r) = &a.retry_at {
            l.push_str(&format!(", retry at {r}"));
        }
        if let Some(e) = &a.error {
            l.push_str(&format!(": {}", text::first_line(e, 120)));
        }
        out.line(format_args!("{l}"))?;
    }
    Ok(())
}

fn print_ledger(out: &mut Out, l: &orch_core::attempt::Ledger) -> io::Result<()> {
    for line in ledger_lines("spend      ", l) {
        out.line(format_args!("{line}"))?;
    }
    Ok(())
}

/// The spend and tokens of the attempt ledger, as `orch-queue stats` and
/// `orch status` show them: the total after `label`, then one line per batch.
/// Nothing when no agent reported a cost or tokens (never an invented zero).
pub(crate) fn ledger_lines(label: &str, l: &orch_core::attempt::Ledger) -> Vec<String> {
    let t = &l.total;
    if !t.any() {
        return Vec::new();
    }
    let cost = match t.cost_usd {
        Some(c) => format!(
            "${c:.4} over {} attempts ({} reported a cost)",
            t.attempts, t.reported
        ),
        None => format!("no cost reported over {} attempts", t.attempts),
    };
    let mut lines = vec![format!(
        "{label}{cost}{}",
        tokens_text("; tokens ", t, true)
    )];
    for b in &l.batches {
        if !b.spend.any() {
            continue;
        }
        lines.push(format!(
            "  batch {:<5} {}  {} attempts{}",
            b.batch.map(|b| b.to_string()).unwrap_or_else(|| "-".into()),
            b.spend
                .cost_usd
                .map(|c| format!("${c:.4}"))
                .unwrap_or_else(|| "$-".into()),
            b.spend.attempts,
            tokens_text("  tokens ", &b.spend, false)
        ));
    }
    lines
}

/// "tokens 1200 in, 300 out, …": the figures that were reported, after `lead`.
fn tokens_text(lead: &str, s: &orch_core::attempt::Spend, cache: bool) -> String {
    let mut parts = Vec::new();
    for (n, what, show) in [
        (s.input_tokens, "in", true),
        (s.output_tokens, "out", true),
        (s.cache_read_tokens, "cache read", cache),
        (s.cache_creation_tokens, "cache written", cache),
        (s.total_tokens, "in all", true),
    ] {
        if let (Some(n), true) = (n, show) {
            parts.push(format!("{n} {what}"));
        }
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{lead}{}", parts.join(", "))
    }
}

fn print_task(out: &mut Out, t: &Task, attempts: &[orch_core::attempt::Attempt]) -> io::Result<()> {
    out.line(format_args!("task {}  {}", t.id, t.status))?;
    out.line(format_args!(
        "role:        {}",
        text::escape(&t.role, false)
    ))?;
    out.line(format_args!(
        "description: {}",
        text::escape(&t.description, false)
    ))?;
    out.line(format_args!("priority:    {}", t.priority))?;
    if !t.after.is_empty() {
        let after: Vec<String> = t.after.iter().map(|a| a.to_string()).collect();
        out.line(format_args!("after:       {}", after.join(", ")))?;
    }
    if let Some(b) = t.batch {
        out.line(format_args!("batch:       {b}"))?;
    }
    for (name, v) in [
        ("model:", t.agent.model.as_deref()),
        ("isolation:", t.agent.isolation.as_deref()),
        ("background:", t.agent.background.then_some("yes")),
        ("name:", t.agent.name.as_deref()),
        ("mode:", t.agent.mode.as_deref()),
        ("worktree:", t.git.worktree.as_deref()),
        ("branch:", t.git.branch.as_deref()),
        ("base:", t.git.base.as_deref()),
        ("head:", t.git.head.as_deref()),
        ("landed as:", t.git.landed_commit.as_deref()),
    ] {
        if let Some(v) = v {
            out.line(format_args!("{name:<12} {}", text::escape(v, false)))?;
        }
    }
    if t.git.branch.is_some() && t.git.head.is_some() && t.git.head == t.git.base {
        out.line("changes:     none (its branch held nothing new)")?;
    }
    if !t.touches.is_empty() {
        let globs: Vec<String> = t
            .touches
            .iter()
            .map(|g| text::escape(g, false).into_owned())
            .collect();
        out.line(format_args!("touches:     {}", globs.join(", ")))?;
    }
    if let Some(c) = &t.git.conflict {
        out.line(format_args!(
            "conflict:    {}",
            text::escape(&c.to_string(), false)
        ))?;
    }
    out.line(format_args!("created:     {}", rfc3339(t.created_at)))?;
    for (name, v) in [
        ("batched:", t.batched_at),
        ("started:", t.started_at),
        ("finished:", t.finished_at),
    ] {
        if let Some(ms) = v {
            out.line(format_args!("{name:<12} {}", rfc3339(ms)))?;
        }
    }
    if let Some(c) = t.exit_code {
        out.line(format_args!("exit code:   {c}"))?;
    }
    if let Some(ms) = t.not_before.filter(|_| !t.status.is_final()) {
        out.line(format_args!("not before:  {}", rfc3339(ms)))?;
    }
    if !attempts.is_empty() {
        out.line("attempts:")?;
        print_attempts(out, attempts)?;
    }
    out.line("prompt:")?;
    for l in t.prompt.lines() {
        out.line(format_args!("  {}", text::escape(l, true)))?;
    }
    if let Some(r) = &t.result {
        out.line("result:")?;
        for l in r.lines() {
            out.line(format_args!("  {}", text::escape(l, true)))?;
        }
    }
    if let Some(e) = &t.error {
        out.line(format_args!("error:       {}", text::escape(e, false)))?;
    }
    if let Some(c) = &t.claude {
        print_claude(out, c)?;
    }
    Ok(())
}

/// What claude reported about the run, as far as it reported it.
fn print_claude(out: &mut Out, c: &serde_json::Map<String, serde_json::Value>) -> io::Result<()> {
    use serde_json::Value;
    if let Some(s) = c.get("session_id").and_then(Value::as_str) {
        out.line(format_args!("session:     {}", text::escape(s, false)))?;
    }
    if let Some(cost) = c.get("total_cost_usd") {
        out.line(format_args!("cost:        {cost} USD"))?;
    }
    if let Some(u) = c.get("usage").and_then(Value::as_object) {
        let parts: Vec<String> = [
            ("input_tokens", "in"),
            ("output_tokens", "out"),
            ("cache_read_input_tokens", "cache read"),
            ("cache_creation_input_tokens", "cache write"),
        ]
        .iter()
        .filter_map(|(k, name)| u.get(*k).map(|v| format!("{name} {v}")))
        .collect();
        if !parts.is_empty() {
            out.line(format_args!("tokens:      {}", parts.join(", ")))?;
        }
    }
    if let Some(m) = c.get("modelUsage").and_then(Value::as_object) {
        let models: Vec<String> = m
            .iter()
            .map(|(model, u)| {
                let model = text::escape(model, false);
                match u.get("costUSD") {
                    Some(cost) => format!("{model} ({cost} USD)"),
                    None => model.into_owned(),
                }
            })
            .collect();
        if !models.is_empty() {
            out.line(format_args!("models:      {}", models.join(", ")))?;
        }
    }
    if let Some(errors) = c.get("errors").and_then(Value::as_array) {
        if !errors.is_empty() {
            out.line("errors:")?;
            for e in errors {
                let text = match e.as_str() {
                    Some(s) => s.to_string(),
                    None => e.to_string(),
                };
                for l in text.lines() {
                    out.line(format_args!("  {}", orch_core::text::escape(l, true)))?;
                }
            }
        }
    }
    Ok(())
}

/// `--status`: one of [`Status::ALL`], its possible values listed by clap.
fn status_arg() -> impl clap::builder::TypedValueParser<Value = Status> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Status::ALL.map(Status::as_str))
        .try_map(|s: String| Status::parse(&s).ok_or_else(|| format!("'{s}' is not a task status")))
}

/// `orch-queue logs`: the task's log, then (with `follow`) new lines as they
/// commit, until the task has ended and nothing more is written.
fn logs(
    db: &DbArg,
    id: i64,
    follow: bool,
    since: Option<i64>,
    json: bool,
    out: &mut Out,
) -> anyhow::Result<Exit> {
    use orch_core::tasklog;
    let db = db.open_existing()?;
    // Refuses an unknown task.
    task::get(&db, id)?;
    let mut after = 0;
    let mut marked = false;
    let mut version = db.data_version()?;
    loop {
        // Whether the task had ended before this read: then nothing more comes.
        let ended = follow && task::get(&db, id)?.status.is_final();
        loop {
            let lines = tasklog::lines(&db, id, after, since, 1000)?;
            for l in &lines {
                if l.stream == "mark" {
                    if marked {
                        continue;
                    }
                    marked = true;
                } else {
                    after = l.id;
                }
                if json {
                    out.json(l)?;
                } else {
                    out.line(format!(
                        "{} {:<4} {}",
                        l.at,
                        l.stream,
                        orch_core::text::escape(&l.line, false)
                    ))?;
                }
            }
            out.flush()?;
            if lines.len() < 1000 {
                break;
            }
        }
        if !follow || ended {
            return Ok(Exit::Ok);
        }
        loop {
            std::thread::sleep(crate::events::POLL);
            let v = db.data_version()?;
            if v != version {
                version = v;
                break;
            }
        }
    }
}
