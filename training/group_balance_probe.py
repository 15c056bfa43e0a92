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

import json
import time

import numpy as np

from facesort.model import Classifier
from training.stage1_probe import TESTS, bench, counts, options, right, training_crops
from training.train import TrainConfig, import_tensorflow, train_emotion_models


def main(argv: list[str] | None = None) -> int:
    parser = options("training.group_balance_probe", __doc__, [0, 1, 2])
    args = parser.parse_args(argv)
    _, keras = import_tensorflow()

    shipped = Classifier(device="cpu")
    b = bench(args.data)
    men = shipped.predict(b.crops["celeba_smile_test"]).p_male >= 0.5
    runs = []
    for balanced in (False, True):
        for seed in args.seeds:
            cfg = TrainConfig(happy=[str(b.train_file)], gender="", out="", seed=seed)
            started = time.time()
            hx = training_crops(keras, cfg, b.happy.x)
            groups = (shipped.predict(hx).p_male >= 0.5).astype(np.int32) if balanced else None
            teachers = train_emotion_models(cfg, hx, b.happy.y.astype(np.float32), groups=groups)
            run = {"balanced": balanced, "seed": seed, "minutes": round((time.time() - started) / 60, 2)}
            got = right(teachers, b)
            run.update(counts(got))
            c = got["celeba_smile_test"]
            run["men"], run["women"] = round(100 * c[men].mean(), 1), round(100 * c[~men].mean(), 1)
            run["gap"] = round(run["women"] - run["men"], 1)
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
