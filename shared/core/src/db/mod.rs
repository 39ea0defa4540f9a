//! The only place that opens SQLite: which file (SPEC §2), how it is opened,
//! and the IMMEDIATE transactions every write goes through.

pub mod schema;

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, Transaction, TransactionBehavior};
use serde::Serialize;

use crate::error::{Error, Result};

/// How long a process waits for the write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a database path was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Flag,
    Env,
    Project,
    User,
}

impl Source {
    pub fn explain(self) -> &'static str {
        match self {
            Source::Flag => "from --db",
            Source::Env => "from ORCH_DB",
            Source::Project => "the nearest .orch/orch.db, made by `orch-queue init`",
            Source::User => "the per-user default: no --db, no ORCH_DB, no .orch/ here or above",
        }
    }
}

/// A database path and the rule that chose it.
#[derive(Debug, Clone, Serialize)]
pub struct Location {
    pub path: PathBuf,
    pub source: Source,
}

/// The per-user default database, `…/orch/orch.db` in the data directory.
pub fn user_db_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("", "", "orch").map(|d| d.data_dir().join("orch.db"))
}

/// Resolves the database: `--db` > `ORCH_DB` > nearest `.orch/orch.db` > per-user.
pub fn resolve(flag: Option<&Path>) -> Result<Location> {
    if let Some(p) = flag {
        return Ok(Location {
            path: p.to_path_buf(),
            source: Source::Flag,
        });
    }
    if let Some(p) = std::env::var_os("ORCH_DB").filter(|v| !v.is_empty()) {
        return Ok(Location {
            path: PathBuf::from(p),
            source: Source::Env,
        });
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if let Some(path) = project_db(dir)? {
                trusted(dir, &path)?;
                return Ok(Location {
                    path,
                    source: Source::Project,
                });
            }
        }
    }
    match user_db_path() {
        Some(path) => Ok(Location {
            path,
            source: Source::User,
        }),
        None => Err(Error::invalid(
            "no database: pass --db PATH or set ORCH_DB (no home directory to hold the default)",
        )),
    }
}

/// The database of the project whose root is `dir`: `dir/.orch/orch.db` when
/// `dir/.orch/` exists. A `.orch/` that is there but broken (no `orch.db` in
/// it, a dangling symlink, unreadable) is an error naming it and the fix,
/// never a silent fall back to the per-user database; so is a `.orch` that
/// is not a directory (a file, or a symlink to one).
fn project_db(dir: &Path) -> Result<Option<PathBuf>> {
    let dot = dir.join(".orch");
    let broken = |why: String| {
        Error::invalid(format!(
            "{}/ is broken: {why}; run `orch-queue init` in {} to make a new database there, or remove {}/ to use the per-user one",
            dot.display(),
            if dir.as_os_str().is_empty() { Path::new(".") } else { dir }.display(),
            dot.display()
        ))
    };
    match fs::symlink_metadata(&dot) {
        Err(e) if absent(&e) => return Ok(None),
        Err(e) => return Err(broken(format!("cannot read it ({e})"))),
        Ok(m) if m.file_type().is_symlink() => match fs::metadata(&dot) {
            Err(e) if absent(&e) => {
                return Err(broken(format!(
                    "it is a symlink to {}, which does not exist",
                    link_target(&dot)
                )))
            }
            Err(e) => return Err(broken(format!("cannot read it ({e})"))),
            Ok(t) if !t.is_dir() => {
                return Err(broken(format!(
                    "it is a symlink to {}, which is not a directory",
                    link_target(&dot)
                )))
            }
            Ok(_) => {}
        },
        Ok(m) if !m.is_dir() => return Err(broken("it is a file, not a directory".into())),
        Ok(_) => {}
    }
    let db = dot.join("orch.db");
    match fs::symlink_metadata(&db) {
        // Whatever it is, opening it says what is wrong with it, by its path.
        Ok(_) => Ok(Some(db)),
        Err(e) if absent(&e) => Err(broken("it holds no orch.db (was it deleted?)".into())),
        Err(e) => Err(broken(format!("cannot read it ({e})"))),
    }
}

