//! `--touches GLOB`: the paths a task expects to change, and whether the globs
//! of two tasks can name the same path (then they never share a batch).
//!
//! A glob is a relative path whose components may hold `*` (any run of
//! characters but `/`), `?` (one character) and `**` (any number of whole
//! components). Overlap is decided conservatively: two globs overlap when
//! some path could match both.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The most bytes in one glob.
pub const MAX_GLOB_BYTES: usize = 128;
/// The most components (`a/b/c` is three) in one glob.
pub const MAX_GLOB_PARTS: usize = 32;
/// The most wildcards (`*` or `**`, each run of stars counts once) in one glob.
pub const MAX_GLOB_STARS: usize = 8;
/// The most globs one task gives.
pub const MAX_GLOBS: usize = 16;

/// Checks a task's globs: at most [`MAX_GLOBS`], each valid (see [`validate`]).
pub fn validate_all(globs: &[String]) -> Result<()> {
    if globs.len() > MAX_GLOBS {
        return Err(Error::invalid(format!(
            "{} touches globs; a task gives at most {MAX_GLOBS}",
            globs.len()
        )));
    }
    globs.iter().try_for_each(|g| validate(g))
}

/// Checks one glob: non-empty, relative, no `..`, no control characters,
/// at most [`MAX_GLOB_BYTES`] bytes, [`MAX_GLOB_PARTS`] components and
/// [`MAX_GLOB_STARS`] wildcards.
pub fn validate(glob: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid(format!(
            "bad touches glob {:?}: {why}",
            crate::text::clip(glob, 40)
        ))
    };
    if glob.is_empty() || glob.len() > MAX_GLOB_BYTES {
        return Err(bad(&format!("a glob is 1-{MAX_GLOB_BYTES} bytes")));
    }
    if glob.split('/').count() > MAX_GLOB_PARTS {
        return Err(bad(&format!(
            "a glob has at most {MAX_GLOB_PARTS} components"
        )));
    }
    if stars(glob) > MAX_GLOB_STARS {
        return Err(bad(&format!(
            "a glob has at most {MAX_GLOB_STARS} `*` or `**`"
        )));
    }
    if glob.chars().any(|c| c.is_control()) {
        return Err(bad("it holds a control character"));
    }
    if glob.starts_with('/') {
        return Err(bad("paths are relative to the repository"));
    }
    if glob.split('/').any(|c| c == ".." || c.is_empty()) {
        return Err(bad("no empty or `..` components"));
    }
    Ok(())
}

/// How many runs of `*` a glob holds (`**` is one).
fn stars(glob: &str) -> usize {
    glob.split(|c| c != '*')
        .filter(|run| !run.is_empty())
        .count()
}

/// Whether some path can match both globs. Polynomial in the components of
/// both: every (i, j) pair of positions is decided once.
pub fn overlap(a: &str, b: &str) -> bool {
    overlap_counted(a, b, &mut 0)
}

/// [`overlap`], adding the steps it took to `work`.
fn overlap_counted(a: &str, b: &str, work: &mut u64) -> bool {
    let a: Vec<&str> = a.split('/').collect();
    let b: Vec<&str> = b.split('/').collect();
    // can[i][j]: some path matches both a[i..] and b[j..]; filled from the ends.
    let (n, m) = (a.len(), b.len());
    *work += ((n + 1) * (m + 1)) as u64;
    let mut can = vec![vec![false; m + 1]; n + 1];
    can[n][m] = true;
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            if i == n && j == m {
                continue;
            }
            can[i][j] = match (a.get(i), b.get(j)) {
                // `**` matches no component, or one more of the other side's.
                (Some(&"**"), _) => can[i + 1][j] || (j < m && can[i][j + 1]),
                (_, Some(&"**")) => can[i][j + 1] || (i < n && can[i + 1][j]),
                (Some(x), Some(y)) => {
                    can[i + 1][j + 1] && component_overlap(x.as_bytes(), y.as_bytes(), work)
                }
                _ => false,
            };
        }
    }
    can[0][0]
}

/// Whether some string matches both component patterns (`*`, `?`, literals).
fn component_overlap(a: &[u8], b: &[u8], work: &mut u64) -> bool {
    // Bounded memoised search over positions in both patterns.
    *work += ((a.len() + 1) * (b.len() + 1)) as u64;
    let mut seen = vec![None; (a.len() + 1) * (b.len() + 1)];
    fn go(a: &[u8], b: &[u8], i: usize, j: usize, seen: &mut [Option<bool>]) -> bool {
        let at = i * (b.len() + 1) + j;
        if let Some(v) = seen[at] {
            return v;
        }
        let v = match (a.get(i), b.get(j)) {
            (None, None) => true,
            (Some(b'*'), _) => {
                go(a, b, i + 1, j, seen) || (j < b.len() && go(a, b, i, j + 1, seen))
            }
            (_, Some(b'*')) => {
                go(a, b, i, j + 1, seen) || (i < a.len() && go(a, b, i + 1, j, seen))
            }
            (Some(x), Some(y)) => {
                (*x == b'?' || *y == b'?' || x == y) && go(a, b, i + 1, j + 1, seen)
            }
            _ => false,
        };
        seen[at] = Some(v);
        v
    }
    go(a, b, 0, 0, &mut seen)
}

