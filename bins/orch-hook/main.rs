//! `orch-hook`: see `orch_cli::hook`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::hook::Cli>()
}