/// A project database is found by walking up from the current directory, so
/// it may be one nobody here made: a `.orch/orch.db` committed to a cloned
/// repository (its tasks would reach Claude Code as "launch these now", with
/// their prompts and permission modes), or one another user owns (like git's
/// "dubious ownership"). Both are refused unless named with `--db`/`ORCH_DB`.
/// `orch-queue init` keeps its own `.orch/` out of git with a `.gitignore`.
fn trusted(root: &Path, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    for p in [root.join(".orch"), path.to_path_buf()] {
        if let Ok(m) = fs::metadata(&p) {
            if m.uid() != me {
                return Err(Error::invalid(format!(
                    "{} is owned by another user (uid {}); orch does not use a project database it did not make for you: pass --db {} to use it anyway",
                    p.display(),
                    m.uid(),
                    path.display()
                )));
            }
        }
    }
    if tracked_by_git(root, path)? {
        return Err(Error::invalid(format!(
            "{} is tracked by git: it came with the repository, so its tasks are someone else's; untrack it (`git rm --cached`) or pass --db {} to use it anyway",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// Keeps a project's `.orch/` (database, logs, worktrees) out of git: a
/// `.gitignore` of `*` in it, made once and never through a symlink.
pub fn ignore_in_git(dot: &Path) -> Result<()> {
    let p = dot.join(".gitignore");
    match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
        Ok(mut f) => {
            use std::io::Write;
            f.write_all(b"# orch's own files: the database, its logs, worktrees\n*\n")
                .map_err(|source| Error::Io {
                    path: p.clone(),
                    what: "write",
                    source,
                })
        }
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Io {
            path: p,
            what: "create",
            source,
        }),
    }
}

/// Whether git tracks the project database: `root/.orch` itself (a tracked
/// symlink is listed as `.orch`, and git lists nothing through it), anything
/// under it, or the file the database really is when that lies in the work
/// tree (`.orch -> x` with `x/orch.db` tracked). Only asked when a `.git` is
/// at or above `root`, so a project outside git pays nothing; there, a git
/// that is missing or does not answer is a refusal, not a pass.
fn tracked_by_git(root: &Path, path: &Path) -> Result<bool> {
    if !root.ancestors().any(|d| d.join(".git").exists()) {
        return Ok(false);
    }
    let unsure = |why: String| {
        Error::invalid(format!(
            "{} is in a git repository, but {why}, so orch cannot tell whether the database came with the repository: pass --db {} to use it anyway",
            path.display(),
            path.display()
        ))
    };
    let git = crate::git::Git::in_dir(root).map_err(|_| unsure("git is not on PATH".into()))?;
    let ask = |args: &[&str]| -> Result<String> {
        let o = git
            .output(args)
            .map_err(|e| unsure(format!("git could not be run ({e})")))?;
        if !o.ok {
            let why = o.stderr.lines().next().unwrap_or("").trim().to_string();
            return Err(unsure(format!("`git {}` failed ({why})", args[0])));
        }
        Ok(o.stdout)
    };
    let top = ask(&["rev-parse", "--show-toplevel"])?;
    let mut specs = vec![":(literal).orch".to_string()];
    let top = fs::canonicalize(top.trim_end_matches('\n')).ok();
    if let (Some(top), Ok(real)) = (top, fs::canonicalize(path)) {
        if let Ok(rel) = real.strip_prefix(&top) {
            if let Some(rel) = rel.to_str() {
                specs.push(format!(":(top,literal){rel}"));
            }
        }
    }
    let mut args = vec!["ls-files", "-z", "--cached", "--"];
    args.extend(specs.iter().map(String::as_str));
    Ok(!ask(&args)?.is_empty())
}

/// Whether an I/O error means "nothing there" (a missing file, or a parent
/// that is a file rather than a directory).
fn absent(e: &std::io::Error) -> bool {
    e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// What the symlink at `path` points to, for messages.
fn link_target(path: &Path) -> String {
    fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Refuses `target` as a file to write (an HTML page, a completion script)
/// when it is the database `db` or one of SQLite's files beside it (`-wal`,
/// `-shm`, `-journal`): the same file by device and inode (a symlink or a
/// hard link to it), or the same path once resolved (so a `-wal` not there
/// yet is not made by hand either).
pub fn refuse_overwrite(db: &Path, target: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut names = vec![db.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut n = db.as_os_str().to_os_string();
        n.push(suffix);
        names.push(PathBuf::from(n));
    }
    let id = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
    // Where a write to `p` lands: a symlink there is followed when it resolves.
    let real = |p: &Path| -> Option<PathBuf> {
        fs::canonicalize(p).ok().or_else(|| {
            let dir = match p.parent() {
                Some(d) if !d.as_os_str().is_empty() => d,
                _ => Path::new("."),
            };
            Some(fs::canonicalize(dir).ok()?.join(p.file_name()?))
        })
    };
    let t_id = id(target);
    let t_real = real(target);
    let same = names
        .iter()
        .any(|n| (t_id.is_some() && id(n) == t_id) || (t_real.is_some() && real(n) == t_real));
    if same {
        return Err(Error::invalid(format!(
            "{} is the database {} or one of its files: writing it would destroy the tasks; choose another file",
            target.display(),
            db.display()
        )));
    }
    Ok(())
}

/// What is at a database path, as far as it matters before opening it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    /// Nothing: a command that writes makes it.
    Missing,
    /// An empty file: counts as new.
    Empty,
    /// A file with something in it (an orch database or not; opening tells).
    Data,
}

/// Looks at `path` without changing anything, and refuses what can never be
/// a database orch may use: a directory, a dangling symlink, something that
/// is not a regular file (`/dev/null`, a FIFO), a file with more than one
/// hard link (each name would keep its own `-wal` file, so the names would
/// silently diverge and a checkpoint through one could destroy the other's
/// tasks).
pub fn check_file(path: &Path) -> Result<Found> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        what: "read",
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if absent(&e) => {
            return match fs::symlink_metadata(path) {
                Ok(l) if l.file_type().is_symlink() => Err(Error::invalid(format!(
                    "{} is a symlink to {}, which does not exist (a dangling symlink): point it at an orch database or remove it",
                    path.display(),
                    link_target(path)
                ))),
                _ => Ok(Found::Missing),
            };
        }
        Err(e) => return Err(io(e)),
    };
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let t = meta.file_type();
    if t.is_dir() {
        return Err(Error::invalid(format!(
            "{} is a directory, not a database file",
            path.display()
        )));
    }
    if !t.is_file() {
        let what = if t.is_char_device() {
            "a character device"
        } else if t.is_block_device() {
            "a block device"
        } else if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else {
            "a special file"
        };
        return Err(Error::invalid(format!(
            "{} is not a regular file ({what}): an orch database is a regular file; pass --db PATH or set ORCH_DB to one",
            path.display()
        )));
    }
    if meta.nlink() > 1 {
        return Err(Error::invalid(format!(
            "{} has {} hard links: each name would keep its own -wal file and the copies would silently diverge; keep one name (`find / -samefile` lists the others) or give each its own copy (`cp`)",
            path.display(),
            meta.nlink()
        )));
    }
    Ok(if meta.len() == 0 {
        Found::Empty
    } else {
        Found::Data
    })
}

/// The error of a read on a database that does not exist, with a hint that
/// fits the rule that chose the path (`init` only helps where no `--db` or
/// `ORCH_DB` decides).
pub fn no_database(loc: &Location) -> Error {
    let hint = match loc.source {
        Source::Flag | Source::Env => {
            "check the path; a command that writes, such as `orch-queue add`, makes it"
        }
        Source::Project | Source::User => {
            "a command that writes, such as `orch-queue add`, makes it; `orch-queue init` makes one for this project"
        }
    };
    Error::invalid(format!(
        "no database at {} ({}): {hint}",
        loc.path.display(),
        loc.source.explain()
    ))
}

/// An open orch database.
pub struct Db {
    conn: Connection,
    pub path: PathBuf,
    /// The `-wal` file, once the database is known to be orch's (see [`Drop`]).
    wal: Option<PathBuf>,
}

/// Above this size, the process closing the database checkpoints the WAL and
/// empties it. SQLite's own checkpoint-on-close is off (it costs every short
/// process a checkpoint with its fsyncs); without this the WAL of a file that is
/// opened by one short process at a time would never restart and grow forever
/// (a fresh first connection rebuilds the WAL index, forgetting what was
/// checkpointed, and reads the whole WAL back on every open).
pub const WAL_TRUNCATE_AT: u64 = 1024 * 1024;

/// Creates `dir` (and parents) with mode 0700 where orch creates them.
pub fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            what: "create directory",
            source,
        })
}

