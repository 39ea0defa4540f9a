//! `orch-hook`: see `orch_shared::cli::hook`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::hook::Cli>()
}
