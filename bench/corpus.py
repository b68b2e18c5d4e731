#!/usr/bin/env python3
"""Deterministic corpora for bench/ (same seed + arguments -> same names, bytes, mtimes).

  corpus.py small  DIR  [--files 20000] [--dirs N] [--max-size 16K] [--bulk 1000] [--seed 1]
  corpus.py big    FILE [--size 1G] [--seed 1]
  corpus.py mutate-small DIR [--fraction 0.01] [--add 20] [--delete 20] [--seed 2]
  corpus.py mutate-big   FILE [--change 1M] [--append 1M] [--seed 2]
  corpus.py laptop DIR --day N [--files 5000] [--image 256M] [--blocks 16] [--block 64K]
                               [--mail 1M] [--edit 0.01] [--seed 1]
  corpus.py digest PATH [--jobs N]   # one hash over names, sizes, modes, mtimes, contents

small: FILES files of 0..MAX-SIZE bytes (half random, half compressible text) in a
  random nested tree of DIRS directories (default FILES/50), plus "bulk.0" holding
  BULK of those files (the rename target of mutate-small).
mutate-small: rewrites/patches/appends/truncates FRACTION of the files, deletes
  DELETE, adds ADD, renames the top-level bulk.* directory to bulk.<seed>.
mutate-big: overwrites CHANGE bytes at size/2 + 4097 (not block aligned), then
  appends APPEND bytes.
laptop: day 0 creates the laptop tree (FILES small files under docs/, a disk image
  disk.img of IMAGE bytes, an empty mail/inbox.mbox); day N >= 1 rewrites EDIT of
  the small files, rewrites BLOCKS aligned blocks of BLOCK bytes in the image and
  appends MAIL bytes to the mailbox. Prints "changed-bytes B": the bytes of file
  content that day made new (the storage floor).
digest: files are hashed by a pool of JOBS processes (default: all cores), so a
  million-file tree is checked in about the time it takes to read it.
Requires Python >= 3.9 (random.randbytes). Sizes accept K/M/G suffixes (binary).
"""
import argparse
import hashlib
import os
import random
import sys

T0 = 1_600_000_000          # base mtime of generated files
T_MUT = 1_700_000_000       # base mtime of mutated/added files (+ seed or day)
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi "
         "omicron pi rho sigma tau upsilon phi chi psi omega backup snapshot link "
         "inode block chunk hash tree file data sync remote local delta").split()


def parse_size(s):
    s = str(s).strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    if s and s[-1] == "B":
        s = s[:-1]
    if s and s[-1] in mult:
        return int(float(s[:-1]) * mult[s[-1]])
    return int(s)


def text_pool(rng, n=4 << 20):
    out, size = [], 0
    while size < n:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randrange(4, 16))) + "\n"
        out.append(line)
        size += len(line)
    return "".join(out).encode()[:n]


def content(rng, pool, size):
    if size == 0:
        return b""
    if rng.random() < 0.5:
        return rng.randbytes(size)
    off = rng.randrange(0, len(pool) - size)
    return pool[off:off + size]


def write_file(path, data, mtime):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def fix_dir_mtimes(root, mtime):
    for d, _, _ in os.walk(root, topdown=False):
        os.utime(d, (mtime, mtime))


