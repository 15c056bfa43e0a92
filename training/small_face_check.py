"""Measure what BlazeFace full-range adds to `auto` on small faces, on copies of gender validation.

    python -m training.small_face_check [--model DIR] [--data ../shared/data] [--json F]
    python -m training.small_face_check --speed   # photos/s on wild_dev and fourclass_dev, with and without

Each of the 3,000 gender validation crops is classified through detection and the crop convention with
`auto` as it is (BlazeFace short-range, then full-range, then the Haar passes) and without the full-range
pass (the detector before it): as it is, and placed small on a noisy grey canvas (its longer side 6%, 10% and
15% of a 1000-pixel square; seeded places), as a face looks in a photo of a whole person. The answer is the
gender of the largest face found; a copy where no face is found counts as wrong. No labelled photo of
fourclass_dev or wild_dev is used: those sets are for reporting. Needs the train extra but not TensorFlow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from facesort.crop import crop_face
from facesort.detect import AutoDetector
from facesort.images import read_image
from facesort.model import Classifier
from training.data import gender_files
from training.detector_model import place_on_canvas

FRACTIONS = (0.06, 0.10, 0.15)
CANVAS = 1000


class _Nothing:
    def detect(self, image):
        return []


def run(clf: Classifier, images, y: np.ndarray, detectors: dict) -> dict:
    """Counts for `images` (an iterable, made one at a time: 3,000 canvases would not fit in memory) through
    each of `detectors`: faces found, gender right (the largest face's; none found counts as wrong), and
    whether the two detectors give the same boxes where BlazeFace short-range finds a face."""
    crops: dict = {name: [] for name in detectors}
    index: dict = {name: [] for name in detectors}
    same = short_found = 0
    for i, bgr in enumerate(images):
        boxes = {name: d.detect(bgr) for name, d in detectors.items()}
        for name, b in boxes.items():
            if b:
                crops[name].append(crop_face(bgr, b[0], clf.input_size, clf.crop_scale)[..., ::-1])
                index[name].append(i)
        if detectors["auto"].blaze.detect(bgr):
            short_found += 1
            same += len({repr(b) for b in boxes.values()}) == 1
    counts = {}
    for name in detectors:
        if crops[name]:
            x = np.stack(crops[name])
            p = np.concatenate([clf.predict(x[k : k + 512]).p_male for k in range(0, len(x), 512)])
            right = int(((p >= 0.5) == y[index[name]]).sum())
        else:
            right = 0
        counts[name] = {"right": right, "found": len(index[name]), "images": len(y)}
    counts["same boxes where short-range finds a face"] = [same, short_found]
    return counts


def speed(data: Path, repeats: int = 3) -> dict:
    """Whole photos per second on wild_dev and fourclass_dev, as `python -m bench` times them, `auto` with and
    without the full-range pass, alternating in one process (the median of `repeats` runs each; run from the
    repository's root, where `bench` is)."""
    from bench.run import run_pipeline
    from facesort.images import iter_image_files

    out = {}
    for name in ("wild_dev", "fourclass_dev"):
        files = list(iter_image_files([data / name]))
        rates: dict = {"without full-range": [], "auto": []}
        for _ in range(repeats):
            for label in rates:
                detector = AutoDetector() if label == "auto" else AutoDetector(full=_Nothing())
                seconds, _ = run_pipeline(files, detector, workers=2)
                rates[label].append(len(files) / seconds)
        out[name] = {k: float(np.median(v)) for k, v in rates.items()}
        ratio = out[name]["auto"] / out[name]["without full-range"]
        print(f"{name}: " + ", ".join(f"{k} {v:,.1f} photos/s" for k, v in out[name].items()) + f"; {ratio:.2f}x")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="default: the shipped model")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="write the counts here")
    parser.add_argument("--speed", action="store_true", help="instead: photos per second, with and without")
    args = parser.parse_args(argv)
    if args.speed:
        result = speed(args.data)
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
        return 0
    clf = Classifier(args.model, device="cpu")
    detectors = {"without full-range": AutoDetector(full=_Nothing()), "auto": AutoDetector()}
    _, val = gender_files(args.data / "gender", seed=0)
    faces = [read_image(p) for p, _ in val]
    y = np.array([label for _, label in val])
    variants = {"as is": lambda: iter(faces)}
    for fraction in FRACTIONS:

        def copies(fraction=fraction):
            rng = np.random.default_rng(int(fraction * 100))
            return (place_on_canvas(f, fraction, CANVAS, rng) for f in faces)

        variants[f"{fraction:.0%} of the canvas"] = copies
    counts = {}
    for variant, images in variants.items():
        counts[variant] = c = run(clf, images(), y, detectors)
        for name in detectors:
            found, right = c[name]["found"] / len(y), c[name]["right"] / len(y)
            print(f"{variant:18s} {name:20s} face found {found:7.2%}  gender right {right:7.2%}")
        same, short = c["same boxes where short-range finds a face"]
        print(f"{variant:18s} same boxes where short-range finds a face: {same} of {short}")
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
