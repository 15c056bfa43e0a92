"""Probe where stage 1's emotion head should look: the feature map's lower rows (the mouth, as shipped) or all.

    python -m training.head_probe [--seeds 0 1 2] [--data ../shared/data] [--json F]

Stage 1 only (`training.train.train_emotion_models`, the README's training command's settings: 3 teachers,
80 epochs, mixup, Haar crops of celeba_smile_train), once per head and seed; the teachers' average is measured
on the crops `facesort classify` makes of the two happy/sad test files, as the model card's figures are. 3 to 8
minutes a run on the 2-core machines seen so far. The rule it was judged by and the outcome are in
training/EXPERIMENTS.md (rule H: the whole face would have needed 6 more of the 300 test images on average and
no fewer on celeba_smile_test; it had neither).
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args(argv)
    _, keras = import_tensorflow()

    train_file = args.data / "happy" / "celeba_smile_train.h5"
    happy = load_happy([train_file])
    tests = {k: load_happy([args.data / "happy" / f"{k}.h5"]) for k in TESTS}
    crops = {k: happy_crops(s.x, INPUT_SIZE)[0] for k, s in tests.items()}
    runs = []
    for rows in ("lower", "all"):
        for seed in args.seeds:
            cfg = TrainConfig(happy=[str(train_file)], gender="", out="", seed=seed, emotion_rows=rows)
            started = time.time()
            # As train() does before stage 1: the seeds set, the training faces found by cfg.detector.
            keras.utils.set_random_seed(cfg.seed)
            hx, _ = happy_crops(happy.x, INPUT_SIZE, detector=training_detector(cfg.detector))
            teachers = train_emotion_models(cfg, hx, happy.y.astype(np.float32))
            run = {"rows": rows, "seed": seed, "minutes": round((time.time() - started) / 60, 2)}
            for k, x in crops.items():
                p = np.mean([_predict(t, x) for t in teachers], axis=0)
                run[k] = int(round(accuracy(p, tests[k].y) * len(x)))
            run["pooled"] = sum(run[k] for k in TESTS)
            print(json.dumps(run), flush=True)
            runs.append(run)
    summary = {
        rows: {k: float(np.mean([r[k] for r in runs if r["rows"] == rows])) for k in (*TESTS, "pooled")}
        for rows in ("lower", "all")
    }
    print("means over seeds:", json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "means": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
