#!/usr/bin/env bash
# How fast `offsnap browse` lists a large snapshot's top folder.
#
# Usage: bench/browse.sh [--files N] [--bin DIR] [--runs R] [--keep]
#   --files N   files in the snapshot (default 100000), in 100 folders under one top folder
#   --bin DIR   take offsnap from DIR (default: target/release, built if missing)
#   --runs R    timed requests after the first (default 10)
#   --keep      keep the working directory
#
# Makes the tree, backs it up to a local destination, starts
# `offsnap browse --no-open`, then times (curl's time_total) GET of the
# snapshot's top folder page: the first request (the manifest is fetched
# from the helper and checked) and R more (read from the client's cache).
# Prints the figures as a markdown table, with the load average.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
FILES=100000 BIN="" RUNS=10 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in curl python3; do
  command -v $tool >/dev/null || { echo "bench/browse.sh needs $tool" >&2; exit 1; }
done
if [ -z "$BIN" ]; then
  BIN=$REPO/target/release
  [ -x "$BIN/offsnap" ] || (cd "$REPO" && cargo build --release -p offsnap >&2)
fi
WORK=$(mktemp -d /tmp/offsnap-browse-bench.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ "$KEEP" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
export XDG_CACHE_HOME=$WORK/cache XDG_CONFIG_HOME=$WORK/config XDG_STATE_HOME=$WORK/state

echo "making $FILES files" >&2
python3 - "$WORK/src/top" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
dirs = 100
for d in range(dirs):
    os.makedirs(f"{root}/dir{d:03}", exist_ok=True)
for i in range(n):
    with open(f"{root}/dir{i % dirs:03}/file{i:06}.txt", "w") as f:
        f.write(f"file {i}\n")
PY
echo "backing up" >&2
"$BIN/offsnap" backup --quiet --set bench "$WORK/src/top" "$WORK/dest" >/dev/null
# A fresh client cache, so that the first request fetches the manifest.
rm -rf "$WORK/cache"
"$BIN/offsnap" browse --set bench --no-open "$WORK/dest" >"$WORK/url" 2>"$WORK/browse.log" &
PID=$!
for _ in $(seq 100); do [ -s "$WORK/url" ] && break; sleep 0.1; done
URL=$(head -1 "$WORK/url")
page="${URL}snap/latest?path=top"
t() {
  curl -s -o "$WORK/page.html" -w '%{http_code} %{time_total}\n' "$page"
}
read -r code first < <(t)
[ "$code" = 200 ] || { echo "GET returned $code" >&2; exit 1; }
entries=$(grep -o 'data-path=' "$WORK/page.html" | wc -l)
[ "$entries" = 100 ] || { echo "the page lists $entries entries, not 100" >&2; exit 1; }
times=()
for _ in $(seq "$RUNS"); do
  read -r code s < <(t)
  [ "$code" = 200 ] || { echo "GET returned $code" >&2; exit 1; }
  times+=("$s")
done
stats=$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f %.3f", m, a[NR]}')
read -r median max <<<"$stats"
echo "| files in snapshot | first request (manifest fetched) | median of $RUNS (cached) | slowest | load average |"
echo "|---|---|---|---|---|"
echo "| $FILES | ${first} s | ${median} s | ${max} s | $(cut -d' ' -f1-3 /proc/loadavg) |"