/// How much deciding overlaps may cost one batch (or one wave of a plan), in
/// steps of [`overlap`]: well under a second. Globs within the limits
/// of [`validate`] never come near it in real projects; past it (globs
/// stored before those limits, or thousands of ready tasks that all clash)
/// the tasks not yet compared wait for the next batch.
pub const WORK_PER_BATCH: u64 = 16_000_000;

/// What [`Checker::clash`] found between the globs of two tasks.
#[derive(Debug, PartialEq, Eq)]
pub enum Clash<'a> {
    /// No path can match a glob of both.
    Apart,
    /// The first pair of globs, one from each, that can match the same path.
    Overlap(&'a str, &'a str),
    /// This batch's [`WORK_PER_BATCH`] is spent: not decided, so the later
    /// task waits.
    Undecided,
}

/// Decides overlaps for one batch: each pair of globs once, and no more than
/// [`WORK_PER_BATCH`] in all.
#[derive(Default)]
pub struct Checker {
    seen: HashMap<(String, String), bool>,
    work: u64,
}

impl Checker {
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Whether a glob of `a` and one of `b` can match the same path.
    pub fn clash<'a>(&mut self, a: &'a [String], b: &'a [String]) -> Clash<'a> {
        for x in a {
            for y in b {
                let key = if x <= y {
                    (x.clone(), y.clone())
                } else {
                    (y.clone(), x.clone())
                };
                let hit = match self.seen.get(&key) {
                    Some(&v) => v,
                    None => {
                        if self.work >= WORK_PER_BATCH {
                            return Clash::Undecided;
                        }
                        let v = overlap_counted(x, y, &mut self.work);
                        self.seen.insert(key, v);
                        v
                    }
                };
                if hit {
                    return Clash::Overlap(x, y);
                }
            }
        }
        Clash::Apart
    }
}

/// The ready tasks a new batch takes when some of them have `--touches`:
/// in priority order, skipping any whose globs overlap a task already taken
/// (it waits for the next batch), or that could not be compared within
/// [`WORK_PER_BATCH`]. `None` when no ready task has globs (the batch is then
/// made as it always was).
pub fn pick_ready_in(
    tx: &rusqlite::Transaction,
    role: Option<&str>,
    max: usize,
) -> Result<Option<Vec<i64>>> {
    let mut taken: Vec<(i64, Vec<String>)> = Vec::new();
    let mut checker = Checker::new();
    let any = crate::task::each_ready_touches_in(tx, role, |id, globs| {
        if taken
            .iter()
            .all(|(_, g)| checker.clash(g, &globs) == Clash::Apart)
        {
            taken.push((id, globs));
        }
        taken.len() < max
    })?;
    Ok(any.then(|| taken.into_iter().map(|(id, _)| id).collect()))
}

#[cfg(test)]
mod tests {
    use super::overlap;

    #[test]
    fn globs_overlap_when_one_path_can_match_both() {
        assert!(overlap("src/db/*", "src/db/*"));
        assert!(overlap("src/db/*", "src/db/schema.rs"));
        assert!(overlap("src/**", "src/db/x.rs"));
        assert!(overlap("**/*.rs", "src/db/x.rs"));
        assert!(overlap("src/*.rs", "src/m?in.rs"));
        assert!(!overlap("src/db/*", "src/cli/*"));
        assert!(!overlap("src/*.rs", "src/*.md"));
        assert!(!overlap("src/db/*", "src/db/x/y"));
        assert!(!overlap("a.txt", "b.txt"));
        assert!(overlap("**", "a/b"));
        assert!(overlap("a/**/b", "**/b"));
        assert!(overlap("**/x/**", "a/**/y/x"));
        assert!(!overlap("**/x", "**/y"));
        assert!(!overlap("a/**", "b/**"));
    }

    #[test]
    fn many_double_stars_are_decided_at_once() {
        let a = format!("{}x", "**/".repeat(63));
        let b = format!("{}y", "a/".repeat(63));
        assert!(!overlap(&a, &b));
        let c = format!("{}x", "a/".repeat(63));
        assert!(overlap(&a, &c));
    }
}
