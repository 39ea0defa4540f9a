#!/usr/bin/env bash
# Builds orch in release mode and installs every orch binary into
# ~/.local/bin (or $PREFIX/bin). With --demo, then runs the main job once:
# queues three example tasks, batches them and prints the message to paste.
set -euo pipefail
cd "$(dirname "$0")"

demo=false
for arg in "$@"; do
  case "$arg" in
    --demo) demo=true ;;
    -h|--help) sed -n '2,4s/^# \{0,1\}//p' "$0"; exit 0 ;;
    *) echo "install.sh: error: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: error: cargo not found; install a Rust toolchain (https://rustup.rs) and try again" >&2
  exit 2
fi

prefix=${PREFIX:-$HOME/.local}
bindir=$prefix/bin
bins=$(sed -n '/^\[\[bin\]\]/{n;s/^name = "\(.*\)"/\1/p;}' Cargo.toml)

echo "building orch (release)..." >&2
cargo build --release --locked --quiet
mkdir -p "$bindir"
n=0
for b in $bins; do
  install -m 0755 "target/release/$b" "$bindir/$b"
  n=$((n + 1))
done
echo "installed $n binaries into $bindir: $(echo $bins | tr '\n' ' ')" >&2
case ":$PATH:" in
  *":$bindir:"*) ;;
  *) echo "warning: $bindir is not on your PATH; add it:  export PATH=\"$bindir:\$PATH\"" >&2 ;;
esac

if $demo; then
  echo >&2
  echo "demo: queueing three example tasks, batching them, printing the message to paste into Claude Code" >&2
  "$bindir/orch-queue" where >&2
  "$bindir/orch-queue" add Explore -d 'Map the project layout' 'List the top-level directories of this project and say in one sentence what each is for.' >/dev/null
  "$bindir/orch-queue" add general-purpose -d 'Find TODO comments' 'Find every TODO or FIXME comment in this project and list them with file and line.' >/dev/null
  "$bindir/orch-queue" add Plan -d 'Plan a test for main' 'Propose, without writing any file, one test that would have caught the last bug fixed in this project.' >/dev/null
  "$bindir/orch-batch" create | "$bindir/orch-emit"
fi
