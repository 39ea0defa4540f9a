#!/usr/bin/env bash
# Load test: N concurrent writers of every kind on one database file for a
# fixed time, then the invariants a user relies on. Exits non-zero on any
# violation.
#
#   scripts/stress.sh [--procs N] [--seconds S] [--bin-dir DIR] [--keep]
#
# Writers: orch-queue add (single and --stdin bulk), orch-batch create (+
# orch-emit, start, done); and, when those tools are present, orch-msg
# send/recv (exactly-once delivery), orch-verify new/probe and orch-hook
# PreToolUse/PostToolUse events. Every writer logs what
# it was acknowledged (the ids printed on exit 0), so the check can prove that
# nothing acknowledged is missing and nothing was handed out twice. Some
# writes go to /dev/full or a closed stdout: those must exit 3 naming on
# stderr exactly the ids committed (counted as acknowledged) or exit 2 having
# written nothing, and a recv that cannot print must claim nothing.
#
# Binaries: --bin-dir, else $ORCH_BIN_DIR, else a release build made here.
# Needs bash, python3 (the checker) and coreutils.
set -uo pipefail

procs=40
seconds=20
bin_dir=${ORCH_BIN_DIR:-}
keep=0
while [ $# -gt 0 ]; do
    case $1 in
    --procs) procs=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --bin-dir) bin_dir=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    -h | --help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "stress.sh: error: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
case $procs$seconds in *[!0-9]*) echo "stress.sh: error: --procs and --seconds take whole numbers" >&2; exit 2 ;; esac
[ "$procs" -ge 2 ] || { echo "stress.sh: error: --procs must be at least 2" >&2; exit 2; }

root=$(cd "$(dirname "$0")/.." && pwd)
if [ -z "$bin_dir" ]; then
    (cd "$root" && cargo build --release --quiet) || exit 2
    bin_dir=$root/target/release
fi
bin_dir=$(cd "$bin_dir" && pwd)
for b in orch-queue orch-batch orch-emit; do
    [ -x "$bin_dir/$b" ] || { echo "stress.sh: error: $bin_dir/$b not found" >&2; exit 2; }
done
command -v python3 >/dev/null || { echo "stress.sh: error: python3 is needed for the checks" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/orch-stress.XXXXXX")
if [ "$keep" = 1 ]; then
    echo "work directory kept: $work" >&2
else
    trap 'rm -rf "$work"' EXIT
fi
mkdir -p "$work/log" "$work/home"
export ORCH_DB=$work/stress.db HOME=$work/home PATH=$bin_dir:$PATH
unset ORCH_BIN_DIR
cd "$work" || exit 2

kinds=(add add batch msg-send msg-recv probe hook)

# Make the file once so that every writer starts on an existing schema (the
# concurrent first open is tested separately). A read would not make it.
orch-queue --db "$ORCH_DB" init >/dev/null 2>&1 || exit 2

# Stored text carries control characters (ESC, BEL, OSC 52): the views for
# people must show them escaped (checked after the load).
esc=$'\e]52;c;eA==\a\e[2J'

now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }

