//! `orch`: see `orch_cli::front`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::orch::Cli>()
}
