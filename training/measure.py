"""The model card's figures: emotion on held-out happy/sad files, gender on the validation folder, and
four-class accuracy through facesort's own path. Used by `facesort train` and by `training.remeasure`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facesort.model import CARD_FILE
from training.card import binary_confusion


def held_out_figures(predict, happy_tests: dict, gender_val: tuple) -> tuple[dict, dict]:
    """(metrics, confusions). `predict(x)` -> {"emotion": p_happy, "gender": p_male}; happy_tests maps a
    name to (crops, labels); gender_val is (crops, labels)."""
    metrics = {"emotion": {}, "gender": {}}
    confusions = {}
    for name, (x, y) in happy_tests.items():
        p = predict(x)["emotion"]
        metrics["emotion"][name] = accuracy(p, y)
        confusions[f"emotion, {name}"] = binary_confusion(y, p, ("sad", "happy"))
    vx, vy = gender_val
    p = predict(vx)["gender"]
    metrics["gender"]["validation"] = accuracy(p, vy)
    confusions["gender, validation"] = binary_confusion(vy, p, ("female", "male"))
    return metrics, confusions


def add_fourclass(card: dict, model_dir: Path, folder: str, confusions: dict, files=None) -> None:
    """Measure a labelled four-class folder (or its `files`, as `facesort.evaluate.labelled_files` lists them)
    with the model in model_dir (its ONNX file and card as written), through facesort's classify path with
    the default detector; add the figures to `card`."""
    from facesort.detect import make_detector
    from facesort.evaluate import metrics as four_metrics
    from facesort.evaluate import predict_folder
    from facesort.model import Classifier

    (model_dir / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")  # what the Classifier reads
    y_true, y_pred = predict_folder(folder, Classifier(model_dir, device="cpu"), make_detector("auto"), files=files)
    fourclass = four_metrics(y_true, y_pred) | {"folder": str(folder)}
    name = Path(folder).name
    metrics = card["metrics"]
    metrics["four-class"] = {name: fourclass["accuracy"]}
    metrics["emotion"][f"{name} (women)"] = fourclass["emotion_accuracy_women"]
    metrics["emotion"][f"{name} (men)"] = fourclass["emotion_accuracy_men"]
    metrics["gender"][name] = fourclass["gender_accuracy"]
    confusions[f"four classes, {name}"] = fourclass
    card["fourclass"] = fourclass


def accuracy(p: np.ndarray, y: np.ndarray) -> float:
    return float(((p >= 0.5).astype(np.int64) == y).mean())
