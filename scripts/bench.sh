#!/usr/bin/env bash
# Benchmarks, side by side, in one run (release build, made here):
#   - per-invocation latency of `orch-queue add` vs a Python script doing the
#     same insert with the standard sqlite3 module vs the sqlite3 CLI vs /bin/true;
#   - `orch-queue add` with 100 000 tasks already queued;
#   - 200 concurrent adds while 5 batchers loop (wall time, lost, double, errors);
#   - 100 000 tasks through `add --stdin`;
#   - `orch-batch create --max 1000` and `orch-emit` of the 1 000-task batch;
#   - `orch-batch plan` over 100 000 independent tasks and over a 100 000-step chain;
#   - peak memory (max RSS) of each binary on these workloads;
#   - how soon `orch-events --follow` sees a commit (scripts/bench-events.sh);
# then scripts/bench-limits.sh (slot claim + release through orch-hook; the batcher with 1 000
# tasks waiting for a retry), scripts/bench-run.sh and scripts/bench-land.sh
# (landing 50 branches, worktree cost per task) when they exist. Prints one table with the targets.
#
#   scripts/bench.sh [--quick]      # --quick: fewer runs, 10 000 instead of 100 000
#
# Needs hyperfine (installed with apt-get when missing and run as root),
# python3, sqlite3 and GNU time (/usr/bin/time).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

big=100000
runs=200
if [ "${1:-}" = "--quick" ]; then big=10000; runs=50; fi

need() { command -v "$1" >/dev/null 2>&1; }
if ! need hyperfine; then
    if [ "$(id -u)" = 0 ] && need apt-get; then
        echo "bench: installing hyperfine with apt-get" >&2
        apt-get install -y -qq hyperfine >/dev/null || { apt-get update -qq && apt-get install -y -qq hyperfine >/dev/null; }
    else
        echo "bench: error: hyperfine is needed (apt-get install hyperfine, or cargo install hyperfine)" >&2
        exit 2
    fi
fi
for t in python3 sqlite3 /usr/bin/time; do
    need "$t" || { echo "bench: error: $t is needed" >&2; exit 2; }
done

# The interpreter itself, not a version-manager shim in front of it.
py=$(python3 -c 'import sys; print(sys.executable)')

echo "bench: building release binaries" >&2
# Built as install.sh builds them: statically linked on Linux with glibc.
host=$(rustc -vV | sed -n 's/^host: //p')
case "$host" in
  *-linux-gnu)
    cargo build --release --quiet --target "$host" \
        --config "target.$host.rustflags=['-C', 'target-feature=+crt-static']"
    bin=$root/target/$host/release
    ;;
  *)
    cargo build --release --quiet
    bin=$root/target/release
    ;;
esac
export PATH=$bin:$PATH
for v in $(env | grep -o '^ORCH[A-Z_]*' || true); do unset "$v"; done

