"""Measure an existing model's card figures again, with facesort's current detector and crop path.

    python -m training.remeasure MODEL_DIR [--happy-test F.h5 ...] [--gender DIR] [--evaluate DIR] --why TEXT

Figures in a card are measured on crops made by the detector of the day; when detection changes (as when
BlazeFace replaced the Haar cascades) the same model's figures change with it. This recomputes them from
the ONNX file on the data its card names (or the data given), keeps the previous figures under
`remeasured.previous_metrics`, and rewrites MODEL_CARD.md and its confusion matrices. Needs the train
extra (h5py) but not TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from facesort.crop import CONVENTION
from facesort.evaluate import labelled_files
from facesort.model import CARD_FILE, Classifier, ModelError
from training.card import write_markdown
from training.data import (
    CROP_CACHE,
    TRAINING_DETECTORS,
    DataError,
    gender_crops,
    gender_sources,
    happy_crops,
    load_happy,
    photo_folders_of,
)
from training.measure import add_fourclass, held_out_figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.remeasure", description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--happy-test", action="append", help="default: the card's")
    parser.add_argument("--gender", action="append", help="repeatable; default: the card's")
    parser.add_argument("--evaluate", help="default: the card's")
    parser.add_argument("--why", required=True, help="recorded in the card")
    args = parser.parse_args(argv)
    # Every input read and checked before anything is measured: a mistyped path is one sentence, exit 2.
    card_path = args.model_dir / CARD_FILE
    try:
        card = json.loads(card_path.read_text())
        config = card["training"]["config"]
        happy_tests = args.happy_test or config["happy_test"]
        gender = args.gender or config["gender"]
        evaluate = args.evaluate or config.get("evaluate")
        clf = Classifier(args.model_dir, device="cpu")
        held_out = {Path(f).stem: load_happy([f]) for f in happy_tests}
        sources = gender_sources([gender] if isinstance(gender, str) else gender, seed=config.get("seed", 0))
        evaluate_files = labelled_files(evaluate) if evaluate else None
    except OSError as e:
        parser.error(f"{e.filename or args.model_dir}: {e.strerror or e}")
    except (KeyError, json.JSONDecodeError) as e:
        parser.error(f"{card_path} is not a facesort model card ({type(e).__name__}: {e})")
    except (DataError, ModelError, ValueError) as e:
        parser.error(str(e))

    def predict(x):
        parts = [clf.predict(np.asarray(x[i : i + 512])) for i in range(0, len(x), 512)]
        return {
            "emotion": np.concatenate([p.p_happy for p in parts]),
            "gender": np.concatenate([p.p_male for p in parts]),
        }

    tests = {stem: (happy_crops(s.x, clf.input_size)[0], s.y) for stem, s in held_out.items()}
    g_val = [f for s in sources for f in s.val]
    vx, vy, _ = gender_crops(g_val, photo_folders_of(sources), CROP_CACHE, clf.input_size)
    previous = card["metrics"]
    metrics, confusions = held_out_figures(predict, tests, (np.asarray(vx), vy))
    card["metrics"] = metrics | {k: v for k, v in previous.items() if k not in ("emotion", "gender", "four-class")}
    card["crop"]["measured_with"] = TRAINING_DETECTORS["auto"]
    card["crop"]["convention"] = CONVENTION
    # Each measuring-again is kept: the latest at the top with the figures it replaced, those before it
    # (newest first) under `earlier`.
    before = dict(card.get("remeasured") or {})
    earlier = ([{k: v for k, v in before.items() if k != "earlier"}] if before else []) + before.get("earlier", [])
    card["remeasured"] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python -m training.remeasure " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
        "why": args.why,
        "previous_metrics": previous,
    } | ({"earlier": earlier} if earlier else {})
    if evaluate:
        add_fourclass(card, args.model_dir, evaluate, confusions, files=evaluate_files)
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    write_markdown(card, args.model_dir, confusions)
    print(json.dumps(card["metrics"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
