"""Measure what turning crops with the face's roll does, on the selection sets and on turned copies of them.

    python -m training.roll_check [--model DIR] [--data ../shared/data] [--degrees 30]

Each held-out image (the two happy/sad test files, gender validation) is classified through detection and
the crop convention twice: with BlazeFace's roll (the default) and with upright crops. Then again on a copy
of every image on a larger canvas turned by a seeded random angle within +-degrees. No labelled photo of
fourclass_dev or wild_dev is used: those sets are for reporting. This is the measurement behind the
roll-turned crops (training/EXPERIMENTS.md). Needs the train extra (h5py) but not TensorFlow.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from facesort.detect import AutoDetector, BlazeFaceDetector
from facesort.images import read_image
from facesort.model import Classifier
from training.data import face_crop, gender_files, load_happy


def turned(bgr: np.ndarray, degrees: float) -> np.ndarray:
    """The image on a canvas twice its size (its mean colour), turned about the centre."""
    h, w = bgr.shape[:2]
    fill = tuple(float(v) for v in bgr.reshape(-1, 3).mean(0))
    big = cv2.copyMakeBorder(bgr, h // 2, h // 2, w // 2, w // 2, cv2.BORDER_CONSTANT, value=fill)
    m = cv2.getRotationMatrix2D((big.shape[1] / 2, big.shape[0] / 2), degrees, 1.0)
    return cv2.warpAffine(big, m, big.shape[1::-1], borderValue=fill)


def crops(images: list[np.ndarray], detector) -> np.ndarray:
    """RGB crops of each image's largest face (the whole image where none is found)."""
    return np.stack([face_crop(bgr, detector)[0] for bgr in images])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="default: the shipped model")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--degrees", type=float, default=30.0)
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args(argv)
    clf = Classifier(args.model, device="cpu")
    detectors = {"upright": AutoDetector(blaze=BlazeFaceDetector(align=False)), "turned": AutoDetector()}
    sets = {}
    for name in ("test_happy", "celeba_smile_test"):
        s = load_happy([args.data / "happy" / f"{name}.h5"])
        sets[name] = ([x[..., ::-1].copy() for x in s.x], s.y.astype(int), "p_happy")
    _, val = gender_files(args.data / "gender", seed=0)
    sets["gender validation"] = ([read_image(p) for p, _ in val], np.array([y for _, y in val]), "p_male")
    counts = {}
    for name, (images, y, output) in sets.items():
        angles = np.random.default_rng(0).uniform(-args.degrees, args.degrees, len(images))
        copies = {"as is": images, f"turned +-{args.degrees:g}": [turned(x, a) for x, a in zip(images, angles)]}
        for variant, imgs in copies.items():
            for crop_kind, detector in detectors.items():
                p = getattr(clf.predict(crops(imgs, detector)), output)
                right = int(((p >= 0.5) == y).sum())
                counts[f"{name}, {variant}, {crop_kind} crops"] = [right, len(y)]
                print(f"{name:18s} {variant:12s} {crop_kind:8s} crops: {right}/{len(y)} = {right / len(y):.2%}")
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
