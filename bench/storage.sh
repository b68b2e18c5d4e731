#!/usr/bin/env bash
# The storage scenario: simulated days of a laptop workload backed up every day, the
# store's growth per day and the run time, for offsnap on ext4, XFS and btrfs,
# rsync -a --link-dest, restic and borg (each on ext4), side by side, in one run.
# Every store lives on its own loop-mounted filesystem image, so its growth is the
# filesystem's own count of used blocks (statvfs, after sync), beside du.
#
# Usage: bench/storage.sh [--days N] [--tools LIST] [--work DIR] [--keep] [--raw FILE]
#                         [--no-build] [--timeout SECS]
#   --days N       days after the first backup (default 10)
#   --tools LIST   comma-separated, from offsnap,rsync,restic,borg (default: all four;
#                  offsnap runs on ext4, XFS and btrfs)
#   --work DIR     working dir (default: a new temp dir); removed unless --keep
#   --raw FILE     also copy the per-day TSV to FILE
#   --no-build / OFFSNAP_BIN_DIR / --timeout: as for bench/run.sh
#
# Workload (bench/corpus.py laptop): day 0 makes 5,000 small files, a 256 MiB disk
# image and an empty mailbox; every later day rewrites, patches or appends to 1% of
# the small files, rewrites 16 aligned 64 KiB blocks of the image and appends 1 MiB
# to the mailbox. The floor is the bytes of content each day wrote.
# Needs root (loop mounts) and, on Debian: e2fsprogs xfsprogs btrfs-progs mount, plus
# what bench/run.sh needs. Images and mounts are removed at the end.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

DAYS=10 WORK="" KEEP=0 RAW="" BUILD=1 STEP_TIMEOUT=1800 TOOLS_ARG=offsnap,rsync,restic,borg
while [ $# -gt 0 ]; do
  case "$1" in
    --days) DAYS=$2; shift ;;
    --tools) TOOLS_ARG=$2; shift ;;
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
case "$DAYS" in ''|*[!0-9]*|0) echo "--days must be a positive integer" >&2; exit 2 ;; esac
TOOLS=$(echo "$TOOLS_ARG" | tr ',' ' ')
for t in $TOOLS; do case "$t" in offsnap|rsync|restic|borg) ;; *) echo "unknown tool: $t" >&2; exit 2 ;; esac; done

. "$HERE/lib.sh"
need_packages "mkfs.ext4=e2fsprogs" "mkfs.xfs=xfsprogs" "mkfs.btrfs=btrfs-progs" "losetup=mount" "mount=mount"
[ "$(id -u)" = 0 ] || die "bench/storage.sh needs root: it loop-mounts ext4, XFS and btrfs images"

