//! `orch-batch`: see `orch_shared::cli::batch`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::batch::Cli>()
}
