//! `orch-events`: see `orch_cli::events`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::events::Cli>()
}
