//! `orch-msg`: see `orch_cli::msg`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::msg::Cli>()
}