# The ids a "NAME: error: tasks 5-7, 9 committed, but the answer could not be
# printed" line names, one a line.
committed_ids() {
    local list part
    list=$(sed -n 's/^[a-z-]*: error: [a-z]* \([0-9][0-9, -]*\) committed, but the answer could not be printed.*/\1/p' <<<"$1")
    for part in ${list//,/ }; do
        if [[ $part == *-* ]]; then seq "${part%-*}" "${part#*-}"; else echo "$part"; fi
    done
}

# Runs "$@" with stdout to /dev/full; prints the ids it says it committed.
# Exit 3 with ids, or 2 with none, counts as 0 (what was said is what was done).
to_full() {
    local err rc ids
    err=$("$@" 2>&1 >/dev/full)
    rc=$?
    printf '%s\n' "$err" >>"$base.err"
    ids=$(committed_ids "$err")
    if [ $rc = 3 ] && [ -n "$ids" ]; then printf '%s\n' "$ids"; return 0; fi
    if [ $rc = 2 ] && [ -z "$ids" ]; then return 0; fi
    return $((rc == 0 ? 99 : rc))
}

# Each writer: $1 = kind, $2 = index. Logs: $kind.$i.ok (acknowledged ids or
# records), .err (its stderr), .fail (unexpected exit codes), .ops (count).
writer() {
    local kind=$1 i=$2 n=0 out rc ops=0
    local base=$work/log/$kind.$i
    local end=$((SECONDS + seconds))
    : >"$base.ok"
    : >"$base.fail"
    while [ $SECONDS -lt $end ]; do
        n=$((n + 1))
        case $kind in
        add)
            if [ $((n % 8)) = 0 ]; then
                out=$(for k in 1 2 3 4 5; do
                    printf '{"role":"r%d","prompt":"stress %d.%d.%d \\u001b[2J\\u0007"}\n' $((k % 3)) "$i" "$n" "$k"
                done | orch-queue add --stdin 2>>"$base.err")
                rc=$?
            elif [ $((n % 8)) = 3 ]; then
                out=$(to_full orch-queue add "r$((n % 3))" "stress $i.$n")
                rc=$?
            elif [ $((n % 8)) = 5 ]; then
                # A closed stdout is refused before anything is written.
                orch-queue add "r$((n % 3))" "stress $i.$n" >&- 2>>"$base.err"
                rc=$?
                out=
                [ $rc = 2 ] && rc=0
            else
                out=$(orch-queue add "r$((n % 3))" -p $((n % 5)) "stress $i.$n $esc" 2>>"$base.err")
                rc=$?
            fi
            ops=$((ops + 1))
            if [ $rc = 0 ]; then [ -z "$out" ] || printf '%s\n' "$out" >>"$base.ok"; else echo "orch-queue add: exit $rc" >>"$base.fail"; fi
            ;;
        batch)
            out=$(orch-batch create --max $((1 + RANDOM % 8)) --json 2>>"$base.err")
            rc=$?
            ops=$((ops + 1))
            if [ $rc = 0 ]; then
                printf '%s\n' "$out" >>"$base.ok"
                local b=${out#\{\"id\":}
                b=${b%%,*}
                # Emit, then run the first task of every other batch.
                orch-emit "$b" --format json >/dev/null 2>>"$base.err" || echo "orch-emit $b: exit $?" >>"$base.fail"
                ops=$((ops + 1))
                if [ $((n % 2)) = 0 ]; then
                    local t=${out#*\"tasks\":\[\{\"id\":}
                    t=${t%%,*}
                    orch-queue start "$t" 2>>"$base.err" || echo "orch-queue start $t: exit $?" >>"$base.fail"
                    orch-queue done "$t" --result "ok $t $esc" 2>>"$base.err" || echo "orch-queue done $t: exit $?" >>"$base.fail"
                    ops=$((ops + 2))
                fi
            elif [ $rc != 1 ]; then
                echo "orch-batch create: exit $rc" >>"$base.fail"
            fi
            ;;
        msg-send)
            if [ $((n % 6)) = 2 ]; then
                out=$(to_full orch-msg send --from "s$i" --to "m$((n % 3))" "stress $i.$n $esc")
            else
                out=$(orch-msg send --from "s$i" --to "m$((n % 3))" "stress $i.$n $esc" 2>>"$base.err")
            fi
            rc=$?
            ops=$((ops + 1))
            if [ $rc = 0 ]; then [ -z "$out" ] || printf '%s\n' "$out" >>"$base.ok"; else echo "orch-msg send: exit $rc" >>"$base.fail"; fi
            ;;
        msg-recv)
            if [ $((n % 5)) = 2 ]; then
                # Cannot print: must claim nothing (the drain below gets them).
                orch-msg recv --as "m$((n % 3))" --json >/dev/full 2>>"$base.err"
                rc=$?
                ops=$((ops + 1))
                [ $rc = 0 ] && echo "orch-msg recv >/dev/full: exit 0" >>"$base.fail"
                continue
            fi
            out=$(orch-msg recv --as "m$((n % 3))" --max $((1 + RANDOM % 4)) --json 2>>"$base.err")
            rc=$?
            ops=$((ops + 1))
            if [ $rc = 0 ]; then printf '%s\n' "$out" >>"$base.ok"; elif [ $rc != 1 ]; then echo "orch-msg recv: exit $rc" >>"$base.fail"; fi
            ;;
        probe)
            out=$(orch-verify new -n 3 --sleep 0.01 --json 2>>"$base.err")
            rc=$?
            ops=$((ops + 1))
            if [ $rc != 0 ]; then echo "orch-verify new: exit $rc" >>"$base.fail"; continue; fi
            local run=${out#\{\"run\":}
            run=${run%%,*}
            local k
            for k in 1 2 3; do
                orch-verify probe "$run" "$k" >/dev/null 2>>"$base.err" &
            done
            for k in 1 2 3; do
                if wait -n; then echo "$run" >>"$base.ok"; else echo "orch-verify probe $run: exit $?" >>"$base.fail"; fi
            done
            ops=$((ops + 3))
            ;;
        hook)
            # An Agent call starts and ends, as Claude Code reports it.
            local call="toolu_stress_${i}_$n"
            printf '{"session_id":"stress-%s","transcript_path":"/dev/null","cwd":"%s","hook_event_name":"PreToolUse","tool_name":"Agent","tool_input":{"description":"Stress call \\u001b[2J","prompt":"call %s"},"tool_use_id":"%s"}' \
                "$i" "$work" "$call" "$call" | orch-hook PreToolUse >/dev/null 2>>"$base.err"
            rc=$?
            if [ $rc = 0 ]; then
                printf '{"session_id":"stress-%s","transcript_path":"/dev/null","cwd":"%s","hook_event_name":"PostToolUse","tool_name":"Agent","tool_input":{"description":"Stress call","prompt":"call %s"},"tool_response":{"status":"completed","content":[{"type":"text","text":"done"}]},"tool_use_id":"%s","duration_ms":5}' \
                    "$i" "$work" "$call" "$call" | orch-hook PostToolUse >/dev/null 2>>"$base.err"
                rc=$?
            fi
            ops=$((ops + 2))
            if [ $rc = 0 ]; then echo "$call" >>"$base.ok"; else echo "orch-hook: exit $rc" >>"$base.fail"; fi
            ;;
        esac
    done
    echo "$ops" >"$base.ops"
}

