#!/usr/bin/env python3
"""report.py RESULTS.TSV HEADER: markdown tables of medians from bench/run.sh's per-run TSV."""
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
}
TOOLS = ("offsnap", "rsync")


def num(v):
    return None if v in ("", "-", None) else float(v)


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


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    r = a / b
    return f"{r:.2f}" if r < 100 else f"{r:.0f}"


def main():
    path, header = sys.argv[1], sys.argv[2]
    rows = list(csv.DictReader(open(path), delimiter="\t"))
    scens = []
    for r in rows:
        if r["scen"] not in scens:
            scens.append(r["scen"])
    scens.sort()
    by = {(s, t): [r for r in rows if r["scen"] == s and r["tool"] == t] for s in scens for t in TOOLS}
    m = {(s, t, k): med(by[s, t], k) for s in scens for t in TOOLS
         for k in ("wall_s", "up_B", "down_B", "client_rss_KiB", "helper_rss_KiB",
                   "client_cpu_s", "helper_cpu_s", "sync_s")}

    loads = [num(r.get("load1")) for r in rows if num(r.get("load1")) is not None]
    if loads:
        header += f" load1-before-steps={min(loads):.2f}..{max(loads):.2f}"
    print(f"offsnap vs rsync --link-dest, medians: {header}\n")
    print("| scen | what | wall s offsnap | wall s rsync | wall ratio | up / down offsnap "
          "| up / down rsync | up ratio | peak RSS MiB client / helper offsnap "
          "| peak RSS MiB client / helper rsync |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for s in scens:
        o = lambda k: m[s, "offsnap", k]
        r = lambda k: m[s, "rsync", k]
        print(f"| {s} | {WHAT.get(s, '')} | {fs(o('wall_s'))} | {fs(r('wall_s'))} "
              f"| {ratio(o('wall_s'), r('wall_s'))} "
              f"| {fbytes(o('up_B'))} / {fbytes(o('down_B'))} "
              f"| {fbytes(r('up_B'))} / {fbytes(r('down_B'))} "
              f"| {ratio(o('up_B'), r('up_B'))} "
              f"| {fmib(o('client_rss_KiB'))} / {fmib(o('helper_rss_KiB'))} "
              f"| {fmib(r('client_rss_KiB'))} / {fmib(r('helper_rss_KiB'))} |")

    print("\nMore detail (medians; wall min..max over runs):\n")
    print("| scen | wall s offsnap (min..max) | wall s rsync (min..max) "
          "| CPU s client / helper offsnap | CPU s client / helper rsync "
          "| sync after step s offsnap / rsync |")
    print("|---|---|---|---|---|---|")
    for s in scens:
        cells = []
        for t in TOOLS:
            w = [float(x["wall_s"]) for x in by[s, t]]
            cells.append(f"{statistics.median(w):.2f} ({min(w):.2f}..{max(w):.2f})" if w else "-")
        print(f"| {s} | {cells[0]} | {cells[1]} "
              f"| {fs(m[s, 'offsnap', 'client_cpu_s'])} / {fs(m[s, 'offsnap', 'helper_cpu_s'])} "
              f"| {fs(m[s, 'rsync', 'client_cpu_s'])} / {fs(m[s, 'rsync', 'helper_cpu_s'])} "
              f"| {fs(m[s, 'offsnap', 'sync_s'])} / {fs(m[s, 'rsync', 'sync_s'])} |")

    print("\nper-run TSV:\n")
    print("```")
    print(open(path).read(), end="")
    print("```")


if __name__ == "__main__":
    main()
