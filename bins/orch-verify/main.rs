//! `orch-verify`: see `orch_cli::verify`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::verify::Cli>()
}