nkinds=${#kinds[@]}
echo "orch stress: $procs processes for ${seconds} s on one database (writers: ${kinds[*]})"
start=$(now_ms)
pids=()
for i in $(seq 1 "$procs"); do
    writer "${kinds[$(((i - 1) % nkinds))]}" "$i" &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
elapsed=$(($(now_ms) - start))

# Drain the mailboxes so that every message sent has had its chance.
if [[ " ${kinds[*]} " == *" msg-send "* ]]; then
    : >"$work/log/msg-recv.drain.ok"
    for m in m0 m1 m2; do
        while out=$(orch-msg recv --as "$m" --json 2>>"$work/log/msg-recv.drain.err"); do
            printf '%s\n' "$out" >>"$work/log/msg-recv.drain.ok"
        done
    done
fi

# The views for people show the stored control characters escaped; reads on
# a missing database say so and make nothing. Problems go to views.bad.
: >"$work/log/views.bad"
for v in "orch-queue list" "orch-queue show 1" "orch-batch list" "orch-batch show 1" \
    "orch-msg list" "orch-verify session" "orch status"; do
    $v >"$work/log/view.out" 2>&1
    if LC_ALL=C grep -q $'[\x01-\x08\x0b-\x1f\x7f]' "$work/log/view.out"; then
        echo "$v: raw control characters reached the terminal" >>"$work/log/views.bad"
    fi
done
for v in "orch-queue list" "orch-queue show 1" "orch-queue stats" "orch-batch plan" "orch-batch list" \
    "orch-batch show 1" "orch-emit 1" "orch-verify report 1" "orch-verify session" "orch-msg list"; do
    ORCH_DB=$work/missing/sub/orch.db $v >/dev/null 2>"$work/log/view.out"
    rc=$?
    if [ $rc != 2 ] || ! grep -q "no database at" "$work/log/view.out"; then
        echo "$v on a missing database: exit $rc, not 'no database at'" >>"$work/log/views.bad"
    fi
    if [ -e "$work/missing" ]; then
        echo "$v on a missing database created $work/missing" >>"$work/log/views.bad"
        rm -rf "$work/missing"
    fi
done

python3 - "$work" "$elapsed" "$procs" <<'EOF'
import glob, json, os, re, sqlite3, sys
from collections import Counter, defaultdict

work, elapsed_ms, procs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
log = os.path.join(work, "log")
bad = []

def files(kind, ext):
    return sorted(glob.glob(os.path.join(log, f"{kind}.*.{ext}")))

def lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return [l.rstrip("\n") for l in f if l.strip()]

def check(ok, what, detail=""):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}{(': ' + detail) if detail and not ok else ''}")
    if not ok:
        bad.append(what)

ops = Counter()
for p in glob.glob(os.path.join(log, "*.ops")):
    ops[os.path.basename(p).split(".")[0]] += int(open(p).read().strip() or 0)
total = sum(ops.values())
secs = elapsed_ms / 1000
print(f"load held: {total} operations in {secs:.1f} s = {total / secs:.0f} ops/s across {procs} processes")
for k, v in sorted(ops.items()):
    print(f"  {k:<10} {v:>7} ops  {v / secs:7.0f}/s")

db = sqlite3.connect(os.path.join(work, "stress.db"))
print("invariants:")

# Every process exited as expected.
fails = [l for p in glob.glob(os.path.join(log, "*.fail")) for l in lines(p)]
check(not fails, "every command exited 0 (or 1 where 1 means 'nothing to do')", "; ".join(fails[:5]))

# No lock error reached a user.
locked = [l for p in glob.glob(os.path.join(log, "*.err")) for l in lines(p)
          if re.search(r"locked|busy", l, re.I)]
