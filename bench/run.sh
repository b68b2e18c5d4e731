#!/usr/bin/env bash
# offsnap against rsync --link-dest, restic and borg: the same scenarios, the same data,
# the same loopback sshd, the tools run alternately, bytes counted the same way outside
# every tool. Everything it needs is in this directory; it installs nothing.
#
# Usage: bench/run.sh [--files N] [--max-size S] [--big-size SIZE] [--runs R] [--tools LIST]
#                     [--clients N] [--client-files N] [--work DIR] [--keep]
#                     [--raw FILE] [--no-build] [--timeout SECS]
#   --files N         files in the many-small corpus (default 20000)
#   --max-size S      largest small file (default 16K; sizes are max * u^2)
#   --big-size S      size of the big file (default 1G; K/M/G suffixes; 0 skips S4/S5)
#   --runs R          repetitions of every scenario; tables show medians (default 3)
#   --tools LIST      comma-separated, from offsnap,rsync,restic,borg (default: all four)
#   --clients N       clients of the many-clients scenario M8 (default 8; 0 skips it)
#   --client-files N  files of each client's set in M8 (default: FILES / clients)
#   --work DIR        working dir (default: a new temp dir); removed unless --keep
#   --keep            keep the working dir
#   --raw FILE        also copy the per-run TSV to FILE
#   --no-build        do not run `cargo build --release`; use target/release as it is
#                     (OFFSNAP_BIN_DIR=DIR: take offsnap and offsnap-remote from DIR)
#   --timeout SECS    give up on any single step after SECS (default 1800)
#
# Scenarios (every run starts from freshly generated corpora and empty destinations):
#   S1 initial backup of the many-small tree     S4 initial backup of the big file
#   S2 no-change backup                          S5 big file: 1 MiB overwritten + 1 MiB appended
#   S3 after mutate-small (1% + dir rename)      S6 delete the oldest many-small snapshot
#   S7 big file, the next day: the same kind of change again
#   F  floors: stat all + link all of the S2 tree; ssh `cat >/dev/null` of the big file
#   M8 N clients back up N different sets into one destination at once, against the
#      same N backups one after another (offsnap only)
# Needs (Debian): python3 openssh-server openssh-client time coreutils rsync, plus
# restic + openssh-sftp-server and borgbackup when those tools are measured.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

FILES=20000 MAX_SIZE=16K BIG=1G RUNS=3 WORK="" KEEP=0 RAW="" BUILD=1 STEP_TIMEOUT=1800
TOOLS_ARG=offsnap,rsync,restic,borg CLIENTS=8 CLIENT_FILES=""
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift ;;
    --max-size) MAX_SIZE=$2; shift ;;
    --big-size) BIG=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --tools) TOOLS_ARG=$2; shift ;;
    --clients) CLIENTS=$2; shift ;;
    --client-files) CLIENT_FILES=$2; shift ;;
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
for v in RUNS FILES; do
  case "${!v}" in ''|*[!0-9]*|0) echo "--${v,,} must be a positive integer" >&2; exit 2 ;; esac
done
case "$CLIENTS" in ''|*[!0-9]*) echo "--clients must be a number" >&2; exit 2 ;; esac
TOOLS=$(echo "$TOOLS_ARG" | tr ',' ' ')
for t in $TOOLS; do case "$t" in offsnap|rsync|restic|borg) ;; *) echo "unknown tool: $t" >&2; exit 2 ;; esac; done
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }
has_tool offsnap || { echo "--tools must include offsnap" >&2; exit 2; }
[ -n "$CLIENT_FILES" ] || CLIENT_FILES=$(( CLIENTS > 0 ? FILES / CLIENTS : 0 ))
[ "$CLIENTS" = 0 ] || [ "$CLIENT_FILES" -gt 0 ] || { echo "--client-files must be positive" >&2; exit 2; }

. "$HERE/lib.sh"
need_packages

