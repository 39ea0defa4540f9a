//! `orch-batch`: see `orch_cli::batch`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::batch::Cli>()
}
