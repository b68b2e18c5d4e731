#!/usr/bin/env bash
# offsnap vs rsync --link-dest: the same scenarios, the same data, the same loopback
# sshd, the two tools run alternately, bytes counted the same way outside both.
#
# Usage: bench/run.sh [--files N] [--big-size SIZE] [--runs R] [--work DIR] [--keep]
#                     [--raw FILE] [--no-build] [--timeout SECS]
#   --files N       files in the many-small corpus (default 20000)
#   --big-size S    size of the big file (default 1G; K/M/G suffixes; 0 skips S4/S5)
#   --runs R        repetitions of every scenario; the tables show medians (default 3)
#   --work DIR      working dir for corpora, snapshots, sshd (default: a new temp dir).
#                   Removed at the end unless --keep; must not contain spaces.
#   --keep          keep the working dir
#   --raw FILE      also copy the per-run TSV to FILE
#   --no-build      do not run `cargo build --release`; use target/release as it is
#                   (OFFSNAP_BIN_DIR=DIR: take offsnap and offsnap-remote from DIR)
#   --timeout SECS  give up on any single step after SECS (default 900)
#
# Scenarios (every run starts from freshly generated corpora and empty destinations):
#   S1 initial backup of the many-small tree     S4 initial backup of the big file
#   S2 no-change backup                          S5 big file after 1 MiB overwrite + 1 MiB append
#   S3 after mutate-small (1% + dir rename)      S6 delete the oldest many-small snapshot
# offsnap: `offsnap backup --no-prune --set small|big ... SRC root@127.0.0.1:DEST`,
#          S6 `offsnap prune --set small --keep-last 2 ...` (over ssh, through the helper)
# rsync:   `rsync -a --delete [--link-dest=../PREV] SRC localhost:DEST/snapN/`,
#          S6 `rm -rf DEST/snap1`
# Measured per step: wall time; bytes up/down = what went through the helper's
# stdin/stdout (bench/relay.py wraps the remote command: --rsync-path / --remote-cmd);
# peak RSS + CPU of the client (GNU time, max over its process tree, e.g. rsync + ssh)
# and of the helper (GNU time inside the wrapper); "sync s" = a `sync` timed right after
# the step (dirty data the step left for later; offsnap syncfs()es before committing).
# Checks (untimed): after S2/S3/S5 the newest snapshot equals the source
# (make-corpus.py digest) for both tools; after S2 no file in the new snapshot has
# link count 1; after S6 the oldest snapshot is gone (and offsnap's trash is empty).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

FILES=20000 BIG=1G RUNS=3 WORK="" KEEP=0 RAW="" BUILD=1 STEP_TIMEOUT=900
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift ;;
    --big-size) BIG=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --work) WORK=$2; shift ;;
    --keep) KEEP=1 ;;
    --raw) RAW=$2; shift ;;
    --no-build) BUILD=0 ;;
    --timeout) STEP_TIMEOUT=$2; shift ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$RUNS" in ''|*[!0-9]*|0) echo "--runs must be a positive integer" >&2; exit 2 ;; esac
case "$FILES" in ''|*[!0-9]*|0) echo "--files must be a positive integer" >&2; exit 2 ;; esac

# --- the shared harness (make-corpus.py, sshd-up.sh, sshd-down.sh) ---
SB="$HERE/../../shared/bench"
if [ ! -f "$SB/make-corpus.py" ]; then SB=${SHARED_BENCH:-}; fi
if [ -z "$SB" ] || [ ! -f "$SB/make-corpus.py" ] || [ ! -x "$SB/sshd-up.sh" ]; then
  echo "cannot find the shared bench harness (make-corpus.py, sshd-up.sh, sshd-down.sh):" >&2
  echo "looked in $HERE/../../shared/bench; set SHARED_BENCH=DIR" >&2
  exit 1
fi
SB=$(cd "$SB" && pwd)

# --- tools ---
missing=()
for c in rsync ssh ssh-keygen python3 timeout; do command -v "$c" >/dev/null || missing+=("$c"); done
[ -x "$(command -v sshd || echo /usr/sbin/sshd)" ] || missing+=("sshd (openssh-server)")
if ! [ -x /usr/bin/time ] || ! /usr/bin/time --version 2>&1 | grep -q GNU; then missing+=("/usr/bin/time (GNU time)"); fi
if [ "$BUILD" = 1 ] && [ -z "${OFFSNAP_BIN_DIR:-}" ] && ! command -v cargo >/dev/null; then missing+=("cargo"); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "missing: ${missing[*]}" >&2
  echo "on Debian: apt-get install -y --no-install-recommends rsync openssh-server openssh-client time python3 coreutils" >&2
  exit 1
