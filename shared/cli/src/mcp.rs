//! `orch-mcp`: the MCP stdio server loop around [`orch_core::mcp::handle`],
//! `--config` (how to register it with Claude Code and Claude Desktop) and
//! `--selftest` (a full session with itself over a pipe).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use serde::Serialize;
use serde_json::{json, Value};

use crate::{DbArg, Out, Tool};
use orch_core::db::{self, Source};
use orch_core::error::Exit;
use orch_core::mcp::client::Client;
use orch_core::mcp::{self, read_line, DbSource, Line, State, MAX_LINE};

const EXAMPLES: &str = "\
Examples:
  claude mcp add orch -- \"$(command -v orch-mcp)\"   # register it with Claude Code
  orch-mcp --config                                  # the lines for Claude Code and Claude Desktop
  orch-mcp --selftest                                # a full MCP session with itself
  echo '{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}' | orch-mcp";

/// MCP server over stdio: queue_parallel_task, execute_parallel_batch, queue_status, batch_status.
///
/// Speaks JSON-RPC 2.0, one message per line, on stdin/stdout; notes go to
/// stderr. The database is opened at the first tool call, so a client's
/// health check (initialize, tools/list) is instant and creates nothing.
#[derive(Debug, Parser)]
#[command(name = "orch-mcp", version, after_help = EXAMPLES)]
pub struct Cli {
    #[command(flatten)]
    pub db: DbArg,
    /// Print the `claude mcp add` line and the mcpServers JSON for Claude Desktop and .mcp.json.
    #[arg(long, conflicts_with = "selftest")]
    pub config: bool,
    /// Start a second orch-mcp, run a full MCP session with it over a pipe, report; exit 0 or 1.
    /// Uses a temporary database unless --db is given.
    #[arg(long)]
    pub selftest: bool,
    /// Agents tracked through orch-hook whose end never came for this long are
    /// reconciled as lost when a batch is made (as orch-hook --stale-after).
    #[arg(long, value_name = "DURATION", env = "ORCH_STALE_AFTER", default_value = "2h", value_parser = orch_core::time::parse_span)]
    pub stale_after: std::time::Duration,
}

impl Tool for Cli {
    const NAME: &'static str = "orch-mcp";

    fn run(self) -> anyhow::Result<Exit> {
        if self.config {
            config(&self.db)
        } else if self.selftest {
            selftest(&self.db)
        } else {
            serve(self.db.db, self.stale_after)
        }
    }
}

/// The server: one reply line per request line, flushed at once, until stdin ends.
fn serve(db: Option<PathBuf>, stale_after: std::time::Duration) -> anyhow::Result<Exit> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let mut state = State::new(DbSource::Resolve(db), cwd);
    state.stale_after = stale_after;
    state.log = Box::new(|s| {
        eprintln!(
            "{}: {}",
            orch_core::mcp::SERVER_NAME,
            orch_core::text::escape(s, false)
        )
    });
    let mut input = BufReader::with_capacity(64 * 1024, io::stdin().lock());
    let mut out = io::stdout().lock();
    let mut buf = Vec::new();
    loop {
        let reply = match read_line(&mut input, &mut buf, MAX_LINE).context("reading stdin")? {
            Line::Eof => break,
            Line::TooLong => Some(mcp::Response::too_long(MAX_LINE)),
            Line::Read => mcp::handle(&mut state, &buf),
        };
        if let Some(r) = reply {
            let mut line = r.to_line();
            line.push('\n');
            out.write_all(line.as_bytes()).context("writing stdout")?;
            out.flush().context("writing stdout")?;
        }
    }
    Ok(Exit::Ok)
}

/// One entry of `mcpServers`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerEntry {
    #[serde(rename = "type")]
    kind: &'static str,
    command: String,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    always_load: bool,
}

/// The JSON for Claude Desktop's config file and a project's `.mcp.json`.
#[derive(Debug, Serialize)]
struct McpServers {
    #[serde(rename = "mcpServers")]
    mcp_servers: BTreeMap<&'static str, ServerEntry>,
}

