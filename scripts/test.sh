#!/usr/bin/env bash
# The test command (the README's), in two tiers:
#   1. the hermetic tier: `cargo test --workspace`. Needs nothing but cargo:
#      no network, no Python, Node or tmux, no root; fakes stand in for third
#      parties.
#   2. the real tier: `cargo test --features real-tier --test real`. Installs
#      its prerequisites first (scripts/test-deps.sh), then drives the pinned
#      Claude Code CLI against a scripted model on 127.0.0.1, the official MCP
#      Python SDK and the MCP Inspector, real terminals (tmux, script), and
#      tmpfs mounts (root). A missing prerequisite fails it; nothing skips.
# Extra arguments go to both `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "test: tier 1 (hermetic)" >&2
cargo test --workspace "$@"
scripts/test-deps.sh
echo "test: tier 2 (real) with Claude Code $(tests/claude_code/node_modules/.bin/claude --version)" >&2
cargo test --features real-tier --test real "$@"
