#!/usr/bin/env bash
# Landing and worktrees: N tasks (default 50) that each write their own file,
# run by `orch-run -j N` in a fresh git repository twice, once plainly and
# once with --worktree (the difference, per task, is what a worktree costs:
# `git worktree add` when it starts, the commit of its leftovers when it
# ends); then `orch-land --all` lands the N non-conflicting branches (target:
# at most 5 s for 50). Prints a Markdown table.
#
# Environment: N (50), ORCH_BIN (the directory holding the orch binaries;
# default: target/release, then target/debug, then PATH).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
N=${N:-50}

if [ -z "${ORCH_BIN:-}" ]; then
    for d in target/release target/debug; do
        if [ -x "$d/orch-land" ]; then ORCH_BIN=$PWD/$d; break; fi
    done
fi
if [ -n "${ORCH_BIN:-}" ]; then export PATH=$ORCH_BIN:$PATH; fi
for t in git orch-run orch-land; do
    command -v "$t" >/dev/null || { echo "bench-land: error: $t not found (cargo build --release)" >&2; exit 2; }
done
for v in $(env | grep -o '^ORCH[A-Z_]*' || true); do unset "$v"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/orch-bench-land.XXXXXX")
trap 'rm -rf "$work"' EXIT
ms() { date +%s%3N; }

setup() { # DIR → a repository with one commit and a database of N tasks in one batch
    mkdir -p "$1"
    git -C "$1" init --quiet --initial-branch=main
    git -C "$1" config user.name bench
    git -C "$1" config user.email bench@example.invalid
    echo start >"$1/README"
    git -C "$1" add README
    git -C "$1" commit --quiet -m start
    export ORCH_DB=$1.db
    for i in $(seq "$N"); do printf '{"role":"dev","prompt":"f%s.txt"}\n' "$i"; done |
        orch-queue add --stdin >/dev/null
    orch-batch create --max "$N" >/dev/null 2>&1
}
# The agent: writes the file its prompt names, in its working directory.
agent=(sh -c 'echo done >"$1"' agent {prompt})

setup "$work/plain"
t0=$(ms); (cd "$work/plain" && orch-run 1 -j "$N" -- "${agent[@]}" 2>/dev/null); t1=$(ms)
plain=$((t1 - t0))

setup "$work/wt"
t0=$(ms); (cd "$work/wt" && orch-run 1 -j "$N" --worktree -- "${agent[@]}" 2>/dev/null); t1=$(ms)
wt=$((t1 - t0))

t0=$(ms); (cd "$work/wt" && orch-land --all >/dev/null); t1=$(ms)
land=$((t1 - t0))
landed=$(git -C "$work/wt" rev-list --first-parent --count main)
landed=$((landed - 1))

per=$(awk -v a="$wt" -v b="$plain" -v n="$N" 'BEGIN { printf "%.1f", (a - b) / n }')
ok=$([ "$landed" = "$N" ] && [ "$land" -le $((5000 * N / 50)) ] && echo ok || echo MISSED)
echo "| workload | wall time | target | result |"
echo "|---|---|---|---|"
echo "| orch-run -j $N, $N tasks | ${plain} ms | | |"
echo "| orch-run -j $N --worktree, $N tasks | ${wt} ms | | ${per} ms per task for its worktree |"
echo "| orch-land --all, $N branches | ${land} ms | <= $((5000 * N / 50)) ms | $ok ($landed landed) |"
