#!/usr/bin/env python3
"""report.py RESULTS.TSV HEADER: markdown tables of medians from bench/run.sh's per-run TSV.

Every figure is a median over runs; the load average (1 min, read just before the
step) is printed beside it as "@L" (median over the same runs).
"""
import csv
import statistics
import sys

WHAT = {
    "S1": "initial, many small files",
    "S2": "no change",
    "S3": "1% changed + 1,000-file dir renamed",
    "S4": "initial, big file",
    "S5": "big: 1 MiB overwritten + 1 MiB appended",
    "S6": "delete the oldest snapshot",
    "S7": "big, the next day: the same change again",
}
ALL_TOOLS = ("offsnap", "rsync", "restic", "borg")


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def med(rows, key):
    v = [num(r[key]) for r in rows if num(r[key]) is not None]
    return statistics.median(v) if v else None


def fbytes(x):
    if x is None:
        return "-"
    for unit, d in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if x >= d:
            return f"{x / d:.2f} {unit}"
    return f"{int(x)} B"


def fmib(x):
    return "-" if x is None else f"{x / 1024:.1f}"


def fs(x):
    return "-" if x is None else f"{x:.2f}"


def fl(x):
    return "" if x is None else f" @{x:.1f}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:.2f}" if r < 100 else f"{r:.0f}"


class Table:
    def __init__(self, rows):
        self.rows = rows
        self.scens = sorted({r["scen"] for r in rows if r["scen"] in WHAT})
        self.tools = [t for t in ALL_TOOLS if any(r["tool"] == t for r in rows)]

    def by(self, s, t):
        return [r for r in self.rows if r["scen"] == s and r["tool"] == t]

    def m(self, s, t, k):
        return med(self.by(s, t), k)


def head(cols):
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))


def wall_table(tb):
    others = [t for t in tb.tools if t != "offsnap"]
    head(["scen", "what"] + [f"wall s {t}" for t in tb.tools] + [f"offsnap/{t}" for t in others])
    for s in tb.scens:
        cells = [f"{fs(tb.m(s, t, 'wall_s'))}{fl(tb.m(s, t, 'load1'))}" for t in tb.tools]
        rats = [ratio(tb.m(s, "offsnap", "wall_s"), tb.m(s, t, "wall_s")) for t in others]
        print(f"| {s} | {WHAT[s]} | " + " | ".join(cells + rats) + " |")


def bytes_table(tb):
    others = [t for t in tb.tools if t != "offsnap"]
    head(["scen"] + [f"up / down {t}" for t in tb.tools] + [f"up offsnap/{t}" for t in others])
    for s in tb.scens:
        cells = [f"{fbytes(tb.m(s, t, 'up_B'))} / {fbytes(tb.m(s, t, 'down_B'))}" for t in tb.tools]
        rats = [ratio(tb.m(s, "offsnap", "up_B"), tb.m(s, t, "up_B")) for t in others]
        print(f"| {s} | " + " | ".join(cells + rats) + " |")


def rss_table(tb):
    head(["scen"] + [f"peak RSS MiB client / server {t}" for t in tb.tools])
    for s in tb.scens:
        cells = [f"{fmib(tb.m(s, t, 'client_rss_KiB'))} / {fmib(tb.m(s, t, 'helper_rss_KiB'))}"
                 f"{fl(tb.m(s, t, 'load1'))}" for t in tb.tools]
        print(f"| {s} | " + " | ".join(cells) + " |")


def disk_table(tb):
    head(["scen"] + [f"disk used after step {t}" for t in tb.tools])
    for s in tb.scens:
        print(f"| {s} | " + " | ".join(fbytes(tb.m(s, t, "disk_B")) for t in tb.tools) + " |")


