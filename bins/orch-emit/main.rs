//! `orch-emit`: see `orch_cli::emit`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::emit::Cli>()
}
