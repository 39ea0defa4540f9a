#!/usr/bin/env bash
# What long runs cost while nothing goes wrong:
#   - one slot claim + release under `orch-queue limit` (target <= 1 ms): the
#     statements orch runs (take_slot_in, release_in), each in its own
#     IMMEDIATE transaction, COUNT times in one sqlite3 connection on a WAL file;
#   - `orch-batch create --max 10` over 1 000 ready tasks, without and with
#     1 000 more tasks waiting for a retry (`not_before` in the future) and
#     the history of a long run (10 000 ended agent calls seen by orch-hook,
#     which every batching checks for stale ones; 100 finished runs' leases):
#     the waiting ones must cost nothing (target: within 10 % + 0.2 ms).
# Prints a Markdown table.
#
# Environment: COUNT (10000), RUNS (30), ORCH_BIN (the directory holding the
# binaries; default: target/release, then target/debug, then PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNT=${COUNT:-10000}
RUNS=${RUNS:-30}
if [ -z "${ORCH_BIN:-}" ]; then
    for d in target/release target/debug; do
        if [ -x "$d/orch-batch" ]; then ORCH_BIN=$PWD/$d; break; fi
    done
fi
if [ -n "${ORCH_BIN:-}" ]; then export PATH=$ORCH_BIN:$PATH; fi
for t in orch-queue orch-batch sqlite3 hyperfine python3; do
    command -v "$t" >/dev/null || { echo "bench-limits: error: $t is needed" >&2; exit 2; }
done
for v in $(env | grep -o '^ORCH[A-Z_]*' || true); do unset "$v"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/orch-bench-limits.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Slots: the database as orch-queue makes it, a limit set.
orch-queue --db "$work/s.db" limit 1000 >/dev/null
{
    echo "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;"
    for i in $(seq "$COUNT"); do
        echo "BEGIN IMMEDIATE;
SELECT value FROM settings WHERE key = 'limit';
DELETE FROM slots WHERE expires_at <= 1;
SELECT count(*) FROM slots WHERE expires_at > 1;
INSERT INTO slots (holder, key, taken_at, expires_at) VALUES ('bench', '$i', 1, 9999999999999)
  ON CONFLICT (holder, key) DO UPDATE SET expires_at = excluded.expires_at;
COMMIT;
BEGIN IMMEDIATE; DELETE FROM slots WHERE holder = 'bench' AND key = '$i'; COMMIT;"
    done
} >"$work/slots.sql"
start=$(date +%s%N)
sqlite3 "$work/s.db" <"$work/slots.sql" >/dev/null
end=$(date +%s%N)
slot_us=$(( (end - start) / 1000 / COUNT ))

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

python3 - "$work/hf.json" "$slot_us" "$COUNT" "$waiting" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
plain, waiting = (x["median"] * 1000 for x in r)
slot_ms = int(sys.argv[2]) / 1000
ok = lambda c: "ok" if c else "MISSED"
print("| workload | median | target | result |")
print("|---|---|---|---|")
print(f"| slot claim + release ({sys.argv[3]}x, one connection) | {slot_ms:.3f} ms | <= 1 ms | {ok(slot_ms <= 1)} |")
print(f"| orch-batch create, 1 000 ready | {plain:.2f} ms | | |")
print(f"| orch-batch create, 1 000 ready + 1 000 not due + a long run's history | {waiting:.2f} ms | unchanged (+10 %) | {ok(waiting <= plain * 1.10 + 0.2 and sys.argv[4] == '0')} |")
PY