[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/offsnap-storage.XXXXXX")
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
case "$WORK" in *[[:space:]]*) echo "--work must not contain spaces: $WORK" >&2; exit 2 ;; esac
case "$WORK" in /|"$HOME"|"$REPO"|"$REPO"/*) echo "refusing --work $WORK" >&2; exit 2 ;; esac
MOUNTED=()
cleanup() {
  local rc=$? m
  stop_sshd
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  rm -rf "$WORK/img"
  if [ "$KEEP" = 0 ]; then rm -rf "$WORK"; else echo "kept $WORK (images removed)" >&2; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

T="$WORK/t"; mkdir -p "$T"
find_binaries "$BUILD" "$REPO"
start_sshd

# Targets: NAME:FILESYSTEM:TOOL
TARGETS=()
if has_tool offsnap; then TARGETS+=(offsnap-ext4:ext4:offsnap offsnap-xfs:xfs:offsnap offsnap-btrfs:btrfs:offsnap); fi
for t in rsync restic borg; do if has_tool "$t"; then TARGETS+=("$t-ext4:ext4:$t"); fi; done
[ ${#TARGETS[@]} -gt 0 ] || die "no tool to measure"

used_bytes() { local b f s; sync; read -r b f s < <(stat -f -c '%b %f %S' "$1"); echo $(( (b - f) * s )); }
mkdir -p "$WORK/img" "$WORK/mnt"
IMG_SIZE=$(( (2048 + DAYS * 512) << 20 ))   # sparse: only what is written takes room
for tg in "${TARGETS[@]}"; do
  IFS=: read -r name fs tool <<< "$tg"
  truncate -s "$IMG_SIZE" "$WORK/img/$name.img"
  case "$fs" in
    ext4) mkfs.ext4 -q -F "$WORK/img/$name.img" ;;
    xfs) mkfs.xfs -q -f "$WORK/img/$name.img" ;;
    btrfs) mkfs.btrfs -q -f "$WORK/img/$name.img" > /dev/null ;;
  esac
  mkdir -p "$WORK/mnt/$name"
  mount -o loop "$WORK/img/$name.img" "$WORK/mnt/$name"
  MOUNTED+=("$WORK/mnt/$name")
done
MKFS_VERSIONS="$(mkfs.xfs -V | head -1) $(mkfs.btrfs --version | head -1) kernel $(uname -r)"
log "work=$WORK port=$SSH_PORT days=$DAYS targets=${TARGETS[*]} offsnap=$VERSION $MKFS_VERSIONS"

RES="$T/steps.tsv" USED="$T/used.tsv" FLOOR="$T/floor.tsv" META="$T/meta.tsv"
printf "day\ttarget\ttool\t$MEASURE_COLS\n" > "$RES"
printf 'day\ttarget\tfs\tused_B\n' > "$USED"
printf 'day\tchanged_B\n' > "$FLOOR"
printf 'day\ttarget\tdirs\tmanifest_B\tblock_B\n' > "$META"
for tg in "${TARGETS[@]}"; do IFS=: read -r name fs tool <<< "$tg"; printf '%s\t%s\t%s\t%s\n' -1 "$name" "$fs" "$(used_bytes "$WORK/mnt/$name")" >> "$USED"; done

SRC="$WORK/src"
mkdir -p "$SRC"
for tg in "${TARGETS[@]}"; do   # empty repositories, as a user makes once (untimed)
  IFS=: read -r name fs tool <<< "$tg"
  case "$tool" in
    restic) restic_cmd "$WORK/mnt/$name/repo" init; "${R[@]}" > /dev/null ;;
    borg) borg_cmd init --encryption repokey "ssh://localhost$WORK/mnt/$name/repo"; "${R[@]}" > /dev/null 2>&1 ;;
  esac
done

backup() {  # backup DAY TARGET FS TOOL
  local d=$1 name=$2 tool=$4 m="$WORK/mnt/$2"
  NOW=2026-01-$(printf %02d $((d + 1)))T00:00:00Z
  case "$tool" in
    offsnap) o_cmd backup --set laptop --no-prune "$SRC/laptop" "$SSH_USER@127.0.0.1:$m"
             measure "$d $name offsnap" "$m" "${O[@]}"
             # What a snapshot needs besides content: its directories and its manifest.
             local snap; snap=$(readlink "$m/laptop/latest")
             printf '%s\t%s\t%s\t%s\t%s\n' "$d" "$name" "$(find "$m/laptop/$snap" -type d | wc -l)" \
               "$(stat -c %s "$m/laptop/.offsnap/manifests/$snap")" "$(stat -f -c %S "$m")" >> "$META" ;;
    rsync) RSYNC_BASE; local link=(); [ "$d" -gt 0 ] && link=(--link-dest="../day$((d - 1))")
           measure "$d $name rsync" "$m" "${R[@]}" "${link[@]}" "$SRC/laptop" "localhost:$m/day$d/" ;;
    restic) restic_cmd "$m/repo" backup --host bench laptop; measure "$d $name restic" "$m" env -C "$SRC" "${R[@]}" ;;
    borg) borg_cmd create --compression lz4 "ssh://localhost$m/repo::d$d" laptop; measure "$d $name borg" "$m" env -C "$SRC" "${R[@]}" ;;
  esac
  if [ "$3" = btrfs ]; then btrfs filesystem sync "$m" > /dev/null; fi
  printf '%s\t%s\t%s\t%s\n' "$d" "$name" "$3" "$(used_bytes "$m")" >> "$USED"
}

n=${#TARGETS[@]}
for d in $(seq 0 "$DAYS"); do
  c=$("$PY" "$HERE/corpus.py" laptop "$SRC/laptop" --day "$d" | sed -n 's/^changed-bytes //p')
  printf '%s\t%s\n' "$d" "$c" >> "$FLOOR"
  log "day $d: $c bytes of content written"
  for i in $(seq 0 $((n - 1))); do   # the order rotates every day
    IFS=: read -r name fs tool <<< "${TARGETS[$(( (i + d) % n ))]}"
    backup "$d" "$name" "$fs" "$tool"
  done
done

# Checks (untimed): each store's newest snapshot equals the source; offsnap's verify.
sd=$(digest "$SRC/laptop")
for tg in "${TARGETS[@]}"; do
  IFS=: read -r name fs tool <<< "$tg"
  m="$WORK/mnt/$name"; rm -rf "$T/restore"; mkdir -p "$T/restore"
  case "$tool" in
    offsnap) dir="$m/laptop/$(readlink "$m/laptop/latest")/laptop"
             o_cmd verify --all --set laptop "$SSH_USER@127.0.0.1:$m"
             "${O[@]}" > "$T/verify.log" 2>&1 || die "CHECK FAILED $name: offsnap verify: $(tail -5 "$T/verify.log")" ;;
    rsync) dir="$m/day$DAYS/laptop" ;;
    restic) restic_cmd "$m/repo" restore latest --target "$T/restore"; "${R[@]}" >&2; dir="$T/restore/laptop" ;;
    borg) borg_cmd extract "ssh://localhost$m/repo::d$DAYS"; (cd "$T/restore" && "${R[@]}" >&2); dir="$T/restore/laptop" ;;
  esac
  [ "$(digest "$dir")" = "$sd" ] || die "CHECK FAILED $name: the newest snapshot differs from the source"
  log "$name: newest snapshot equals the source"
done
rm -rf "$T/restore"

if [ -n "$RAW" ]; then cat "$RES" > "$RAW"; { echo; cat "$USED"; echo; cat "$FLOOR"; echo; cat "$META"; } >> "$RAW"; fi
"$PY" "$HERE/storage_report.py" "$RES" "$USED" "$FLOOR" "$META" \
  "days=$DAYS offsnap=$VERSION $(rsync --version | head -1 | cut -d' ' -f1-4) $(restic version 2>/dev/null | cut -d' ' -f1-2) $(borg --version 2>/dev/null) $MKFS_VERSIONS"
