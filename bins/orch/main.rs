//! `orch`: see `orch_shared::cli::front`.

fn main() -> std::process::ExitCode {
    orch_shared::cli::main::<orch_shared::cli::front::Cli>()
}