fi
PY=$(python3 -c 'import sys; print(sys.executable)')   # absolute: the sshd session has a plain PATH
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || { echo "python3 >= 3.9 needed" >&2; exit 1; }

log() { echo "[$(date +%T)] $*" >&2; }

# --- binaries ---
if [ -n "${OFFSNAP_BIN_DIR:-}" ]; then
  BIN=$(cd "$OFFSNAP_BIN_DIR" && pwd)
else
  if [ "$BUILD" = 1 ]; then
    log "cargo build --release"
    (cd "$REPO" && cargo build --release --bins -p offsnap -p offsnap-remote) >&2 || {
      echo "cargo build --release failed; fix the build, or rerun with --no-build to use the binaries already in target/release" >&2
      exit 1
    }
  fi
  BIN=$(cd "${CARGO_TARGET_DIR:-$REPO/target}/release" 2>/dev/null && pwd) || BIN=""
fi
for b in offsnap offsnap-remote; do
  [ -n "$BIN" ] && [ -x "$BIN/$b" ] || { echo "no $b binary in ${BIN:-target/release} (build it, or set OFFSNAP_BIN_DIR)" >&2; exit 1; }
done

# --- work dir, sshd, cleanup ---
[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/offsnap-bench.XXXXXX")
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
case "$WORK" in *[[:space:]]*) echo "--work must not contain spaces: $WORK" >&2; exit 2 ;; esac
case "$WORK" in /|"$HOME"|"$REPO"|"$REPO"/*) echo "refusing --work $WORK" >&2; exit 2 ;; esac
cleanup() {
  local rc=$?
  if [ -f "$WORK/sshd/sshd.pid" ]; then "$SB/sshd-down.sh" "$WORK/sshd" >/dev/null 2>&1 || true; fi
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$SB/sshd-up.sh" "$WORK/sshd" > /dev/null
. "$WORK/sshd/env"
T="$WORK/t"; mkdir -p "$T/bin"
# Private copies: a rebuild of target/ during the run must not swap the binaries under it.
cp "$BIN/offsnap" "$BIN/offsnap-remote" "$T/bin/"
VERSION=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo "?")
if [ -n "$(cd "$REPO" && git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then VERSION="$VERSION+dirty"; fi
VERSION="$VERSION ($(sha256sum "$T/bin/offsnap" | cut -c1-12)/$(sha256sum "$T/bin/offsnap-remote" | cut -c1-12))"
BIN="$T/bin"
SSH="ssh -F $SSH_CONFIG"
CIPHER=$($SSH -v localhost true 2>&1 | sed -n 's/.*kex: client->server cipher: \([^ ]*\).*/\1/p' | head -1)

# offsnap reads $HOME/.ssh/known_hosts: give it a HOME of its own with the test host key.
OHOME="$T/home"; mkdir -p "$OHOME/.ssh"; chmod 700 "$OHOME/.ssh"
echo "$SSH_KNOWN_HOSTS_LINE" > "$OHOME/.ssh/known_hosts"

# The server-side wrapper: counting relay -> GNU time -> the real helper (rsync / offsnap-remote).
WRAP="$T/server-wrap"
cat > "$WRAP" <<EOF
#!/bin/sh
exec "$PY" "$HERE/relay.py" "$T/server.count" /usr/bin/time -f "%U %S %M" -o "$T/server.time" "\$@"
EOF
chmod +x "$WRAP"

NOW=2026-01-01T00:00:00Z
OFFSNAP=(env -u SSH_AUTH_SOCK HOME="$OHOME" "$BIN/offsnap")
OREMOTE=(-p "$SSH_PORT" -i "$SSH_KEY" --remote-cmd "$WRAP env OFFSNAP_NOW=$NOW $BIN/offsnap-remote")
log "work=$WORK port=$SSH_PORT files=$FILES big=$BIG runs=$RUNS offsnap=$VERSION rsync-ssh-cipher=$CIPHER"

RES="$T/results.tsv"
printf 'run\tscen\ttool\twall_s\tclient_cpu_s\thelper_cpu_s\tup_B\tdown_B\tclient_rss_KiB\thelper_rss_KiB\tsync_s\tload1\n' > "$RES"

now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", (b-a)/1e9}'; }

