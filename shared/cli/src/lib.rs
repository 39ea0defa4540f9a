//! What every binary shares: the `main` wrapper (errors as one line, exit
//! codes, a closed stdout pipe as success for a read, exit 3 for a committed
//! write whose answer could not be printed), `--db`, stdout writing and its
//! checks, and ids on stdin.

/// `eprintln!` that never panics: std's panics when stderr is closed or full
/// (`2>/dev/full`), which would turn a clear exit code into 101. Defined
/// before the modules so it shadows std's in every one of them; a line that
/// cannot be written is lost, the exit code is not.
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr(), $($arg)*);
    }};
}

pub mod batch;
pub mod claude_tasks;
pub mod completions;
pub mod doctor;
pub mod emit;
pub mod events;
pub mod hook;
pub mod jobs;
pub mod land;
pub mod mcp;
pub mod msg;
pub mod orch;
pub mod page;
pub mod queue;
pub mod run;
pub mod session;
pub mod status;
pub mod suite;
pub mod timeline;
pub mod verify;
pub mod workflow;

use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use orch_core::db::Db;
use orch_core::error::Exit;

/// A command-line tool of the suite.
pub trait Tool: Parser {
    /// The binary's name, e.g. `orch-queue`; errors are prefixed with it.
    const NAME: &'static str;
    /// Does the work; the returned code is the process's exit code.
    fn run(self) -> anyhow::Result<Exit>;
    /// Rewrites the raw arguments before clap sees them (the identity by default).
    fn preprocess(args: Vec<std::ffi::OsString>) -> Vec<std::ffi::OsString> {
        args
    }
    /// The exit code of a usage error in these arguments (2 by default).
    fn usage_exit(_args: &[std::ffi::OsString]) -> Exit {
        Exit::Error
    }
}

/// The whole `main` of a binary: parse, run, report.
pub fn main<T: Tool>() -> ExitCode {
    orch_core::child::guard_if_asked();
    let args = T::preprocess(std::env::args_os().collect());
    let cli = match T::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) => {
            let path = help_path(&T::command(), T::NAME, &args);
            return usage_error(&path, e, T::usage_exit(&args));
        }
    };
    match cli.run() {
        Ok(code) => code.into(),
        Err(e) => report(T::NAME, &e).into(),
    }
}

/// Prints help and version as clap does; any other parse error as one line
/// naming `help` (the command whose `--help` answers it), exit `code`. Help
/// or version that cannot be printed (`>/dev/full`) is exit `code` too; a
/// reader that closed the pipe early (`| head -1`) is not a failure.
fn usage_error(help: &str, e: clap::Error, code: Exit) -> ExitCode {
    use clap::error::ErrorKind;
    let name = help.split(' ').next().unwrap_or(help);
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            use std::io::Write;
            match e.print().and_then(|_| io::stdout().flush()) {
                Err(err) if err.kind() != io::ErrorKind::BrokenPipe => {
                    let what = match e.kind() {
                        ErrorKind::DisplayVersion => "the version",
                        _ => "the help",
                    };
                    eprintln!("{name}: error: {what} could not be printed: {err}");
                    code.into()
                }
                _ => ExitCode::SUCCESS,
            }
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            code.into()
        }
        _ => {
            let msg = usage_message(&e);
            let msg = if msg.is_empty() {
                "bad usage".into()
            } else {
                orch_core::text::escape(&msg, false)
            };
            eprintln!("{name}: error: {msg} (see {help} --help)");
            code.into()
        }
    }
}

