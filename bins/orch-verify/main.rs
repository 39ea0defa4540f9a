//! `orch-verify`: see `orch_shared::cli::verify`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::verify::Cli>()
}
