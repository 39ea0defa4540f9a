//! `orch-land`: see `orch_shared::cli::land`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::land::Cli>()
}
