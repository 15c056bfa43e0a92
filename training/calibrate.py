"""The happy/sad decision threshold, set on labelled held-out happy/sad files.

Stage 2 learns emotion mostly from the teacher's soft targets on the gender set, and its decisions come
out leaning to "sad" on faces unlike the training set's (Happy House's small backlit faces: 30% of its
happy faces were called happy). One offset added to the emotion logit inside the graph moves the
threshold; it is chosen on the files given with `facesort train --calibrate`, to maximise their mean
balanced accuracy (the mean of happy and sad recall, so neither class's share decides it).
"""

from __future__ import annotations

import numpy as np

OFFSETS = np.round(np.arange(-2.0, 2.0001, 0.25), 2)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-7, 1 - 1e-7)
    return np.log(p) - np.log1p(-p)


def balanced_accuracy(p: np.ndarray, y: np.ndarray, offset: float = 0.0) -> float:
    """Mean of happy recall and sad recall when p_happy's logit is moved by `offset`."""
    y = np.asarray(y).astype(bool)
    happy = logit(p) + offset >= 0
    recalls = [happy[y].mean() if y.any() else np.nan, (~happy[~y]).mean() if (~y).any() else np.nan]
    return float(np.nanmean(recalls))


def choose_emotion_offset(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> tuple[float, dict]:
    """The offset (from OFFSETS) with the best mean balanced accuracy over `sets` ({name: (p_happy, y)});
    among equals the one nearest 0. Returns (offset, {name: {"before": .., "after": ..}})."""
    if not sets:
        return 0.0, {}
    scores = [np.mean([balanced_accuracy(p, y, b) for p, y in sets.values()]) for b in OFFSETS]
    best = max(scores)
    offset = float(min((b for b, s in zip(OFFSETS, scores) if s >= best - 1e-12), key=abs))
    table = {
        name: {"before": balanced_accuracy(p, y), "after": balanced_accuracy(p, y, offset)}
        for name, (p, y) in sets.items()
    }
    return offset, table