# measure RUN SCEN TOOL CMD...: one timed step; appends a row to $RES.
measure() {
  local run=$1 scen=$2 tool=$3; shift 3
  rm -f "$T/server.count" "$T/server.time" "$T/client.time"
  sync   # the previous step's dirty pages must not land in this one (offsnap syncfs()es)
  local t0 t1 t2 rc=0 load
  load=$(cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo -)   # other work on the machine skews everything
  t0=$(now_ns)
  timeout -k 10 "$STEP_TIMEOUT" /usr/bin/time -f '%U %S %M' -o "$T/client.time" "$@" \
    > "$T/out.log" 2> "$T/err.log" || rc=$?
  t1=$(now_ns)
  sync
  t2=$(now_ns)
  if [ "$rc" != 0 ]; then
    echo "FAILED (exit $rc): $scen $tool: $*" >&2
    tail -20 "$T/out.log" "$T/err.log" >&2
    exit 1
  fi
  local wall u s crss ccpu hcpu=- hrss=- up=- down=-
  wall=$(secs "$t0" "$t1")
  read -r u s crss < <(tail -1 "$T/client.time")
  ccpu=$(awk -v a="$u" -v b="$s" 'BEGIN{printf "%.2f", a+b}')
  if [ -s "$T/server.time" ]; then
    read -r u s hrss < <(tail -1 "$T/server.time")
    hcpu=$(awk -v a="$u" -v b="$s" 'BEGIN{printf "%.2f", a+b}')
  fi
  if [ -s "$T/server.count" ]; then read -r up down < "$T/server.count"; fi
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$run" "$scen" "$tool" "$wall" "$ccpu" "$hcpu" \
    "$up" "$down" "$crss" "$hrss" "$(secs "$t1" "$t2")" "$load" >> "$RES"
  log "$scen run$run $tool: ${wall}s load=$load up=$up down=$down rss=${crss}/${hrss}KiB cpu=$ccpu/$hcpu"
}

# One step of each tool; the order flips every step and every run, so neither tool
# always goes first (the first step after generating a corpus pays for ext4's catch-up).
FLIP=0
both() {  # both RUN SCEN OFFSNAP_FN RSYNC_FN
  if [ $((FLIP % 2)) = 0 ]; then "$3"; "$4"; else "$4"; "$3"; fi
  FLIP=$((FLIP + 1))
}

digest() { "$PY" "$SB/make-corpus.py" digest "$1" | cut -d' ' -f1; }
check_same() {  # check_same SCEN SRC_DIGEST SNAPSHOT_DIR TOOL
  local d; d=$(digest "$3")
  [ "$d" = "$2" ] || { echo "CHECK FAILED $1 $4: $3 differs from the source" >&2; exit 1; }
}
check_linked() {  # check_linked SCEN DIR TOOL
  local n total
  total=$(find "$2" -type f | wc -l)
  n=$(find "$2" -type f -links 1 | wc -l)
  [ "$n" = 0 ] && [ "$total" -gt 0 ] || { echo "CHECK FAILED $1 $3: $n of $total files in $2 are not hard-linked" >&2; exit 1; }
}
# The newest offsnap snapshot of a set, as a real path.
o_latest() { local t; t=$(readlink "$1/latest"); echo "$1/$t"; }
o_count() { find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l; }

C="$WORK/corpus" DO="$WORK/dest-offsnap" DR="$WORK/dest-rsync"
RSYNC=(rsync -a --delete -e "$SSH" --rsync-path="$WRAP rsync")

