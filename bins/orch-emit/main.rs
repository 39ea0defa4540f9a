//! `orch-emit`: see `orch_shared::cli::emit`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::emit::Cli>()
}
