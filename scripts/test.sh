#!/usr/bin/env bash
# The test command (the README's): the hermetic tier (every test of the
# workspace, no network, fakes where a third party would be), then the real
# tier (the pinned Claude Code CLI against a scripted model on 127.0.0.1).
# Extra arguments go to both `cargo test` runs.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
cargo test --workspace "$@"
echo "test: real tier with Claude Code $(tests/claude_code/node_modules/.bin/claude --version)" >&2
cargo test --features real-tier --test real "$@"
