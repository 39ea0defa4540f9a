//! Copying text to the system clipboard through whichever tool is installed.

use crate::error::{Error, Result};

/// A clipboard command: the program and its arguments.
#[derive(Debug, Clone)]
pub struct Clipboard {
    pub program: &'static str,
    pub args: &'static [&'static str],
}

const TOOLS: &[Clipboard] = &[
    Clipboard {
        program: "wl-copy",
        args: &[],
    },
    Clipboard {
        program: "xclip",
        args: &["-selection", "clipboard"],
    },
    Clipboard {
        program: "xsel",
        args: &["--clipboard", "--input"],
    },
    Clipboard {
        program: "pbcopy",
        args: &[],
    },
];

/// The first clipboard tool found on PATH (`wl-copy` only under Wayland, X tools only under X).
pub fn find() -> Option<Clipboard> {
    let wayland = std::env::var_os("WAYLAND_DISPLAY").is_some();
    let x11 = std::env::var_os("DISPLAY").is_some();
    TOOLS
        .iter()
        .filter(|c| match c.program {
            "wl-copy" => wayland,
            "xclip" | "xsel" => x11,
            _ => true,
        })
        .find(|c| which::which(c.program).is_ok())
        .cloned()
}

/// Why `--copy` cannot work here, as one line.
pub fn missing() -> Error {
    Error::invalid(
        "--copy: no clipboard tool found (install wl-clipboard, xclip or xsel; pbcopy on macOS)",
    )
}

impl Clipboard {
    /// Pipes `text` into the tool. The tool's own output goes to stderr, never stdout.
    pub fn copy(&self, text: &str) -> Result<()> {
        duct::cmd(self.program, self.args)
            .stdin_bytes(text.as_bytes().to_vec())
            .stdout_to_stderr()
            .run()
            .map(|_| ())
            .map_err(|e| Error::invalid(format!("--copy: {}: {e}", self.program)))
    }
}
