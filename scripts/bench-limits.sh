#!/usr/bin/env bash
# What long runs cost while nothing goes wrong:
#   - one slot claim + release under `orch-queue limit` (target <= 1 ms),
#     through orch's own path: orch-hook given an Agent call's PreToolUse
#     event (which claims a slot) and then its PostToolUse (which frees it),
#     on a database with a limit, against the same two events on one without
#     a limit (where neither touches a slot); the difference of the medians
#     is what the claim and the release cost;
#   - `orch-batch create --max 10` over 1 000 ready tasks, without and with
#     1 000 more tasks waiting for a retry (`not_before` in the future) and
#     the history of a long run (10 000 ended agent calls seen by orch-hook,
#     which every batching checks for stale ones; 100 finished runs' leases):
#     the waiting ones must cost nothing (target: within 10 % + 0.2 ms).
# Prints a Markdown table.
#
# Environment: RUNS (30), ORCH_BIN (the directory holding the
# binaries; default: target/release, then target/debug, then PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-30}
if [ -z "${ORCH_BIN:-}" ]; then
    for d in target/release target/debug; do
        if [ -x "$d/orch-batch" ]; then ORCH_BIN=$PWD/$d; break; fi
    done
fi
if [ -n "${ORCH_BIN:-}" ]; then export PATH=$ORCH_BIN:$PATH; fi
for t in orch-queue orch-batch orch-hook sqlite3 hyperfine python3; do
    command -v "$t" >/dev/null || { echo "bench-limits: error: $t is needed" >&2; exit 2; }
done
for v in $(env | grep -o '^ORCH[A-Z_]*' || true); do unset "$v"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/orch-bench-limits.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Slots: an Agent call's start and end as Claude Code sends them to
# orch-hook, on a database with a limit (s) and one without (n). Each run
# starts from the same file, so the call is new every time.
hooks=tests/fixtures/hooks
orch-queue --db "$work/s.db" limit 1000 >/dev/null
orch-queue --db "$work/n.db" limit 1000 >/dev/null
orch-queue --db "$work/n.db" limit --clear >/dev/null
for d in s n; do
    sqlite3 "$work/$d.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
    cp "$work/$d.db" "$work/$d.tpl"
    # The pair once, checked: the claim is taken and given back (s), or never taken (n).
    orch-hook --db "$work/$d.db" <"$hooks/pre_tool_use_agent.json" >/dev/null
    held=$(sqlite3 "$work/$d.db" "SELECT count(*) FROM slots")
    orch-hook --db "$work/$d.db" <"$hooks/post_tool_use_agent.json" >/dev/null
    left=$(sqlite3 "$work/$d.db" "SELECT count(*) FROM slots")
    want=$([ "$d" = s ] && echo 1 || echo 0)
    if [ "$held" != "$want" ] || [ "$left" != 0 ]; then
        echo "bench-limits: error: orch-hook held $held slot(s) (expected $want) and left $left" >&2
        exit 1
    fi
done
pair() {
    echo "orch-hook --db $work/$1.db <$hooks/pre_tool_use_agent.json >/dev/null && orch-hook --db $work/$1.db <$hooks/post_tool_use_agent.json >/dev/null"
}
hyperfine --style none --warmup 3 --runs "$RUNS" --export-json "$work/slots.json" \
    --prepare "sh -c 'rm -f $work/s.db-wal $work/s.db-shm; cp $work/s.tpl $work/s.db'" \
    "$(pair s)" \
    --prepare "sh -c 'rm -f $work/n.db-wal $work/n.db-shm; cp $work/n.tpl $work/n.db'" \
    "$(pair n)" >/dev/null

# The batcher, with and without 1 000 tasks waiting for their retry.
python3 -c 'import json
for i in range(1000): print(json.dumps({"role": "dev", "prompt": f"task {i}: look at module {i % 97}"}))' >"$work/t.jsonl"
orch-queue --db "$work/a.db" add --stdin <"$work/t.jsonl" >/dev/null
orch-queue --db "$work/b.db" add --stdin <"$work/t.jsonl" >/dev/null
orch-queue --db "$work/b.db" add --stdin <"$work/t.jsonl" >/dev/null
sqlite3 "$work/b.db" "UPDATE tasks SET not_before = 32503680000000 WHERE id <= 1000;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10000)
  INSERT INTO agent_calls (session_id, call_id, source, started_at, finished_at, status)
  SELECT 'bench', 'toolu_' || i, 'hook', i, i + 1, 'done' FROM n;
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100)
  INSERT INTO batches (created_at, run_claimed_at, runner_pid, lease_holder, lease_until)
  SELECT 1, 1, 1, 'bench:1:1', 32503680000000 FROM n;
PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
sqlite3 "$work/a.db" "PRAGMA wal_checkpoint(TRUNCATE);" >/dev/null
for d in a b; do cp "$work/$d.db" "$work/$d.tpl"; done
hyperfine --style none -N --warmup 3 --runs "$RUNS" --export-json "$work/hf.json" \
    --prepare "sh -c 'rm -f $work/a.db-wal $work/a.db-shm; cp $work/a.tpl $work/a.db'" \
    "orch-batch --db $work/a.db create --max 10" \
    --prepare "sh -c 'rm -f $work/b.db-wal $work/b.db-shm; cp $work/b.tpl $work/b.db'" \
    "orch-batch --db $work/b.db create --max 10" >/dev/null
# The waiting ones were never batched.
waiting=$(sqlite3 "$work/b.db" "SELECT count(*) FROM tasks WHERE not_before IS NOT NULL AND batch_id IS NOT NULL")

python3 - "$work/hf.json" "$work/slots.json" "$waiting" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
plain, waiting = (x["median"] * 1000 for x in r)
with_limit, without = (x["median"] * 1000 for x in json.load(open(sys.argv[2]))["results"])
slot_ms = with_limit - without
ok = lambda c: "ok" if c else "MISSED"
print("| workload | median | target | result |")
print("|---|---|---|---|")
print(f"| orch-hook PreToolUse + PostToolUse of an Agent call, limit set | {with_limit:.2f} ms | | |")
print(f"| the same, no limit | {without:.2f} ms | | |")
print(f"| slot claim + release (the difference) | {slot_ms:.3f} ms | <= 1 ms | {ok(slot_ms <= 1)} |")
print(f"| orch-batch create, 1 000 ready | {plain:.2f} ms | | |")
print(f"| orch-batch create, 1 000 ready + 1 000 not due + a long run's history | {waiting:.2f} ms | unchanged (+10 %) | {ok(waiting <= plain * 1.10 + 0.2 and sys.argv[3] == '0')} |")
PY