/// Makes the file 0600 before SQLite touches it, so `-wal`/`-shm` inherit the mode.
fn create_private_file(path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_private_dir(parent)?;
    }
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            what: "create database",
            source,
        }),
    }
}

/// An empty file counts as new: it becomes 0600 before SQLite writes to it,
/// as a file orch creates does (SQLite gives `-wal`/`-shm` the file's mode).
fn make_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0o600);
    if mode == 0o600 {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        what: "chmod 600 the empty database file",
        source,
    })
}

/// What the file says about itself, read in one snapshot before anything is written.
struct Identity {
    application_id: i64,
    version: i64,
    objects: i64,
}

impl Db {
    /// Opens (creating if need be) the database that `flag` and the environment choose.
    pub fn open_resolved(flag: Option<&Path>) -> Result<Db> {
        let loc = resolve(flag)?;
        Db::open(&loc.path)
    }

    /// Opens the database at `loc` for a command that only reads (or changes
    /// what is already there): a missing file is an error, and nothing is
    /// created, not even a directory.
    pub fn open_existing(loc: &Location) -> Result<Db> {
        match check_file(&loc.path)? {
            Found::Missing => Err(no_database(loc)),
            found => Db::open_found(&loc.path, found),
        }
    }

    /// Opens `path`, creating it if missing, and brings its schema up to date.
    ///
    /// The order matters: busy timeout first; then, read-only, refuse a file that
    /// is not ours or is newer than this build; only then WAL and the migrations.
    pub fn open(path: &Path) -> Result<Db> {
        let found = check_file(path)?;
        Db::open_found(path, found)
    }

