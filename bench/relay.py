#!/usr/bin/env python3
"""Counting relay for the server side of an ssh session.

    relay.py COUNTFILE CMD [ARG...]

Runs CMD with its stdin and stdout on pipes, copies our stdin to its stdin
and its stdout to our stdout, and counts the bytes each way. stderr is
inherited untouched. When CMD's stdout ends and CMD exits, writes
"UP DOWN\n" to COUNTFILE (UP = bytes the client sent to CMD, DOWN = bytes
CMD sent back) and exits with CMD's status.

Both benchmarked tools are measured through this same relay, so the counts
are the application bytes each tool puts through its ssh channel, seen from
outside the tool.
"""
import os
import subprocess
import sys
import threading

CHUNK = 1 << 18


def grow_pipe(fd):
    try:
        import fcntl
        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
    except (OSError, ImportError):
        pass


def pump(src, dst, counts, i, done):
    try:
        # splice(2) moves the bytes kernel-side (one end must be a pipe), so the
        # relay costs little CPU even at ssh line rate; read/write otherwise.
        splice = getattr(os, "splice", None)
        while splice is not None:
            try:
                n = splice(src, dst, CHUNK)
            except OSError as e:
                if counts[i] == 0 and e.errno in (22, 38):  # EINVAL, ENOSYS
                    splice = None
                    break
                raise
            if n == 0:
                return
            counts[i] += n
        while True:
            b = os.read(src, CHUNK)
            if not b:
                break
            counts[i] += len(b)
            mv = memoryview(b)
            while mv:
                n = os.write(dst, mv)
                mv = mv[n:]
    except OSError:
        pass
    finally:
        done()


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: relay.py COUNTFILE CMD [ARG...]")
    countfile, cmd = sys.argv[1], sys.argv[2:]
    child = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
    counts = [0, 0]
    to_child = child.stdin.fileno()
    from_child = child.stdout.fileno()
    for fd in (0, 1, to_child, from_child):
        grow_pipe(fd)

    def close_child_stdin():
        try:
            child.stdin.close()
        except OSError:
            pass

    # Client -> helper on a thread; helper -> client on this one.
    t = threading.Thread(target=pump, args=(0, to_child, counts, 0, close_child_stdin), daemon=True)
    t.start()
    pump(from_child, 1, counts, 1, lambda: None)
    rc = child.wait()
    # Not joining the upstream pump: it may be blocked reading a client that
    # waits for our exit. Whatever it read is already counted.
    try:
        os.close(1)
    except OSError:
        pass
    tmp = countfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{counts[0]} {counts[1]}\n")
    os.replace(tmp, countfile)
    os._exit(rc if rc >= 0 else 128 - rc)


if __name__ == "__main__":
    main()