check(not locked, "zero 'database is locked'/busy messages on any stderr", "; ".join(locked[:5]))
panics = [l for p in glob.glob(os.path.join(log, "*.err")) for l in lines(p)
          if re.search(r"panicked|stack backtrace", l)]
check(not panics, "no panic on any stderr", "; ".join(panics[:5]))

# Tasks: acknowledged == stored, none lost, none invented.
acked = [int(l) for p in files("add", "ok") for l in lines(p)]
stored = {r[0] for r in db.execute("SELECT id FROM tasks")}
missing = set(acked) - stored
check(not missing, f"no acknowledged task missing ({len(acked)} acknowledged)", f"{len(missing)} missing, e.g. {sorted(missing)[:5]}")
check(len(acked) == len(set(acked)), "no task id handed out twice")
extra = stored - set(acked)
check(not extra, f"no task stored that was not acknowledged ({len(stored)} stored)", f"{len(extra)} extra")

# Batches: each task claimed by at most one batch; the DB agrees with what was printed.
claimed = defaultdict(list)
batches = {}
for p in files("batch", "ok"):
    for l in lines(p):
        b = json.loads(l)
        batches[b["id"]] = [t["id"] for t in b["tasks"]]
        for t in b["tasks"]:
            claimed[t["id"]].append(b["id"])
twice = {t: bs for t, bs in claimed.items() if len(bs) > 1}
check(not twice, f"no task in two batches ({len(batches)} batches, {len(claimed)} tasks claimed)", str(list(twice.items())[:5]))
in_db = defaultdict(set)
for tid, bid in db.execute("SELECT id, batch_id FROM tasks WHERE batch_id IS NOT NULL"):
    in_db[bid].add(tid)
db_batches = {r[0] for r in db.execute("SELECT id FROM batches")}
check(db_batches == set(batches), "every batch in the database was acknowledged to its creator, and vice versa",
      f"db-only {sorted(db_batches - set(batches))[:5]}, printed-only {sorted(set(batches) - db_batches)[:5]}")
mismatch = [b for b, ts in batches.items() if set(ts) != in_db.get(b, set())]
check(not mismatch, "each batch holds exactly the tasks its creator printed", str(mismatch[:5]))
unbatched = db.execute("SELECT count(*) FROM tasks WHERE status != 'queued' AND batch_id IS NULL").fetchone()[0]
check(unbatched == 0, "no task left the queue without a batch", f"{unbatched} tasks")
unemitted = db.execute("SELECT count(*) FROM batches WHERE emitted_at IS NULL").fetchone()[0]
check(unemitted == 0, "every batch was marked emitted", f"{unemitted} not emitted")

# Messages (orch-msg): every acknowledged message delivered exactly once.
sent = [int(l) for p in files("msg-send", "ok") for l in lines(p)]
if files("msg-send", "ok"):
    got = Counter(json.loads(l)["id"] for p in files("msg-recv", "ok") for l in lines(p))
    lost = [m for m in sent if got[m] == 0]
    check(not lost, f"no acknowledged message missing ({len(sent)} sent)", str(lost[:5]))
    dup = [m for m, c in got.items() if c > 1]
    check(not dup, f"no message delivered twice ({sum(got.values())} received)", str(dup[:5]))

# Probes (orch-verify): every acknowledged probe recorded its start and end.
if files("probe", "ok"):
    probes = Counter(int(l) for p in files("probe", "ok") for l in lines(p))
    have = Counter(r for (r,) in db.execute(
        "SELECT run_id FROM verify_probes WHERE started_at IS NOT NULL AND finished_at IS NOT NULL"))
    lost = [r for r, n in probes.items() if have[r] < n]
    check(not lost, f"every acknowledged probe recorded its start and end ({sum(probes.values())} probes)", str(lost[:5]))

# Hook events (orch-hook): every acknowledged agent call recorded once, with its end.
if files("hook", "ok"):
    calls = [l for p in files("hook", "ok") for l in lines(p)]
    have = Counter(r[0] for r in db.execute("SELECT call_id FROM agent_calls WHERE finished_at IS NOT NULL"))
    lost = [c for c in calls if have[c] != 1]
    check(not lost, f"every acknowledged agent call recorded once with its end ({len(calls)} calls)", str(lost[:5]))

views = lines(os.path.join(log, "views.bad"))
check(not views, "views for people show control characters escaped; reads on a missing database make nothing",
      "; ".join(views[:5]))

ic = db.execute("PRAGMA integrity_check").fetchall()
check(ic == [("ok",)], "PRAGMA integrity_check = ok", str(ic[:3]))
fk = db.execute("PRAGMA foreign_key_check").fetchall()
check(not fk, "PRAGMA foreign_key_check finds nothing", str(fk[:3]))

if bad:
    print(f"stress: {len(bad)} invariant(s) violated")
    sys.exit(1)
print("stress: all invariants hold")
EOF