for run in $(seq "$RUNS"); do
  FLIP=$run   # S1 of run 1 starts with rsync, of run 2 with offsnap, ...
  rm -rf "$C" "$DO" "$DR"; mkdir -p "$C/big" "$DO" "$DR/small" "$DR/big"
  log "run $run: generating $FILES small files"
  "$PY" "$SB/make-corpus.py" small "$C/small" --files "$FILES" --seed 1 >&2
  SRC="$C/small"

  o_S1() { measure "$run" S1 offsnap "${OFFSNAP[@]}" backup --set small --no-prune "${OREMOTE[@]}" "$SRC" "$SSH_USER@127.0.0.1:$DO"; }
  r_S1() { measure "$run" S1 rsync "${RSYNC[@]}" "$SRC" "localhost:$DR/small/snap1/"; }
  both "$run" S1 o_S1 r_S1

  o_S2() { measure "$run" S2 offsnap "${OFFSNAP[@]}" backup --set small --no-prune "${OREMOTE[@]}" "$SRC" "$SSH_USER@127.0.0.1:$DO"; }
  r_S2() { measure "$run" S2 rsync "${RSYNC[@]}" --link-dest=../snap1 "$SRC" "localhost:$DR/small/snap2/"; }
  both "$run" S2 o_S2 r_S2
  sd=$(digest "$SRC")
  [ "$(o_count "$DO/small")" = 2 ] || { echo "CHECK FAILED S2 offsnap: expected 2 snapshots in $DO/small" >&2; ls -la "$DO/small" >&2; exit 1; }
  check_same S2 "$sd" "$(o_latest "$DO/small")/small" offsnap
  check_linked S2 "$(o_latest "$DO/small")/small" offsnap
  check_same S2 "$sd" "$DR/small/snap2/small" rsync
  check_linked S2 "$DR/small/snap2/small" rsync

  "$PY" "$SB/make-corpus.py" mutate-small "$SRC" --seed 2 >&2
  o_S3() { measure "$run" S3 offsnap "${OFFSNAP[@]}" backup --set small --no-prune "${OREMOTE[@]}" "$SRC" "$SSH_USER@127.0.0.1:$DO"; }
  r_S3() { measure "$run" S3 rsync "${RSYNC[@]}" --link-dest=../snap2 "$SRC" "localhost:$DR/small/snap3/"; }
  both "$run" S3 o_S3 r_S3
  sd=$(digest "$SRC")
  check_same S3 "$sd" "$(o_latest "$DO/small")/small" offsnap
  check_same S3 "$sd" "$DR/small/snap3/small" rsync

  OLDEST=$(find "$DO/small" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' | sort | head -1)
  o_S6() { measure "$run" S6 offsnap "${OFFSNAP[@]}" prune --set small --keep-last 2 "${OREMOTE[@]}" "$SSH_USER@127.0.0.1:$DO"; }
  r_S6() { measure "$run" S6 rsync rm -rf "$DR/small/snap1"; }
  both "$run" S6 o_S6 r_S6
  [ ! -e "$DO/small/$OLDEST" ] && [ "$(o_count "$DO/small")" = 2 ] || { echo "CHECK FAILED S6 offsnap: $OLDEST still there" >&2; ls -la "$DO/small" >&2; exit 1; }
  left=$(find "$DO/small/.offsnap/trash" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  [ "$left" = 0 ] || { echo "CHECK FAILED S6 offsnap: $left entries left in .offsnap/trash" >&2; exit 1; }
  [ ! -e "$DR/small/snap1" ] || { echo "CHECK FAILED S6 rsync: snap1 still there" >&2; exit 1; }
  rm -rf "$DO/small" "$DR/small"

  if [ "$BIG" != 0 ]; then
    log "run $run: generating the $BIG file"
    "$PY" "$SB/make-corpus.py" big "$C/big/big.bin" --size "$BIG" --seed 1 >&2
    SRC="$C/big"
    o_S4() { measure "$run" S4 offsnap "${OFFSNAP[@]}" backup --set big --no-prune "${OREMOTE[@]}" "$SRC" "$SSH_USER@127.0.0.1:$DO"; }
    r_S4() { measure "$run" S4 rsync "${RSYNC[@]}" "$SRC" "localhost:$DR/big/snap1/"; }
    both "$run" S4 o_S4 r_S4

    "$PY" "$SB/make-corpus.py" mutate-big "$C/big/big.bin" --seed 2 >&2
    o_S5() { measure "$run" S5 offsnap "${OFFSNAP[@]}" backup --set big --no-prune "${OREMOTE[@]}" "$SRC" "$SSH_USER@127.0.0.1:$DO"; }
    r_S5() { measure "$run" S5 rsync "${RSYNC[@]}" --link-dest=../snap1 "$SRC" "localhost:$DR/big/snap2/"; }
    both "$run" S5 o_S5 r_S5
    sd=$(digest "$SRC")
    check_same S5 "$sd" "$(o_latest "$DO/big")/big" offsnap
    check_same S5 "$sd" "$DR/big/snap2/big" rsync
  fi
  log "run $run: checks passed"
done
rm -rf "$C" "$DO" "$DR"

[ -z "$RAW" ] || cp "$RES" "$RAW"
"$PY" "$HERE/report.py" "$RES" "files=$FILES big=$BIG runs=$RUNS offsnap=$VERSION $(rsync --version | head -1 | cut -d' ' -f1-4) rsync-ssh-cipher=$CIPHER work=$WORK"
