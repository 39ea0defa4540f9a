//! `orch-msg`: the mailbox between agents — send, receive exactly once, list, purge.

use std::io::{self, BufRead, IsTerminal, Write};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::{DbArg, Out, Tool};
use orch_core::error::Exit;
use orch_core::msg::{self, Defaults, Listed, Message, NewMessage, Recv, ValidMessage, MAX_BODY};
use orch_core::text;
use orch_core::time::{now_ms, rfc3339};

const EXAMPLES: &str = "\
Examples:
  orch-msg send --from backend --to frontend 'The API is up on :8080'
  orch-msg recv --as frontend --wait 60       # wait up to a minute for a message
  orch-msg send --from lead --to '*' 'Stop: the build is red'
  orch-msg list --to frontend --unread";

/// A mailbox for agents that run in parallel: each message is received exactly once.
#[derive(Debug, Parser)]
#[command(name = "orch-msg", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Send a message to a mailbox (or to every mailbox with --to '*'); prints its id.
    #[command(after_help = "Examples:
  orch-msg send --from backend --to frontend 'Schema changed: users.email is unique'
  git diff | orch-msg send --from dev --to reviewer --kind diff -    # the body from stdin
  orch-msg send --from lead --to '*' 'Freeze: no more commits'
  orch-msg send --from lead --stdin < msgs.jsonl    # {\"to\",\"body\",\"kind\"?,\"from\"?} per line")]
    Send(SendArgs),
    /// Claim and print the oldest unread messages for a mailbox; exit 1 when none.
    ///
    /// Each message is delivered once: to exactly one of any number of readers
    /// using the same name, and a broadcast once to each distinct name.
    #[command(after_help = "Examples:
  orch-msg recv --as frontend
  orch-msg recv --as frontend --wait 60 --max 1 --json
  orch-msg recv --as frontend --peek             # look without claiming")]
    Recv(RecvArgs),
    /// List messages, oldest first, with who received them (claims nothing).
    #[command(after_help = "Examples:
  orch-msg list
  orch-msg list --to frontend --unread --json")]
    List {
        /// Only what mailbox NAME holds: messages to it and broadcasts ('*': broadcasts only).
        #[arg(long, value_name = "NAME")]
        to: Option<String>,
        /// Only messages from NAME.
        #[arg(long, value_name = "NAME")]
        from: Option<String>,
        /// Only unread messages (with --to: not yet received by that mailbox; else received by no one).
        #[arg(long)]
        unread: bool,
        /// JSON Lines: one message object per line.
        #[arg(long)]
        json: bool,
    },
    /// Delete messages older than a duration, read or not; prints how many.
    #[command(after_help = "Example:\n  orch-msg purge --older-than 7d")]
    Purge {
        /// e.g. 30m, 12h, 7d.
        #[arg(long, value_name = "DURATION", value_parser = orch_core::time::parse_span)]
        older_than: Duration,
    },
}

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// The sender's mailbox name (1-64 of A-Z a-z 0-9 _ . -).
    #[arg(long, value_name = "NAME", required_unless_present = "stdin")]
    pub from: Option<String>,
    /// The recipient's mailbox name, or '*' for every mailbox that asks.
    #[arg(long, value_name = "NAME", required_unless_present = "stdin")]
    pub to: Option<String>,
    /// A label for the message (same rule as names), e.g. question, done.
    #[arg(long, value_name = "KIND")]
    pub kind: Option<String>,
    /// The body (words are joined by spaces; `-` reads stdin).
    #[arg(value_name = "TEXT|-", required_unless_present = "stdin", num_args = 0..)]
    pub text: Vec<String>,
    /// Read messages as JSON Lines from stdin ({"to","body","kind"?,"from"?}, the
    /// flags filling in what a line leaves out); print one id per line; all or nothing.
    #[arg(long, conflicts_with = "text")]
    pub stdin: bool,
}

#[derive(Debug, clap::Args)]
pub struct RecvArgs {
    /// The mailbox to read.
    #[arg(long = "as", value_name = "NAME")]
    pub reader: String,
    /// At most N messages [default: every unread one].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max: Option<u32>,
    /// Wait up to SECS (decimals allowed) or a duration (5m) for a message instead of exiting 1 at once.
    #[arg(long, value_name = "SECS", value_parser = parse_secs)]
    pub wait: Option<Duration>,
    /// JSON Lines: one message object per line.
    #[arg(long)]
    pub json: bool,
    /// Show the messages without claiming them.
    #[arg(long)]
    pub peek: bool,
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    orch_core::time::parse_span(s).and_then(|d| match d <= Duration::from_secs(86_400 * 365) {
        true => Ok(d),
        false => Err(format!("'{s}': --wait is at most a year")),
    })
}

