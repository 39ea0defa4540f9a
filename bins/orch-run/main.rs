//! `orch-run`: see `orch_shared::cli::run`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::run::Cli>()
}
