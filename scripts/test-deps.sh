#!/usr/bin/env bash
# Installs, once, the real third-party components the tests talk to.
# Idempotent; safe to run on a fresh machine that has Rust, Python 3 and npm.
set -euo pipefail
cd "$(dirname "$0")/.."