/// A usage error in words, on one line: what is wrong, then clap's tips in
/// parentheses. Built from the error's kind and context, not from clap's
/// rendered text; the wording is clap's own.
fn usage_message(e: &clap::Error) -> String {
    use clap::error::{ContextKind as K, ContextValue as V, ErrorKind};
    let get = |k: K| e.get(k);
    let one = |k: K| match get(k) {
        Some(V::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let quoted = |v: &[String]| {
        v.iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let values_list = |name: &str, k: K| match get(k) {
        Some(V::Strings(v)) if !v.is_empty() => format!(" [{name}: {}]", v.join(", ")),
        _ => String::new(),
    };
    let arg = one(K::InvalidArg);
    let value = one(K::InvalidValue);
    let mut msg = match (e.kind(), arg, value) {
        (ErrorKind::ArgumentConflict, _, _) => {
            let prior = get(K::PriorArg);
            let (head, prior) = match (arg, one(K::InvalidSubcommand)) {
                (Some(a), _) if prior == Some(&V::String(a.to_string())) => (
                    format!("the argument '{a}' cannot be used multiple times"),
                    None,
                ),
                (Some(a), _) => (format!("the argument '{a}' cannot be used with"), prior),
                (None, Some(sub)) => (format!("the subcommand '{sub}' cannot be used with"), prior),
                (None, None) => ("an argument cannot be used with".to_string(), prior),
            };
            match prior {
                Some(V::Strings(v)) => format!("{head}: {}", v.join(" ")),
                Some(V::String(v)) => format!("{head} '{v}'"),
                Some(_) => format!("{head} one or more of the other specified arguments"),
                None => head,
            }
        }
        (ErrorKind::NoEquals, Some(a), _) => {
            format!("equal sign is needed when assigning values to '{a}'")
        }
        (ErrorKind::InvalidValue, Some(a), Some("")) => format!(
            "a value is required for '{a}' but none was supplied{}",
            values_list("possible values", K::ValidValue)
        ),
        (ErrorKind::InvalidValue, Some(a), Some(v)) => format!(
            "invalid value '{v}' for '{a}'{}",
            values_list("possible values", K::ValidValue)
        ),
        (ErrorKind::InvalidSubcommand, _, _) if one(K::InvalidSubcommand).is_some() => {
            format!(
                "unrecognized subcommand '{}'",
                one(K::InvalidSubcommand).unwrap_or_default()
            )
        }
        (ErrorKind::MissingRequiredArgument, _, _) => match get(K::InvalidArg) {
            Some(V::Strings(v)) => format!(
                "the following required arguments were not provided: {}",
                v.join(" ")
            ),
            _ => "a required argument was not provided".to_string(),
        },
        (ErrorKind::MissingSubcommand, _, _) => format!(
            "'{}' requires a subcommand but one was not provided{}",
            one(K::InvalidSubcommand).unwrap_or_default(),
            values_list("subcommands", K::ValidSubcommand)
        ),
        (ErrorKind::TooManyValues, Some(a), Some(v)) => {
            format!("unexpected value '{v}' for '{a}' found; no more were expected")
        }
        (ErrorKind::TooFewValues | ErrorKind::WrongNumberOfValues, Some(a), _) => {
            let n = |k: K| match get(k) {
                Some(V::Number(n)) => *n,
                _ => 0,
            };
            let actual = n(K::ActualNumValues);
            let were = if actual > 1 { "were" } else { "was" };
            match e.kind() {
                ErrorKind::TooFewValues => format!(
                    "{} values required by '{a}'; only {actual} {were} provided",
                    n(K::MinValues)
                ),
                _ => format!(
                    "{} values required for '{a}' but {actual} {were} provided",
                    n(K::ExpectedNumValues)
                ),
            }
        }
        (ErrorKind::ValueValidation, Some(a), Some(v)) => match std::error::Error::source(e) {
            Some(source) => format!("invalid value '{v}' for '{a}': {source}"),
            None => format!("invalid value '{v}' for '{a}'"),
        },
        (ErrorKind::UnknownArgument, Some(a), _) => format!("unexpected argument '{a}' found"),
        (kind, _, _) => match (kind.as_str(), std::error::Error::source(e)) {
            (Some(what), _) => what.to_string(),
            (None, Some(source)) => source.to_string(),
            (None, None) => "bad usage".to_string(),
        },
    };
    for (k, what) in [
        (K::SuggestedSubcommand, "subcommand"),
        (K::SuggestedArg, "argument"),
        (K::SuggestedValue, "value"),
    ] {
        match get(k) {
            Some(V::String(s)) => msg.push_str(&format!(" (tip: a similar {what} exists: '{s}')")),
            Some(V::Strings(v)) if v.len() == 1 => {
                msg.push_str(&format!(" (tip: a similar {what} exists: {})", quoted(v)))
            }
            Some(V::Strings(v)) => msg.push_str(&format!(
                " (tip: some similar {what}s exist: {})",
                quoted(v)
            )),
            _ => {}
        }
    }
    if let Some(V::StyledStrs(tips)) = get(K::Suggested) {
        for tip in tips {
            msg.push_str(&format!(" (tip: {})", tip.to_string().trim()));
        }
    }
    msg.replace(['\n', '\r'], " ")
}

/// The command whose `--help` answers a usage error in `args`: `orch-queue
/// add` for a mistake inside `orch-queue add`. Found by following the
/// subcommands named in `args` through clap's command tree, not by reading
/// clap's rendered text.
fn help_path(cmd: &clap::Command, name: &str, args: &[std::ffi::OsString]) -> String {
    let mut path = name.to_string();
    let mut cmd = cmd;
    for a in args.iter().skip(1) {
        if !cmd.has_subcommands() {
            break;
        }
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if let Some(sub) = cmd.find_subcommand(a) {
            path.push(' ');
            path.push_str(sub.get_name());
            cmd = sub;
        }
    }
    path
}

/// True when the error comes from writing to a closed stdout pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// Prints `NAME: error: cause: cause…` on one line and returns the exit code:
/// 3 when a write was committed but its answer could not be printed
/// ([`NotPrinted`], even on a closed pipe: the answer was lost), 0 for a
/// read whose pipe closed early, else 2.
pub fn report(name: &str, e: &anyhow::Error) -> Exit {
    let not_printed = e.chain().any(|c| c.is::<NotPrinted>());
    if !not_printed && is_broken_pipe(e) {
        return Exit::Ok;
    }
    eprintln!(
        "{name}: error: {}",
        orch_core::text::escape(&one_line(e), false)
    );
    if not_printed {
        Exit::NotPrinted
    } else {
        Exit::Error
    }
}

/// A write that is committed, but whose answer could not be printed: the
/// error names what was committed, so nobody redoes it (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{what} committed, but the answer could not be printed")]
pub struct NotPrinted {
    /// What the database now holds, with ids: `task 7`, `batch 3`.
    pub what: String,
    #[source]
    pub source: io::Error,
}

/// `r`, with an output error at its top (a failed write to stdout, after
/// `what` was committed) turned into [`NotPrinted`]; other errors unchanged.
pub fn after_commit<T>(r: anyhow::Result<T>, what: impl FnOnce() -> String) -> anyhow::Result<T> {
    r.map_err(|e| match e.downcast::<io::Error>() {
        Ok(source) => NotPrinted {
            what: what(),
            source,
        }
        .into(),
        Err(e) => e,
    })
}

/// `noun`s ids for a message, consecutive runs shortened: `task 7`,
/// `tasks 5-9, 12`.
pub fn ids_text(noun: &str, ids: impl IntoIterator<Item = i64>) -> String {
    let mut runs: Vec<(i64, i64)> = Vec::new();
    let mut n = 0usize;
    for id in ids {
        n += 1;
        match runs.last_mut() {
            Some((_, last)) if *last + 1 == id => *last = id,
            _ => runs.push((id, id)),
        }
    }
    let list: Vec<String> = runs
        .iter()
        .map(|&(a, b)| match a == b {
            true => a.to_string(),
            false => format!("{a}-{b}"),
        })
        .collect();
    format!(
        "{noun}{} {}",
        if n == 1 { "" } else { "s" },
        list.join(", ")
    )
}

/// Refuses, before anything is written, a stdout that cannot take an answer:
/// a closed one (`>&-`; Rust's runtime puts /dev/null, open for reading and
/// writing, in its place) or a pipe whose reader is gone. What cannot be seen
/// in advance (a full disk, `/dev/full`) fails when written. Python's
/// `DEVNULL` (and Node's `'ignore'`) open /dev/null the same way and cannot be
/// told apart from a closed stdout, so the message says how to discard.
pub fn check_stdout() -> anyhow::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::fs::OFlags;
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let stdout = io::stdout();
    let Ok(flags) = rustix::fs::fcntl_getfl(&stdout) else {
        anyhow::bail!("stdout is closed: nothing was written (the answer would be lost)");
    };
    if flags & OFlags::ACCMODE == OFlags::RDWR {
        let null = std::fs::metadata("/dev/null").ok();
        let st = rustix::fs::fstat(&stdout).ok();
        let is_null = null.is_some_and(|n| {
            n.file_type().is_char_device() && st.is_some_and(|st| st.st_rdev == n.rdev())
        });
        if is_null {
            anyhow::bail!("stdout is closed (or /dev/null opened for reading and writing, as Python's DEVNULL does): nothing was written, the answer would be lost; to throw it away, open /dev/null for writing (>/dev/null)");
        }
    }
    let mut p = [PollFd::new(&stdout, PollFlags::OUT)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    if poll(&mut p, Some(&now)) == Ok(1)
        && p[0].revents().intersects(PollFlags::ERR | PollFlags::NVAL)
    {
        anyhow::bail!(
            "stdout is a pipe that nobody reads: nothing was written (the answer would be lost)"
        );
    }
    Ok(())
}

/// The cause chain joined with ": " on one line, skipping a cause that the
/// message before it already ends with (errors that print their source too).
pub fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if msg.ends_with(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.replace(['\n', '\r'], " ")
}

/// A span that must be more than 0 (`--timeout`, `--backoff`, `--lease`):
/// clap names the flag in front of the message.
pub fn positive_span(s: &str) -> Result<std::time::Duration, String> {
    orch_core::time::parse_span(s).and_then(|d| {
        if d.is_zero() {
            Err("must be more than 0 (e.g. 30, 0.5, 5m)".into())
        } else {
            Ok(d)
        }
    })
}

/// The agent CLIs orch-run knows how to call (`--agent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PresetArg {
    /// `claude -p --output-format json` with the prompt on stdin and the role as an appended system prompt
    Claude,
    /// The same with `--output-format stream-json --verbose`: `orch-queue logs` shows its steps
    ClaudeStream,
    /// `codex exec -- PROMPT`
    Codex,
    /// `gemini --prompt=PROMPT`
    Gemini,
}

impl From<PresetArg> for orch_core::run::Preset {
    fn from(p: PresetArg) -> orch_core::run::Preset {
        use orch_core::run::Preset;
        match p {
            PresetArg::Claude => Preset::Claude,
            PresetArg::ClaudeStream => Preset::ClaudeStream,
            PresetArg::Codex => Preset::Codex,
            PresetArg::Gemini => Preset::Gemini,
        }
    }
}

/// `--db PATH`, taken by every binary.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct DbArg {
    /// The database file [default: $ORCH_DB, else the nearest .orch/orch.db, else the per-user one]
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
}

impl DbArg {
    /// Opens (creating if need be) the database this flag and the environment
    /// choose: for commands that write.
    pub fn open(&self) -> anyhow::Result<Db> {
        Ok(Db::open_resolved(self.db.as_deref())?)
    }

    /// Opens the database this flag and the environment choose, which must
    /// exist: for commands that read, or change what is already there. A
    /// missing file is `no database at PATH`, and nothing is created.
    pub fn open_existing(&self) -> anyhow::Result<Db> {
        let loc = orch_core::db::resolve(self.db.as_deref())?;
        Ok(Db::open_existing(&loc)?)
    }

    pub fn path(&self) -> Option<&Path> {
        self.db.as_deref()
    }
}

/// Buffered stdout; a closed pipe surfaces as a `BrokenPipe` error that
/// [`report`] turns into a quiet exit 0.
pub struct Out {
    w: io::BufWriter<io::StdoutLock<'static>>,
}

impl Default for Out {
    fn default() -> Self {
        Self::new()
    }
}

impl Out {
    pub fn new() -> Out {
        Out {
            w: io::BufWriter::with_capacity(64 * 1024, io::stdout().lock()),
        }
    }

    /// Writes `s` as is.
    pub fn text(&mut self, s: &str) -> io::Result<()> {
        self.w.write_all(s.as_bytes())
    }

    /// Writes `s` and a newline.
    pub fn line(&mut self, s: impl std::fmt::Display) -> io::Result<()> {
        writeln!(self.w, "{s}")
    }

    /// Writes one JSON value on one line (JSON Lines).
    pub fn json<T: serde::Serialize>(&mut self, v: &T) -> io::Result<()> {
        // `From` keeps the underlying I/O error (a closed pipe stays `BrokenPipe`).
        serde_json::to_writer(&mut self.w, v).map_err(io::Error::from)?;
        self.w.write_all(b"\n")
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        self.w.flush()
    }

    /// Prints the answer to a write that is already committed, and flushes it:
    /// a failure becomes [`NotPrinted`] naming `what` was committed (exit 3).
    pub fn answer(
        &mut self,
        what: impl FnOnce() -> String,
        f: impl FnOnce(&mut Out) -> io::Result<()>,
    ) -> anyhow::Result<()> {
        match f(self).and_then(|_| self.flush()) {
            Ok(()) => Ok(()),
            Err(source) => Err(NotPrinted {
                what: what(),
                source,
            }
            .into()),
        }
    }
}

impl Drop for Out {
    fn drop(&mut self) {
        let _ = self.w.flush();
    }
}

/// Writes `buf` to stdout (unbuffered, straight to the descriptor) within
/// `limit`: in pieces of at most 4 KiB, each after `poll` says stdout can take
/// it, so a reader that stops reading cannot keep the caller waiting longer
/// than `limit`. Used while holding the write lock (`orch-msg recv`).
pub fn write_stdout_within(buf: &[u8], limit: std::time::Duration) -> io::Result<()> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::io::Errno;
    use std::time::Instant;
    let stdout = io::stdout();
    let deadline = Instant::now() + limit;
    let mut rest = buf;
    while !rest.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "stdout took {} of {} bytes in {} s",
                    buf.len() - rest.len(),
                    buf.len(),
                    limit.as_secs()
                ),
            ));
        }
        let mut p = [PollFd::new(&stdout, PollFlags::OUT)];
        let wait =
            Timespec::try_from(left.max(std::time::Duration::from_millis(1))).unwrap_or(Timespec {
                tv_sec: i64::MAX,
                tv_nsec: 0,
            });
        match poll(&mut p, Some(&wait)) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(0) => continue,
            Ok(_) => {}
        }
        if p[0].revents().contains(PollFlags::NVAL) {
            return Err(Errno::BADF.into());
        }
        let n = rest.len().min(4096);
        let w = match rustix::io::write(&stdout, &rest[..n]) {
            Ok(w) => w,
            Err(Errno::INTR | Errno::AGAIN) => continue,
            Err(e) => return Err(e.into()),
        };
        if w == 0 {
            return Err(io::Error::from(io::ErrorKind::WriteZero));
        }
        rest = &rest[w..];
    }
    Ok(())
}