def make_small(root, nfiles, ndirs, maxsz, bulk, seed, prefix=""):
    """The many-small tree; returns the number of directories made."""
    rng = random.Random(seed)
    bulk = min(bulk, nfiles // 2)
    ndirs = ndirs or max(1, nfiles // 50)
    pool = text_pool(rng)
    # Random recursive tree: each new dir hangs under a uniformly chosen earlier one.
    dirs = [""]
    for i in range(1, ndirs):
        parent = dirs[rng.randrange(len(dirs))]
        dirs.append(os.path.join(parent, f"d{i:05d}"))
    for d in dirs:
        os.makedirs(os.path.join(root, d), exist_ok=True)
    if bulk:
        os.makedirs(os.path.join(root, "bulk.0"))
    exts = (".txt", ".bin", ".dat", ".json", ".c", ".log", "")
    for i in range(nfiles):
        # Mostly small sizes, like real trees: size = max * u^2.
        size = int(maxsz * rng.random() ** 2)
        data = content(rng, pool, size)
        d = "bulk.0" if i < bulk else dirs[rng.randrange(ndirs)]
        write_file(os.path.join(root, d, f"{prefix}f{i:07d}{rng.choice(exts)}"), data, T0 + i)
    fix_dir_mtimes(root, T0)
    return ndirs


def cmd_small(a):
    if os.path.exists(a.dir):
        sys.exit(f"{a.dir} exists; remove it first")
    ndirs = make_small(a.dir, a.files, a.dirs, parse_size(a.max_size), a.bulk, a.seed)
    print(f"small: {a.dir}: {a.files} files, {ndirs + 1} dirs")


def write_random(path, size, rng):
    chunk = 1 << 22
    # An existing file is overwritten in place (no block freeing; cheaper to reset).
    with open(path, "r+b" if os.path.isfile(path) else "wb") as f:
        left = size
        while left > 0:
            n = min(chunk, left)
            f.write(rng.randbytes(n))
            left -= n
        f.truncate(size)
    os.utime(path, (T0, T0))


def cmd_big(a):
    size = parse_size(a.size)
    write_random(a.file, size, random.Random(a.seed))
    print(f"big: {a.file}: {size} bytes")


def list_files(root):
    out = []
    for d, dn, fn in os.walk(root):
        dn.sort()
        for n in sorted(fn):
            out.append(os.path.relpath(os.path.join(d, n), root))
    return out


def edit_file(rng, pool, p, kind):
    """One edit of a small file; returns (kind, bytes of content it wrote)."""
    size = os.path.getsize(p)
    if kind == "patch" and size > 0:      # same size, bytes changed in place
        off = rng.randrange(size)
        n = min(size - off, rng.randrange(1, 256))
        with open(p, "r+b") as f:
            f.seek(off)
            f.write(rng.randbytes(n))
        return kind, n
    if kind == "append":
        add = content(rng, pool, rng.randrange(1, 4096))
        with open(p, "ab") as f:
            f.write(add)
        return kind, len(add)
    if kind == "truncate" and size > 0:
        new = rng.randrange(size)
        os.truncate(p, new)
        return kind, 0
    data = content(rng, pool, rng.randrange(0, 16384))
    with open(p, "wb") as f:
        f.write(data)
    return "rewrite", len(data)


def cmd_mutate_small(a):
    rng = random.Random(a.seed)
    root = a.dir
    tm = T_MUT + a.seed
    pool = text_pool(rng, 1 << 20)
    files = list_files(root)
    nmod = max(1, round(len(files) * a.fraction))
    picked = rng.sample(files, min(len(files), nmod + a.delete))
    to_mod, to_del = picked[:nmod], picked[nmod:]
    counts = {"rewrite": 0, "patch": 0, "append": 0, "truncate": 0}
    for rel in to_mod:
        p = os.path.join(root, rel)
        kind, _ = edit_file(rng, pool, p, rng.choice(tuple(counts)))
        counts[kind] += 1
        os.utime(p, (tm, tm))
    for rel in to_del:
        os.unlink(os.path.join(root, rel))
    dirs = sorted({os.path.dirname(f) for f in files})
    for i in range(a.add):
        d = os.path.join(root, dirs[rng.randrange(len(dirs))])
        os.makedirs(d, exist_ok=True)
        write_file(os.path.join(d, f"new-s{a.seed}-{i:05d}.dat"),
                   content(rng, pool, rng.randrange(0, 16384)), tm)
    renamed = ""
    bulk = sorted(n for n in os.listdir(root) if n.startswith("bulk."))
    if bulk and a.rename:
        new = f"bulk.{a.seed}"
        if bulk[0] != new:
            os.rename(os.path.join(root, bulk[0]), os.path.join(root, new))
            os.utime(os.path.join(root, new), (tm, tm))
            renamed = f", renamed {bulk[0]} -> {new}"
    print(f"mutate-small: {root}: modified {nmod} {counts}, deleted {len(to_del)}, "
          f"added {a.add}{renamed}")


def cmd_mutate_big(a):
    rng = random.Random(a.seed)
    size = os.path.getsize(a.file)
    change, append = parse_size(a.change), parse_size(a.append)
    off = min(size // 2 + 4097, max(0, size - change))
    with open(a.file, "r+b") as f:
        f.seek(off)
        f.write(rng.randbytes(change))
        f.seek(0, 2)
        f.write(rng.randbytes(append))
    tm = T_MUT + a.seed
    os.utime(a.file, (tm, tm))
    print(f"mutate-big: {a.file}: overwrote {change} bytes at {off}, appended {append}")


def laptop_day0(a, root):
    if os.path.exists(root):
        sys.exit(f"{root} exists; remove it first")
    make_small(os.path.join(root, "docs"), a.files, 0, 16 << 10, 0, a.seed)
    write_random(os.path.join(root, "disk.img"), parse_size(a.image), random.Random(a.seed + 1))
    os.makedirs(os.path.join(root, "mail"))
    write_file(os.path.join(root, "mail", "inbox.mbox"), b"", T0)
    fix_dir_mtimes(root, T0)


def laptop_edit(a, root, rng, tm):
    """One day's changes; returns the bytes of new content they made."""
    changed = 0
    pool = text_pool(rng, 1 << 20)
    docs = os.path.join(root, "docs")
    files = list_files(docs)
    for rel in rng.sample(files, max(1, round(len(files) * a.edit))):
        p = os.path.join(docs, rel)
        _, n = edit_file(rng, pool, p, rng.choice(("rewrite", "patch", "append")))
        changed += n
        os.utime(p, (tm, tm))
    img = os.path.join(root, "disk.img")
    block = parse_size(a.block)
    nblocks = os.path.getsize(img) // block
    with open(img, "r+b") as f:
        for b in rng.sample(range(nblocks), min(nblocks, a.blocks)):
            f.seek(b * block)
            f.write(rng.randbytes(block))
            changed += block
    os.utime(img, (tm, tm))
    mbox = os.path.join(root, "mail", "inbox.mbox")
    mail = parse_size(a.mail)
    with open(mbox, "ab") as f:
        left = mail
        while left > 0:
            msg = b"From bench@example.invalid\n" + content(rng, pool, min(left, 16 << 10)) + b"\n"
            msg = msg[:left]
            f.write(msg)
            left -= len(msg)
    os.utime(mbox, (tm, tm))
    return changed + mail


def cmd_laptop(a):
    root = a.dir
    if a.day == 0:
        laptop_day0(a, root)
        changed = sum(os.path.getsize(os.path.join(root, p)) for p in list_files(root))
    else:
        changed = laptop_edit(a, root, random.Random(a.seed * 1000 + a.day), T_MUT + a.day)
    print(f"changed-bytes {changed}")


def digest_one(args):
    root, rel = args
    p = os.path.join(root, rel) if rel else root
    st = os.lstat(p)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return f"{rel}\0{st.st_size}\0{st.st_mode:o}\0{int(st.st_mtime)}\0{h.hexdigest()}\n".encode()


def cmd_digest(a):
    paths = [""] if os.path.isfile(a.path) else list_files(a.path)
    work = [(a.path, rel) for rel in paths]
    jobs = a.jobs or os.cpu_count() or 1
    h = hashlib.sha256()
    if jobs > 1 and len(work) > 1000:
        import multiprocessing
        with multiprocessing.Pool(jobs) as pool:
            for rec in pool.imap(digest_one, work, chunksize=256):
                h.update(rec)
    else:
        for w in work:
            h.update(digest_one(w))
    print(h.hexdigest(), a.path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("small"); p.add_argument("dir")
    p.add_argument("--files", type=int, default=20000)
    p.add_argument("--dirs", type=int, default=0)
    p.add_argument("--max-size", default="16K")
    p.add_argument("--bulk", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p = sp.add_parser("big"); p.add_argument("file")
    p.add_argument("--size", default="1G"); p.add_argument("--seed", type=int, default=1)
    p = sp.add_parser("mutate-small"); p.add_argument("dir")
    p.add_argument("--fraction", type=float, default=0.01)
    p.add_argument("--add", type=int, default=20)
    p.add_argument("--delete", type=int, default=20)
    p.add_argument("--no-rename", dest="rename", action="store_false")
    p.add_argument("--seed", type=int, default=2)
    p = sp.add_parser("mutate-big"); p.add_argument("file")
    p.add_argument("--change", default="1M"); p.add_argument("--append", default="1M")
    p.add_argument("--seed", type=int, default=2)
    p = sp.add_parser("laptop"); p.add_argument("dir")
    p.add_argument("--day", type=int, required=True)
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--image", default="256M")
    p.add_argument("--blocks", type=int, default=16)
    p.add_argument("--block", default="64K")
    p.add_argument("--mail", default="1M")
    p.add_argument("--edit", type=float, default=0.01)
    p.add_argument("--seed", type=int, default=1)
    p = sp.add_parser("digest"); p.add_argument("path")
    p.add_argument("--jobs", type=int, default=0)
    a = ap.parse_args()
    {"small": cmd_small, "big": cmd_big, "mutate-small": cmd_mutate_small,
     "mutate-big": cmd_mutate_big, "laptop": cmd_laptop, "digest": cmd_digest}[a.cmd](a)


if __name__ == "__main__":
    main()
