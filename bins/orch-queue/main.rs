//! `orch-queue`: see `orch_cli::queue`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::queue::Cli>()
}