    fn open_found(path: &Path, found: Found) -> Result<Db> {
        match found {
            Found::Missing => create_private_file(path)?,
            Found::Empty => make_private(path)?,
            Found::Data => {}
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(|e| map_sqlite(path, e))?;
        let mut db = Db {
            conn,
            path: path.to_path_buf(),
            wal: None,
        };
        db.setup()?;
        let mut wal = db.path.clone().into_os_string();
        wal.push("-wal");
        db.wal = Some(PathBuf::from(wal));
        Ok(db)
    }

    /// An in-memory database with the current schema, for unit tests.
    pub fn open_in_memory() -> Result<Db> {
        let mut db = Db {
            conn: Connection::open_in_memory()?,
            path: PathBuf::from(":memory:"),
            wal: None,
        };
        db.setup()?;
        Ok(db)
    }

    fn setup(&mut self) -> Result<()> {
        // First, so that every later statement waits for locks instead of failing.
        self.conn.busy_timeout(BUSY_TIMEOUT)?;
        let id = self.identity()?;
        self.check_ours(&id)?;
        if id.version == schema::current_version() {
            // An orch database is put in WAL mode by its first migration and WAL
            // mode is persistent: nothing to switch, nothing to migrate.
            self.set_connection_pragmas()?;
            return Ok(());
        }
        let mode = self.switch_to_wal()?;
        if !mode.eq_ignore_ascii_case("wal") && self.path != Path::new(":memory:") {
            return Err(Error::invalid(format!(
                "{}: cannot switch to WAL mode (got {mode}); is the file system read-only?",
                self.path.display()
            )));
        }
        self.set_connection_pragmas()?;
        self.migrate()
    }

    /// `PRAGMA journal_mode = WAL`, which needs the file to itself: SQLite
    /// answers BUSY at once (its busy handler is not asked) while other
    /// processes that open the same new file hold it, so this waits in short
    /// steps, no transaction open, up to the busy timeout.
    fn switch_to_wal(&self) -> Result<String> {
        let start = std::time::Instant::now();
        let mut pause = Duration::from_millis(1);
        loop {
            match self
                .conn
                .query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
            {
                Ok(mode) => return Ok(mode),
                Err(e)
                    if e.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
                        && start.elapsed() < BUSY_TIMEOUT =>
                {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => return Err(self.map_err(e)),
            }
        }
    }

    /// Settings that live in the connection, not the file: no I/O.
    fn set_connection_pragmas(&self) -> Result<()> {
        self.conn
            .execute_batch(
                "PRAGMA synchronous = NORMAL;
                 PRAGMA foreign_keys = ON;
                 PRAGMA journal_size_limit = 4194304;",
            )
            .map_err(|e| self.map_err(e))?;
        self.conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        Ok(())
    }

    /// Reads the application id, schema version and (for a file that has neither)
    /// the object count in one read transaction, hence one snapshot: another
    /// process may be migrating the file right now. The two pragmas read the
    /// file header only; the schema is parsed just when the file looks new.
    fn identity(&self) -> Result<Identity> {
        let foreign_or = |e: rusqlite::Error| match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => Error::Foreign {
                path: self.path.clone(),
                why: "not an SQLite file".into(),
            },
            _ => self.map_err(e),
        };
        self.conn.execute_batch("BEGIN").map_err(foreign_or)?;
        let read = || -> rusqlite::Result<Identity> {
            let application_id: i64 = self
                .conn
                .query_row("PRAGMA application_id", [], |r| r.get(0))?;
            let version: i64 = self
                .conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))?;
            let objects = if application_id == 0 && version == 0 {
                self.conn
                    .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))?
            } else {
                0
            };
            Ok(Identity {
                application_id,
                version,
                objects,
            })
        };
        let id = read();
        let _ = self.conn.execute_batch("COMMIT");
        id.map_err(foreign_or)
    }

    /// Refuses files orch did not make and schemas newer than this build.
    fn check_ours(&self, id: &Identity) -> Result<()> {
        let foreign = |why: String| Error::Foreign {
            path: self.path.clone(),
            why,
        };
        if id.application_id == 0 && id.version == 0 {
            if id.objects > 0 {
                return Err(foreign(format!(
                    "an SQLite file of another program, with {} table{} or index{}",
                    id.objects,
                    if id.objects == 1 { "" } else { "s" },
                    if id.objects == 1 { "" } else { "es" },
                )));
            }
            return Ok(());
        }
        if id.application_id != schema::APPLICATION_ID {
            return Err(foreign(format!(
                "SQLite application id {:#x}",
                id.application_id
            )));
        }
        if id.version > schema::current_version() {
            return Err(Error::SchemaTooNew {
                path: self.path.clone(),
                found: id.version,
                supported: schema::current_version(),
            });
        }
        Ok(())
    }

    /// Applies missing migrations in one IMMEDIATE transaction that re-reads the version,
    /// so many processes opening a new file at once agree on one schema.
    fn migrate(&self) -> Result<()> {
        let target = schema::current_version();
        self.write(|tx| {
            let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            if version > target {
                return Err(Error::SchemaTooNew {
                    path: self.path.clone(),
                    found: version,
                    supported: target,
                });
            }
            // A file whose tables are not what its version says (made by a
            // build whose migrations differed) is refused whole, by name,
            // rather than failing later on a missing table.
            let misshapen = |why: String| {
                Error::invalid(format!(
                    "{}: schema version {version} but {why}: it was not made by a released orch (a development build?); nothing in it was changed: move it away and orch makes a new one",
                    self.path.display()
                ))
            };
            for (i, sql) in schema::MIGRATIONS.iter().enumerate().skip(version as usize) {
                tx.execute_batch(sql)
                    .map_err(|e| misshapen(format!("migration {} fails on it ({e})", i + 1)))?;
                tx.execute_batch(&format!(
                    "PRAGMA user_version = {}; PRAGMA application_id = {};",
                    i + 1,
                    schema::APPLICATION_ID
                ))?;
            }
            let mut stmt = tx.prepare_cached("SELECT name FROM sqlite_master WHERE type = 'table'")?;
            let have: Vec<String> = stmt
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let missing: Vec<&str> = schema::TABLES
                .iter()
                .copied()
                .filter(|t| !have.iter().any(|h| h == t))
                .collect();
            if !missing.is_empty() {
                return Err(misshapen(format!("it lacks the table(s) {}", missing.join(", "))));
            }
            Ok(())
        })
    }

    /// A number that changes whenever another connection commits to the
    /// file (`PRAGMA data_version`): what watchers poll.
    pub fn data_version(&self) -> Result<i64> {
        self.conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(|e| self.map_err(e))
    }

    /// How long a writer waits for the lock before [`Error::Busy`].
    pub fn set_busy_timeout(&self, limit: Duration) -> Result<()> {
        Ok(self.conn.busy_timeout(limit)?)
    }

    /// Runs `f` inside one `BEGIN IMMEDIATE` transaction: committed if it returns Ok,
    /// rolled back otherwise. Nothing slow (processes, sleeps, network) belongs in `f`.
    pub fn write<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .map_err(|e| self.map_err(e))?;
        let out = f(&tx).map_err(|e| self.remap(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(out)
    }

    /// Runs `f` inside one read transaction (a consistent snapshot).
    pub fn read<T>(&self, f: impl FnOnce(&Transaction) -> Result<T>) -> Result<T> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Deferred)
            .map_err(|e| self.map_err(e))?;
        let out = f(&tx).map_err(|e| self.remap(e))?;
        tx.commit().map_err(|e| self.map_err(e))?;
        Ok(out)
    }

    /// [`Db::map_err`] for an SQLite error that came back through `?` inside a transaction.
    fn remap(&self, e: Error) -> Error {
        match e {
            Error::Sqlite(e) => self.map_err(e),
            other => other,
        }
    }

    /// Turns SQLite's lock and permission codes into errors that say what to do.
    pub fn map_err(&self, e: rusqlite::Error) -> Error {
        map_sqlite(&self.path, e)
    }
}

