"""Probe how stage 1's emotion accuracy grows with the number of labelled happy/sad images.

    python -m training.data_curve_probe [--sizes 150 300 450 600] [--seeds 0] [--epochs 80] [--data ...] [--json F]

Stage 1 only, as the README's training command runs it (`training.train.train_emotion_models`: 3 teachers, 80
epochs, mixup, Haar crops), on stratified draws of celeba_smile_train of each size (the same draw for a size at
every seed; the full file at 600), the teachers' average measured on the crops `facesort classify` makes of
the two happy/sad test files, as the model card's figures are. It says whether more labelled faces (a user's own
`--happy` photos) would still pay, not which model to ship: stage 2 starts from these models. Results in
training/EXPERIMENTS.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facesort.crop import INPUT_SIZE
from training.data import happy_crops, load_happy, training_detector
from training.measure import accuracy
from training.train import TrainConfig, _predict, import_tensorflow, train_emotion_models

TESTS = ("test_happy", "celeba_smile_test")


def stratified(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of n images of y, each class in its share of y, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(y):
        where = np.flatnonzero(y == label)
        chosen.append(rng.choice(where, round(n * len(where) / len(y)), replace=False))
    return np.sort(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 450, 600])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--epochs", type=int, default=80, help="stage 1's epochs (the README command's: 80)")
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args(argv)
    _, keras = import_tensorflow()

    train_file = args.data / "happy" / "celeba_smile_train.h5"
    happy = load_happy([train_file])
    tests = {k: load_happy([args.data / "happy" / f"{k}.h5"]) for k in TESTS}
    crops = {k: happy_crops(s.x, INPUT_SIZE)[0] for k, s in tests.items()}
    runs = []
    for size in args.sizes:
        keep = stratified(happy.y, size) if size < len(happy.y) else np.arange(len(happy.y))
        for seed in args.seeds:
            cfg = TrainConfig(happy=[str(train_file)], gender="", out="", seed=seed, emotion_epochs=args.epochs)
            started = time.time()
            # As train() does before stage 1: the seeds set, the training faces found by cfg.detector.
            keras.utils.set_random_seed(cfg.seed)
            hx, _ = happy_crops(happy.x[keep], INPUT_SIZE, detector=training_detector(cfg.detector))
            teachers = train_emotion_models(cfg, hx, happy.y[keep].astype(np.float32))
            run = {"images": len(keep), "seed": seed, "epochs": args.epochs}
            run["minutes"] = round((time.time() - started) / 60, 2)
            for k, x in crops.items():
                p = np.mean([_predict(t, x) for t in teachers], axis=0)
                run[k] = int(round(accuracy(p, tests[k].y) * len(x)))
            run["pooled"] = sum(run[k] for k in TESTS)
            print(json.dumps(run), flush=True)
            runs.append(run)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
