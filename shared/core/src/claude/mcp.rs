//! Where Claude Code (and Claude Desktop) register MCP servers, and whether
//! orch is among them: a project's `.mcp.json`, the global config file
//! (`~/.claude.json`, in `$CLAUDE_CONFIG_DIR` when that is set) with its user
//! scope and the local scope of each project, and Claude Desktop's config.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// Where an orch server was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// A project's `.mcp.json`.
    Project,
    /// The global config file's `mcpServers`.
    User,
    /// The global config file's `projects[dir].mcpServers`.
    Local(String),
    /// Claude Desktop's `claude_desktop_config.json`.
    Desktop,
}

/// One registration of orch as an MCP server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    pub file: PathBuf,
    pub scope: Scope,
    /// The server's name in that file.
    pub name: String,
}

/// The name of the first server in an `mcpServers` object that runs orch
/// (`orch-mcp`, or `orch mcp`).
pub fn orch_server(servers: Option<&Value>) -> Option<String> {
    let servers = servers?.as_object()?;
    servers.iter().find_map(|(name, s)| {
        let cmd = s.get("command").and_then(|c| c.as_str()).unwrap_or("");
        let first = s
            .get("args")
            .and_then(|a| a.get(0))
            .and_then(|a| a.as_str())
            .unwrap_or("");
        let is_orch = cmd.ends_with("orch-mcp") || (cmd.ends_with("orch") && first == "mcp");
        is_orch.then(|| name.clone())
    })
}

/// A project's MCP servers file under the project directory `dir`.
pub fn project_file(dir: &Path) -> PathBuf {
    dir.join(".mcp.json")
}

fn read(path: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Every registration of orch that Claude Code started in `cwd` (or Claude
/// Desktop) would see; files that are missing or not JSON count as none.
pub fn registrations(cwd: &Path) -> Vec<Registration> {
    let home = super::home();
    let dirs = super::project_dirs(cwd, home.as_deref());
    let mut found = Vec::new();
    for d in &dirs {
        let file = project_file(d);
        if let Some(name) = read(&file).and_then(|v| orch_server(v.get("mcpServers"))) {
            found.push(Registration {
                file,
                scope: Scope::Project,
                name,
            });
        }
    }
    if let Some(file) = super::global_config() {
        if let Some(v) = read(&file) {
            if let Some(name) = orch_server(v.get("mcpServers")) {
                found.push(Registration {
                    file: file.clone(),
                    scope: Scope::User,
                    name,
                });
            }
            if let Some(projects) = v.get("projects").and_then(|p| p.as_object()) {
                for (dir, p) in projects {
                    if dirs.iter().any(|d| d == Path::new(dir)) {
                        if let Some(name) = orch_server(p.get("mcpServers")) {
                            found.push(Registration {
                                file: file.clone(),
                                scope: Scope::Local(dir.clone()),
                                name,
                            });
                        }
                    }
                }
            }
        }
    }
    if let Some(h) = &home {
        for file in [
            h.join(".config/Claude/claude_desktop_config.json"),
            h.join("Library/Application Support/Claude/claude_desktop_config.json"),
        ] {
            if let Some(name) = read(&file).and_then(|v| orch_server(v.get("mcpServers"))) {
                found.push(Registration {
                    file,
                    scope: Scope::Desktop,
                    name,
                });
            }
        }
    }
    found
}
