"""Probe an emotion threshold per gender: would moving men's and women's happy/sad decisions apart mend the gap?

    python -m training.gender_offset_probe [--data ../shared/data] [--splits 20] [--json F]

The shipped model, no retraining: an offset b_m is added to the emotion logit of faces the model calls male
(p_male >= 0.5), b_f to the others, each from -2 to 2 in steps of 0.25. The pair is chosen on
celeba_smile_test (the crops `facesort classify` makes of it) by images right, among equals the one nearest
(0, 0). As the choice then flatters that file, a two-fold cross-fit says what it is worth: halves stratified by
(label, model gender), offsets chosen on one half and counted on the other, both ways, over seeded random
splits. test_happy is counted with the pair chosen on all of celeba_smile_test. The rule it was judged by and
the outcome are in training/EXPERIMENTS.md (rule I). Needs no TensorFlow.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from facesort.crop import INPUT_SIZE
from facesort.model import Classifier
from training.calibrate import OFFSETS, logit
from training.data import happy_crops, load_happy

PAIRS = sorted(itertools.product(OFFSETS, OFFSETS), key=lambda b: abs(b[0]) + abs(b[1]))


def right(z: np.ndarray, men: np.ndarray, y: np.ndarray, pair) -> np.ndarray:
    """Which images the emotion decision gets right with offset pair (b_m, b_f) on logit z."""
    return ((z + np.where(men, pair[0], pair[1])) >= 0) == y


def choose(z: np.ndarray, men: np.ndarray, y: np.ndarray):
    """The pair with the most images right (the first such in PAIRS, so the nearest (0, 0) among equals)."""
    counts = [int(right(z, men, y, b).sum()) for b in PAIRS]
    return PAIRS[int(np.argmax(counts))]


def halves(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A boolean mask: half of every stratum (rounding alternates between strata)."""
    mask = np.zeros(len(strata), bool)
    for k, s in enumerate(np.unique(strata)):
        idx = rng.permutation(np.flatnonzero(strata == s))
        mask[idx[: (len(idx) + k % 2) // 2]] = True
    return mask


def figures(ok: np.ndarray, men: np.ndarray) -> dict:
    return {
        "right": int(ok.sum()),
        "men": round(100 * float(ok[men].mean()), 1),
        "women": round(100 * float(ok[~men].mean()), 1),
        "gap": round(100 * float(ok[~men].mean() - ok[men].mean()), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.gender_offset_probe", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args(argv)

    model = Classifier(device="cpu")
    sets = {}
    for name in ("celeba_smile_test", "test_happy"):
        s = load_happy([args.data / "happy" / f"{name}.h5"])
        p = model.predict(happy_crops(s.x, INPUT_SIZE)[0])
        sets[name] = (logit(p.p_happy), p.p_male >= 0.5, s.y >= 0.5)

    z, men, y = sets["celeba_smile_test"]
    out: dict = {"shipped": {k: figures(right(*v, (0.0, 0.0)), v[1]) for k, v in sets.items()}}
    pair = choose(z, men, y)
    out["chosen_on_all"] = {"pair": [float(b) for b in pair]}
    out["chosen_on_all"].update({k: figures(right(*v, pair), v[1]) for k, v in sets.items()})

    rng = np.random.default_rng(0)
    strata = y.astype(int) * 2 + men.astype(int)
    runs, pairs = [], []
    for _ in range(args.splits):
        a = halves(strata, rng)
        ok = np.zeros(len(y), bool)
        for fit, count in ((a, ~a), (~a, a)):
            b = choose(z[fit], men[fit], y[fit])
            pairs.append([float(v) for v in b])
            ok[count] = right(z[count], men[count], y[count], b)
        runs.append(figures(ok, men))
    out["cross_fit_celeba_smile_test"] = {
        k: round(float(np.mean([r[k] for r in runs])), 2) for k in ("right", "men", "women", "gap")
    }
    out["cross_fit_pairs"] = pairs
    print(json.dumps({k: v for k, v in out.items() if k != "cross_fit_pairs"}, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