work=$(mktemp -d "${TMPDIR:-/tmp}/orch-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"
results=$work/results.tsv
: >"$results"
row() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$results"; }

# hyperfine NAME ARGS… → median and mean in ms (from its JSON export).
hf() {
    local name=$1
    shift
    hyperfine --style none --export-json "$work/$name.json" "$@" >/dev/null 2>"$work/$name.hf.err" || {
        cat "$work/$name.hf.err" >&2
        exit 2
    }
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"]; print(" ".join("%.3f" % (x["median"]*1000) for x in r))' "$work/$name.json"
}

jsonl() { # N PREFIX → JSON Lines of N tasks
    python3 -c 'import json,sys
n, p = int(sys.argv[1]), sys.argv[2]
w = sys.stdout.write
for i in range(n): w(json.dumps({"role": "dev", "prompt": f"{p} {i}: look at module {i % 97} and report"}) + "\n")' "$1" "$2"
}

cat >insert.py <<'EOF'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute("PRAGMA journal_mode = WAL")
c.execute("PRAGMA synchronous = NORMAL")
c.execute("BEGIN IMMEDIATE")
c.execute("INSERT INTO tasks (role, description, prompt, priority, created_at) VALUES (?, ?, ?, ?, ?)",
          ("dev", "Fix the flaky test", "Fix the flaky test", 0, int(time.time() * 1000)))
print(c.execute("SELECT last_insert_rowid()").fetchone()[0])
c.execute("COMMIT")
c.close()
EOF
sql_insert="PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; INSERT INTO tasks (role, description, prompt, priority, created_at) VALUES ('dev', 'Fix the flaky test', 'Fix the flaky test', 0, CAST(strftime('%s','now') AS INTEGER) * 1000); SELECT last_insert_rowid();"
for d in orch py cli full; do orch-queue --db "$work/$d.db" init >/dev/null 2>&1; done

echo "bench: per-invocation latency ($runs runs each)" >&2
out=$(hf latency -N --warmup 20 --runs "$runs" \
    "/bin/true" \
    "$bin/orch-queue --db $work/orch.db add dev 'Fix the flaky test'" \
    "$py $work/insert.py $work/py.db" \
    "sqlite3 $work/cli.db \"$sql_insert\"")
read -r t_true t_add t_py t_cli <<<"$out"

echo "bench: add with $big tasks already queued" >&2
jsonl "$big" "bulk" >bulk.jsonl
orch-queue --db "$work/full.db" add --stdin <bulk.jsonl >/dev/null
out=$(hf full -N --warmup 20 --runs "$runs" \
    "$bin/orch-queue --db $work/full.db add dev 'Fix the flaky test'" \
    "$bin/orch-queue --db $work/orch.db add dev 'Fix the flaky test'")
read -r t_add_full t_add_empty <<<"$out"

echo "bench: $big tasks through add --stdin" >&2
out=$(hf bulk --runs 5 \
    --prepare "rm -f $work/b.db $work/b.db-wal $work/b.db-shm && $bin/orch-queue --db $work/b.db init >/dev/null 2>&1" \
    "$bin/orch-queue --db $work/b.db add --stdin < $work/bulk.jsonl > /dev/null")
read -r t_bulk <<<"$out"

echo "bench: batch and emit 1 000 tasks" >&2
orch-queue --db "$work/t1.db" add --stdin < <(jsonl 1000 "emit") >/dev/null
# Templates are copied: fold the WAL into the main file first.
sqlite3 t1.db "PRAGMA wal_checkpoint(TRUNCATE)" >/dev/null
cp t1.db t2.db
orch-batch --db "$work/t2.db" create --max 1000 >/dev/null 2>&1
out=$(hf create -N --warmup 3 --runs 30 \
    --prepare "sh -c 'rm -f $work/t3.db-wal $work/t3.db-shm; cp $work/t1.db $work/t3.db'" \
    "$bin/orch-batch --db $work/t3.db create --max 1000")
read -r t_create <<<"$out"
out=$(hf emit -N --warmup 3 --runs 30 \
    "$bin/orch-emit --db $work/t2.db 1" \
    "$bin/orch-emit --db $work/t2.db 1 --format json")
read -r t_emit t_emit_json <<<"$out"

echo "bench: plan $big independent tasks and a $big-step chain" >&2
python3 - "$big" >chain.jsonl <<'EOF'
import json, sys
for i in range(int(sys.argv[1])):
    t = {"role": "dev", "prompt": f"step {i}: build on the step before", "key": f"s{i}"}
    if i:
        t["after"] = [f"s{i - 1}"]
    print(json.dumps(t))
EOF
orch-queue --db "$work/chain.db" add --stdin <chain.jsonl >/dev/null
out=$(hf plan -N --warmup 1 --runs 10 \
    "$bin/orch-batch --db $work/full.db plan" \
    "$bin/orch-batch --db $work/full.db plan --max 1" \
    "$bin/orch-batch --db $work/chain.db plan" \
    "$bin/orch-queue --db $work/chain.db list --ready")
read -r t_plan_flat t_plan_flat1 t_plan_chain t_ready_chain <<<"$out"

echo "bench: 200 concurrent adds while 5 batchers loop" >&2
mkdir conc
orch-queue --db "$work/conc.db" init >/dev/null 2>&1
touch running
for b in 1 2 3 4 5; do
    (while [ -e running ]; do
        orch-batch --db "$work/conc.db" create --max 20 --json >>"conc/b$b.out" 2>>"conc/b$b.err" || [ $? = 1 ] || echo fail >>"conc/b$b.rc"
    done) &
done
start=${EPOCHREALTIME/./}
pids=()
for i in $(seq 1 200); do
    (orch-queue --db "$work/conc.db" add dev "concurrent $i" >"conc/a$i.out" 2>"conc/a$i.err"; echo $? >"conc/a$i.rc") &
    pids+=($!)
done
wait "${pids[@]}"
t_conc=$(((${EPOCHREALTIME/./} - start) / 1000))
rm running
wait
orch-batch --db "$work/conc.db" create --max 1000 --json >>conc/b0.out 2>>conc/b0.err || true
read -r c_lost c_double c_err c_lock < <(python3 - "$work" <<'EOF'
import glob, json, os, re, sqlite3, sys
from collections import Counter
w = sys.argv[1]
acked, errors = [], 0
for i in range(1, 201):
    rc = open(f"{w}/conc/a{i}.rc").read().strip()
    if rc == "0":
        acked.append(int(open(f"{w}/conc/a{i}.out").read()))
    else:
        errors += 1
errors += sum(1 for _ in glob.glob(f"{w}/conc/*.rc") if not _.split("/")[-1].startswith("a"))
db = sqlite3.connect(f"{w}/conc.db")
stored = {r[0] for r in db.execute("SELECT id FROM tasks")}
claims = Counter()
for p in glob.glob(f"{w}/conc/b*.out"):
    for l in open(p):
        if l.strip():
            for t in json.loads(l)["tasks"]:
                claims[t["id"]] += 1
lost = len([a for a in acked if a not in stored]) + len([a for a in acked if claims[a] == 0])
double = len([t for t, c in claims.items() if c > 1])
lock = sum(1 for p in glob.glob(f"{w}/conc/*.err") for l in open(p) if re.search(r"locked|busy", l, re.I))
print(lost, double, errors, lock)
EOF
)

echo "bench: peak memory" >&2
rss() { # LABEL COMMAND… (stdin from $rss_in) → max RSS in KiB
    local label=$1
    shift
    /usr/bin/time -f '%M' -o "$work/rss" "$@" <"${rss_in:-/dev/null}" >/dev/null 2>"$work/rss.err" || true
    printf '%s\t%s\n' "$label" "$(tail -1 "$work/rss")" >>"$work/rss.tsv"
}
: >rss.tsv
rss "orch-queue add" "$bin/orch-queue" --db "$work/orch.db" add dev "Fix the flaky test"
rss "orch-queue add ($big queued)" "$bin/orch-queue" --db "$work/full.db" add dev "Fix the flaky test"
rm -f m.db*
rss_in=bulk.jsonl rss "orch-queue add --stdin ($big)" "$bin/orch-queue" --db "$work/m.db" add --stdin
rss "orch-queue stats ($big)" "$bin/orch-queue" --db "$work/full.db" stats
cp t1.db t4.db
rss "orch-batch create --max 1000" "$bin/orch-batch" --db "$work/t4.db" create --max 1000
rss "orch-emit (1 000 tasks)" "$bin/orch-emit" --db "$work/t2.db" 1
rss "orch-emit --format json (1 000)" "$bin/orch-emit" --db "$work/t2.db" 1 --format json
rss "orch --list" "$bin/orch" --list
for t in verify hook msg mcp run; do
    rss "orch-$t --help" "$bin/orch-$t" --help
done

python3 - "$work" "$big" <<EOF
import sys
w, big = sys.argv[1], int(sys.argv[2])
t_true, t_add, t_py, t_cli = $t_true, $t_add, $t_py, $t_cli
t_full, t_empty, t_bulk = $t_add_full, $t_add_empty, $t_bulk
t_create, t_emit, t_emit_json = $t_create, $t_emit, $t_emit_json
t_plan_flat, t_plan_flat1, t_plan_chain, t_ready_chain = $t_plan_flat, $t_plan_flat1, $t_plan_chain, $t_ready_chain
t_conc, lost, double, errs, lock = $t_conc, $c_lost, $c_double, $c_err, $c_lock
def verdict(ok, miss=""):
    return "ok" if ok else ("MISSED " + miss).strip()
rows = [
    ("/bin/true", f"{t_true:.2f} ms", "", ""),
    ("orch-queue add", f"{t_add:.2f} ms", "<= /bin/true + 1 ms", verdict(t_add - t_true <= 1, f"by {t_add - t_true - 1:.2f} ms")),
    ("python3 + sqlite3 module, same insert", f"{t_py:.2f} ms", "add >= 5x faster", verdict(t_py / t_add >= 5, f"({t_py / t_add:.1f}x)") + f" ({t_py / t_add:.1f}x)"),
    ("sqlite3 CLI, same insert", f"{t_cli:.2f} ms", "", f"add is {t_cli / t_add:.1f}x the speed"),
    (f"orch-queue add, {big} already queued", f"{t_full:.2f} ms", "no slower than empty", verdict(t_full <= t_empty * 1.10 + 0.1, f"({t_full:.2f} vs {t_empty:.2f} ms)") + f" (empty: {t_empty:.2f} ms)"),
    (f"add --stdin, {big} tasks", f"{t_bulk:.0f} ms", "<= 1000 ms" if big == 100000 else "", verdict(t_bulk <= 1000, f"by {t_bulk - 1000:.0f} ms") if big == 100000 else ""),
    ("orch-batch create --max 1000", f"{t_create:.2f} ms", "", ""),
    ("orch-emit, 1 000-task batch", f"{t_emit:.2f} ms", "<= 20 ms", verdict(t_emit <= 20, f"by {t_emit - 20:.2f} ms")),
    ("orch-emit --format json, 1 000 tasks", f"{t_emit_json:.2f} ms", "", ""),
    (f"orch-batch plan, {big} independent", f"{t_plan_flat:.0f} ms", "<= 1000 ms", verdict(t_plan_flat <= 1000, f"by {t_plan_flat - 1000:.0f} ms")),
    (f"orch-batch plan --max 1, {big} independent", f"{t_plan_flat1:.0f} ms", "<= 1000 ms", verdict(t_plan_flat1 <= 1000, f"by {t_plan_flat1 - 1000:.0f} ms")),
    (f"orch-batch plan, {big}-step chain", f"{t_plan_chain:.0f} ms", "<= 1000 ms", verdict(t_plan_chain <= 1000, f"by {t_plan_chain - 1000:.0f} ms")),
    (f"orch-queue list --ready, {big}-step chain", f"{t_ready_chain:.0f} ms", "", ""),
    ("200 concurrent adds + 5 batchers", f"{t_conc} ms wall", "0 lost/double/errors", verdict(lost == double == errs == lock == 0) + f" (lost {lost}, double {double}, errors {errs}, lock {lock})"),
]
print(f"{'workload':<40} {'median':>12}  {'target':<22} result")
for r in rows:
    print(f"{r[0]:<40} {r[1]:>12}  {r[2]:<22} {r[3]}")
print()
print(f"{'peak memory (max RSS)':<40} {'':>12}  {'target':<22} result")
for line in open(f"{w}/rss.tsv"):
    label, kb = line.rstrip("\n").split("\t")
    kb = int(kb or 0)
    print(f"{label:<40} {kb / 1024:>9.1f} MiB  {'< 10 MiB':<22} {verdict(kb < 10 * 1024, f'by {(kb - 10 * 1024) / 1024:.1f} MiB')}")
EOF

echo
echo "machine: $(nproc) cores, $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(free -h | awk '/^Mem:/ {print $2}') RAM, $(uname -sr)"
echo "versions: $(hyperfine --version), sqlite3 $(sqlite3 --version | cut -d' ' -f1), $(python3 --version)"

echo
"$root/scripts/bench-events.sh" "$bin"

if [ -x "$root/scripts/bench-limits.sh" ]; then
    echo
    ORCH_BIN=$bin RUNS=$([ "$runs" -lt 100 ] && echo 10 || echo 30) "$root/scripts/bench-limits.sh"
fi
if [ -x "$root/scripts/bench-run.sh" ]; then
    echo
    "$root/scripts/bench-run.sh"
fi

if [ -x "$root/scripts/bench-land.sh" ]; then
    echo
    ORCH_BIN=$bin "$root/scripts/bench-land.sh"
fi