/// The id given as an argument or, failing that, the first word on stdin
/// (so `orch-batch create | orch-emit` works).
pub fn id_or_stdin(arg: Option<i64>, what: &str) -> anyhow::Result<i64> {
    if let Some(id) = arg {
        return Ok(id);
    }
    let stdin = io::stdin();
    if stdin.is_terminal() {
        let hint = match what {
            "batch" => " (`orch-batch list` shows the batches; `orch-batch create | orch-emit` batches what is ready)",
            "run" => " (`orch-verify` alone runs the guided check; `orch-verify new` makes a run)",
            _ => "",
        };
        anyhow::bail!("no {what} id given: pass it as an argument or pipe it in{hint}");
    }
    let mut buf = String::new();
    stdin
        .lock()
        .take(4097)
        .read_to_string(&mut buf)
        .with_context(|| format!("reading the {what} id from stdin"))?;
    let mut words = buf.split_whitespace();
    let word = words.next().with_context(|| {
        format!("no {what} id on stdin (did the command before the pipe fail? `orch-batch create` prints nothing when nothing is ready)")
    })?;
    let id = parse_id(word, what)?;
    // One id and nothing else: `3 4` or `3 junk` is a mistake, not batch 3.
    if let Some(extra) = words.next() {
        anyhow::bail!(
            "stdin holds more than one {what} id ({id}, then {:?}): pass exactly one",
            orch_core::text::clip(extra, 40)
        );
    }
    if buf.len() > 4096 {
        anyhow::bail!("stdin holds more than one {what} id: pass exactly one");
    }
    Ok(id)
}

/// Parses a positive id.
pub fn parse_id(s: &str, what: &str) -> anyhow::Result<i64> {
    match s.trim().parse::<i64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => anyhow::bail!(
            "bad {what} id {:?}: ids are positive whole numbers",
            orch_core::text::clip(s, 40)
        ),
    }
}

/// Reads all of stdin as UTF-8 text (for `-` arguments), at most `limit` bytes.
pub fn read_stdin_text(limit: usize, what: &str) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what} from stdin"))?;
    if buf.len() > limit {
        anyhow::bail!("{what} on stdin is larger than {limit} bytes");
    }
    String::from_utf8(buf).map_err(|e| {
        anyhow::anyhow!(
            "{what} on stdin is not valid UTF-8 (byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Whether colour may be used on stderr/stdout: a terminal, and no `NO_COLOR`.
pub fn color_ok(terminal: bool) -> bool {
    terminal && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}
