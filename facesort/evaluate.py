"""Accuracy against labelled photos: one definition of each metric, for `facesort evaluate` and the model card.

A labelled folder holds HappyMale/, HappyFemale/, SadMale/ and SadFemale/ (what `sort` writes; any letter case,
with or without separators: happy_male/ too), or its
photos are labelled by a CSV file with `file` and `class` columns. Each photo is classified through the
normal path; its prediction is the class of its largest face, or NoFace.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from facesort.images import iter_image_files
from facesort.model import CLASSES
from facesort.pipeline import ERROR, OK, classify_paths, group_by_image, image_label
from facesort.report import csv_reader, spreadsheet_path

NO_FACE = "NoFace"
PREDICTED = (*CLASSES, NO_FACE)


def _class_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())  # separators dropped; a digit makes another name


def class_folders(folder: Path) -> list[tuple[Path, str]]:
    """(subfolder, class) for each subfolder of `folder` named after a class, in any letter case and with
    or without separators (HappyMale, happymale, happy_male, "Happy Male"), in CLASSES order."""
    by_key = {_class_key(c): c for c in CLASSES}
    try:
        subfolders = sorted(d for d in folder.iterdir() if d.is_dir())
    except OSError:
        return []
    found = [(d, by_key[_class_key(d.name)]) for d in subfolders if _class_key(d.name) in by_key]
    return sorted(found, key=lambda dc: CLASSES.index(dc[1]))


FILE_COLUMNS = ("file", "path", "filename", "image")  # a labels CSV's photo column: the first of these it has
CLASS_COLUMNS = ("class", "label")  # its class column; or else emotion (happy/sad) and gender (male/female)


def _shown(fieldnames) -> str:
    """A header line as a message can show it: a binary file's first bytes are not a list of columns."""
    text = ", ".join(fieldnames or ())
    if not text.isprintable():
        return "no readable header (is it a CSV file?)"
    return text if len(text) <= 200 else text[:200] + "..."


def _labels_columns(labels, fieldnames) -> tuple[str, str | None, tuple[str, str] | None]:
    """(file column, class column, (emotion, gender) columns) of a labels CSV, headers in any letter case;
    exactly one of the last two is set. ValueError with one sentence where they cannot be found."""
    by_lower = {name.strip().lower(): name for name in fieldnames or () if name}
    file = next((by_lower[c] for c in FILE_COLUMNS if c in by_lower), None)
    cls = next((by_lower[c] for c in CLASS_COLUMNS if c in by_lower), None)
    parts = (by_lower["emotion"], by_lower["gender"]) if {"emotion", "gender"} <= by_lower.keys() else None
    if file is None or (cls is None and parts is None):
        raise ValueError(
            f"{labels} needs a column naming the photo ({', '.join(FILE_COLUMNS)}) and one giving its class "
            f"({' or '.join(CLASS_COLUMNS)}), or emotion and gender columns; it has: {_shown(fieldnames)}"
        )
    return file, cls, (None if cls else parts)


