"""`facesort evaluate` and the metric definitions it shares with the model card."""

from __future__ import annotations

import csv
import json
import os
import shutil

import cv2
import pytest
from conftest import EXAMPLES, run_cli

from facesort.evaluate import by_confidence, labelled_files, metrics, wilson_interval


def test_metrics_on_a_known_case():
    truth = ["HappyMale", "HappyMale", "SadFemale", "SadFemale", "HappyFemale", "SadMale"]
    pred = ["HappyMale", "SadMale", "SadFemale", "HappyFemale", "NoFace", "SadMale"]
    m = metrics(truth, pred)
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["emotion_accuracy"] == pytest.approx(3 / 6)  # the NoFace photo counts as wrong
    assert m["gender_accuracy"] == pytest.approx(5 / 6)
    assert m["emotion_accuracy_women"] == pytest.approx(1 / 3)
    assert m["emotion_accuracy_men"] == pytest.approx(2 / 3)
    assert m["no_face"] == 1
    assert m["per_class"]["HappyMale"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert m["confusion"]["counts"][0] == [1, 0, 1, 0, 0]  # HappyMale row
    assert m["confusion"]["counts"][1][4] == 1  # HappyFemale -> NoFace
    # 95% intervals, each around its figure, over the photos it counts (3 women: wide).
    for key in ("accuracy", "emotion_accuracy", "gender_accuracy", "emotion_accuracy_women", "emotion_accuracy_men"):
        lo, hi = m["interval_95"][key]
        assert 0.0 <= lo < m[key] < hi <= 1.0
    assert m["interval_95"]["emotion_accuracy_women"][1] - m["interval_95"]["emotion_accuracy_women"][0] > 0.5
    # Nothing called HappyFemale, and no photo that is one: figures that do not exist are None, not 0.
    m = metrics(["HappyMale", "SadMale"], ["HappyMale", "HappyMale"])
    assert m["per_class"]["HappyFemale"] == {"precision": None, "recall": None, "f1": None, "support": 0}
    assert m["per_class"]["SadMale"] == {"precision": None, "recall": 0.0, "f1": None, "support": 1}


def test_by_confidence_counts_what_sort_unsure_below_would_keep_in_each_class_and_how_much_of_it_is_right():
    truth = ["HappyMale", "SadMale", "SadFemale", "HappyFemale", "SadMale"]
    pred = ["HappyMale", "HappyMale", "SadFemale", "NoFace", "SadMale"]
    confidence = [0.95, 0.55, 0.75, 0.0, 0.6]
    rows = {r["unsure_below"]: r for r in by_confidence(truth, pred, confidence, steps=(0.5, 0.6, 0.8, 0.99))}
    assert (rows[0.5]["sorted"], rows[0.5]["accuracy"]) == (4, pytest.approx(3 / 4))
    assert (rows[0.6]["sorted"], rows[0.6]["accuracy"]) == (3, 1.0)  # at least P stays in its class
    assert rows[0.8]["sorted_share"] == pytest.approx(1 / 5) and rows[0.8]["interval_95"][1] == pytest.approx(1.0)
    assert rows[0.99] == {"unsure_below": 0.99, "sorted": 0, "sorted_share": 0.0, "accuracy": None, "interval_95": None}


def test_wilson_interval_matches_the_formula():
    # 86 right of 100: the Wilson 95% interval (z = 1.96) is 0.7786 - 0.9147.
    lo, hi = wilson_interval(86, 100)
    assert lo == pytest.approx(0.7786, abs=2e-4) and hi == pytest.approx(0.9147, abs=2e-4)
    assert wilson_interval(0, 0) is None
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and wilson_interval(0, 10)[0] == pytest.approx(0.0)
    assert wilson_interval(10, 10)[0] > 0.65  # all right still leaves room below
    # More photos, a narrower interval around the same accuracy.
    assert wilson_interval(860, 1000)[1] - wilson_interval(860, 1000)[0] < hi - lo


def test_evaluate_a_labelled_folder_agrees_with_classify(tmp_path):
    labelled = tmp_path / "labelled"
    with open(EXAMPLES / "labels.csv") as f:
        labels = {r["file"]: r["class"] for r in csv.DictReader(f)}
    for name, cls in labels.items():
        (labelled / cls).mkdir(parents=True, exist_ok=True)
        shutil.copy2(EXAMPLES / name, labelled / cls / name)
    proc = run_cli("evaluate", labelled, "--json", tmp_path / "m.json", "--plots", tmp_path / "plots")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["images"] == len(labels)
    # The same accuracy, computed by hand from classify's report (largest face = face 0).
    rows = list(csv.DictReader(run_cli("classify", labelled).stdout.splitlines()))
    first = {r["path"]: r["label"] or "NoFace" for r in rows if r["face"] in ("0", "")}
    right = sum(first[str(labelled / cls / name)] == cls for name, cls in labels.items())
    assert m["accuracy"] == pytest.approx(right / len(labels))
    # What sort --unsure-below would keep in the class folders, from the same report's confidences.
    conf = {r["path"]: float(r["confidence"] or 0) for r in rows if r["face"] in ("0", "")}
    for step in m["by_confidence"]:
        kept = [(str(labelled / cls / name), cls) for name, cls in labels.items()]
        kept = [(path, cls) for path, cls in kept if conf[path] >= step["unsure_below"]]
        assert step["sorted"] == len(kept)
        if kept:
            assert step["accuracy"] == pytest.approx(sum(first[path] == cls for path, cls in kept) / len(kept))
    assert "unsure-below" in proc.stdout
    assert "confusion" in proc.stdout and (tmp_path / "plots" / "confusion.png").stat().st_size > 1000
    # The same photos labelled by a CSV file instead of class folders: the same figures.
    by_csv = run_cli("evaluate", EXAMPLES, "--labels", EXAMPLES / "labels.csv", "--json", tmp_path / "c.json")
    assert by_csv.returncode == 0, by_csv.stderr
    assert json.loads((tmp_path / "c.json").read_text()) == m


def test_evaluate_plots_replace_their_own_png_but_never_a_file_facesort_did_not_write(tmp_path):
    from PIL import Image

    args = ("evaluate", EXAMPLES, "--labels", EXAMPLES / "labels.csv", "--plots", tmp_path / "plots")
    assert run_cli(*args).returncode == 0
    png = tmp_path / "plots" / "confusion.png"
    first = png.read_bytes()
    assert Image.open(png).size[0] > 400 and cv2.imread(str(png)) is not None  # a valid PNG with the mark
    png.write_bytes(b"")  # an earlier plot, torn: not ours any more
    proc = run_cli(*args)
    assert proc.returncode == 2 and "was not written by facesort" in proc.stderr and png.read_bytes() == b""
    png.write_bytes(first)
    assert run_cli(*args).returncode == 0 and png.read_bytes() == first  # its own plot, replaced
    photo = sorted(EXAMPLES.glob("*.jpg"))[0]
    png.write_bytes(cv2.imencode(".png", cv2.imread(str(photo)))[1].tobytes())  # a user's picture
    kept = png.read_bytes()
    proc = run_cli(*args)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and png.read_bytes() == kept


def test_evaluate_labels_file_mistakes_get_one_sentence(tmp_path):
    def labels(text):
        (tmp_path / "labels.csv").write_text(text)
        return run_cli("evaluate", EXAMPLES, "--labels", tmp_path / "labels.csv")

    name = sorted(p.name for p in EXAMPLES.glob("*.jpg"))[0]
    for text, said in [
        (f"file,kind\n{name},HappyMale\n", "one giving its class (class or label), or emotion and gender"),
        (f"photo,class\n{name},HappyMale\n", "needs a column naming the photo (file, path, filename, image)"),
        (f"file,emotion,gender\n{name},smiling,male\n", "line 2: emotion 'smiling' and gender 'male' must be"),
        (f"file,class\n{name},Happy\n", "line 2: class 'Happy' is not one of HappyMale"),
        (f"file,class\n{name},happymale\n{name},SadMale\n", f"line 3: {name} is labelled twice"),
        ("file,class\n", "labels no photos"),
    ]:
        proc = labels(text)
        assert proc.returncode == 2 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    (tmp_path / "photo.csv").write_bytes((EXAMPLES / name).read_bytes())  # a JPEG given as the labels file
    proc = run_cli("evaluate", EXAMPLES, "--labels", tmp_path / "photo.csv")
    assert proc.returncode == 2 and "no readable header (is it a CSV file?)" in proc.stderr, proc.stderr
    assert len(proc.stderr) < 600  # one sentence, not the file's bytes
    proc = run_cli("evaluate", tmp_path / "absent")
    assert proc.returncode == 2 and f"no folder {tmp_path / 'absent'}" in proc.stderr, proc.stderr
    proc = run_cli("evaluate", EXAMPLES, "--labels", tmp_path / "absent.csv")
    assert proc.returncode == 2 and "absent.csv: No such file" in proc.stderr


def test_evaluate_labels_file_columns_may_be_named_otherwise_or_split_in_emotion_and_gender(tmp_path):
    with open(EXAMPLES / "labels.csv") as f:
        rows = list(csv.DictReader(f))  # file,gender,emotion,class
    expected = [(EXAMPLES / r["file"], r["class"]) for r in rows]
    variants = {
        "Path,Label": [f"{r['file']},{r['class'].lower()}" for r in rows],
        "image,gender,emotion": [f"{r['file']},{r['gender'].upper()},{r['emotion']}" for r in rows],
    }
    for header, lines in variants.items():
        (tmp_path / "labels.csv").write_text("\n".join([header, *lines]) + "\n")
        assert labelled_files(EXAMPLES, tmp_path / "labels.csv") == expected
    # As Excel saves it where the decimal separator is a comma: a byte-order mark, semicolons, CRLF.
    lines = [f"{r['file']};{r['class']}" for r in rows]
    (tmp_path / "labels.csv").write_bytes(("\ufefffile;class\r\n" + "\r\n".join(lines) + "\r\n").encode())
    assert labelled_files(EXAMPLES, tmp_path / "labels.csv") == expected


def test_a_labels_file_excel_saved_in_windows_1252_names_photos_with_accents(tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    source = sorted(EXAMPLES.glob("*.jpg"))[0]
    shutil.copy(source, photos / "Müller.jpg")
    (tmp_path / "labels.csv").write_bytes("file;class\r\nMüller.jpg;HappyMale\r\n".encode("cp1252"))
    assert labelled_files(photos, tmp_path / "labels.csv") == [(photos / "Müller.jpg", "HappyMale")]


def test_evaluate_counts_an_unreadable_labelled_photo_as_no_face_and_says_so(tmp_path):
    name = sorted(p.name for p in EXAMPLES.glob("*.jpg"))[0]
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    shutil.copy2(EXAMPLES / name, tmp_path / name)
    (tmp_path / "labels.csv").write_text(f"file,class\nbroken.jpg,SadFemale\n{name},HappyFemale\nmissing.jpg,SadMale\n")
    proc = run_cli("evaluate", tmp_path, "--labels", tmp_path / "labels.csv", "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["images"] == 3 and m["no_face"] == 2
    assert "2 labelled photo(s) could not be read" in proc.stderr
    assert "broken.jpg: not an image" in proc.stderr and "missing.jpg" in proc.stderr


def test_evaluate_labels_name_photos_whose_names_are_not_utf8(tmp_path):
    # Linux file names are bytes; classify's report writes a non-UTF-8 name back as the same bytes, and a
    # labels file naming such a photo is measured, not refused.
    name = os.fsdecode(b"caf\xe9 portrait.jpg")
    shutil.copy2(sorted(EXAMPLES.glob("*.jpg"))[0], tmp_path / name)
    (tmp_path / "labels.csv").write_bytes(b"file,class\n" + os.fsencode(name) + b",HappyFemale\n")
    proc = run_cli("evaluate", tmp_path, "--labels", tmp_path / "labels.csv", "--json", tmp_path / "m.json")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "m.json").read_text())
    assert m["images"] == 1 and m["no_face"] == 0


def test_class_folders_are_found_in_any_letter_case_and_spelling(tmp_path):
    # People name folders their own way: happy_male, "Happy Female", SADMALE, sad-female are the four classes;
    # a folder of another name (HappyMale2 too), or a file named after a class, is not.
    photo = sorted(EXAMPLES.glob("*.jpg"))[0]
    for folder in ("happy_male", "Happy Female", "SADMALE", "sad-female", "neutral", "HappyMale2"):
        (tmp_path / folder).mkdir()
        shutil.copy2(photo, tmp_path / folder / photo.name)
    (tmp_path / "HappyMale").write_text("not a folder")
    found = {(p.parent.name, cls) for p, cls in labelled_files(tmp_path)}
    assert found == {
        ("happy_male", "HappyMale"),
        ("Happy Female", "HappyFemale"),
        ("SADMALE", "SadMale"),
        ("sad-female", "SadFemale"),
    }


def test_evaluate_needs_class_folders(tmp_path):
    proc = run_cli("evaluate", tmp_path)
    assert proc.returncode == 2 and "no images in" in proc.stderr
