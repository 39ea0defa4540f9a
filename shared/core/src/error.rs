//! The library's error type and the exit codes every orch binary uses (SPEC §5).

use std::path::PathBuf;

/// What went wrong, in the shapes callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input from the user: a flag value, a prompt, a JSON line.
    #[error("{0}")]
    Invalid(String),
    /// An id that names nothing.
    #[error("{what} {id} not found")]
    NotFound { what: &'static str, id: i64 },
    /// The database was written by a newer orch.
    #[error(
        "{path}: schema version {found} is newer than this orch supports ({supported}); upgrade orch"
    )]
    SchemaTooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },
    /// The file is not SQLite, or SQLite that orch did not make.
    #[error("{path} is not an orch database ({why}); left untouched")]
    Foreign { path: PathBuf, why: String },
    /// The write lock could not be had within the busy timeout.
    #[error("database is busy: another process held the write lock for longer than {0} s")]
    Busy(u64),
    /// A file-system operation on a path.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Any other SQLite failure.
    #[error("database error: {0}")]
    Sqlite(rusqlite::Error),
}

// Not `#[from]`: that would also make the rusqlite error the `source`, and the
// one-line report (`{:#}`, the cause chain) would print SQLite's message twice.
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sqlite(e)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::Invalid(msg.into())
    }
}

/// Process exit codes (SPEC §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Done.
    Ok = 0,
    /// Worked, but the answer is "no": nothing ready, not parallel, no message.
    No = 1,
    /// Bad usage, bad input, unknown id, unusable database; nothing written.
    Error = 2,
    /// Done and committed, but the answer could not be printed (stdout
    /// failed); stderr names what was committed. Never retry blindly.
    NotPrinted = 3,
    /// Interrupted; children stopped, nothing half-written.
    Interrupted = 130,
}

impl From<Exit> for std::process::ExitCode {
    fn from(e: Exit) -> Self {
        std::process::ExitCode::from(e as u8)
    }
}
