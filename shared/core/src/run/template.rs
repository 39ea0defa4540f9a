//! Agent command templates: the presets, the placeholders and how a
//! task fills them, and finding the program.

#[allow(unused_imports)]
use super::*;

/// The agent CLIs orch-run knows how to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    /// `claude -p --output-format json` with the prompt on stdin and the role as an appended system prompt
    Claude,
    /// The same with `--output-format stream-json --verbose`: the task's log
    /// holds the agent's steps as they happen (see [`crate::tasklog::steps`]).
    ClaudeStream,
    /// `codex exec -- PROMPT`
    Codex,
    /// `gemini --prompt=PROMPT`
    Gemini,
}

/// How a task's stdout becomes its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputKind {
    /// stdout is the answer.
    Text,
    /// stdout is `claude --output-format json`'s result object.
    ClaudeJson,
    /// stdout is `claude --output-format stream-json`'s lines, the result
    /// object last; judged like [`OutputKind::ClaudeJson`], logged as steps.
    ClaudeStreamJson,
}

impl OutputKind {
    /// Whether stdout ends with claude's result object.
    pub fn is_claude(self) -> bool {
        matches!(self, OutputKind::ClaudeJson | OutputKind::ClaudeStreamJson)
    }
}

/// The placeholders a command template may use; each fills part of ONE argument.
pub const PLACEHOLDERS: [&str; 5] = [
    "{prompt}",
    "{prompt_file}",
    "{role}",
    "{id}",
    "{description}",
];

/// How the prompt reaches the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PromptVia {
    /// Inside an argument (`{prompt}`): at most one argument's worth (128 KiB on Linux).
    Argument,
    /// In a private file whose path an argument holds (`{prompt_file}`).
    File,
    /// On stdin (a template that names neither): any prompt the queue accepts.
    Stdin,
}

/// An agent command: a program and argument templates.
#[derive(Debug, Clone)]
pub struct Template {
    pub program: String,
    pub args: Vec<String>,
    pub output: OutputKind,
    /// Whether a task's `model` and `mode` are passed as `--model` and
    /// `--permission-mode` (the claude preset).
    pub model_flag: bool,
}

impl Template {
    /// A preset's command.
    pub fn preset(p: Preset) -> Template {
        let (program, args, output): (&str, &[&str], OutputKind) = match p {
            // The prompt goes on stdin: one argument is capped at 128 KiB by
            // Linux, a prompt at 1 MiB by orch (and a leading `-` means nothing there).
            Preset::Claude => (
                "claude",
                &[
                    "-p",
                    "--output-format",
                    "json",
                    "--append-system-prompt",
                    "You are working as the {role} agent on orch task {id}: {description}.",
                ],
                OutputKind::ClaudeJson,
            ),
            // stream-json with -p needs --verbose (claude refuses it otherwise).
            Preset::ClaudeStream => (
                "claude",
                &[
                    "-p",
                    "--output-format",
                    "stream-json",
                    "--verbose",
                    "--append-system-prompt",
                    "You are working as the {role} agent on orch task {id}: {description}.",
                ],
                OutputKind::ClaudeStreamJson,
            ),
            Preset::Codex => ("codex", &["exec", "--", "{prompt}"], OutputKind::Text),
            // `--prompt=…` keeps the prompt one value even when it starts with `-`.
            Preset::Gemini => ("gemini", &["--prompt={prompt}"], OutputKind::Text),
        };
        Template {
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            output,
            model_flag: matches!(p, Preset::Claude | Preset::ClaudeStream),
        }
    }

    /// A command given after `--`. Its output is read as claude's JSON when the
    /// program is `claude` with `--output-format json` (or `stream-json`), as
    /// text otherwise.
    pub fn custom(argv: Vec<String>) -> Result<Template> {
        let Some((program, args)) = argv.split_first() else {
            return Err(Error::invalid("no command after --"));
        };
        if program.is_empty() {
            return Err(Error::invalid(
                "no command after -- (name the agent command, or leave out -- to use --agent)",
            ));
        }
        if program.contains('{') {
            return Err(Error::invalid(format!(
                "the command name {program:?} cannot hold a placeholder: it is looked up before anything starts"
            )));
        }
        for a in args {
            check_placeholders(a)?;
        }
        let is_claude = std::path::Path::new(program)
            .file_name()
            .is_some_and(|n| n == "claude");
        let format = |f: &str| {
            args.windows(2)
                .any(|w| w[0] == "--output-format" && w[1] == f)
                || args.iter().any(|a| *a == format!("--output-format={f}"))
        };
        Ok(Template {
            program: program.clone(),
            args: args.to_vec(),
            output: match (is_claude, format("json"), format("stream-json")) {
                (true, true, _) => OutputKind::ClaudeJson,
                (true, _, true) => OutputKind::ClaudeStreamJson,
                _ => OutputKind::Text,
            },
            model_flag: false,
        })
    }

    /// The arguments for one task: every template argument stays exactly one
    /// argument. `prompt_file` fills `{prompt_file}`.
    pub fn argv(&self, t: &Task, prompt_file: Option<&std::path::Path>) -> Vec<String> {
        let file = prompt_file
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut argv: Vec<String> = self.args.iter().map(|a| substitute(a, t, &file)).collect();
        // The preset claude honours the task's model and permission mode.
        if self.model_flag {
            if let Some(m) = &t.agent.model {
                argv.extend(["--model".to_string(), m.clone()]);
            }
            // `default` is what claude does without the flag (its CLI calls it `manual`).
            if let Some(m) = t.agent.mode.as_deref().filter(|m| *m != "default") {
                argv.extend(["--permission-mode".to_string(), m.to_string()]);
            }
        }
        argv
    }

