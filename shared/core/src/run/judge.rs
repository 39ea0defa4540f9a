//! Judging a finished task: its exit, signal and output (plain text or
//! `claude --output-format json`) become its outcome.

#[allow(unused_imports)]
use super::*;

/// A task's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub ok: bool,
    pub result: Option<String>,
    pub error: Option<String>,
    /// What claude reported about the run (its [`CLAUDE_FIELDS`]), when it printed a result.
    pub claude: Option<JsonObject>,
}

/// The last non-empty line of `s`, clipped, for error messages.
pub(crate) fn last_line(s: &str) -> Option<String> {
    s.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| crate::text::clip(l, 300))
}

/// The name of a signal, for messages.
pub fn signal_name(sig: i32) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

/// The fields of claude's result object that a task keeps (see [`Task::claude`]).
pub const CLAUDE_FIELDS: [&str; 5] = [
    "session_id",
    "total_cost_usd",
    "usage",
    "modelUsage",
    "errors",
];

pub(crate) type JsonObject = serde_json::Map<String, serde_json::Value>;

/// claude's `--output-format json` result object: `result` on success; on an
/// error `is_error`, a `subtype` such as `error_max_turns` and `errors[]`, often no `result`.
#[derive(Debug, Default)]
pub(crate) struct ClaudeResult {
    is_error: bool,
    subtype: Option<String>,
    result: Option<String>,
    errors: Vec<String>,
    /// The [`CLAUDE_FIELDS`] it had, as written (nothing filled in).
    kept: JsonObject,
}

pub(crate) fn parse_claude(stdout: &str) -> Option<ClaudeResult> {
    let o = crate::errclass::result_object(stdout)?;
    let text = |k: &str| o.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let kept: JsonObject = CLAUDE_FIELDS
        .iter()
        .filter_map(|&k| {
            o.get(k)
                .filter(|v| !v.is_null())
                .map(|v| (k.to_string(), v.clone()))
        })
        .collect();
    Some(ClaudeResult {
        is_error: o.get("is_error").and_then(|v| v.as_bool()).unwrap_or(false),
        subtype: text("subtype"),
        result: text("result"),
        errors: o
            .get("errors")
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .map(|e| match e.as_str() {
                        Some(s) => s.to_string(),
                        None => e.to_string(),
                    })
                    .filter(|s| !s.trim().is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        kept,
    })
}

/// Decides done or failed from how the agent ended and what it printed.
/// Claude's JSON is judged by `is_error` and the exit code, never by `subtype`.
pub fn judge(
    kind: OutputKind,
    status: ExitStatus,
    stdout: &str,
    stderr: &str,
    timed_out: bool,
    interrupted: bool,
    timeout: Option<Duration>,
) -> Judged {
    let text = stdout.strip_suffix('\n').unwrap_or(stdout);
    let text = text.strip_suffix('\r').unwrap_or(text);
    let (answer, claude, json_missing) = match kind {
        OutputKind::Text => (
            Some(text.to_string()).filter(|s| !s.is_empty()),
            None,
            false,
        ),
        OutputKind::ClaudeJson | OutputKind::ClaudeStreamJson => match parse_claude(stdout) {
            Some(mut r) => (r.result.take(), Some(r), false),
            None => (Some(text.to_string()).filter(|s| !s.is_empty()), None, true),
        },
    };
    let reported_error = claude.as_ref().is_some_and(|c| c.is_error);
    // An error result's detail is in `errors[]` (it often has no `result`).
    let errors = claude
        .as_ref()
        .filter(|c| !c.errors.is_empty())
        .map(|c| crate::text::clip(&c.errors.join("; "), 300));
    let with_detail = |what: String| match last_line(stderr).or_else(|| errors.clone()) {
        Some(l) => format!("{what}: {l}"),
        None => what,
    };
    let error = if interrupted {
        Some("interrupted".to_string())
    } else if timed_out {
        let secs = timeout.map(|d| d.as_secs_f64()).unwrap_or(0.0);
        Some(format!("timed out after {secs} s"))
    } else if let Some(sig) = status.signal() {
        Some(with_detail(format!("killed by {}", signal_name(sig))))
    } else if status.code() != Some(0) {
        Some(with_detail(format!(
            "exited with status {}",
            status.code().unwrap_or(-1)
        )))
    } else if reported_error {
        let subtype = claude
            .as_ref()
            .and_then(|c| c.subtype.as_deref())
            .filter(|s| *s != "success")
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        let detail = errors
            .clone()
            .or_else(|| answer.as_deref().map(|a| crate::text::clip(a.trim(), 300)))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| "no detail given".into());
        Some(format!("the agent reported an error{subtype}: {detail}"))
    } else if json_missing {
        Some(with_detail(
            "no JSON result on stdout (expected `--output-format json` output)".to_string(),
        ))
    } else {
        None
    };
    Judged {
        ok: error.is_none(),
        result: answer,
        error,
        claude: claude.map(|c| c.kept).filter(|k| !k.is_empty()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    /// Claude Code 2.1's stream-json of a run (last line: the result object).
    const STREAMS: [(&str, i32); 2] = [
        (
            include_str!("../../../../tests/fixtures/claude-stream-json/tool-use.jsonl"),
            0,
        ),
        (
            include_str!("../../../../tests/fixtures/claude-stream-json/max-turns.jsonl"),
            1,
        ),
    ];

    /// A stream is judged, costed and classified as its result line alone
    /// is with `--output-format json`.
    #[test]
    fn a_stream_json_run_is_judged_like_its_json_result() {
        for (stream, code) in STREAMS {
            let last = stream.lines().last().unwrap();
            let status = ExitStatus::from_raw(code << 8);
            let judge_as = |kind, out: &str| judge(kind, status, out, "", false, false, None);
            let streamed = judge_as(OutputKind::ClaudeStreamJson, stream);
            assert_eq!(streamed, judge_as(OutputKind::ClaudeJson, last));
            assert!(streamed.claude.as_ref().unwrap()["total_cost_usd"].as_f64() > Some(0.0));
            assert_eq!(
                crate::errclass::result_object(stream),
                crate::errclass::result_object(last)
            );
            let ending = |stdout| crate::errclass::Ending {
                stdout,
                stderr: "",
                exit_code: Some(code),
                signal: None,
                timed_out: false,
                interrupted: false,
                spawn_failed: false,
            };
            assert_eq!(
                crate::errclass::classify(&ending(stream), 0).class,
                crate::errclass::classify(&ending(last), 0).class
            );
        }
        let failed = judge(
            OutputKind::ClaudeStreamJson,
            ExitStatus::from_raw(1 << 8),
            STREAMS[1].0,
            "",
            false,
            false,
            None,
        );
        assert!(!failed.ok);
        assert!(
            failed
                .error
                .as_deref()
                .unwrap()
                .contains("Reached maximum number of turns (1)"),
            "{failed:?}"
        );
        assert_eq!(
            judge(
                OutputKind::ClaudeStreamJson,
                ExitStatus::from_raw(0),
                STREAMS[0].0,
                "",
                false,
                false,
                None
            )
            .result
            .as_deref(),
            Some("done: Count the queue")
        );
    }
}
