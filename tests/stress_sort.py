"""Stress test of sort and unsort, run by hand (minutes; not part of the suite):

    python tests/stress_sort.py [FIRST_SEED [RUNS [MODE]]]    # MODE: --move, --hardlink, --symlink; mixed if left out

Each run makes a random tree of the example photos (same names in several folders, identical files, sidecars by
stem and by whole name, Live Photo videos, relative symlinks), sorts it in a random mode (killed with SIGKILL up to
twice, then run to the end), then unsorts it (killed up to twice too, then run to the end). It asserts that no
file's content is ever lost, and prints whether the finished unsort gave back the tree it started from (links
compared by the file they resolve to)."""

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PY = [sys.executable, "-m", "facesort"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
EX = sorted(p for p in (ROOT / "examples").iterdir() if p.suffix == ".jpg")


def digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def contents(*folders):
    out = []
    for f in folders:
        for p in f.rglob("*"):
            if p.is_file() and not p.is_symlink() and p.name != "facesort-report.csv":
                out.append(digest(p))
    return out


def tree(folder):
    res = {}
    for p in folder.rglob("*"):
        if p.is_symlink():
            res[str(p.relative_to(folder))] = "-> " + os.path.realpath(p)
        elif p.is_file():
            res[str(p.relative_to(folder))] = digest(p)
    return res


def run(args, kill_after=None):
    proc = subprocess.Popen(PY + args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if kill_after is not None:
        time.sleep(kill_after)
        proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    assert "Traceback" not in err, err
    return proc.returncode


def make(base, rng):
    base.mkdir(parents=True)
    for d in range(rng.randint(1, 3)):
        folder = base / f"d{d}"
        folder.mkdir()
        for i in range(rng.randint(3, 12)):
            src = rng.choice(EX)
            name = f"IMG_{rng.randint(0, 8):04d}" + rng.choice([".jpg", ".JPG", ".png"])
            if (folder / name).exists():
                continue
            data = src.read_bytes() + (b"" if rng.random() < 0.3 else bytes([i, d]))
            (folder / name).write_bytes(data)
            r = rng.random()
            stem = name.rsplit(".", 1)[0]
            if r < 0.3:
                (folder / (stem + ".xmp")).write_text(f"xmp {d} {i}")
            elif r < 0.45:
                (folder / (name + ".json")).write_text(f"json {d} {i}")
            elif r < 0.55:
                (folder / (stem + ".MOV")).write_bytes(os.urandom(64))
        if rng.random() < 0.5:
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))
            (folder / "link.jpg").symlink_to(Path("..") / folder.name / files[0].name)


def main() -> None:
    seed0 = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    for it in range(int(sys.argv[2]) if len(sys.argv) > 2 else 10):
        rng = random.Random(seed0 + it)
        work = Path(os.environ.get("TMPDIR", "/tmp")) / "facesort-stress" / str(seed0 + it)
        shutil.rmtree(work, ignore_errors=True)
        photos, into = work / "photos", work / "SORTED"
        make(photos, rng)
        before_tree, before = tree(photos), sorted(contents(work))
        mode = rng.choice([[], ["--move"], ["--hardlink"], ["--symlink"]]) if len(sys.argv) < 4 else [sys.argv[3]]
        multi = rng.choice([[], ["--multi", "all"]])
        args = ["sort", str(photos), "--into", str(into), "-q", "--batch-size", "2", *mode, *multi]
        for _ in range(rng.randint(0, 2)):
            run(args, kill_after=rng.uniform(1.2, 2.2))
            rep = into / "facesort-report.csv"
            print("  killed sort: rows", len(rep.read_text().splitlines()) - 1 if rep.exists() else None, flush=True)
            assert set(before) <= set(contents(work)), "lost a file after a killed sort"
        assert run(args) in (0,), "sort"
        assert set(before) <= set(contents(work)), "lost a file after sort"
        for _ in range(rng.randint(0, 2)):
            n0 = len((into / "facesort-report.csv").read_text().splitlines())
            run(["unsort", str(into), "-q"], kill_after=rng.uniform(0.5, 1.0))
            print(
                "  killed unsort: rows added",
                len((into / "facesort-report.csv").read_text().splitlines()) - n0,
                flush=True,
            )
            assert set(before) <= set(contents(work)), "lost a file after a killed unsort"
        rc = run(["unsort", str(into), "-q"])
        after = tree(photos)
        ok = after == before_tree
        if not ok:
            diff = {
                k: (before_tree.get(k), after.get(k))
                for k in set(before_tree) | set(after)
                if before_tree.get(k) != after.get(k)
            }
        print(seed0 + it, mode, multi, "unsort rc", rc, "same tree" if ok else f"DIFF {diff}", flush=True)
        assert set(before) <= set(contents(work)), "lost a file after unsort"
        assert ok or rc == 1, "unsort finished with nothing kept, but the tree is not the one it started from"


if __name__ == "__main__":
    main()