    /// How this command takes the prompt: `{prompt}` in an argument, else
    /// `{prompt_file}`, else stdin.
    pub fn prompt_via(&self) -> PromptVia {
        if self.args.iter().any(|a| a.contains("{prompt}")) {
            PromptVia::Argument
        } else if self.args.iter().any(|a| a.contains("{prompt_file}")) {
            PromptVia::File
        } else {
            PromptVia::Stdin
        }
    }

    /// Refuses, before anything is claimed, a task whose command line the
    /// kernel would refuse: one argument over `MAX_ARG_STRLEN` (32 pages, 128
    /// KiB with 4 KiB pages) or all of them with the environment over `ARG_MAX`.
    pub fn check_fits(&self, tasks: &[Task]) -> Result<()> {
        let max_arg = rustix::param::page_size() * 32;
        // What glibc's sysconf(_SC_ARG_MAX) says: a quarter of the stack
        // limit, at least 128 KiB.
        let arg_max = match rustix::process::getrlimit(rustix::process::Resource::Stack).current {
            Some(stack) => usize::try_from(stack / 4)
                .unwrap_or(usize::MAX)
                .max(128 << 10),
            None => usize::MAX,
        };
        // The environment orch-run passes on, its own variables (with room for
        // a long ORCH_DB path), and a pointer for each string.
        let env: usize = std::env::vars_os()
            .map(|(k, v)| k.len() + v.len() + 2 + 8)
            .sum::<usize>()
            + 8 * 1024;
        // A placeholder stands in for the prompt file's path (a temp path: short).
        let file = std::path::Path::new("/tmp/orch-prompt-XXXXXXXXXXXXXXXXXXXXXXXXXXXX");
        for t in tasks {
            let argv = self.argv(t, Some(file));
            let mut total = env + self.program.len() + 1 + 8;
            for a in &argv {
                if a.len() + 1 > max_arg {
                    let what = if a.contains(t.prompt.as_str()) {
                        format!("its prompt is {} bytes", t.prompt.len())
                    } else {
                        format!("an argument is {} bytes", a.len())
                    };
                    return Err(Error::invalid(format!(
                        "task {}: {what}, more than one argument may hold ({} bytes); \
                         pass it with {{prompt_file}}, or leave {{prompt}} out and the agent reads it on stdin",
                        t.id,
                        max_arg - 1
                    )));
                }
                total += a.len() + 1 + 8;
            }
            if total > arg_max {
                return Err(Error::invalid(format!(
                    "task {}: its command line and environment come to {total} bytes, more than the system takes ({arg_max}); \
                     pass the prompt with {{prompt_file}} or on stdin",
                    t.id
                )));
            }
        }
        Ok(())
    }

    /// The command as a person would read it (placeholders left in).
    pub fn display(&self) -> String {
        let mut s = self.program.clone();
        for a in &self.args {
            s.push(' ');
            if a.is_empty() || a.contains(|c: char| c.is_whitespace() || "'\"\\$`".contains(c)) {
                s.push_str(&crate::text::sh_quote(a));
            } else {
                s.push_str(a);
            }
        }
        s
    }
}

/// Refuses `{name}` placeholders orch does not know (a typo would otherwise pass through).
pub(crate) fn check_placeholders(arg: &str) -> Result<()> {
    let mut rest = arg;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        let name_len = after
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(after.len());
        if after[name_len..].starts_with('}') {
            let ph = &rest[i..i + name_len + 2];
            if !PLACEHOLDERS.contains(&ph) {
                return Err(Error::invalid(format!(
                    "unknown placeholder {ph} in {arg:?}: use {}",
                    PLACEHOLDERS.join(", ")
                )));
            }
        }
        rest = after;
    }
    Ok(())
}

/// Replaces the placeholders in one argument, in one pass (substituted text is never re-read).
pub(crate) fn substitute(arg: &str, t: &Task, prompt_file: &str) -> String {
    let id = t.id.to_string();
    let values: [(&str, &str); 5] = [
        ("{prompt}", &t.prompt),
        ("{prompt_file}", prompt_file),
        ("{role}", &t.role),
        ("{id}", &id),
        ("{description}", &t.description),
    ];
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    'scan: while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let at = &rest[i..];
        for (name, value) in values {
            if let Some(tail) = at.strip_prefix(name) {
                out.push_str(value);
                rest = tail;
                continue 'scan;
            }
        }
        out.push('{');
        rest = &at[1..];
    }
    out.push_str(rest);
    out
}

/// Finds the agent's program on PATH (or checks the path given) before anything starts.
pub fn locate(program: &str) -> Result<PathBuf> {
    which::which(program).map_err(|_| {
        let hint = match program {
            "claude" => " (install Claude Code, or name another agent with --agent or after --)",
            "codex" | "gemini" => " (install it, or name another agent with --agent or after --)",
            _ => "",
        };
        if program.contains('/') {
            Error::invalid(format!(
                "agent command {program} is not an executable file{hint}"
            ))
        } else {
            Error::invalid(format!("agent command {program:?} not found on PATH{hint}"))
        }
    })
}
