//! `orch-land`: see `orch_cli::land`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::land::Cli>()
}
