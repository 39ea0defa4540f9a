//! `orch-msg`: see `orch_shared::cli::msg`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::msg::Cli>()
}
