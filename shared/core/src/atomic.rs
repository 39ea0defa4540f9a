//! Replacing a file atomically: the one way orch writes a file that someone
//! else may read while it is written (settings, workflows, Claude Code's task
//! files, bundles). The text goes to a fresh temporary file beside the target,
//! created with `O_EXCL` under an unpredictable name (so a symlink planted at
//! a temporary name is never followed), then renamed over the target.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Who may read the file written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The mode of the file replaced, or the usual one (0666 less the umask) for a new file.
    Keep,
    /// Only the owner (0600), as for the database: the file holds prompts.
    Private,
}

/// Writes `text` to `path` through a temporary file in the same directory and
/// a rename. A symlink at `path` that resolves is followed (its target is
/// replaced, as editors do with a symlinked settings file); a dangling one is
/// replaced by the file. The directory must exist.
pub fn write(path: &Path, text: &[u8], access: Access) -> Result<()> {
    let io = |what: &'static str, p: &Path| {
        let p = p.to_path_buf();
        move |source| Error::Io {
            path: p,
            what,
            source,
        }
    };
    let path = fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mode = match access {
        Access::Private => Some(0o600),
        Access::Keep => fs::metadata(&path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder
        .prefix(&prefix)
        .suffix(".orch-tmp")
        // The mode the file is created with; umask applies, as for any new file.
        .permissions(fs::Permissions::from_mode(mode.unwrap_or(0o666)));
    let mut f = builder
        .tempfile_in(&dir)
        .map_err(io("create a temporary file in", &dir))?;
    let tmp = f.path().to_path_buf();
    f.write_all(text).map_err(io("write", &tmp))?;
    if let Some(m) = mode {
        f.as_file()
            .set_permissions(fs::Permissions::from_mode(m))
            .map_err(io("set the mode of", &tmp))?;
    }
    f.as_file().sync_all().map_err(io("write", &tmp))?;
    f.persist(&path)
        .map_err(|e| io("replace", &path)(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{write, Access};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_symlink_at_any_temporary_name_is_never_followed() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        for name in [
            "f.json.orch-tmp",
            "f.orch-tmp",
            ".f.json.orch-tmp",
            &format!(".f.json.orch-{}.tmp", std::process::id()),
        ] {
            std::os::unix::fs::symlink(&victim, d.path().join(name)).unwrap();
        }
        let target = d.path().join("f.json");
        write(&target, b"new", Access::Keep).unwrap();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }

    #[test]
    fn private_files_are_the_owners_only_and_kept_modes_stay() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("secret");
        write(&p, b"x", Access::Private).unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&p), 0o600);
        let q = d.path().join("open");
        std::fs::write(&q, "a").unwrap();
        std::fs::set_permissions(&q, std::fs::Permissions::from_mode(0o640)).unwrap();
        write(&q, b"b", Access::Keep).unwrap();
        assert_eq!(mode(&q), 0o640);
    }

    #[test]
    fn a_dangling_symlink_is_replaced_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let away = d.path().join("away");
        let link = d.path().join(".gitignore");
        std::os::unix::fs::symlink(&away, &link).unwrap();
        write(&link, b"*\n", Access::Keep).unwrap();
        assert!(!away.exists());
        assert_eq!(std::fs::read_to_string(&link).unwrap(), "*\n");
    }
}
