#!/usr/bin/env bash
# The test command (the README's): installs what the tests need, then runs
# every test of the workspace. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/test-deps.sh
cargo test --workspace "$@"
