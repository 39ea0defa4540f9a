#!/usr/bin/env bash
# Runs every cargo-fuzz target briefly (default 25 s each; FUZZ_SECONDS=N to
# change). Works on a stable toolchain: cargo-fuzz needs nightly-only flags
# (-Zsanitizer, -Cpasses=sancov-module), which RUSTC_BOOTSTRAP=1 unlocks.
# Installs cargo-fuzz from crates.io when it is missing. The fuzz crate is its
# own workspace (fuzz/Cargo.toml), so the root build never compiles it.
#
#   scripts/fuzz.sh [TARGET…]       # default: every target in fuzz/fuzz_targets
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-25}
export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
targets=("$@")
if [ ${#targets[@]} = 0 ]; then
    for f in fuzz_targets/*.rs; do targets+=("$(basename "$f" .rs)"); done
fi
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" target
    # Seed the corpus with the hostile inputs kept for the integration tests.
    case $t in
    jsonl_line) find ../tests/hostile/input -name '*.jsonl' -size -64k -exec cp {} "corpus/$t/" \; ;;
    hook_event) cp ../tests/fixtures/hooks/*.json "corpus/$t/" 2>/dev/null || true ;;
    mcp_message) cp ../tests/hostile/input/mcp-hostile.jsonl "corpus/$t/" ;;
    esac
    echo "fuzz: $t for ${seconds} s" >&2
    # -O: release with debug assertions; stop at the first crash.
    rc=0
    cargo fuzz run -O "$t" -- -max_total_time="$seconds" -max_len=65536 -rss_limit_mb=2048 \
        >"target/fuzz-$t.log" 2>&1 || rc=$?
    grep -aE '^(#[0-9]+ +DONE|Done [0-9]+ runs|SUMMARY|==[0-9]+==ERROR|thread .* panicked)' "target/fuzz-$t.log" >&2 || true
    if [ "$rc" != 0 ]; then
        tail -30 "target/fuzz-$t.log" >&2
        echo "fuzz: $t failed (exit $rc); crash inputs in fuzz/artifacts/$t" >&2
        exit 1
    fi
done
echo "fuzz: no crash in ${#targets[@]} target(s)" >&2
