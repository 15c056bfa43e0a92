"""Probe whether balancing stage 1's loss over (gender, emotion) narrows the emotion gap between women and men.

    python -m training.group_balance_probe [--seeds 0 1 2] [--data ../shared/data] [--json F]

Stage 1 only (`training.train.train_emotion_models`, the README's training command's settings: 3 teachers,
80 epochs, mixup, Haar crops of celeba_smile_train), once as shipped and once with the loss balanced over
(gender, emotion) cells, per seed. No happy/sad file labels gender, so the gender of each training image is the
shipped model's guess (p_male >= 0.5 on its training crop): a stand-in, for the probe only, for the gender model
training would have to fit first. The teachers' average is measured on the crops `facesort classify` makes of
the two happy/sad test files, and on celeba_smile_test for men and women apart (again by the shipped model's
gender). The rule it was judged by and the outcome are in training/EXPERIMENTS.md (rule G).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from facesort.crop import INPUT_SIZE
from facesort.model import Classifier
from training.data import happy_crops, load_happy, training_detector
from training.train import TrainConfig, _predict, import_tensorflow, train_emotion_models

TESTS = ("test_happy", "celeba_smile_test")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.group_balance_probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args(argv)
    _, keras = import_tensorflow()

    shipped = Classifier(device="cpu")
    train_file = args.data / "happy" / "celeba_smile_train.h5"
    happy = load_happy([train_file])
    tests = {k: load_happy([args.data / "happy" / f"{k}.h5"]) for k in TESTS}
    crops = {k: happy_crops(s.x, INPUT_SIZE)[0] for k, s in tests.items()}
    men = shipped.predict(crops["celeba_smile_test"]).p_male >= 0.5
    runs = []
    for balanced in (False, True):
        for seed in args.seeds:
            cfg = TrainConfig(happy=[str(train_file)], gender="", out="", seed=seed)
            started = time.time()
            # As train() does before stage 1: the seeds set, the training faces found by cfg.detector.
            keras.utils.set_random_seed(cfg.seed)
            hx, _ = happy_crops(happy.x, INPUT_SIZE, detector=training_detector(cfg.detector))
            groups = (shipped.predict(hx).p_male >= 0.5).astype(np.int32) if balanced else None
            teachers = train_emotion_models(cfg, hx, happy.y.astype(np.float32), groups=groups)
            run = {"balanced": balanced, "seed": seed, "minutes": round((time.time() - started) / 60, 2)}
            for k, x in crops.items():
                right = (np.mean([_predict(t, x) for t in teachers], axis=0) >= 0.5) == (tests[k].y >= 0.5)
                run[k] = int(right.sum())
                if k == "celeba_smile_test":
                    run["men"], run["women"] = round(100 * right[men].mean(), 1), round(100 * right[~men].mean(), 1)
                    run["gap"] = round(run["women"] - run["men"], 1)
            run["pooled"] = sum(run[k] for k in TESTS)
            print(json.dumps(run), flush=True)
            runs.append(run)
    keys = (*TESTS, "pooled", "men", "women", "gap")
    summary = {
        ("balanced" if b else "shipped"): {
            k: round(float(np.mean([r[k] for r in runs if r["balanced"] == b])), 2) for k in keys
        }
        for b in (False, True)
    }
    print("means over seeds:", json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "means": summary}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
