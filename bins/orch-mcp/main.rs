//! `orch-mcp`: see `orch_cli::mcp`.

fn main() -> std::process::ExitCode {
    orch_cli::main::<orch_cli::mcp::Cli>()
}
