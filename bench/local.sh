#!/usr/bin/env bash
# A local destination (a USB disk, a NAS mount): offsnap to a plain path (the helper
# runs in-process, changed files travel whole, no rolling checksum) against
# rsync -a --link-dest to the same filesystem, for a big file changed in place and
# appended to (run.sh's S5: 1 MiB overwritten at size/2 + 4097, 1 MiB appended), on
# ext4, XFS and btrfs loop images. Every round changes the file once and backs it up
# with each tool (the order alternating); wall time per round with the load average
# beside it, medians, and the store's growth per round (statvfs used blocks after sync).
# With --cold the page cache is dropped before every timed run, as for a backup disk
# whose previous snapshot was written a day ago: both tools then read from disk.
#
# Usage: bench/local.sh [--size 1G] [--rounds 5] [--fs ext4,xfs,btrfs] [--work DIR]
#                       [--cold] [--no-build]
# Needs root (loop mounts), rsync, python3, e2fsprogs, xfsprogs, btrfs-progs.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/.." && pwd)

SIZE=1G ROUNDS=5 FSES=ext4,xfs,btrfs WORK="" BUILD=1 COLD=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) SIZE=$2; shift ;;
    --rounds) ROUNDS=$2; shift ;;
    --fs) FSES=$2; shift ;;
    --work) WORK=$2; shift ;;
    --no-build) BUILD=0 ;;
    --cold) COLD=1 ;;
    -h|--help) awk 'NR>1 && /^#/ {sub(/^# ?/, ""); print; next} NR>1 {exit}' "$0"; exit 0 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
TOOLS="offsnap rsync"
. "$HERE/lib.sh"
need_packages "mkfs.ext4=e2fsprogs" "mkfs.xfs=xfsprogs" "mkfs.btrfs=btrfs-progs" "losetup=mount"
[ "$(id -u)" = 0 ] || die "bench/local.sh needs root: it loop-mounts filesystem images"

[ -n "$WORK" ] || WORK=$(mktemp -d "${TMPDIR:-/tmp}/offsnap-local.XXXXXX")
mkdir -p "$WORK"; WORK=$(cd "$WORK" && pwd)
case "$WORK" in /|"$HOME"|"$REPO"|"$REPO"/*) echo "refusing --work $WORK" >&2; exit 2 ;; esac
MOUNTED=()
cleanup() {
  local rc=$? m
  for m in "${MOUNTED[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  rm -rf "$WORK"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
T="$WORK/t"; mkdir -p "$T"
find_binaries "$BUILD" "$REPO"

used_bytes() { local b f s; sync; read -r b f s < <(stat -f -c '%b %f %S' "$1"); echo $(( (b - f) * s )); }
SRC="$WORK/src"; mkdir -p "$SRC/s"
"$PY" -c "import os,sys; f=open(sys.argv[1],'wb'); n=int(sys.argv[2])
while n>0: k=min(n,16<<20); f.write(os.urandom(k)); n-=k" "$SRC/s/big" "$("$PY" -c "import sys; sys.path.insert(0, sys.argv[1]); import corpus; print(corpus.parse_size(sys.argv[2]))" "$HERE" "$SIZE")"
export OFFSNAP_NOW
OUT="$T/rounds.tsv"
printf 'fs\tround\ttool\twall_s\tload1\tgrowth_B\n' > "$OUT"
for fs in $(echo "$FSES" | tr ',' ' '); do
  img="$WORK/$fs.img" m="$WORK/mnt-$fs"
  truncate -s $(( 16 << 30 )) "$img"   # sparse: each rsync round and each ext4 round costs a copy
  case "$fs" in
    ext4) mkfs.ext4 -q -F "$img" ;;
    xfs) mkfs.xfs -q -f "$img" ;;
    btrfs) mkfs.btrfs -q -f "$img" > /dev/null ;;
    *) die "unknown filesystem $fs" ;;
  esac
  mkdir -p "$m"; mount -o loop "$img" "$m"; MOUNTED+=("$m")
  # Round 0: the first backups (untimed).
  OFFSNAP_NOW=2026-01-01T00:00:00Z
  HOME="$T/home" "$BIN/offsnap" backup -q --set s "$SRC/s" "$m/offsnap" > /dev/null
  mkdir -p "$m/rsync"; rsync -a "$SRC/s" "$m/rsync/r0/"
  for r in $(seq 1 "$ROUNDS"); do
    "$PY" "$HERE/corpus.py" mutate-big "$SRC/s/big" --seed "$r" > /dev/null
    OFFSNAP_NOW=2026-01-$(printf %02d $((r + 1)))T00:00:00Z
    order="offsnap rsync"; [ $((r % 2)) = 0 ] && order="rsync offsnap"
    for tool in $order; do
      sync
      [ "$COLD" = 1 ] && echo 3 > /proc/sys/vm/drop_caches
      before=$(used_bytes "$m"); load=$(load1); t0=$(now_ns)
      case "$tool" in
        offsnap) HOME="$T/home" "$BIN/offsnap" backup -q --set s "$SRC/s" "$m/offsnap" > /dev/null ;;
        rsync) rsync -a --delete --link-dest="../r$((r - 1))" "$SRC/s" "$m/rsync/r$r/" ;;
      esac
      sync; t1=$(now_ns)
      [ "$fs" = btrfs ] && btrfs filesystem sync "$m" > /dev/null
      printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$fs" "$r" "$tool" "$(secs "$t0" "$t1")" "$load" \
        $(( $(used_bytes "$m") - before )) >> "$OUT"
      log "$fs round $r $tool: $(tail -1 "$OUT" | cut -f4-)"
    done
    cmp "$SRC/s/big" "$m/rsync/r$r/s/big"
    cmp "$SRC/s/big" "$m/offsnap/s/latest/s/big"
  done
  umount "$m"; MOUNTED=(); rm -f "$img"
done
"$PY" - "$OUT" "$SIZE" "$ROUNDS" "$COLD" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
cache = "page cache dropped before each run" if sys.argv[4] == "1" else "page cache warm"
print(f"Local destination, big file {sys.argv[2]}, S5 change, {sys.argv[3]} rounds, {cache}; wall includes sync; medians\n")
print("| filesystem | offsnap wall s @load | rsync wall s @load | offsnap / rsync | offsnap growth MiB/round | rsync growth MiB/round |")
print("|---|---|---|---|---|---|")
for fs in dict.fromkeys(r["fs"] for r in rows):
    f = {t: [r for r in rows if r["fs"] == fs and r["tool"] == t] for t in ("offsnap", "rsync")}
    w = {t: statistics.median(float(r["wall_s"]) for r in f[t]) for t in f}
    ld = {t: statistics.median(float(r["load1"]) for r in f[t]) for t in f}
    g = {t: statistics.median(int(r["growth_B"]) for r in f[t]) / (1 << 20) for t in f}
    print(f"| {fs} | {w['offsnap']:.2f} @{ld['offsnap']:.1f} | {w['rsync']:.2f} @{ld['rsync']:.1f} "
          f"| {w['offsnap'] / w['rsync']:.2f} | {g['offsnap']:.1f} | {g['rsync']:.1f} |")
PY
