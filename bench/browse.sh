#!/usr/bin/env bash
# How fast `offsnap browse` answers on a large set: every page, at scale.
#
# Usage: bench/browse.sh [--files N] [--snapshots S] [--bin DIR] [--runs R] [--no-ssh] [--keep]
#   --files N      files in each snapshot (default 100000), in 100 folders under one top folder
#   --snapshots S  snapshots of the set (default 10); each after the first edits 1% of the files
#   --bin DIR      take offsnap and offsnap-remote from DIR (default: target/release, built if missing)
#   --runs R       timed requests of each page after the first (default 5)
#   --no-ssh       only the local destination (else also over a loopback sshd: bench/sshd.sh)
#   --keep         keep the working directory
#
# Makes the tree and its snapshots in a local destination, starts
# `offsnap browse --no-open` on it (and on the same destination through
# ssh to 127.0.0.1), and times with curl (time_total) each page: the first
# request after start (fresh client cache: manifests fetched from the
# helper) and the median of R more. Pages: the snapshot's top folder (100
# entries over N files), the root, a folder of N/100 files, the timeline,
# a file's versions, the diff of the last two snapshots, one file, and the
# top folder as a .tar (N files, checked complete with `tar t`). Prints
# markdown tables, each with the load average.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)
FILES=100000 SNAPS=10 BIN="" RUNS=5 SSH=1 KEEP=0
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift 2 ;;
    --snapshots) SNAPS=$2; shift 2 ;;
    --bin) BIN=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --no-ssh) SSH=0; shift ;;
    --keep) KEEP=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for tool in curl python3 tar; do
  command -v $tool >/dev/null || { echo "bench/browse.sh needs $tool" >&2; exit 1; }
done
if [ -z "$BIN" ]; then
  BIN=$REPO/target/release
  [ -x "$BIN/offsnap" ] && [ -x "$BIN/offsnap-remote" ] ||
    (cd "$REPO" && cargo build --release -p offsnap -p offsnap-remote >&2)
fi
WORK=$(mktemp -d /tmp/offsnap-browse-bench.XXXXXX)
PID=""
cleanup() {
  [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
  [ -f "$WORK/sshd/sshd.pid" ] && "$HERE/sshd.sh" down "$WORK/sshd" >/dev/null 2>&1 || true
  [ "$KEEP" = 1 ] && echo "kept $WORK" >&2 || rm -rf "$WORK"
}
trap cleanup EXIT
export XDG_CACHE_HOME=$WORK/cache XDG_CONFIG_HOME=$WORK/config XDG_STATE_HOME=$WORK/state

echo "making $FILES files, $SNAPS snapshots" >&2
python3 - "$WORK/src/top" "$FILES" <<'PY'
import os, sys
root, n = sys.argv[1], int(sys.argv[2])
for d in range(100):
    os.makedirs(f"{root}/dir{d:03}", exist_ok=True)
for i in range(n):
    with open(f"{root}/dir{i % 100:03}/file{i:06}.txt", "w") as f:
        f.write(f"file {i}\n")
PY
for s in $(seq "$SNAPS"); do
  if [ "$s" -gt 1 ]; then
    python3 - "$WORK/src/top" "$FILES" "$s" <<'PY'
import random, sys
root, n, day = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in random.Random(day).sample(range(n), max(1, n // 100)):
    with open(f"{root}/dir{i % 100:03}/file{i:06}.txt", "a") as f:
        f.write(f"day {day}\n")
PY
  fi
  OFFSNAP_NOW=$(printf '2026-01-%02dT10:00:00Z' "$s") \
    "$BIN/offsnap" backup --quiet --no-prune --set bench "$WORK/src/top" "$WORK/dest" >/dev/null
done

median() { sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}'; }

# serve LABEL ARGS...: times every page of `offsnap browse ARGS` and prints a table.
serve() {
  local label=$1; shift
  rm -rf "$WORK/cache" "$WORK/url"
  "$BIN/offsnap" browse --set bench --no-open "$@" >"$WORK/url" 2>"$WORK/browse.log" &
  PID=$!
  for _ in $(seq 300); do [ -s "$WORK/url" ] && break; sleep 0.1; done
  [ -s "$WORK/url" ] || { cat "$WORK/browse.log" >&2; exit 1; }
  local url; url=$(head -1 "$WORK/url")
  local last=$((FILES - 1))
  local file; file=$(printf 'top/dir%03d/file%06d.txt' $((last % 100)) "$last")
  echo
  echo "$label: $FILES files × $SNAPS snapshots, load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo
  echo "| page | first request | median of $RUNS after | answer |"
  echo "|---|---|---|---|"
  page() {  # page NAME PATH CHECK
    local name=$1 path=$2 check=$3 first code times=()
    read -r code first < <(curl -s -o "$WORK/answer" -w '%{http_code} %{time_total}\n' "$url$path")
    [ "$code" = 200 ] || { echo "$name: GET returned $code" >&2; exit 1; }
    "$check" || exit 1
    for _ in $(seq "$RUNS"); do
      read -r code s < <(curl -s -o "$WORK/answer" -w '%{http_code} %{time_total}\n' "$url$path")
      [ "$code" = 200 ] || { echo "$name: GET returned $code" >&2; exit 1; }
      times+=("$s")
    done
    echo "| $name | ${first} s | $(printf '%s\n' "${times[@]}" | median) s | $(stat -c %s "$WORK/answer") bytes |"
  }
  rows() {  # rows N: the page lists N entries
    local n; n=$(grep -o 'data-path=' "$WORK/answer" | wc -l)
    [ "$n" = "$1" ] || { echo "the page lists $n entries, not $1" >&2; return 1; }
  }
  top_rows() { rows 100; }
  root_rows() { rows 1; }
  dir_rows() { rows $((FILES / 100)); }
  snaps() {
    local n; n=$(grep -o 'data-snapshot=' "$WORK/answer" | wc -l)
    [ "$n" = $((2 * SNAPS)) ] || { echo "the timeline shows $n, not $((2 * SNAPS))" >&2; return 1; }
  }
  some() { [ -s "$WORK/answer" ]; }
  whole_tar() {
    local n; n=$(tar tf "$WORK/answer" | wc -l)
    [ "$n" = $((FILES + 101)) ] || { echo "the .tar holds $n entries, not $((FILES + 101))" >&2; return 1; }
  }
  page "top folder (100 entries)" "snap/latest?path=top" top_rows
  page "root" "snap/latest" root_rows
  page "folder of $((FILES / 100)) files" "snap/latest?path=top/dir000" dir_rows
  page "timeline" "" snaps
  page "versions of a file" "versions?path=$file" some
  page "diff latest~1 → latest" "diff" some
  page "one file" "file/latest?path=$file&download=1" some
  page ".tar of the top folder" "tar/latest?path=top" whole_tar
  echo
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  kill "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  PID=""
}

serve "local destination" "$WORK/dest"
if [ "$SSH" = 1 ]; then
  "$HERE/sshd.sh" up "$WORK/sshd" >&2
  . "$WORK/sshd/env"
  mkdir -p "$WORK/home/.ssh"
  echo "$SSH_KNOWN_HOSTS_LINE" >"$WORK/home/.ssh/known_hosts"
  HOME=$WORK/home serve "over ssh to 127.0.0.1" -p "$SSH_PORT" -i "$SSH_KEY" \
    --remote-cmd "$BIN/offsnap-remote" "$SSH_USER@127.0.0.1:$WORK/dest"
fi