fn this_program() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("finding this program's path")?;
    Ok(exe.canonicalize().unwrap_or(exe))
}

fn config(db: &DbArg) -> anyhow::Result<Exit> {
    let exe = this_program()?;
    let loc = db::resolve(db.path())?;
    let mut env = BTreeMap::new();
    if matches!(loc.source, Source::Flag | Source::Env) {
        let abs = std::path::absolute(&loc.path).unwrap_or(loc.path.clone());
        env.insert("ORCH_DB".to_string(), abs.to_string_lossy().into_owned());
    }
    let exe_s = exe.to_string_lossy().into_owned();
    // `-e` takes several values, so it must come after the name or it swallows it.
    let env_flags: String = env
        .iter()
        .map(|(k, v)| format!(" -e {}", orch_core::emit::sh_word(&format!("{k}={v}"))))
        .collect();
    let servers = McpServers {
        mcp_servers: BTreeMap::from([(
            "orch",
            ServerEntry {
                kind: "stdio",
                command: exe_s.clone(),
                args: Vec::new(),
                env,
                always_load: true,
            },
        )]),
    };
    let json = serde_json::to_string_pretty(&servers)?;
    let mut out = Out::new();
    out.line("# Claude Code: register orch for this project (add --scope user, after the name, for all projects):")?;
    out.line(format_args!(
        "claude mcp add orch{env_flags} -- {}",
        orch_core::emit::sh_word(&exe_s)
    ))?;
    out.line("")?;
    out.line("# Claude Desktop (claude_desktop_config.json) or a project's .mcp.json:")?;
    out.line(json)?;
    if matches!(loc.source, Source::Project | Source::User) {
        out.line("")?;
        out.line("# No database was chosen, so the server uses the nearest .orch/orch.db of the directory")?;
        out.line(
            "# it is started in, else the per-user one; pass --db or set ORCH_DB to pin one.",
        )?;
    }
    out.flush()?;
    Ok(Exit::Ok)
}

/// How long the self-test waits for any one reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(20);

/// The three tasks the self-test queues.
const SELFTEST_TASKS: [(&str, &str, &str); 3] = [
    (
        "Explore",
        "Map the layout",
        "List the top-level directories and say what each holds.",
    ),
    (
        "Plan",
        "Plan one test",
        "Propose one test for the last bug fixed here; write nothing.",
    ),
    (
        "general-purpose",
        "Find TODO comments",
        "Find every TODO comment and list it with file and line.",
    ),
];

/// Priority of the self-test's tasks, so that on a real database (--db) its
/// batch takes them before anything of the user's.
const SELFTEST_PRIORITY: i64 = i64::MAX;

struct SelfTestReport {
    out: Out,
    checks: usize,
}

impl SelfTestReport {
    fn ok(&mut self, what: &str, detail: impl std::fmt::Display) -> anyhow::Result<()> {
        self.checks += 1;
        self.out.line(format_args!("ok    {what}: {detail}"))?;
        self.out.flush()?;
        Ok(())
    }
}