def labelled_files(folder: str | Path, labels: str | Path | None = None) -> list[tuple[Path, str]]:
    """(path, true class) for every image under folder/<class>/, or for every row of the `labels` CSV
    (a `file` column, or path, filename or image: a path relative to folder, or absolute; a `class` column,
    or label: one of CLASSES in any letter case; or, without one, `emotion` (happy/sad) and `gender`
    (male/female) columns). Raises ValueError with one sentence for what cannot be used."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder of photos" if folder.exists() else f"no folder {folder}")
    if labels is None:
        found = [(p, c) for d, c in class_folders(folder) for p in iter_image_files([d])]
        if not found:
            raise ValueError(f"{folder} has no images in {', '.join(CLASSES)} folders")
        return found
    by_name = {c.lower(): c for c in CLASSES}
    try:
        with open(labels, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:  # as reports are written
            reader = csv_reader(f)  # commas, or a spreadsheet's semicolons or tabs
            file_col, class_col, parts = _labels_columns(labels, reader.fieldnames)
            found, seen = [], set()
            for line, row in enumerate(reader, start=2):
                name = (row.get(file_col) or "").strip()
                if not name:
                    raise ValueError(f"{labels}, line {line}: no file named")
                if class_col:
                    cls = (row.get(class_col) or "").strip()
                    if cls.lower() not in by_name:
                        raise ValueError(f"{labels}, line {line}: class {cls!r} is not one of {', '.join(CLASSES)}")
                else:
                    emotion, gender = ((row.get(c) or "").strip() for c in parts)
                    if emotion.lower() not in ("happy", "sad") or gender.lower() not in ("male", "female"):
                        raise ValueError(
                            f"{labels}, line {line}: emotion {emotion!r} and gender {gender!r} must be happy or "
                            "sad and male or female"
                        )
                    cls = emotion + gender
                path = Path(spreadsheet_path(str(folder / name)))  # as Excel may have saved the name
                if path in seen:
                    raise ValueError(f"{labels}, line {line}: {name} is labelled twice")
                seen.add(path)
                found.append((path, by_name[cls.lower()]))
    except OSError as e:
        raise ValueError(f"{labels}: {e.strerror or e}") from None
    except csv.Error as e:
        raise ValueError(f"{labels} is not a readable CSV file ({e})") from None
    if not found:
        raise ValueError(f"{labels} labels no photos")
    return found


def predict_folder(
    folder,
    classifier,
    detector,
    batch_size: int = 64,
    workers: int = 2,
    stats=None,
    files=None,
    errors=None,
    confidences=None,
):
    """(true labels, predicted labels) for a labelled folder (or the `files` of `labelled_files`),
    predictions NoFace where no face was found. Photos that could not be read count as NoFace too;
    `errors`, a list, receives (path, error) for each; `confidences`, a list, each photo's confidence in its
    predicted class (that of its largest face; 0 without one)."""
    files = labelled_files(folder) if files is None else files
    truth = {str(p): c for p, c in files}
    y_true, y_pred = [], []
    for rows in group_by_image(
        classify_paths([p for p, _ in files], classifier, detector, batch_size, workers, stats=stats)
    ):
        y_true.append(truth[rows[0].path])
        y_pred.append(image_label(rows) or NO_FACE)
        if errors is not None and rows[0].status == ERROR:
            errors.append((rows[0].path, rows[0].error))
        if confidences is not None:
            confidences.append(rows[0].confidence if rows[0].status == OK else 0.0)
    return y_true, y_pred


UNSURE_STEPS = (0.5, 0.6, 0.7, 0.8, 0.9)  # the --unsure-below values evaluate measures


def by_confidence(y_true, y_pred, confidences, steps=UNSURE_STEPS) -> list[dict]:
    """What `sort --unsure-below P` would do with these photos, for each P: how many reach their class folder
    (a face whose confidence is at least P; the others go to Unsure/, or NoFace/ without a face) and how many
    of those are right, with its 95% interval."""
    right, conf = np.array(y_true) == np.array(y_pred), np.array(confidences, float)
    found = []
    for step in steps:
        kept = conf >= step
        n, hits = int(kept.sum()), int(right[kept].sum())
        found.append(
            {
                "unsure_below": step,
                "sorted": n,
                "sorted_share": n / len(conf) if len(conf) else 0.0,
                "accuracy": hits / n if n else None,
                "interval_95": wilson_interval(hits, n),
            }
        )
    return found


def wilson_interval(right: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval of an accuracy of `right` out of `n` (95% for the default z): how far the
    figure could move on another draw of as many photos. None for n = 0."""
    if n <= 0:
        return None
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def metrics(y_true: Iterable[str], y_pred: Iterable[str]) -> dict:
    """Accuracy, per-class precision/recall/F1, confusion matrix, and emotion and gender separately.

    A photo with no face found counts as wrong everywhere (it got no class)."""
    y_true, y_pred = list(y_true), list(y_pred)
    n = len(y_true)
    t = np.array(y_true)
    p = np.array(y_pred)
    confusion = [[int(((t == a) & (p == b)).sum()) for b in PREDICTED] for a in CLASSES]
    per_class = {}
    for c in CLASSES:
        # Undefined figures are None: precision where nothing was called c, recall where no photo is c.
        tp, called, support = int(((t == c) & (p == c)).sum()), int((p == c).sum()), int((t == c).sum())
        precision = tp / called if called else None
        recall = tp / support if support else None
        f1 = None if precision is None or recall is None else (2 * tp / (called + support))
        per_class[c] = {"precision": precision, "recall": recall, "f1": f1, "support": support}

    def emotion(x):
        return np.array([c[:3] if c != NO_FACE else "" for c in x])  # "Hap" / "Sad"

    def gender(x):
        return np.array([("Female" if c.endswith("Female") else "Male") if c != NO_FACE else "" for c in x])

    et, ep, gt, gp = emotion(t), emotion(p), gender(t), gender(p)
    women, men = gt == "Female", gt == "Male"
    hits = {
        "accuracy": t == p,
        "emotion_accuracy": et == ep,
        "gender_accuracy": gt == gp,
        "emotion_accuracy_women": (et == ep)[women],
        "emotion_accuracy_men": (et == ep)[men],
    }
    # With no photos the overall figures are 0, and a figure over no women (or no men) is None.
    empty = {"emotion_accuracy_women": None, "emotion_accuracy_men": None}
    return {
        "images": n,
        **{k: float(h.mean()) if h.size else empty.get(k, 0.0) for k, h in hits.items()},
        "no_face": int((p == NO_FACE).sum()),
        "interval_95": {k: wilson_interval(int(h.sum()), len(h)) for k, h in hits.items()},
        "per_class": per_class,
        "confusion": {"rows (true)": list(CLASSES), "columns (predicted)": list(PREDICTED), "counts": confusion},
    }
