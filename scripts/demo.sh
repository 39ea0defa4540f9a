#!/usr/bin/env bash
# The main job once, on a throw-away database: queues three example tasks in
# a fresh temporary database, batches them and prints the message to paste
# into Claude Code. The user's own database (ORCH_DB, .orch/orch.db or the
# per-user one) is never touched, so later tours and hooks do not see the demo
# tasks. Uses the orch binaries of ORCH_BIN (a directory) or else of PATH.
# install.sh --demo runs it with the binaries it just installed.
set -euo pipefail

bin=${ORCH_BIN:+$ORCH_BIN/}
dir=$(mktemp -d "${TMPDIR:-/tmp}/orch-demo.XXXXXX")
export ORCH_DB=$dir/orch.db

echo "demo: queueing three example tasks in a temporary database, batching them, printing the message to paste into Claude Code" >&2
"${bin}orch-queue" add Explore -d 'Map the project layout' 'List the top-level directories of this project and say in one sentence what each is for.' >/dev/null
"${bin}orch-queue" add general-purpose -d 'Find TODO comments' 'Find every TODO or FIXME comment in this project and list them with file and line.' >/dev/null
"${bin}orch-queue" add Plan -d 'Plan a test for main' 'Propose, without writing any file, one test that would have caught the last bug fixed in this project.' >/dev/null
"${bin}orch-batch" create | "${bin}orch-emit"
echo >&2
echo "demo: paste the message above into Claude Code as one prompt." >&2
echo "demo: the demo tasks live in $ORCH_DB (not in your own database); to look at them: ORCH_DB=$ORCH_DB orch-queue list" >&2