fn selftest(db: &DbArg) -> anyhow::Result<Exit> {
    let exe = this_program()?;
    let tmp = tempfile::Builder::new()
        .prefix("orch-mcp-selftest.")
        .tempdir()
        .context("making a temporary directory")?;
    let (path, users) = match db.path() {
        Some(p) => (p.to_path_buf(), true),
        None => (tmp.path().join("selftest.db"), false),
    };
    let mut report = SelfTestReport {
        out: Out::new(),
        checks: 0,
    };
    report.out.line(format_args!(
        "orch-mcp self-test: {} talking MCP over a pipe to a second {}, database {}",
        orch_core::text::path(&exe),
        SERVER_BIN,
        if users {
            orch_core::text::path(&path)
        } else {
            "(temporary)".into()
        }
    ))?;
    let mut session = Client::start(
        Command::new(&exe)
            .arg("--db")
            .arg(&path)
            .env_remove("ORCH_DB")
            .stderr(Stdio::null()),
        REPLY_TIMEOUT,
    )
    .with_context(|| format!("starting {}", exe.display()))?;
    let mut queued = Vec::new();
    let mut batch_id = None;
    let outcome = run_selftest(&mut session, &mut report, &mut queued, &mut batch_id);
    let exit = session.finish(Duration::from_secs(5));
    if users {
        // Leave the user's database as it was, but for three cancelled tasks.
        let db = db::Db::open(&path)?;
        if let Some(b) = batch_id {
            let _ = orch_core::dispatch::release(&db, b);
        }
        if !queued.is_empty() {
            orch_core::task::cancel(&db, &queued)?;
        }
    }
    let outcome = outcome.and_then(|()| {
        let status = exit?;
        anyhow::ensure!(
            status.success(),
            "the server exited with {status} when its stdin closed"
        );
        report.ok("shutdown", "the server exited 0 when its stdin closed")
    });
    match outcome {
        Ok(()) => {
            report
                .out
                .line(format_args!("self-test passed: {} checks", report.checks))?;
            report.out.flush()?;
            Ok(Exit::Ok)
        }
        Err(e) => {
            report.out.line(format_args!("FAIL  {e:#}"))?;
            report.out.line(format_args!(
                "self-test failed after {} checks",
                report.checks
            ))?;
            report.out.flush()?;
            Ok(Exit::No)
        }
    }
}

const SERVER_BIN: &str = "orch-mcp";

