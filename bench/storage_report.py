#!/usr/bin/env python3
"""storage_report.py STEPS.TSV USED.TSV FLOOR.TSV META.TSV HEADER: tables of bench/storage.sh.

Growth per day is the store filesystem's used bytes (statvfs, after sync) after
day N's backup minus after day N-1's, over days 1..N (day 0 is the first backup);
"du" is the same for du of the store. The floor is the content each day wrote; the
second floor adds what any snapshot of it needs besides content, measured on
offsnap's XFS store (META.TSV): one block per new directory and the manifest.
"""
import csv
import statistics
import sys


def rows(path):
    return list(csv.DictReader(open(path), delimiter="\t"))


def mib(x):
    return "-" if x is None else f"{x / (1 << 20):.1f}"


def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def main():
    steps, used, floor, meta = (rows(a) for a in sys.argv[1:5])
    header = sys.argv[5]
    targets = []
    for r in steps:
        if r["target"] not in targets:
            targets.append(r["target"])
    days = sorted({int(r["day"]) for r in steps})
    last = days[-1]
    fl = {int(r["day"]): int(r["changed_B"]) for r in floor}
    floor_day = statistics.mean(fl[d] for d in days if d > 0)
    u = {(int(r["day"]), r["target"]): int(r["used_B"]) for r in used}
    st = {(int(r["day"]), r["target"]): r for r in steps}
    loads = [num(r["load1"]) for r in steps if num(r["load1"]) is not None]
    print(f"Storage scenario: {header} load1={min(loads):.2f}..{max(loads):.2f}\n")
    print("Growth per day = statvfs used bytes after day N minus after day N-1 (mean over days "
          f"1..{last}); du likewise; wall and load (@L) are medians over days 1..{last}.\n")
    cols = ["store", "first backup MiB (statvfs / du)", "growth MiB/day statvfs (min..max)",
            "growth MiB/day du", "/ floor", "offsnap-xfs / this", f"after day {last} MiB",
            "wall s day 0", "wall s per day", "up MiB per day", "peak RSS MiB client / server"]
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    growth = {}
    for t in targets:
        g = [u[d, t] - u[d - 1, t] for d in days if d > 0]
        growth[t] = statistics.mean(g)
    for t in targets:
        g = [u[d, t] - u[d - 1, t] for d in days if d > 0]
        du = [num(st[d, t]["disk_B"]) - num(st[d - 1, t]["disk_B"]) for d in days if d > 0]
        w = [num(st[d, t]["wall_s"]) for d in days if d > 0]
        ld = [num(st[d, t]["load1"]) for d in days if d > 0 and num(st[d, t]["load1"]) is not None]
        up = [num(st[d, t]["up_B"]) for d in days if d > 0 and num(st[d, t]["up_B"]) is not None]
        crss = max((num(st[d, t]["client_rss_KiB"]) or 0) for d in days)
        hrss = max((num(st[d, t]["helper_rss_KiB"]) or 0) for d in days)
        base = u[0, t] - u[-1, t]
        ref = growth.get("offsnap-xfs")
        print(f"| {t} | {mib(base)} / {mib(num(st[0, t]['disk_B']))} "
              f"| {mib(statistics.mean(g))} ({mib(min(g))}..{mib(max(g))}) | {mib(statistics.mean(du))} "
              f"| {statistics.mean(g) / floor_day:.1f} "
              f"| {'-' if ref is None or growth[t] <= 0 else f'{ref / growth[t]:.2f}'} "
              f"| {mib(u[last, t] - u[-1, t])} "
              f"| {num(st[0, t]['wall_s']):.2f} @{num(st[0, t]['load1']):.1f} "
              f"| {statistics.median(w):.2f} @{statistics.median(ld):.1f} "
              f"| {mib(statistics.median(up)) if up else '-'} | {crss / 1024:.1f} / {hrss / 1024:.1f} |")
    print(f"| floor (content written) | {mib(fl[0])} | {mib(floor_day)} | | 1.0 | | "
          f"{mib(sum(fl[d] for d in days))} | | | | |")
    mt = {int(r["day"]): r for r in meta if r["target"] == "offsnap-xfs"}
    if mt and all(d in mt for d in days):
        def snap(d):
            b = int(mt[d]["block_B"])
            return fl[d] + int(mt[d]["dirs"]) * b + -(-int(mt[d]["manifest_B"]) // b) * b
        sd = statistics.mean(snap(d) for d in days if d > 0)
        print(f"| floor + directories + manifest | {mib(snap(0))} | {mib(sd)} | | {sd / floor_day:.1f} | | "
              f"{mib(sum(snap(d) for d in days))} | | | | |")
        if "offsnap-xfs" in growth:
            print(f"\noffsnap-xfs grows {growth['offsnap-xfs'] / sd:.2f}x this second floor a day "
                  f"({int(mt[last]['dirs'])} directories, manifest {int(mt[last]['manifest_B']) / 1024:.0f} KiB).")
    print("\nPer day, statvfs growth MiB:\n")
    print("| day | floor | " + " | ".join(targets) + " |")
    print("|" + "---|" * (len(targets) + 2))
    for d in days:
        prev = -1 if d == 0 else d - 1
        print(f"| {d} | {mib(fl[d])} | " + " | ".join(mib(u[d, t] - u[prev, t]) for t in targets) + " |")


if __name__ == "__main__":
    main()
