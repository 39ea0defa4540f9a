//! Checks on the layout of the sources of both library crates, read as text.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`.
pub(crate) fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file of `src` belongs to (`run` for `run/claim.rs`),
/// `None` for the crate root, and how deep below `src` the file's module is
/// (1 for `run.rs` and `run/mod.rs`, 2 for `run/claim.rs`).
fn module_of(src: &Path, file: &Path) -> Option<(String, usize)> {
    let rel = file.strip_prefix(src).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let depth = parts.len() - usize::from(parts.last().is_some_and(|l| l == "mod"));
    match parts[0].as_str() {
        "lib" | "main" if parts.len() == 1 => None,
        top => Some((top.to_string(), depth)),
    }
}

/// The top-level modules that `code` names through `crate::`, or through
/// `super::` where that reaches the crate root from a module `depth` deep.
fn references(code: &str, depth: usize) -> BTreeSet<String> {
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = BTreeSet::new();
    for prefix in ["crate::".to_string(), "super::".repeat(depth)] {
        for (i, _) in code.match_indices(prefix.as_str()) {
            let before = &code[..i];
            if before.ends_with("super::")
                || before.ends_with(|c: char| c.is_alphanumeric() || c == '_')
            {
                continue;
            }
            for name in first_names(&code[i + prefix.len()..]) {
                if !["self", "super", "crate"].contains(&name.as_str()) {
                    found.insert(name);
                }
            }
        }
    }
    found
}

/// The first name of a path (`batch` of `batch::Batch`), or of each path of a
/// group (`batch`, `db` of `{batch::{self, Batch}, db::Db}`).
fn first_names(rest: &str) -> Vec<String> {
    let name = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![name(rest)];
    };
    let mut names = vec![name(group)];
    let mut depth = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => names.push(name(&group[i + 1..])),
            _ => {}
        }
    }
    names.retain(|n| !n.is_empty());
    names
}

/// Which top-level module of the crate in `src` uses which other ones
/// (code under `#[cfg(test)]` aside: tests may reach anything).
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    assert!(
        files.len() > 10,
        "sources not found under {}",
        src.display()
    );
    let mut modules = BTreeSet::new();
    let mut refs = Vec::new();
    for f in &files {
        let Some((module, depth)) = module_of(src, f) else {
            continue;
        };
        let text = fs::read_to_string(f).unwrap();
        let code = text.split("\n#[cfg(test)]").next().unwrap_or_default();
        modules.insert(module.clone());
        refs.push((module, references(code, depth)));
    }
    let mut graph: BTreeMap<String, BTreeSet<String>> = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    for (module, used) in refs {
        for u in used {
            if u != module && modules.contains(&u) {
                graph.entry(module.clone()).or_default().insert(u);
            }
        }
    }
    graph
}

/// A cycle in `graph`, as the modules along it (the first one again at the end).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        marks.insert(node.to_string(), Mark::Open);
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let from = path.iter().position(|p| p == next).unwrap();
                    let mut cycle = path[from..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node.to_string(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// No import cycle between the top-level modules of `orch-core` or of
/// `orch-cli` (docs/architecture.md): a module and its own submodules may
/// use each other, two modules may not both need the other.
#[test]
fn no_import_cycle_between_modules() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    for krate in ["core", "cli"] {
        let graph = module_graph(&shared.join(krate).join("src"));
        assert!(graph.contains_key("emit"), "{krate}: {graph:?}");
        if let Some(cycle) = find_cycle(&graph) {
            panic!(
                "import cycle between the modules of {krate}/src: {}",
                cycle.join(" -> ")
            );
        }
    }
}

#[test]
fn a_cycle_is_found_and_named() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec!["a"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
    let acyclic: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
    assert_eq!(find_cycle(&acyclic), None);
}

#[test]
fn references_read_paths_groups_and_super() {
    let code = "use crate::{batch::{self, Batch}, db::Db};\n\
                use super::workflow;\n\
                let x = crate::text::escape(s);\n\
                // crate::claude is only named in a comment\n\
                use super::super::hook;\n";
    let top: Vec<String> = references(code, 1).into_iter().collect();
    assert_eq!(top, ["batch", "db", "text", "workflow"]);
    let nested: Vec<String> = references(code, 2).into_iter().collect();
    assert_eq!(nested, ["batch", "db", "hook", "text"]);
}
