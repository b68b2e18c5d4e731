# Shared by bench/run.sh and bench/storage.sh (sourced, not run): the package check,
# the loopback sshd, the server-side wrapper that counts bytes and measures the
# helper, the four tools' command lines, and one timed step.
#
# Expects HERE (this directory) and TOOLS (space-separated subset of
# "offsnap rsync restic borg") to be set by the caller.

log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "$*" >&2; exit 1; }
now_ns() { date +%s%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3f", (b-a)/1e9}'; }
load1() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo -; }
has_tool() { case " $TOOLS " in *" $1 "*) return 0 ;; esac; return 1; }

# need_packages EXTRA...: fail, naming the Debian packages, when a program is missing.
# Every run needs python3, OpenSSH (client + server), GNU time and coreutils; restic,
# borgbackup and rsync as TOOLS says; EXTRA lists more "command=package" pairs.
need_packages() {
  local pairs=("python3=python3" "ssh=openssh-client" "ssh-keygen=openssh-client"
               "sshd=openssh-server" "timeout=coreutils" "sha256sum=coreutils" "$@")
  has_tool rsync && pairs+=("rsync=rsync")
  has_tool offsnap && pairs+=("rsync=rsync")   # rsync is the baseline every table is set against
  has_tool restic && pairs+=("restic=restic" "/usr/lib/openssh/sftp-server=openssh-sftp-server")
  has_tool borg && pairs+=("borg=borgbackup")
  local missing=() p c
  for p in "${pairs[@]}"; do
    c=${p%%=*}
    case "$c" in
      sshd) [ -x "$(command -v sshd || echo /usr/sbin/sshd)" ] || missing+=("${p#*=}") ;;
      /*) [ -x "$c" ] || missing+=("${p#*=}") ;;
      *) command -v "$c" >/dev/null || missing+=("${p#*=}") ;;
    esac
  done
  if ! [ -x /usr/bin/time ] || ! /usr/bin/time --version 2>&1 | grep -q GNU; then missing+=(time); fi
  if [ ${#missing[@]} -gt 0 ]; then
    missing=($(printf '%s\n' "${missing[@]}" | sort -u))
    echo "missing Debian packages: ${missing[*]}" >&2
    echo "install them with: apt-get install -y --no-install-recommends ${missing[*]}" >&2
    echo "(this script installs nothing itself)" >&2
    exit 1
  fi
  PY=$(python3 -c 'import sys; print(sys.executable)')   # absolute: the sshd session has a plain PATH
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))' || die "python3 >= 3.9 needed"
}

# find_binaries BUILD REPO: sets BIN to a private copy of offsnap + offsnap-remote
# (a rebuild of target/ during the run cannot swap them) and VERSION to the commit and hashes.
find_binaries() {
  local build=$1 repo=$2 bin
  if [ -n "${OFFSNAP_BIN_DIR:-}" ]; then
    bin=$(cd "$OFFSNAP_BIN_DIR" && pwd)
  else
    if [ "$build" = 1 ]; then
      command -v cargo >/dev/null || die "cargo not found: install Rust, or use --no-build / OFFSNAP_BIN_DIR"
      log "cargo build --release"
      (cd "$repo" && cargo build --release --locked --bins -p offsnap -p offsnap-remote >&2) ||
        die "cargo build --release failed; fix the build, or rerun with --no-build"
    fi
    bin=$(cd "${CARGO_TARGET_DIR:-$repo/target}/release" 2>/dev/null && pwd) || bin=""
  fi
  for b in offsnap offsnap-remote; do
    [ -n "$bin" ] && [ -x "$bin/$b" ] || die "no $b binary in ${bin:-target/release} (build it, or set OFFSNAP_BIN_DIR)"
  done
  mkdir -p "$T/bin"; cp "$bin/offsnap" "$bin/offsnap-remote" "$T/bin/"
  BIN="$T/bin"
  VERSION=$(cd "$repo" && git rev-parse --short HEAD 2>/dev/null || echo "?")
  if [ -n "$(cd "$repo" && git --no-optional-locks status --porcelain --untracked-files=no 2>/dev/null)" ]; then VERSION="$VERSION+dirty"; fi
  VERSION="$VERSION ($(sha256sum "$BIN/offsnap" | cut -c1-12)/$(sha256sum "$BIN/offsnap-remote" | cut -c1-12))"
}

# start_sshd: the loopback sshd in $WORK/sshd, the server-side wrapper, the tools' settings.
start_sshd() {
  "$HERE/sshd.sh" up "$WORK/sshd"
  . "$WORK/sshd/env"
  SSH="ssh -F $SSH_CONFIG"
  CIPHER=$($SSH -v localhost true 2>&1 | sed -n 's/.*kex: client->server cipher: \([^ ]*\).*/\1/p' | head -1)
  # Every server-side program (offsnap-remote, rsync, sftp-server, borg serve) runs
  # under the counting relay and GNU time; one file pair per connection in $T/srv.
  WRAP="$T/server-wrap"; mkdir -p "$T/srv"
  cat > "$WRAP" <<W
