"""`--sideways` measured: photos turned a quarter each way and upside down (no EXIF orientation to undo it),
classified with and without it, and the speed it costs on upright photos.

    python -m bench.sideways [--data ../shared/data] [--repeats 3]   # accuracy on turned copies, and speed
    python -m bench.sideways --choose                                 # how SIDEWAYS_MARGIN was chosen

The turned copies of `wild_dev` and `fourclass_dev` (and the upright ones, re-encoded the same way: JPEG
quality 95) are written to a temporary folder and measured as `facesort evaluate` measures (predict_folder:
largest face, no face counts wrong). `--choose` turns 600 gender/Training crops (seed 0) each one way and
prints, for each margin, how many upright crops a turned view wins and how many turned crops get their right
view back; the rule (in facesort.detect) is written beside SIDEWAYS_MARGIN."""

from __future__ import annotations

import argparse
import csv
import random
import statistics
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from facesort.detect import SIDEWAYS_MARGIN, AutoDetector
from facesort.evaluate import metrics, predict_folder
from facesort.images import read_image
from facesort.model import Classifier
from facesort.pipeline import classify_paths

TURNS = {"upright": None, "a quarter clockwise": cv2.ROTATE_90_CLOCKWISE}
TURNS |= {"a quarter anticlockwise": cv2.ROTATE_90_COUNTERCLOCKWISE, "upside down": cv2.ROTATE_180}


def labelled(data: Path) -> dict[str, list[tuple[Path, str]]]:
    """(photo, class) of the two dev sets."""
    with open(data / "wild_dev" / "labels.csv", newline="") as f:
        wild = [(data / "wild_dev" / r["file"], r["class"]) for r in csv.DictReader(f)]
    four = [(p, p.parent.name) for p in sorted((data / "fourclass_dev").glob("*/*.jpg"))]
    return {"wild_dev": wild, "fourclass_dev": four}


def turned_copies(files: list[tuple[Path, str]], code, folder: Path) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True)
    out = []
    for i, (path, cls) in enumerate(files):
        image = read_image(str(path))
        image = image if code is None else cv2.rotate(image, code)
        target = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(target), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        out.append((target, cls))
    return out


def accuracy_and_speed(data: Path, repeats: int) -> None:
    clf = Classifier(device="cpu")
    detectors = {"as it is": AutoDetector(), "--sideways": AutoDetector(sideways=True)}
    with tempfile.TemporaryDirectory() as tmp:
        print("| set | photos turned | without `--sideways` | with `--sideways` |\n| --- | --- | ---: | ---: |")
        upright = {}
        for name, files in labelled(data).items():
            for turn, code in TURNS.items():
                copies = turned_copies(files, code, Path(tmp) / name / turn.replace(" ", "_"))
                upright.setdefault(name, copies)
                figures = []
                for det in detectors.values():
                    y_true, y_pred = predict_folder(None, clf, det, files=copies)
                    figures.append(metrics(y_true, y_pred)["accuracy"])
                print(f"| {name} | {turn} | {figures[0]:.1%} | {figures[1]:.1%} |")
        print("\nUpright photos, end to end (classify_paths, 2 workers), alternating, median of", repeats)
        for name, copies in upright.items():
            paths = [str(p) for p, _ in copies]
            times = {k: [] for k in detectors}
            for _ in range(repeats):
                for k, det in detectors.items():
                    start = time.perf_counter()
                    for _row in classify_paths(paths, clf, det, 64, 2):
                        pass
                    times[k].append(time.perf_counter() - start)
            rate = {k: len(paths) / statistics.median(v) for k, v in times.items()}
            print(
                f"{name}: {rate['as it is']:.1f} -> {rate['--sideways']:.1f} photos/s "
                f"(ratio {rate['--sideways'] / rate['as it is']:.2f})"
            )


def choose(data: Path) -> None:
    paths = sorted((data / "gender" / "Training").rglob("*.jpg"))
    random.Random(0).shuffle(paths)
    blaze = AutoDetector().blaze
    codes = [(cv2.ROTATE_90_CLOCKWISE, -1), (cv2.ROTATE_90_COUNTERCLOCKWISE, 1), (cv2.ROTATE_180, 2)]
    upright, turned = [], []
    for i, path in enumerate(paths[:600]):
        image = read_image(str(path))
        views = blaze.turned_views(image)
        upright.append((views[0][0], max(views[t][0] for t in (1, -1, 2))))
        code, right = codes[i % 3]  # the turn that puts the turned copy upright again
        views = blaze.turned_views(np.ascontiguousarray(cv2.rotate(image, code)))
        turned.append((views[0][0], views[right][0], max(views[t][0] for t in (0, 1, -1, 2) if t != right)))
    upright, turned = np.array(upright), np.array(turned)
    print(f"600 gender/Training crops (seed 0); SIDEWAYS_MARGIN = {SIDEWAYS_MARGIN}")
    print("| margin | upright crops turned (wrongly) | turned crops given their right view |\n| ---: | ---: | ---: |")
    for margin in (0.0, 0.05, 0.1, 0.15, 0.2, 0.3):
        wrong = int((upright[:, 1] > upright[:, 0] + margin).sum())
        right = int(((turned[:, 1] > turned[:, 0] + margin) & (turned[:, 1] >= turned[:, 2])).sum())
        print(f"| {margin} | {wrong} | {right} |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sideways", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--choose", action="store_true", help="the margin table SIDEWAYS_MARGIN was chosen by")
    args = parser.parse_args()
    if args.choose:
        choose(args.data)
    else:
        accuracy_and_speed(args.data, args.repeats)


if __name__ == "__main__":
    main()