impl Tool for Cli {
    const NAME: &'static str = "orch-msg";

    fn run(self) -> anyhow::Result<Exit> {
        let mut out = Out::new();
        let code = match self.cmd {
            Cmd::Send(a) => send(&self.db, a, &mut out)?,
            Cmd::Recv(a) => recv(&self.db, a)?,
            Cmd::List {
                to,
                from,
                unread,
                json,
            } => {
                if let Some(t) = &to {
                    msg::validate_recipient("--to", t)?;
                }
                if let Some(f) = &from {
                    msg::validate_name("--from", f)?;
                }
                let db = self.db.open_existing()?;
                let items = msg::list(&db, &msg::MessageFilter { to, from, unread })?;
                if json {
                    for m in &items {
                        out.json(m)?;
                    }
                } else {
                    print_table(&mut out, &items)?;
                }
                Exit::Ok
            }
            Cmd::Purge { older_than } => {
                let before = orch_core::time::before(now_ms(), older_than);
                crate::check_stdout()?;
                let db = self.db.open_existing()?;
                let n = msg::purge(&db, before)?;
                out.answer(
                    || {
                        format!(
                            "the deletion of {n} message{}",
                            if n == 1 { "" } else { "s" }
                        )
                    },
                    |out| out.line(n),
                )?;
                Exit::Ok
            }
        };
        out.flush()?;
        Ok(code)
    }
}

fn send(db: &crate::DbArg, a: SendArgs, out: &mut Out) -> anyhow::Result<Exit> {
    let defaults = Defaults {
        from: a.from.as_deref(),
        to: a.to.as_deref(),
        kind: a.kind.as_deref(),
    };
    // Check the flags themselves, even when every line would override them.
    if let Some(f) = defaults.from {
        msg::validate_name("--from", f)?;
    }
    if let Some(t) = defaults.to {
        msg::validate_recipient("--to", t)?;
    }
    if let Some(k) = defaults.kind {
        msg::validate_name("--kind", k)?;
    }
    let msgs = if a.stdin {
        let msgs = read_jsonl(&defaults)?;
        if msgs.is_empty() {
            bail!("no messages on stdin (expected JSON Lines: {{\"to\":…,\"body\":…}} per line)");
        }
        msgs
    } else {
        let body = if a.text.len() == 1 && a.text[0] == "-" {
            if io::stdin().is_terminal() {
                bail!("the body is `-` but stdin is a terminal: pipe the body in");
            }
            crate::read_stdin_text(MAX_BODY, "the body")?
        } else {
            a.text.join(" ")
        };
        let m = NewMessage {
            body,
            ..Default::default()
        };
        vec![m.validate(&defaults)?]
    };
    crate::check_stdout()?;
    let db = db.open()?;
    let ids = msg::send(&db, &msgs)?;
    out.answer(
        || crate::ids_text("message", ids.iter().copied()),
        |out| ids.iter().try_for_each(|id| out.line(id)),
    )?;
    Ok(Exit::Ok)
}

/// Reads and validates every JSON line of stdin before anything is written.
fn read_jsonl(d: &Defaults) -> anyhow::Result<Vec<ValidMessage>> {
    let mut reader = io::stdin().lock();
    let mut msgs = Vec::new();
    let mut buf = Vec::new();
    let mut n = 0usize;
    loop {
        buf.clear();
        if reader
            .read_until(b'\n', &mut buf)
            .context("reading stdin")?
            == 0
        {
            break;
        }
        n += 1;
        let line = std::str::from_utf8(&buf).map_err(|e| {
            anyhow::anyhow!("line {n}: not valid UTF-8 (at byte {})", e.valid_up_to())
        })?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let m: NewMessage =
            serde_json::from_str(line).map_err(|e| anyhow::anyhow!("line {n}: bad JSON: {e}"))?;
        msgs.push(m.validate(d).with_context(|| format!("line {n}"))?);
    }
    Ok(msgs)
}

/// How long `recv` lets stdout take the messages while it holds the write
/// lock: under the shortest wait of any writer (orch-hook's 3 s, so a hook
/// event is never lost to a slow reader), far under the others' 30 s.
const RECV_WRITE_LIMIT: Duration = Duration::from_secs(2);