#!/bin/sh
: > "$T/srv/start.\$\$"
exec "$PY" "$HERE/relay.py" "$T/srv/count.\$\$" /usr/bin/time -f "%U %S %M" -o "$T/srv/time.\$\$" "\$@"
W
  chmod +x "$WRAP"
  # Private HOME for every client: known_hosts with the test host key, caches.
  OHOME="$T/home"; mkdir -p "$OHOME/.ssh"; chmod 700 "$OHOME/.ssh"
  echo "$SSH_KNOWN_HOSTS_LINE" > "$OHOME/.ssh/known_hosts"
  CLIENT_ENV=(env -u SSH_AUTH_SOCK HOME="$OHOME" XDG_CACHE_HOME="$OHOME/.cache"
              RESTIC_PASSWORD=bench RESTIC_CACHE_DIR="$OHOME/.cache/restic"
              BORG_PASSPHRASE=bench BORG_BASE_DIR="$OHOME" BORG_RSH="$SSH"
              BORG_RELOCATED_REPO_ACCESS_IS_OK=yes)
}

stop_sshd() { if [ -n "${WORK:-}" ] && [ -f "$WORK/sshd/sshd.pid" ]; then "$HERE/sshd.sh" down "$WORK/sshd" || true; fi; }

# The tools' command lines. $1 is always the destination (offsnap: the backup root,
# rsync: the directory that holds the snapshots, restic/borg: the repository).
NOW=2026-01-01T00:00:00Z
offsnap_remote() { echo "$WRAP env OFFSNAP_NOW=$NOW $BIN/offsnap-remote"; }
o_cmd() {  # o_cmd SUBCOMMAND ARGS...   (the destination comes last, as offsnap wants it)
  local sub=$1; shift
  O=("${CLIENT_ENV[@]}" "$BIN/offsnap" "$sub" -p "$SSH_PORT" -i "$SSH_KEY" --remote-cmd "$(offsnap_remote)" "$@")
}
RSYNC_BASE() { R=(rsync -a --delete -e "$SSH" --rsync-path="$WRAP rsync"); }
restic_cmd() {  # restic_cmd REPO ARGS...
  local repo=$1; shift
  R=("${CLIENT_ENV[@]}" restic -q -r "sftp:localhost:$repo" -o "sftp.command=$SSH localhost $WRAP /usr/lib/openssh/sftp-server" "$@")
}
borg_cmd() {  # borg_cmd ARGS...   (repository as ssh://localhost/PATH::ARCHIVE in ARGS)
  R=("${CLIENT_ENV[@]}" borg --remote-path "$WRAP borg" "$@")
}

