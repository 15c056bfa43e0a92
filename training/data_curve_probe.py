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

import json
import time

import numpy as np

from training.stage1_probe import bench, counts, options, right, training_crops
from training.train import TrainConfig, import_tensorflow, train_emotion_models


def stratified(y: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """Indices of n images of y, each class in its share of y, drawn without replacement."""
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(y):
        where = np.flatnonzero(y == label)
        chosen.append(rng.choice(where, round(n * len(where) / len(y)), replace=False))
    return np.sort(np.concatenate(chosen))


def main(argv: list[str] | None = None) -> int:
    parser = options("training.data_curve_probe", __doc__, [0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[150, 300, 450, 600])
    parser.add_argument("--epochs", type=int, default=80, help="stage 1's epochs (the README command's: 80)")
    args = parser.parse_args(argv)
    _, keras = import_tensorflow()

    b = bench(args.data)
    runs = []
    for size in args.sizes:
        keep = stratified(b.happy.y, size) if size < len(b.happy.y) else np.arange(len(b.happy.y))
        for seed in args.seeds:
            cfg = TrainConfig(happy=[str(b.train_file)], gender="", out="", seed=seed, emotion_epochs=args.epochs)
            started = time.time()
            hx = training_crops(keras, cfg, b.happy.x[keep])
            teachers = train_emotion_models(cfg, hx, b.happy.y[keep].astype(np.float32))
            run = {"images": len(keep), "seed": seed, "epochs": args.epochs}
            run["minutes"] = round((time.time() - started) / 60, 2)
            run.update(counts(right(teachers, b)))
            print(json.dumps(run), flush=True)
            runs.append(run)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
