#!/usr/bin/env bash
# orch-run's overhead over an ideal parallel run: N tasks that each sleep S
# seconds (default 100 x 0.5 s), all started at once, so the ideal wall time
# is S. The same lines (`sleep 0.5`) go on stdin to each runner, and each runs
# them with `sh -c` at N at a time:
#   orch-run --stdin-lines -j N -- sh -c {prompt}   (queues, batches, runs, records)
#   xargs -P N -I{} sh -c {}
#   parallel -j N                                    (GNU parallel, if installed)
# Prints a Markdown table: mean and min wall time, and the overhead over S.
# Uses hyperfine when installed (it subtracts its shell's start-up), else
# times each run itself.
#
# Environment: N (100), S (0.5), RUNS (5), ORCH_BIN (the directory holding
# orch-run; default: target/release, then target/debug, then PATH).
set -euo pipefail
cd "$(dirname "$0")/.."

N=${N:-100}
S=${S:-0.5}
RUNS=${RUNS:-5}

if [ -z "${ORCH_BIN:-}" ]; then
    for d in target/release target/debug; do
        if [ -x "$d/orch-run" ]; then ORCH_BIN=$PWD/$d; break; fi
    done
fi
if [ -n "${ORCH_BIN:-}" ]; then
    orch_run=$ORCH_BIN/orch-run
else
    orch_run=$(command -v orch-run) || { echo "bench-run: no orch-run built or on PATH (cargo build --release)" >&2; exit 2; }
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/orch-bench-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
for _ in $(seq "$N"); do echo "sleep $S"; done > "$work/lines"

names=("orch-run -j $N" "xargs -P $N")
cmds=("ORCH_DB=$work/bench.db $orch_run --stdin-lines -j $N -- sh -c {prompt} < $work/lines"
      "xargs -P $N -I{} sh -c {} < $work/lines")
if command -v parallel >/dev/null && parallel --version 2>/dev/null | grep -q GNU; then
    names+=("GNU parallel -j $N")
    cmds+=("parallel --will-cite -j $N < $work/lines")
fi

# orch-run prints its progress on stderr; keep only a failure visible.
export ORCH_DB="$work/bench.db"

# means[i] and mins[i] in seconds.
means=()
mins=()
if command -v hyperfine >/dev/null; then
    args=()
    for i in "${!cmds[@]}"; do args+=(-n "${names[$i]}" "${cmds[$i]} 2>/dev/null"); done
    hyperfine --style none --warmup 1 --runs "$RUNS" --export-json "$work/h.json" "${args[@]}" >&2
    while read -r mean min; do means+=("$mean"); mins+=("$min"); done < <(
        python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]: print(r["mean"], r["min"])' "$work/h.json")
    how="hyperfine, $RUNS runs after 1 warm-up"
else
    for c in "${cmds[@]}"; do
        total=0 best=
        for _ in $(seq "$RUNS"); do
            t0=$(date +%s%N)
            sh -c "$c" 2>/dev/null
            t=$(( $(date +%s%N) - t0 ))
            total=$(( total + t ))
            if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
        done
        means+=("$(awk -v t="$total" -v n="$RUNS" 'BEGIN { printf "%.4f", t / n / 1e9 }')")
        mins+=("$(awk -v t="$best" 'BEGIN { printf "%.4f", t / 1e9 }')")
    done
    how="timed with date, $RUNS runs (install hyperfine for steadier figures)"
fi

echo "$N tasks of ${S} s each, $N at a time (ideal wall: ${S} s; $how; $(nproc) CPUs)"
echo
echo "| runner | mean wall | min wall | overhead over ${S} s (mean) |"
echo "|---|---|---|---|"
for i in "${!names[@]}"; do
    awk -v name="${names[$i]}" -v mean="${means[$i]}" -v min="${mins[$i]}" -v s="$S" \
        'BEGIN { printf "| %s | %.3f s | %.3f s | %+.0f ms |\n", name, mean, min, (mean - s) * 1000 }'
done