impl Drop for Db {
    /// Keeps the WAL bounded: when it has grown past [`WAL_TRUNCATE_AT`], copy it
    /// into the database and empty it. Never waits: if another process is in the
    /// way, the next one to close will do it.
    fn drop(&mut self) {
        let Some(wal) = &self.wal else { return };
        if fs::metadata(wal).is_ok_and(|m| m.len() > WAL_TRUNCATE_AT) {
            let _ = self.conn.busy_timeout(Duration::ZERO);
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

/// Maps an SQLite error on `path` to orch's error shapes.
pub fn map_sqlite(path: &Path, e: rusqlite::Error) -> Error {
    let code = e.sqlite_error_code();
    if matches!(
        code,
        Some(ErrorCode::ReadOnly)
            | Some(ErrorCode::CannotOpen)
            | Some(ErrorCode::SystemIoFailure)
            | Some(ErrorCode::DiskFull)
    ) {
        // SQLite's own words ("disk I/O error", "unable to open") hide the cause.
        if let Some(why) = why_unwritable(path) {
            return Error::invalid(format!("{}: {why}; nothing was written", path.display()));
        }
    }
    match code {
        Some(ErrorCode::DatabaseBusy) | Some(ErrorCode::DatabaseLocked) => {
            Error::Busy(BUSY_TIMEOUT.as_secs())
        }
        Some(ErrorCode::ReadOnly) => Error::invalid(format!(
            "{}: the database is read-only (check the permissions of the file and its directory)",
            path.display()
        )),
        Some(ErrorCode::CannotOpen) => Error::invalid(format!(
            "{}: cannot open the database (check the permissions of the file and its directory)",
            path.display()
        )),
        Some(ErrorCode::NotADatabase) | Some(ErrorCode::DatabaseCorrupt) => Error::Foreign {
            path: path.to_path_buf(),
            why: "not an SQLite file, or a damaged one".into(),
        },
        Some(ErrorCode::DiskFull) => Error::invalid(format!(
            "{}: the disk is full; nothing was written",
            path.display()
        )),
        Some(ErrorCode::SystemIoFailure) => Error::invalid(format!(
            "{}: disk I/O error (out of space, a file-size limit, or a failing disk?); nothing was written",
            path.display()
        )),
        _ => Error::Sqlite(e),
    }
}

/// Why the file system under `path` refuses writes, if it visibly does: a
/// read-only mount, no space left, or no write permission.
fn why_unwritable(path: &Path) -> Option<&'static str> {
    // The nearest existing directory (a new database's parents may not exist).
    let dir = path
        .ancestors()
        .skip(1)
        .map(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".")
            } else {
                d
            }
        })
        .find(|d| d.is_dir())?;
    let st = rustix::fs::statvfs(dir).ok()?;
    if st.f_flag.contains(rustix::fs::StatVfsMountFlags::RDONLY) {
        return Some("the file system is read-only");
    }
    if st.f_bavail.saturating_mul(st.f_frsize) < 256 * 1024 {
        return Some("the disk is full");
    }
    for p in [path, dir] {
        if p.exists() && rustix::fs::access(p, rustix::fs::Access::WRITE_OK).is_err() {
            return Some("no permission to write the database file or its directory");
        }
    }
    None
}

