//! `orch-run`: see `orch_cli::run`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::run::Cli>()
}