def detail_table(tb):
    head(["scen"] + [f"{t}: wall min..max / CPU s client + server / sync after s" for t in tb.tools])
    for s in tb.scens:
        cells = []
        for t in tb.tools:
            w = [float(x["wall_s"]) for x in tb.by(s, t)]
            if not w:
                cells.append("-")
                continue
            cells.append(f"{min(w):.2f}..{max(w):.2f} / {fs(tb.m(s, t, 'client_cpu_s'))} + "
                         f"{fs(tb.m(s, t, 'helper_cpu_s'))} / {fs(tb.m(s, t, 'sync_s'))}")
        print(f"| {s} | " + " | ".join(cells) + " |")


def floors_table(tb):
    fl_rows = [r for r in tb.rows if r["tool"] == "floor"]
    if not fl_rows:
        return
    f = lambda n: med([r for r in fl_rows if r["scen"] == n], "wall_s")
    ld = lambda n: med([r for r in fl_rows if r["scen"] == n], "load1")
    print("\nFloors on this machine (medians over runs, load @L):\n")
    head(["floor", "s", "offsnap s", "offsnap / floor"])
    st, ln = f("F-stat"), f("F-link")
    s2 = tb.m("S2", "offsnap", "wall_s")
    if st is not None and ln is not None:
        print(f"| stat all files of the S2 tree (`find -printf`) | {fs(st)}{fl(ld('F-stat'))} | | |")
        print(f"| link all files of the S2 tree (`cp -al`) | {fs(ln)}{fl(ld('F-link'))} | | |")
        print(f"| S2 against stat + link | {fs(st + ln)} | {fs(s2)} | {ratio(s2, st + ln)} |")
    s4 = tb.m("S4", "offsnap", "wall_s")
    for c in ("aes256-gcm", "chacha20-poly1305"):
        v = f(f"F-ssh-{c}")
        if v is not None:
            print(f"| S4 against `ssh -c {c} cat >/dev/null` of the big file | {fs(v)}{fl(ld(f'F-ssh-{c}'))} "
                  f"| {fs(s4)} | {ratio(s4, v)} |")


def many_table(tb):
    par = [r for r in tb.rows if r["scen"] == "M8-parallel"]
    ser = [r for r in tb.rows if r["scen"] == "M8-serial"]
    if not par or not ser:
        return
    print("\nMany clients, one sshd (offsnap; all completed, every snapshot verified):\n")
    head(["mode", "wall s (min..max)", "up", "largest client RSS MiB", "largest helper RSS MiB",
          "helper CPU s", "store"])
    for name, rows in (("all at once", par), ("one after another", ser)):
        w = [float(r["wall_s"]) for r in rows]
        print(f"| {name} | {statistics.median(w):.2f} ({min(w):.2f}..{max(w):.2f}){fl(med(rows, 'load1'))} "
              f"| {fbytes(med(rows, 'up_B'))} | {fmib(med(rows, 'client_rss_KiB'))} "
              f"| {fmib(med(rows, 'helper_rss_KiB'))} | {fs(med(rows, 'helper_cpu_s'))} "
              f"| {fbytes(med(rows, 'disk_B'))} |")
    print(f"\nat once / one after another: {ratio(med(par, 'wall_s'), med(ser, 'wall_s'))}")


def main():
    path, header = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    tb = Table(rows)
    loads = [num(r.get("load1")) for r in rows if num(r.get("load1")) is not None]
    if loads:
        header += f" load1={min(loads):.2f}..{max(loads):.2f}"
    print(f"Medians: {header}\n")
    print("Wall time (s; @L = load average before the step):\n")
    wall_table(tb)
    print("\nBytes on the wire (through the server-side program's stdin / stdout):\n")
    bytes_table(tb)
    print("\nPeak memory (GNU time max RSS; client = the tool's process tree, server = the program sshd runs):\n")
    rss_table(tb)
    print("\nDisk used by the destination after the step (du, hard links counted once):\n")
    disk_table(tb)
    print("\nMore detail:\n")
    detail_table(tb)
    floors_table(tb)
    many_table(tb)
    print("\nper-run TSV:\n")
    print("```")
    print(open(path).read(), end="")
    print("```")


if __name__ == "__main__":
    main()
