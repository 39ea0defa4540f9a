//! `orch-mcp`: see `orch_shared::cli::mcp`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::mcp::Cli>()
}