fn run_selftest(
    s: &mut Client,
    report: &mut SelfTestReport,
    queued: &mut Vec<i64>,
    batch_id: &mut Option<i64>,
) -> anyhow::Result<()> {
    let newest = mcp::PROTOCOL_VERSIONS[0];
    let init = s.result(
        "initialize",
        json!({
            "protocolVersion": newest,
            "capabilities": {},
            "clientInfo": { "name": "orch-mcp-selftest", "version": env!("CARGO_PKG_VERSION") }
        }),
    )?;
    anyhow::ensure!(
        init["protocolVersion"] == newest,
        "initialize answered protocol {}",
        init["protocolVersion"]
    );
    anyhow::ensure!(
        init["serverInfo"]["name"] == SERVER_BIN,
        "serverInfo is {}",
        init["serverInfo"]
    );
    anyhow::ensure!(
        init["capabilities"]["tools"].is_object(),
        "no tools capability: {}",
        init["capabilities"]
    );
    report.ok(
        "initialize",
        format_args!(
            "protocol {newest}, server {} {}",
            init["serverInfo"]["name"].as_str().unwrap_or("?"),
            init["serverInfo"]["version"].as_str().unwrap_or("?")
        ),
    )?;

    s.send(&json!({ "jsonrpc": "2.0", "method": "notifications/initialized" }))?;
    let pong = s.result("ping", json!({}))?;
    anyhow::ensure!(pong == json!({}), "ping answered {pong}");
    report.ok(
        "notifications/initialized + ping",
        "no reply to the notification, {} to ping",
    )?;

    let list = s.result("tools/list", json!({}))?;
    let names: Vec<&str> = list["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    let want: Vec<&str> = mcp::tools().iter().map(|t| t.name).collect();
    anyhow::ensure!(
        names == want,
        "tools/list named {names:?}, expected {want:?}"
    );
    report.ok("tools/list", names.join(", "))?;

    for (agent, description, task) in SELFTEST_TASKS {
        let r = s.tool(
            mcp::QUEUE_TOOL,
            json!({ "agent": agent, "task": task, "description": description, "priority": SELFTEST_PRIORITY }),
        )?;
        let id = r["structuredContent"]["task"]
            .as_i64()
            .context("queue_parallel_task returned no task id")?;
        queued.push(id);
        report.ok(
            mcp::QUEUE_TOOL,
            format_args!(
                "task {id} ({agent}), {} ready",
                r["structuredContent"]["ready"]
            ),
        )?;
    }

    let r = s.tool(mcp::EXECUTE_TOOL, json!({ "max": queued.len() }))?;
    let sc = &r["structuredContent"];
    let b = sc["batch"]
        .as_i64()
        .context("execute_parallel_batch returned no batch id")?;
    *batch_id = Some(b);
    let ids: Vec<i64> = sc["tasks"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        ids == *queued,
        "batch {b} holds tasks {ids:?}, expected {queued:?}"
    );
    let calls = sc["calls"].as_array().context("no calls in the result")?;
    anyhow::ensure!(
        calls.len() == queued.len(),
        "{} calls for {} tasks",
        calls.len(),
        queued.len()
    );
    for ((call, id), (agent, description, _)) in calls.iter().zip(queued.iter()).zip(SELFTEST_TASKS)
    {
        let prompt = call["prompt"].as_str().unwrap_or("");
        anyhow::ensure!(
            prompt.ends_with(&orch_core::emit::task_marker(*id)),
            "the call for task {id} does not end with its orch-task line"
        );
        anyhow::ensure!(
            call["subagent_type"] == agent,
            "task {id}: subagent_type {}",
            call["subagent_type"]
        );
        anyhow::ensure!(
            call["description"] == description,
            "task {id}: description {}",
            call["description"]
        );
    }
    let text = r["content"][0]["text"].as_str().unwrap_or("");
    let opening = format!("Launch {} agents in parallel", queued.len());
    anyhow::ensure!(
        text.starts_with(&opening),
        "the message does not open with {opening:?}"
    );
    report.ok(
        mcp::EXECUTE_TOOL,
        format_args!(
            "batch {b} with tasks {ids:?}, {} Agent calls, the message opens {opening:?}",
            calls.len()
        ),
    )?;

    let r = s.tool(mcp::BATCH_STATUS_TOOL, json!({ "batch": b }))?;
    let statuses: Vec<&str> = r["structuredContent"]["tasks"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["status"].as_str()).collect())
        .unwrap_or_default();
    anyhow::ensure!(
        statuses == ["batched"; 3],
        "batch {b} task statuses {statuses:?}"
    );
    report.ok(
        mcp::BATCH_STATUS_TOOL,
        format_args!("batch {b}: 3 tasks batched"),
    )?;

    let r = s.tool(mcp::QUEUE_STATUS_TOOL, json!({}))?;
    let batched = r["structuredContent"]["batched"].as_i64().unwrap_or(0);
    anyhow::ensure!(batched >= 3, "queue_status counts {batched} batched tasks");
    report.ok(mcp::QUEUE_STATUS_TOOL, format_args!("{batched} batched"))?;

    let e = s.request("server/discover", json!({}))?;
    anyhow::ensure!(
        e["error"]["code"] == mcp::METHOD_NOT_FOUND,
        "server/discover answered {e}"
    );
    let e = s.request(
        "tools/call",
        json!({ "name": "no_such_tool", "arguments": {} }),
    )?;
    anyhow::ensure!(
        e["error"]["code"] == mcp::INVALID_PARAMS,
        "an unknown tool answered {e}"
    );
    let r = s.result(
        "tools/call",
        json!({ "name": mcp::QUEUE_TOOL, "arguments": { "agent": "Explore" } }),
    )?;
    anyhow::ensure!(r["isError"] == true, "a call without its task answered {r}");
    s.write(b"{not json\n")?;
    let e = s.recv()?;
    anyhow::ensure!(
        e["error"]["code"] == mcp::PARSE_ERROR && e["id"].is_null(),
        "a bad line answered {e}"
    );
    report.ok("errors", "-32601 for server/discover, -32602 for an unknown tool, isError for a missing argument, -32700 for bad JSON")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn config_words_are_quoted_only_when_needed() {
        assert_eq!(
            orch_core::emit::sh_word("/usr/bin/orch-mcp"),
            "/usr/bin/orch-mcp"
        );
        assert_eq!(
            orch_core::emit::sh_word("/my dir/orch-mcp"),
            "'/my dir/orch-mcp'"
        );
        assert_eq!(
            orch_core::emit::sh_word("ORCH_DB=/a/b.db"),
            "ORCH_DB=/a/b.db"
        );
    }
}