/// The schema version of the file at `path` and what `count` reads from it,
/// through a read-only connection that writes nothing (not even a WAL): what
/// `orch doctor` reports ([`crate::task::peek`]). The error is one line for people.
pub(crate) fn peek(
    path: &Path,
    count: impl FnOnce(&Connection) -> rusqlite::Result<i64>,
) -> std::result::Result<(i64, i64), String> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags).map_err(|e| format!("cannot open: {e}"))?;
    c.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    let app: i64 = c
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|_| "not an SQLite file".to_string())?;
    let version: i64 = c
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if app != schema::APPLICATION_ID {
        return Err(format!(
            "not an orch database (SQLite application id {app:#x})"
        ));
    }
    Ok((version, count(&c).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(c: &Connection) -> i64 {
        c.query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let db = Db::open_in_memory().unwrap();
        db.migrate().unwrap();
        assert_eq!(version(&db.conn), schema::current_version());
    }

    /// Every table, index and column as SQLite reports them, sorted.
    fn schema_of(c: &Connection) -> Vec<(String, String)> {
        let mut stmt = c
            .prepare("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name")
            .unwrap();
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap();
        rows.collect::<rusqlite::Result<_>>().unwrap()
    }

    #[test]
    fn fresh_schema_equals_migrated_schema() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.db");
        drop(Db::open(&fresh).unwrap());
        // A database as every earlier version left it, then opened by this one.
        for at in 1..schema::current_version() {
            let old = dir.path().join(format!("v{at}.db"));
            let c = Connection::open(&old).unwrap();
            for sql in &schema::MIGRATIONS[..at as usize] {
                c.execute_batch(sql).unwrap();
            }
            c.execute_batch(&format!(
                "PRAGMA user_version = {at}; PRAGMA application_id = {};",
                schema::APPLICATION_ID
            ))
            .unwrap();
            drop(c);
            drop(Db::open(&old).unwrap());
            let (a, b) = (
                Connection::open(&fresh).unwrap(),
                Connection::open(&old).unwrap(),
            );
            assert_eq!(schema_of(&a), schema_of(&b), "migrated from version {at}");
            assert_eq!(version(&b), schema::current_version());
        }
    }

    #[test]
    fn the_tables_every_open_checks_are_the_fresh_schemas() {
        let db = Db::open_in_memory().unwrap();
        let mut tables: Vec<String> = db
            .conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        tables.retain(|t| !t.starts_with("sqlite_"));
        let mut want: Vec<&str> = schema::TABLES.to_vec();
        want.sort_unstable();
        assert_eq!(tables, want);
    }

    #[test]
    fn a_file_whose_tables_its_version_does_not_explain_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        // Version 3 as no release made it: the landing columns, no attempts.
        let path = dir.path().join("dev.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch(schema::MIGRATIONS[0]).unwrap();
        c.execute_batch(&format!(
            "PRAGMA user_version = 3; PRAGMA application_id = {};",
            schema::APPLICATION_ID
        ))
        .unwrap();
        drop(c);
        let err = Db::open(&path).err().unwrap().to_string();
        assert!(err.contains("schema version 3 but"), "{err}");
        assert!(err.contains("move it away"), "{err}");
        // The failed migration was rolled back whole.
        let c = Connection::open(&path).unwrap();
        assert_eq!(version(&c), 3);
        let attempts: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'attempts'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(attempts, 0);
        drop(c);
    }

    #[test]
    fn migration_4_keeps_every_attempt_and_admits_runner_job() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        let c = Connection::open(&path).unwrap();
        for sql in &schema::MIGRATIONS[..3] {
            c.execute_batch(sql).unwrap();
        }
        c.execute_batch(&format!(
            "PRAGMA user_version = 3; PRAGMA application_id = {};
             INSERT INTO tasks (role, description, prompt, created_at) VALUES ('r', 'd', 'p', 1);
             INSERT INTO attempts (task_id, n, runner, started_at, outcome, error_class, cost_usd)
                 VALUES (1, 1, 'orch-run', 5, 'failed', 'rate_limited', 0.25);",
            schema::APPLICATION_ID
        ))
        .unwrap();
        assert!(c
            .execute(
                "INSERT INTO attempts (task_id, n, runner, started_at) VALUES (1, 2, 'job', 6)",
                []
            )
            .is_err());
        drop(c);
        drop(Db::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        let kept: (i64, String, String, f64) = c
            .query_row(
                "SELECT id, runner, error_class, cost_usd FROM attempts WHERE task_id = 1 AND n = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .unwrap();
        assert_eq!(kept, (1, "orch-run".into(), "rate_limited".into(), 0.25));
        c.execute(
            "INSERT INTO attempts (task_id, n, runner, started_at) VALUES (1, 2, 'job', 6)",
            [],
        )
        .unwrap();
        let id: i64 = c
            .query_row("SELECT id FROM attempts WHERE n = 2", [], |r| r.get(0))
            .unwrap();
        assert_eq!(id, 2, "ids go on after the rebuilt table's");
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        drop(Db::open(&path).unwrap());
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version = 999").unwrap();
        drop(c);
        match Db::open(&path) {
            Err(Error::SchemaTooNew { found: 999, .. }) => {}
            other => panic!("expected SchemaTooNew, got {:?}", other.err()),
        }
    }

    #[test]
    fn foreign_sqlite_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE notes(x); INSERT INTO notes VALUES (1);")
            .unwrap();
        drop(c);
        let before = fs::read(&path).unwrap();
        assert!(matches!(Db::open(&path), Err(Error::Foreign { .. })));
        assert_eq!(before, fs::read(&path).unwrap());
    }

    #[test]
    fn garbage_is_refused_and_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk.db");
        fs::write(&path, vec![b'x'; 8192]).unwrap();
        assert!(matches!(Db::open(&path), Err(Error::Foreign { .. })));
        assert_eq!(fs::read(&path).unwrap(), vec![b'x'; 8192]);
    }

    #[test]
    fn new_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dir/orch.db");
        drop(Db::open(&path).unwrap());
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("sub/dir")), 0o700);
    }

    /// The module that owns each table: every SQL statement that reads from,
    /// inserts into or updates the table is in that file (joins aside).
    const OWNERS: &[(&str, &str)] = &[
        ("tasks", "core/src/task.rs"),
        ("task_deps", "core/src/task.rs"),
        ("batches", "core/src/batch.rs"),
        ("messages", "core/src/msg.rs"),
        ("deliveries", "core/src/msg.rs"),
        ("verify_runs", "core/src/verify.rs"),
        ("verify_probes", "core/src/verify.rs"),
        ("agent_calls", "core/src/calls.rs"),
        ("dispatches", "core/src/dispatch.rs"),
        ("job_results", "core/src/dispatch.rs"),
        ("attempts", "core/src/attempt.rs"),
        ("slots", "core/src/limits.rs"),
        ("settings", "core/src/settings.rs"),
        ("events", "core/src/event.rs"),
        ("task_logs", "core/src/tasklog.rs"),
    ];

    #[test]
    fn sql_on_each_table_lives_in_its_owner() {
        let shared = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let mut files = Vec::new();
        for d in ["core/src", "cli/src", "../bins"] {
            crate::tests::sources(&shared.join(d), &mut files);
        }
        assert!(
            files.len() > 20,
            "sources not found under {}",
            shared.display()
        );
        let mut wrong = Vec::new();
        for f in &files {
            let text = fs::read_to_string(f).unwrap();
            // Tests may set up any state they need.
            let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
            let rel = f
                .strip_prefix(shared)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            for (table, owner) in OWNERS {
                // Migrations may move any table's rows when they rebuild it.
                if rel == *owner || rel == "core/src/db/schema.rs" {
                    continue;
                }
                for verb in ["FROM", "INTO", "UPDATE"] {
                    let needle = format!("{verb} {table}");
                    let hit = code.match_indices(&needle).any(|(i, _)| {
                        let after = code[i + needle.len()..].chars().next();
                        !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
                    });
                    if hit {
                        wrong.push(format!("{rel}: {needle} (owner: {owner})"));
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "SQL outside the owner of its table:\n{}",
            wrong.join("\n")
        );
    }
}
