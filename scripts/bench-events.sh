#!/usr/bin/env bash
# How soon a follower sees a commit: `orch-events --follow --json` runs while
# 200 tasks are added one by one; for each event, the time from its journal
# time (taken inside the writing transaction) to the moment the follower's
# line is read. Prints the median and the maximum; the target is 100 ms.
#
#   scripts/bench-events.sh [BINDIR]     # default: a release build made here
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [ -z "$bin" ]; then
    cargo build --release --quiet --bin orch-queue --bin orch-events
    bin=$(pwd)/target/release
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$bin" "$work/bench.db" <<'PY'
import json, os, random, statistics, subprocess, sys, time
bindir, db = sys.argv[1], sys.argv[2]
env = dict(os.environ, ORCH_DB=db)
f = subprocess.Popen([f"{bindir}/orch-events", "--follow", "--json"], env=env, stdout=subprocess.PIPE, text=True)
time.sleep(0.3)
lat = []
for i in range(200):
    subprocess.run([f"{bindir}/orch-queue", "add", "dev", f"bench {i}"], env=env, check=True, capture_output=True)
    line = f.stdout.readline()
    seen = time.time() * 1000
    ev = json.loads(line)
    at = time.mktime(time.strptime(ev["at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + int(ev["at"][20:23]) / 1000
    lat.append(seen - at * 1000)
    time.sleep(random.uniform(0, 0.03))
f.kill()
med, mx = statistics.median(lat), max(lat)
ok = "ok" if mx <= 100 else "MISSED"
print(f"{'follow latency (200 commits)':<40} {med:>9.1f} ms  {'median':<8} max {mx:.1f} ms  target <= 100 ms  {ok}")
PY
