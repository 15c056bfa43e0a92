"""Sidecar matching in `sort`, timed apart from classification: `Sorter.place` in a dry run over 10,000 photos in
100 folders of 500 (each folder with 10 .xmp sidecars), once with the photos interleaved across the folders (as a
--files-from list in date order comes) and once grouped by folder (as a walk yields them).

    python -m bench.sidecars [REPO ...]   # each REPO a checkout whose facesort is timed (default: this one)

Each checkout runs in a process of its own, alternating, `--repeats` times; the medians are printed."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from facesort.sorter import Sorter
tree = sys.argv[2]
paths = [f"{tree}/d{d:03d}/IMG_{i:04d}.jpg" for i in range(0, 500, 5) for d in range(100)]
for order in (paths, sorted(paths)):
    sorter = Sorter(f"{tree}/OUT", "copy", dry_run=True)
    start = time.perf_counter()
    for p in order:
        sorter.place(p, "HappyMale")
    print(time.perf_counter() - start)
"""


def make_tree(root: Path) -> None:
    for d in range(100):
        folder = root / f"d{d:03d}"
        folder.mkdir(parents=True)
        for i in range(500):
            (folder / f"IMG_{i:04d}.jpg").touch()
        for i in range(0, 500, 50):
            (folder / f"IMG_{i:04d}.xmp").touch()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("repos", nargs="*", default=[str(Path(__file__).resolve().parents[1])])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        make_tree(Path(tmp))
        times = {repo: ([], []) for repo in args.repos}
        for _ in range(args.repeats):
            for repo in args.repos:
                out = subprocess.run(
                    [sys.executable, "-c", CHILD, repo, tmp], capture_output=True, text=True, check=True
                )
                interleaved, grouped = map(float, out.stdout.split())
                times[repo][0].append(interleaved)
                times[repo][1].append(grouped)
    for repo, (interleaved, grouped) in times.items():
        print(
            f"{repo}: interleaved {statistics.median(interleaved):.2f} s, grouped by folder "
            f"{statistics.median(grouped):.2f} s (median of {args.repeats})"
        )


if __name__ == "__main__":
    main()
