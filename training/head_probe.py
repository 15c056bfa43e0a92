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

import json
import time

import numpy as np

from training.stage1_probe import TESTS, bench, counts, options, right, training_crops
from training.train import TrainConfig, import_tensorflow, train_emotion_models


def main(argv: list[str] | None = None) -> int:
    parser = options("training.head_probe", __doc__, [0, 1, 2])
    args = parser.parse_args(argv)
    _, keras = import_tensorflow()

    b = bench(args.data)
    runs = []
    for rows in ("lower", "all"):
        for seed in args.seeds:
            cfg = TrainConfig(happy=[str(b.train_file)], gender="", out="", seed=seed, emotion_rows=rows)
            started = time.time()
            hx = training_crops(keras, cfg, b.happy.x)
            teachers = train_emotion_models(cfg, hx, b.happy.y.astype(np.float32))
            run = {"rows": rows, "seed": seed, "minutes": round((time.time() - started) / 60, 2)}
            run.update(counts(right(teachers, b)))
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