/// Receives: the messages are written and flushed to stdout first and the
/// claim commits after, so a stdout that fails claims nothing (exit 2).
fn recv(db: &crate::DbArg, a: RecvArgs) -> anyhow::Result<Exit> {
    msg::validate_name("--as", &a.reader)?;
    crate::check_stdout()?;
    let db = db.open()?;
    let r = Recv {
        max: a.max.map(|n| n as usize),
        wait: a.wait,
        peek: a.peek,
    };
    // Nothing else goes to stdout: the messages are written straight to it.
    let json = a.json;
    let mut deliver = |msgs: &[Message]| -> io::Result<()> {
        let mut buf = Vec::new();
        for (i, m) in msgs.iter().enumerate() {
            if json {
                serde_json::to_writer(&mut buf, m)?;
                buf.push(b'\n');
            } else {
                if i > 0 {
                    buf.push(b'\n');
                }
                print_message(&mut buf, m)?;
            }
        }
        crate::write_stdout_within(&buf, RECV_WRITE_LIMIT)
    };
    let msgs = msg::recv(&db, &a.reader, r, &mut deliver)?;
    if msgs.is_empty() {
        match a.wait {
            Some(w) if !w.is_zero() => {
                eprintln!(
                    "orch-msg: no message for {} within {}",
                    a.reader,
                    humantime::format_duration(w)
                )
            }
            _ => eprintln!("orch-msg: no message for {}", a.reader),
        }
        return Ok(Exit::No);
    }
    Ok(Exit::Ok)
}

fn print_message(out: &mut impl Write, m: &Message) -> io::Result<()> {
    let kind = m
        .kind
        .as_deref()
        .map(|k| format!(" [{}]", text::escape(k, false)))
        .unwrap_or_default();
    writeln!(
        out,
        "message {} from {} to {}{kind} {}",
        m.id,
        text::escape(&m.from, false),
        text::escape(&m.to, false),
        rfc3339(m.sent_at)
    )?;
    out.write_all(text::escape(&m.body, true).as_bytes())?;
    if !m.body.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn print_table(out: &mut Out, items: &[Listed]) -> io::Result<()> {
    if items.is_empty() {
        eprintln!("no messages");
        return Ok(());
    }
    let w = |f: &dyn Fn(&Listed) -> usize, min: usize| {
        items.iter().map(f).max().unwrap_or(min).clamp(min, 24)
    };
    let from_w = w(&|l| l.message.from.len(), 4);
    let to_w = w(&|l| l.message.to.len(), 2);
    let kind_w = w(&|l| l.message.kind.as_deref().map_or(1, str::len), 4);
    let readers = |l: &Listed| match l.read_by.len() {
        0 => "-".to_string(),
        _ => l
            .read_by
            .iter()
            .map(|d| d.reader.as_str())
            .collect::<Vec<_>>()
            .join(","),
    };
    let read_w = items
        .iter()
        .map(|l| readers(l).len())
        .max()
        .unwrap_or(7)
        .clamp(7, 24);
    out.line(format_args!(
        "{:>5}  {:<from_w$}  {:<to_w$}  {:<kind_w$}  {:<24}  {:<read_w$}  BODY",
        "ID", "FROM", "TO", "KIND", "SENT", "READ BY"
    ))?;
    for l in items {
        let m = &l.message;
        out.line(format_args!(
            "{:>5}  {:<from_w$}  {:<to_w$}  {:<kind_w$}  {:<24}  {:<read_w$}  {}",
            m.id,
            text::cell(&m.from, from_w),
            text::cell(&m.to, to_w),
            text::cell(m.kind.as_deref().unwrap_or("-"), kind_w),
            rfc3339(m.sent_at),
            text::cell(&readers(l), read_w),
            text::first_line(&m.body, 50)
        ))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_takes_seconds_or_a_duration() {
        for (arg, secs) in [("5m", 300.0), ("30", 30.0), ("0.5", 0.5)] {
            let cli =
                Cli::try_parse_from(["orch-msg", "recv", "--as", "a", "--wait", arg]).unwrap();
            let Cmd::Recv(r) = cli.cmd else {
                panic!("not recv")
            };
            assert_eq!(r.wait, Some(Duration::from_secs_f64(secs)), "{arg}");
        }
        assert!(Cli::try_parse_from(["orch-msg", "recv", "--as", "a", "--wait", "soon"]).is_err());
    }
}