# server_figures: sums the bytes and CPU of every server-side program since the last
# step and takes the largest peak RSS; prints "UP DOWN CPU RSS" ("- - - -" if none).
server_figures() {
  local i f n
  for i in $(seq 100); do   # the relay writes its count just after the client may exit
    n=0
    for f in "$T"/srv/start.*; do
      [ -e "$f" ] || continue
      [ -s "$T/srv/count.${f##*.}" ] && [ -s "$T/srv/time.${f##*.}" ] || n=$((n + 1))
    done
    [ "$n" = 0 ] && break
    sleep 0.05
  done
  cat "$T"/srv/count.* 2>/dev/null | awk -v tf="$(cat "$T"/srv/time.* 2>/dev/null | grep -E '^[0-9.]+ [0-9.]+ [0-9]+$' | tr '\n' ';')" '
    { up += $1; down += $2; seen = 1 }
    END {
      n = split(tf, rows, ";"); cpu = 0; rss = 0; t = 0
      for (i = 1; i <= n; i++) if (rows[i] != "") { split(rows[i], c, " "); cpu += c[1] + c[2]; if (c[3] > rss) rss = c[3]; t = 1 }
      if (!seen) { up = "-"; down = "-" }
      printf "%s %s %s %s\n", up, down, (t ? sprintf("%.2f", cpu) : "-"), (t ? rss : "-")
    }'
}

du_bytes() { if [ -e "$1" ]; then du -s --block-size=1 "$1" | cut -f1; else echo 0; fi; }

# measure "RUN SCEN TOOL" DISK_DIR CMD...: one timed step. Appends to $RES:
# RUN, SCEN, TOOL, wall s, client CPU s, helper CPU s, up B, down B, client RSS KiB,
# helper RSS KiB, sync-after s, load1 before, disk used B (du of DISK_DIR after sync).
measure() {
  local prefix disk=$2; prefix=$(echo "$1" | tr ' ' '\t'); shift 2
  rm -f "$T"/srv/* "$T/client.time"
  sync   # the previous step's dirty pages must not land in this one
  local t0 t1 t2 rc=0 load
  load=$(load1)
  t0=$(now_ns)
  timeout -k 10 "$STEP_TIMEOUT" /usr/bin/time -f '%U %S %M' -o "$T/client.time" "$@" \
    > "$T/out.log" 2> "$T/err.log" || rc=$?
  t1=$(now_ns)
  sync
  t2=$(now_ns)
  if [ "$rc" != 0 ] && ! { [ "$rc" = 1 ] && [ "${ALLOW_RC1:-0}" = 1 ]; }; then
    echo "FAILED (exit $rc): $prefix: $*" >&2
    tail -n 20 "$T/out.log" "$T/err.log" >&2
    exit 1
  fi
  local wall u s crss ccpu up down hcpu hrss disk_b
  wall=$(secs "$t0" "$t1")
  read -r u s crss < <(grep -E '^[0-9.]+ [0-9.]+ [0-9]+$' "$T/client.time" | tail -1)
  ccpu=$(awk -v a="$u" -v b="$s" 'BEGIN{printf "%.2f", a+b}')
  read -r up down hcpu hrss < <(server_figures)
  disk_b=$(du_bytes "$disk")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$prefix" "$wall" "$ccpu" "$hcpu" \
    "$up" "$down" "$crss" "$hrss" "$(secs "$t1" "$t2")" "$load" "$disk_b" >> "$RES"
  log "$(echo "$prefix" | tr '\t' ' '): ${wall}s load=$load up=$up down=$down rss=${crss}/${hrss}KiB cpu=$ccpu/$hcpu disk=$disk_b"
}
MEASURE_COLS='wall_s\tclient_cpu_s\thelper_cpu_s\tup_B\tdown_B\tclient_rss_KiB\thelper_rss_KiB\tsync_s\tload1\tdisk_B'

digest() { "$PY" "$HERE/corpus.py" digest "$1" | cut -d' ' -f1; }
