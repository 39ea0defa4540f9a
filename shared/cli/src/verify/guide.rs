//! The guided walkthrough of `orch-verify` (what it runs alone on a
//! terminal): make a run, hand its message to Claude Code, watch the probes
//! arrive, judge them, and say how to pick the run up after Ctrl-C.

use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::*;

/// Set by Ctrl-C, so the walkthrough can say how to pick the run up later.
fn interrupted() -> &'static Arc<AtomicBool> {
    static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Catches Ctrl-C so the walkthrough can say how to pick the run up later.
fn catch_sigint() {
    let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, interrupted().clone());
}

fn ask_yes(w: &mut impl Write, question: &str) -> bool {
    let _ = write!(w, "{question} [y/N] ");
    let _ = w.flush();
    let mut line = String::new();
    match io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => {
            let _ = writeln!(w);
            false
        }
        Ok(_) => matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes"),
    }
}

pub(super) fn guide(arg: &DbArg, shape: Shape) -> anyhow::Result<Exit> {
    if !(io::stdin().is_terminal() && io::stdout().is_terminal()) {
        eprintln!(
            "orch-verify: error: the guided check needs a terminal (stdin and stdout are not one); in scripts, use the verbs:\n{VERBS}"
        );
        return Ok(Exit::Error);
    }
    let (db, loc, probe_db) = open_for_probes(arg)?;
    let color = color_ok(true);
    let bold = |s: &str| {
        if color {
            format!("\x1b[1m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    let stdout = io::stdout();
    let mut w = stdout.lock();
    let (n, sleep) = (shape.n, orch_core::time::secs_short(shape.sleep));
    writeln!(
        w,
        "{}\n",
        bold("orch-verify: prove that Claude Code runs your agents in parallel")
    )?;
    writeln!(
        w,
        "Claude Code runs sub-agents at the same time only when all their Agent calls
arrive in one message. This check gives you that message: it starts {n} agents,
each running one command (`orch-verify probe`) that sleeps {sleep} and records
when it started and ended. From those times you get a verdict: PARALLEL when
all {n} ran at once. It takes about a minute.

Run this in the directory where you start Claude Code (`claude`).
Database: {}
          chosen as {}",
        orch_core::text::path(&loc.path),
        loc.source.explain()
    )?;
    match which::which("orch-verify") {
        Ok(_) => {}
        Err(_) => writeln!(
            w,
            "\nWarning: orch-verify is not on your PATH, so agents will not find the probe
command. Install orch (./install.sh) or add its directory to PATH first."
        )?,
    }

    // Step 1: the permission rule.
    writeln!(
        w,
        "\n{}",
        bold("Step 1 of 3: let the probes run without a prompt each")
    )?;
    let cwd = std::env::current_dir().context("finding the current directory")?;
    let local = orch_core::claude::settings::local_path(&cwd);
    let files = orch_core::claude::settings::permission_files(&cwd);
    if let Some(found) = verify::find_permission(&files) {
        writeln!(w, "Already allowed in {}.", orch_core::text::path(&found))?;
    } else {
        writeln!(
            w,
            "Without a rule, Claude Code asks you to approve each probe, and the agents wait
for your answers one by one. This Claude Code setting allows the probe command:\n"
        )?;
        for l in verify::permission_snippet().lines() {
            writeln!(w, "    {l}")?;
        }
        writeln!(w)?;
        if ask_yes(
            &mut w,
            &format!("Add it to {} now?", orch_core::text::path(&local)),
        ) {
            match verify::add_permission(&local) {
                Ok(_) => writeln!(w, "Added. (If Claude Code is already running here, /permissions shows the rule.)")?,
                Err(e) => writeln!(
                    w,
                    "Could not add it: {e}\nAdd the rule by hand, or approve each probe when Claude asks."
                )?,
            }
        } else {
            writeln!(
                w,
                "Not added. Approve each probe when Claude asks (the verdict may then be PARTIAL)."
            )?;
        }
    }

    // Step 2: the message.
    let run = verify::create(&db, shape.n, shape.sleep, Some("guided"))?;
    let message = verify::probe_calls(&run, probe_db.as_deref()).message;
    let saved = save_message(run.id, &message);
    writeln!(
        w,
        "\n{}",
        bold("Step 2 of 3: send this as ONE message in Claude Code")
    )?;
    writeln!(w, "{}", "─".repeat(78))?;
    w.write_all(message.as_bytes())?;
    writeln!(w, "{}", "─".repeat(78))?;
    match orch_core::clipboard::find() {
        Some(c) => match c.copy(&message) {
            Ok(()) => writeln!(w, "Copied to the clipboard ({}).", c.program)?,
            Err(e) => writeln!(w, "Could not copy it to the clipboard: {e}")?,
        },
        None => writeln!(
            w,
            "No clipboard tool found (wl-copy, xclip, xsel, pbcopy): copy it from above."
        )?,
    }
    match saved {
        Ok(file) => writeln!(w, "Saved to {}.", orch_core::text::path(&file))?,
        Err(e) => writeln!(
            w,
            "Could not save it in {}: {e}",
            orch_core::text::path(&std::env::temp_dir())
        )?,
    }
    writeln!(
        w,
        "Paste it into Claude Code, send it, and leave this window open: it follows the probes."
    )?;

    // Step 3: the live wait.
    writeln!(
        w,
        "\n{}",
        bold(&format!(
            "Step 3 of 3: waiting for the {n} probes of run {}",
            run.id
        ))
    )?;
    writeln!(
        w,
        "(Ctrl-C stops waiting; the run stays: `orch-verify report {}` judges it later.)",
        run.id
    )?;
    drop(w);
    catch_sigint();
    let mut p = ProbeProgress::new(io::stdout().lock(), true);
    let started_waiting = Instant::now();
    let mut hinted = false;
    let res = verify::wait(&db, run.id, None, |r, ps, evs| {
        p.events(r, ps, evs);
        if !hinted
            && started_waiting.elapsed() > Duration::from_secs(90)
            && ps.iter().all(|x| x.started_at.is_none())
        {
            hinted = true;
            p.note("  No probe has started yet. Did you send the message in Claude Code? If Claude is\n  asking to allow `orch-verify probe`, allow it. Is orch-verify on Claude's PATH?");
        }
        p.tick(r, ps);
        !interrupted().load(Ordering::SeqCst)
    })?;
    p.clear();
    drop(p);
    let mut w = io::stdout().lock();
    if res == Waited::Stopped {
        writeln!(
            w,
            "\nStopped waiting. Later: orch-verify wait {id} && orch-verify report {id}",
            id = run.id
        )?;
        return Ok(Exit::Interrupted);
    }
    let (r, probes) = verify::load(&db, run.id)?;
    writeln!(w, "\n{}", bold("Result"))?;
    w.write_all(super::render_human(&r, &probes, color).as_bytes())?;
    let v = verify::report(&r, &probes).analysis.verdict;
    if v == Verdict::Parallel {
        writeln!(w, "\nYour Claude Code runs agents in parallel.")?;
    }
    w.flush()?;
    Ok(exit_for(v))
}

/// Saves the message of run `run` to a new file in the temporary directory
/// and returns its path. The name is random and the file is made with
/// `O_EXCL` and mode 0600, so nothing planted there beforehand (a symlink, a
/// file of another project's run) is followed, overwritten or readable by others.
fn save_message(run: i64, text: &str) -> io::Result<PathBuf> {
    let mut f = tempfile::Builder::new()
        .prefix(&format!("orch-verify-run-{run}-"))
        .suffix(".txt")
        .tempfile()?;
    f.write_all(text.as_bytes())?;
    f.flush()?;
    let (_, path) = f.keep().map_err(|e| e.error)?;
    Ok(path)
}
