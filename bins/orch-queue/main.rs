//! `orch-queue`: see `orch_shared::cli::queue`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::queue::Cli>()
}
