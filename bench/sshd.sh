#!/usr/bin/env bash
# A throwaway OpenSSH server on 127.0.0.1 for bench/: free port, the current user,
# fresh ed25519 host and client keys (only that client key is authorized).
#
#   bench/sshd.sh up DIR     start it; writes DIR/env (shell-sourceable):
#                            SSHD_DIR SSH_PORT SSH_USER SSH_KEY SSH_KNOWN_HOSTS
#                            SSH_KNOWN_HOSTS_LINE SSH_CONFIG SSH_CMD
#   bench/sshd.sh down DIR   stop it (only the pid in DIR/sshd.pid, and only if that
#                            process is an sshd using DIR/sshd_config)
#
# Env: SSHD_USE_PAM=yes|no (default no, unless root's account is locked, which sshd
# refuses without PAM).
set -euo pipefail

up() {
  local dir=$1 sshd_bin user use_pam port="" p hostkey out
  sshd_bin=$(command -v sshd || echo /usr/sbin/sshd)
  [ -x "$sshd_bin" ] || { echo "sshd not found (Debian: apt-get install openssh-server)" >&2; exit 1; }
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  case "$dir" in *[[:space:]]*) echo "DIR must not contain spaces: $dir" >&2; exit 1 ;; esac
  chmod 700 "$dir"
  user=$(id -un)
  rm -f "$dir"/host_key* "$dir"/client_key*
  ssh-keygen -q -t ed25519 -N '' -C bench-host -f "$dir/host_key"
  ssh-keygen -q -t ed25519 -N '' -C bench-client -f "$dir/client_key"
  cp "$dir/client_key.pub" "$dir/authorized_keys"; chmod 600 "$dir/authorized_keys"
  # As root, sshd needs its privilege separation directory (a compiled-in path).
  if [ "$(id -u)" = 0 ]; then mkdir -p /run/sshd && chmod 755 /run/sshd; fi
  use_pam=${SSHD_USE_PAM:-no}
  if [ -z "${SSHD_USE_PAM:-}" ] && [ "$(id -u)" = 0 ]; then
    case "$(getent shadow "$user" | cut -d: -f2)" in '!'*) use_pam=yes ;; esac
  fi
  for _try in 1 2 3 4 5; do
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$dir/sshd_config" <<CFG
Port $p
ListenAddress 127.0.0.1
HostKey $dir/host_key
PidFile $dir/sshd.pid
AuthorizedKeysFile $dir/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers $user
UsePAM $use_pam
StrictModes no
UseDNS no
PrintMotd no
PrintLastLog no
X11Forwarding no
MaxStartups 200:30:400
MaxSessions 100
LoginGraceTime 30
Subsystem sftp internal-sftp
LogLevel INFO
CFG
    "$sshd_bin" -t -f "$dir/sshd_config"
    rm -f "$dir/sshd.pid"
    # sshd daemonizes and writes its pid file once it listens; it must be started by absolute path.
    if "$sshd_bin" -f "$dir/sshd_config" -E "$dir/sshd.log"; then
      for _i in $(seq 50); do [ -s "$dir/sshd.pid" ] && break; sleep 0.1; done
      if [ -s "$dir/sshd.pid" ] && kill -0 "$(cat "$dir/sshd.pid")" 2>/dev/null; then port=$p; break; fi
    fi
    sleep 0.2
  done
  [ -n "$port" ] || { echo "sshd failed to start; see $dir/sshd.log" >&2; tail -5 "$dir/sshd.log" >&2 || true; exit 1; }
  hostkey=$(cut -d' ' -f1,2 "$dir/host_key.pub")
  echo "[localhost]:$port,[127.0.0.1]:$port $hostkey" > "$dir/known_hosts"
  # -F also keeps the user's own ~/.ssh/config out of the way.
  cat > "$dir/ssh_config" <<CFG
Host localhost 127.0.0.1
  HostName 127.0.0.1
  HostKeyAlias [localhost]:$port
  Port $port
  User $user
  IdentityFile $dir/client_key
  IdentitiesOnly yes
  UserKnownHostsFile $dir/known_hosts
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  LogLevel ERROR
CFG
  cat > "$dir/env" <<ENV
SSHD_DIR='$dir'
SSH_PORT='$port'
SSH_USER='$user'
SSH_KEY='$dir/client_key'
SSH_KNOWN_HOSTS='$dir/known_hosts'
SSH_KNOWN_HOSTS_LINE='[localhost]:$port,[127.0.0.1]:$port $hostkey'
SSH_CONFIG='$dir/ssh_config'
SSH_CMD='ssh -F $dir/ssh_config'
ENV
  out=$(ssh -F "$dir/ssh_config" localhost echo ok 2>&1) || true
  if [ "$out" != ok ]; then
    echo "ssh smoke test failed: $out" >&2; tail -5 "$dir/sshd.log" >&2 || true
    down "$dir"; exit 1
  fi
}

down() {
  local dir=$1 pid
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  if [ -s "$dir/sshd.pid" ]; then
    pid=$(cat "$dir/sshd.pid")
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q -- "$dir/sshd_config"; then
      kill "$pid"
      for _i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then kill -9 "$pid"; fi
    fi
    rm -f "$dir/sshd.pid"
  fi
}

case "${1:-}" in
  up) up "${2:?usage: sshd.sh up DIR}" ;;
  down) down "${2:?usage: sshd.sh down DIR}" ;;
  *) echo "usage: sshd.sh up|down DIR" >&2; exit 2 ;;
esac
