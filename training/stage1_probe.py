"""What the stage-1 probes (head_probe, group_balance_probe, data_curve_probe) share: the happy/sad files they
train and measure on, the training crops made as train() makes them, and the teachers' average measured on the
crops `facesort classify` makes of the two happy/sad test files, as the model card's figures are."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesort.crop import INPUT_SIZE
from training.data import HappySet, happy_crops, load_happy, training_detector
from training.train import TrainConfig, _predict

TESTS = ("test_happy", "celeba_smile_test")


@dataclass(frozen=True)
class Bench:
    train_file: Path  # celeba_smile_train.h5, stage 1's training file
    happy: HappySet  # its images and labels
    tests: dict[str, HappySet]  # TESTS, by name
    crops: dict[str, np.ndarray]  # their crops as `facesort classify` makes them


def options(module: str, doc: str, seeds: list[int]) -> argparse.ArgumentParser:
    """The probes' shared options (--seeds, --data, --json), to which each adds its own."""
    parser = argparse.ArgumentParser(prog=f"python -m {module}", description=doc.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=seeds)
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="write the counts here")
    return parser


def bench(data: Path) -> Bench:
    """The happy/sad files under `data` (../shared/data's layout)."""
    train_file = data / "happy" / "celeba_smile_train.h5"
    tests = {k: load_happy([data / "happy" / f"{k}.h5"]) for k in TESTS}
    crops = {k: happy_crops(s.x, INPUT_SIZE)[0] for k, s in tests.items()}
    return Bench(train_file, load_happy([train_file]), tests, crops)


def training_crops(keras, cfg: TrainConfig, x: np.ndarray) -> np.ndarray:
    """As train() does before stage 1: the seeds set, the training faces found by cfg.detector."""
    keras.utils.set_random_seed(cfg.seed)
    return happy_crops(x, INPUT_SIZE, detector=training_detector(cfg.detector))[0]


def right(teachers, b: Bench) -> dict[str, np.ndarray]:
    """Per test file, which of its images the teachers' average gets right."""
    return {
        k: (np.mean([_predict(t, x) for t in teachers], axis=0) >= 0.5) == (b.tests[k].y >= 0.5)
        for k, x in b.crops.items()
    }


def counts(got: dict[str, np.ndarray]) -> dict[str, int]:
    """Images right per test file (`got`, as right gives it), and "pooled": their sum."""
    run = {k: int(r.sum()) for k, r in got.items()}
    return {**run, "pooled": sum(run.values())}