[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/offsnap-bench.XXXXXX")
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
case "$WORK" in *[[:space:]]*) echo "--work must not contain spaces: $WORK" >&2; exit 2 ;; esac
case "$WORK" in /|"$HOME"|"$REPO"|"$REPO"/*) echo "refusing --work $WORK" >&2; exit 2 ;; esac
cleanup() {
  local rc=$?
  stop_sshd
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T="$WORK/t"; mkdir -p "$T"
find_binaries "$BUILD" "$REPO"
start_sshd
log "work=$WORK port=$SSH_PORT files=$FILES big=$BIG runs=$RUNS tools=$TOOLS offsnap=$VERSION ssh-cipher=$CIPHER"

RES="$T/results.tsv"
printf "run\tscen\ttool\t$MEASURE_COLS\n" > "$RES"

# One step of each tool; the order rotates every step and every run, so no tool
# always goes first (the first step after generating a corpus pays ext4's catch-up).
FLIP=0
each_tool() {  # each_tool SCEN: calls SCEN_TOOL for every tool
  local list=($TOOLS) n i
  n=${#list[@]}
  for i in $(seq 0 $((n - 1))); do
    "$1_${list[$(( (i + FLIP) % n ))]}"
  done
  FLIP=$((FLIP + 1))
}

check_same() {  # check_same SCEN SRC_DIGEST DIR TOOL
  local d; d=$(digest "$3")
  [ "$d" = "$2" ] || die "CHECK FAILED $1 $4: $3 differs from the source"
}
check_linked() {  # check_linked SCEN DIR TOOL: every file hard-linked to the previous snapshot
  local n total
  total=$(find "$2" -type f | wc -l)
  n=$(find "$2" -type f -links 1 | wc -l)
  [ "$n" = 0 ] && [ "$total" -gt 0 ] || die "CHECK FAILED $1 $3: $n of $total files in $2 are not hard-linked"
}
o_latest() { local t; t=$(readlink "$1/latest"); echo "$1/$t"; }
o_count() { find "$1" -mindepth 1 -maxdepth 1 -type d ! -name '.*' | wc -l; }
restored() {  # restored TOOL REPO WHAT: restores the newest snapshot into $T/restore, prints the dir
  rm -rf "$T/restore"; mkdir -p "$T/restore"
  case "$1" in
    restic) restic_cmd "$2" restore latest --target "$T/restore"; "${R[@]}" >&2 ;;
    borg) borg_cmd extract "ssh://localhost$2::$(last_borg "$2")"; (cd "$T/restore" && "${R[@]}" >&2) ;;
  esac
  echo "$T/restore/$3"
}
last_borg() { borg_cmd list --short "ssh://localhost$1"; "${R[@]}" | tail -1; }
check_tool() {  # check_tool SCEN TOOL WHAT SRC_DIGEST: the newest snapshot equals the source
  case "$2" in
    offsnap) check_same "$1" "$4" "$(o_latest "$DO/$3")/$3" offsnap ;;
    rsync) check_same "$1" "$4" "$DR/$3/$(ls "$DR/$3" | sort | tail -1)/$3" rsync ;;
    restic) check_same "$1" "$4" "$(restored restic "$DRE/$3" "$3")" restic ;;
    borg) check_same "$1" "$4" "$(restored borg "$DB/$3" "$3")" borg ;;
  esac
}
check_all() {  # check_all SCEN WHAT: every tool's newest snapshot of WHAT equals the source
  local sd t; sd=$(digest "$C/$2")
  for t in $TOOLS; do check_tool "$1" "$t" "$2" "$sd"; done
}

C="$WORK/corpus" DO="$WORK/dest-offsnap" DR="$WORK/dest-rsync" DRE="$WORK/dest-restic" DB="$WORK/dest-borg"

# backup_step SCEN WHAT SNAPNO: the SCEN_TOOL functions for one backup of $C/WHAT.
define_backup() {
  local scen=$1 what=$2 n=$3 prev=$(( $3 - 1 ))
  local link=""; [ "$prev" -ge 1 ] && link="--link-dest=../snap$prev"
  eval "${scen}_offsnap() { o_cmd backup --set $what --no-prune \"$C/$what\" \"$SSH_USER@127.0.0.1:$DO\"; measure \"\$run $scen offsnap\" \"$DO/$what\" \"\${O[@]}\"; }"
  eval "${scen}_rsync() { RSYNC_BASE; measure \"\$run $scen rsync\" \"$DR/$what\" \"\${R[@]}\" $link \"$C/$what\" \"localhost:$DR/$what/snap$n/\"; }"
  eval "${scen}_restic() { restic_cmd \"$DRE/$what\" backup --host bench $what; measure \"\$run $scen restic\" \"$DRE/$what\" env -C \"$C\" \"\${R[@]}\"; }"
  eval "${scen}_borg() { borg_cmd create --compression lz4 \"ssh://localhost$DB/$what::s$n\" $what; measure \"\$run $scen borg\" \"$DB/$what\" env -C \"$C\" \"\${R[@]}\"; }"
}
init_repos() {  # init_repos WHAT: empty destinations for every tool (untimed, as a user does once)
  mkdir -p "$DO" "$DR/$1" "$DRE" "$DB"
  if has_tool restic; then restic_cmd "$DRE/$1" init; "${R[@]}" > /dev/null; fi
  if has_tool borg; then borg_cmd init --encryption repokey "ssh://localhost$DB/$1"; "${R[@]}" > /dev/null 2>&1 ||
    { "${R[@]}"; die "borg init failed"; }; fi
}

S6_offsnap() { o_cmd prune --set small --keep-last 2 "$SSH_USER@127.0.0.1:$DO"; measure "$run S6 offsnap" "$DO/small" "${O[@]}"; }
S6_rsync() { measure "$run S6 rsync" "$DR/small" rm -rf "$DR/small/snap1"; }
S6_restic() { restic_cmd "$DRE/small" forget --keep-last 2 --prune; measure "$run S6 restic" "$DRE/small" "${R[@]}"; }
# borg prune + compact are one step: a small script runs both.
S6_borg() {
  borg_cmd prune --keep-last 2 "ssh://localhost$DB/small"; printf '%q ' "${R[@]}" > "$T/borg-s6.sh"; echo '&&' >> "$T/borg-s6.sh"
  borg_cmd compact "ssh://localhost$DB/small"; printf '%q ' "${R[@]}" >> "$T/borg-s6.sh"
  measure "$run S6 borg" "$DB/small" sh "$T/borg-s6.sh"
}
check_s6() {
  local oldest=$1 n
  [ ! -e "$DO/small/$oldest" ] && [ "$(o_count "$DO/small")" = 2 ] || die "CHECK FAILED S6 offsnap: $oldest still there"
  n=$(find "$DO/small/.offsnap/trash" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
  [ "$n" = 0 ] || die "CHECK FAILED S6 offsnap: $n entries left in .offsnap/trash"
  if has_tool rsync; then [ ! -e "$DR/small/snap1" ] || die "CHECK FAILED S6 rsync: snap1 still there"; fi
  if has_tool restic; then
    restic_cmd "$DRE/small" snapshots --json
    n=$("${R[@]}" | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)))')
    [ "$n" = 2 ] || die "CHECK FAILED S6 restic: $n snapshots left"
  fi
  if has_tool borg; then
    borg_cmd list --short "ssh://localhost$DB/small"; n=$("${R[@]}" | wc -l)
    [ "$n" = 2 ] || die "CHECK FAILED S6 borg: $n archives left"
  fi
}

# Floors on this machine: what no backup of these trees can beat.
floor_row() { printf '%s\t%s\tfloor\t%s\t-\t-\t-\t-\t-\t-\t-\t%s\t-\n' "$run" "$1" "$2" "$3" >> "$RES"; log "$1 floor: $2 s load=$3"; }
timed() { local l t0 t1; sync; l=$(load1); t0=$(now_ns); "$@"; t1=$(now_ns); echo "$(secs "$t0" "$t1") $l"; }
floors_small() {
  local s l
  find "$C/small" -printf '%s %T@ %i %n\n' > /dev/null   # warm, as the backups see it
  read -r s l < <(timed sh -c 'find "$0" -printf "%s %T@ %i %n\n" > /dev/null' "$C/small"); floor_row F-stat "$s" "$l"
  read -r s l < <(timed cp -al "$C/small" "$WORK/floor-link"); floor_row F-link "$s" "$l"
  rm -rf "$WORK/floor-link"
}
floors_big() {
  local s l c
  cat "$C/big/big.bin" > /dev/null
  for c in aes256-gcm@openssh.com chacha20-poly1305@openssh.com; do
    read -r s l < <(timed sh -c '$0 -c "$1" localhost "cat > /dev/null" < "$2"' "$SSH" "$c" "$C/big/big.bin")
    floor_row "F-ssh-${c%%@*}" "$s" "$l"
  done
}

# M8: CLIENTS clients, one set each, into one destination: at once and one after another.
many_clients() {
  local m="$WORK/many" i order mode t0 t1 l pids rc
  rm -rf "$m"; mkdir -p "$m/src"
  for i in $(seq "$CLIENTS"); do
    "$PY" "$HERE/corpus.py" small "$m/src/c$i" --files "$CLIENT_FILES" --seed $((100 + i)) > /dev/null
  done
  if [ $((run % 2)) = 1 ]; then order="parallel serial"; else order="serial parallel"; fi
  for mode in $order; do
    mkdir -p "$m/dest-$mode"; rm -f "$T"/srv/*
    sync; l=$(load1); t0=$(now_ns); pids=()
    for i in $(seq "$CLIENTS"); do
      o_cmd backup --set "c$i" --no-prune "$m/src/c$i" "$SSH_USER@127.0.0.1:$m/dest-$mode"
      if [ "$mode" = parallel ]; then
        /usr/bin/time -f '%M' -o "$m/c$i.$mode.time" "${O[@]}" > "$m/c$i.$mode.log" 2>&1 & pids+=($!)
      else
        /usr/bin/time -f '%M' -o "$m/c$i.$mode.time" "${O[@]}" > "$m/c$i.$mode.log" 2>&1 || die "M8 $mode client $i failed: $(tail -5 "$m/c$i.$mode.log")"
      fi
    done
    rc=0
    for i in "${!pids[@]}"; do wait "${pids[$i]}" || { rc=1; echo "M8 parallel client $((i + 1)) failed: $(tail -5 "$m/c$((i + 1)).$mode.log")" >&2; }; done
    [ "$rc" = 0 ] || die "CHECK FAILED M8: not every client completed"
    t1=$(now_ns); sync
    local crss; crss=$(cat "$m"/c*."$mode".time | grep -E '^[0-9]+$' | sort -n | tail -1)
    read -r up down hcpu hrss < <(server_figures)
    printf '%s\tM8-%s\toffsnap\t%s\t-\t%s\t%s\t%s\t%s\t%s\t-\t%s\t%s\n' "$run" "$mode" "$(secs "$t0" "$t1")" "$hcpu" "$up" "$down" \
      "$crss" "$hrss" "$l" "$(du_bytes "$m/dest-$mode")" >> "$RES"
    log "M8 $mode, $CLIENTS clients x $CLIENT_FILES files: $(secs "$t0" "$t1")s load=$l"
  done
  # Every client's snapshot verifies and equals its source (untimed).
  for mode in parallel serial; do
    for i in $(seq "$CLIENTS"); do
      o_cmd verify --set "c$i" "$SSH_USER@127.0.0.1:$m/dest-$mode"
      "${O[@]}" > "$m/verify.log" 2>&1 || die "CHECK FAILED M8 $mode: offsnap verify of set c$i: $(tail -5 "$m/verify.log")"
      [ "$(digest "$(o_latest "$m/dest-$mode/c$i")/c$i")" = "$(digest "$m/src/c$i")" ] ||
        die "CHECK FAILED M8 $mode: set c$i differs from its source"
    done
  done
  rm -rf "$m"
}

for run in $(seq "$RUNS"); do
  FLIP=$run
  rm -rf "$C" "$DO" "$DR" "$DRE" "$DB" "$OHOME/.cache"; mkdir -p "$C/big"
  log "run $run: generating $FILES small files"
  "$PY" "$HERE/corpus.py" small "$C/small" --files "$FILES" --max-size "$MAX_SIZE" --seed 1 >&2
  init_repos small

  define_backup S1 small 1; each_tool S1
  define_backup S2 small 2; each_tool S2
  check_all S2 small
  [ "$(o_count "$DO/small")" = 2 ] || die "CHECK FAILED S2 offsnap: expected 2 snapshots in $DO/small"
  check_linked S2 "$(o_latest "$DO/small")/small" offsnap
  if has_tool rsync; then check_linked S2 "$DR/small/snap2/small" rsync; fi
  floors_small

  "$PY" "$HERE/corpus.py" mutate-small "$C/small" --seed 2 >&2
  define_backup S3 small 3; each_tool S3
  check_all S3 small

  OLDEST=$(find "$DO/small" -mindepth 1 -maxdepth 1 -type d ! -name '.*' -printf '%f\n' | sort | head -1)
  each_tool S6
  check_s6 "$OLDEST"
  rm -rf "$DO/small" "$DR/small" "$DRE/small" "$DB/small"

  if [ "$BIG" != 0 ]; then
    log "run $run: generating the $BIG file"
    "$PY" "$HERE/corpus.py" big "$C/big/big.bin" --size "$BIG" --seed 1 >&2
    init_repos big
    define_backup S4 big 1; each_tool S4
    floors_big
    "$PY" "$HERE/corpus.py" mutate-big "$C/big/big.bin" --seed 2 >&2
    define_backup S5 big 2; each_tool S5
    check_all S5 big
    # The next day, the same kind of change again: a tool that keeps what it
    # learnt of the file (offsnap's kept signature) no longer reads its base.
    "$PY" "$HERE/corpus.py" mutate-big "$C/big/big.bin" --seed 3 >&2
    define_backup S7 big 3; each_tool S7
    check_all S7 big
    rm -rf "$DO/big" "$DR/big" "$DRE/big" "$DB/big"
  fi
  rm -rf "$C"
  if [ "$CLIENTS" -gt 0 ]; then many_clients; fi
  log "run $run: checks passed"
done

[ -z "$RAW" ] || cp "$RES" "$RAW"
"$PY" "$HERE/report.py" "$RES" "files=$FILES big=$BIG runs=$RUNS clients=${CLIENTS}x$CLIENT_FILES offsnap=$VERSION $(rsync --version | head -1 | cut -d' ' -f1-4) $(restic version 2>/dev/null | cut -d' ' -f1-2) $(borg --version 2>/dev/null) ssh-cipher(OpenSSH)=$CIPHER"
