"""`facesort classify`: the report, every bad input as a row, exit codes, devices, the Python API."""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
from conftest import EXAMPLES, example_photos, file_size_limit, run_cli
from PIL import Image

import facesort
from facesort.report import COLUMNS, DECIMALS

CLASSES = ["HappyMale", "HappyFemale", "SadMale", "SadFemale"]


def read_report(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), keep_default_na=False, dtype={"path": str, "error": str})


def test_report_has_the_columns_and_one_row_per_face(photos):
    proc = run_cli("classify", photos, "--out", "-")
    assert proc.returncode == 0, proc.stderr
    df = read_report(proc.stdout)
    assert tuple(df.columns) == COLUMNS
    assert len(df) >= len(example_photos())
    faces = df[df.status == "ok"]
    assert set(faces.label) <= set(CLASSES)
    probs = faces[[f"p_{c}" for c in CLASSES]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    # The class probabilities are the products of the two heads, and the label is the most likely class.
    assert np.allclose(faces.p_HappyMale, faces.p_happy * faces.p_male, atol=1e-4)
    assert (faces.label == np.array(CLASSES)[probs.argmax(axis=1)]).all()
    assert np.allclose(faces.confidence, probs.max(axis=1), atol=1e-5)
    assert (faces.w > 0).all() and (faces.face >= 0).all()


def test_stdout_holds_only_data_and_jsonl_is_one_object_per_line(photos, tmp_path):
    proc = run_cli("classify", photos, "--format", "jsonl")
    assert proc.returncode == 0
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert rows and set(rows[0]) == set(COLUMNS)
    assert "device" in proc.stderr  # the device it chose is said, on stderr


def test_a_file_name_that_is_not_utf8_reads_back_as_the_same_file_from_csv_and_jsonl(tmp_path):
    # Linux names are bytes. The CSV keeps them (pandas reads it with surrogateescape); JSON Lines stays valid
    # UTF-8, one object a line, its escaped name decoding to the same file.
    name = os.fsdecode(b"caf\xe9 \xff.jpg")
    shutil.copy2(example_photos()[0], tmp_path / name)
    csv_out = tmp_path / "r.csv"
    assert run_cli("classify", tmp_path / name, "--out", csv_out).returncode == 0
    rows = pd.read_csv(csv_out, keep_default_na=False, encoding_errors="surrogateescape")
    assert len(rows) == 1 and rows.status[0] == "ok" and os.path.exists(os.fsencode(rows.path[0]))
    proc = subprocess.run(
        [sys.executable, "-m", "facesort", "classify", tmp_path / name, "--format", "jsonl"], capture_output=True
    )
    assert proc.returncode == 0
    (line,) = proc.stdout.decode("utf-8").splitlines()  # strict: a raw \xff byte would raise here
    row = json.loads(line)
    assert row["status"] == "ok" and os.path.exists(os.fsencode(row["path"]))


def test_a_report_saved_by_a_spreadsheet_reads_back_as_the_rows_classify_wrote(photos, tmp_path):
    """Reports corrected in a spreadsheet come back to sort --from-report and to the page. Excel's CSV UTF-8
    starts with a byte-order mark and ends lines with CRLF; where the decimal separator is a comma it puts
    semicolons between fields and writes 0,9 for 0.9; a spreadsheet may also save tabs."""
    from facesort.report import read_report as read_rows

    report = tmp_path / "r.csv"
    assert run_cli("classify", photos, "--out", report, "-q").returncode == 0
    with open(report, newline="", encoding="utf-8") as f:
        rows = read_rows(f)
    assert rows and all("." in r["confidence"] for r in rows)
    for sep, decimal in ((",", "."), (";", ","), ("\t", ".")):
        saved = tmp_path / "saved.csv"
        with open(saved, "w", newline="", encoding="utf-8-sig") as f:
            writer = csv.writer(f, delimiter=sep, lineterminator="\r\n")
            writer.writerow(COLUMNS)
            writer.writerows([r[c].replace(".", decimal) if c in DECIMALS else r[c] for c in COLUMNS] for r in rows)
        with open(saved, newline="", encoding="utf-8-sig") as f:
            assert read_rows(f) == rows, repr(sep)


def test_a_report_or_page_is_never_written_over_a_photo_or_over_a_report(tmp_path):
    # A slip of the keyboard (--out photos/a.jpg, --html the CSV itself) would destroy a user's file: it is a
    # usage error, refused before anything is written.
    photos = tmp_path / "photos"
    photos.mkdir()
    shutil.copy2(example_photos()[0], photos / "a.jpg")
    photo = (photos / "a.jpg").read_bytes()
    proc = run_cli("classify", photos, "--out", photos / "a.jpg", "-q")
    assert proc.returncode == 2 and "is a photo: facesort does not write over it" in proc.stderr
    proc = run_cli("classify", photos, "--out", tmp_path / "r.csv", "--html", tmp_path / "r.csv", "-q")
    assert proc.returncode == 2 and not (tmp_path / "r.csv").exists()
    assert run_cli("classify", photos, "--out", tmp_path / "r.csv", "-q").returncode == 0
    report = (tmp_path / "r.csv").read_bytes()
    for page in (tmp_path / "r.csv", photos / "a.jpg"):
        proc = run_cli("report", tmp_path / "r.csv", "--html", page)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    proc = run_cli("sort", photos, "--into", tmp_path / "S", "--html", tmp_path / "S" / "facesort-report.csv")
    assert proc.returncode == 2 and not (tmp_path / "S").exists()
    assert (photos / "a.jpg").read_bytes() == photo and (tmp_path / "r.csv").read_bytes() == report


def make_bad_inputs(folder):
    """Every kind of bad input the issue names, beside one good photo."""
    good = example_photos()[0]
    shutil.copy2(good, folder / "good.jpg")
    (folder / "zero.jpg").write_bytes(b"")
    (folder / "truncated.jpg").write_bytes(good.read_bytes()[:2000])
    (folder / "text.jpg").write_text("not an image\n")
    (folder / "broken.gif").write_bytes(b"GIF89a" + b"\0" * 64)
    (folder / "photo.jxl").write_bytes(b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\0" * 64)
    shutil.copy2(Path(__file__).parent / "data" / "002429-turned.heic", folder / "iphone.heic")
    # An animated GIF of the good photo: read as its first frame.
    frame = Image.open(good).convert("RGB")
    frame.save(folder / "anim.gif", save_all=True, append_images=[frame.transpose(Image.Transpose.FLIP_TOP_BOTTOM)])
    cv2.imwrite(str(folder / "good.avif"), cv2.imread(str(good)))
    # A decompression bomb: a PNG whose header claims 100000 x 100000 pixels.
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    (folder / "bomb.png").write_bytes(png[:16] + (100_000).to_bytes(4, "big") * 2 + png[24:])
    cv2.imwrite(str(folder / "gray.png"), cv2.cvtColor(cv2.imread(str(good)), cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(folder / "deep16.png"), cv2.imread(str(good)).astype(np.uint16) * 257)
    cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(cv2.imread(str(good)), cv2.COLOR_BGR2BGRA))
    (folder / "broken.jpg").symlink_to(folder / "missing.jpg")
    (folder / "loop1.jpg").symlink_to(folder / "loop2.jpg")
    (folder / "loop2.jpg").symlink_to(folder / "loop1.jpg")
    shutil.copy2(good, folder / 'new\nline, "quoted" näme.jpg')
    os.mkfifo(folder / "pipe.jpg")  # a named pipe: nothing will ever be written to it


def test_every_bad_input_is_a_row_and_the_run_goes_on(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    make_bad_inputs(folder)
    proc = run_cli("classify", folder, tmp_path / "deleted.jpg", "--out", tmp_path / "r.csv")
    # Everything was processed; the exit code says that a path named on the command line does not exist.
    assert proc.returncode == 1 and "deleted.jpg does not exist" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    df = pd.read_csv(tmp_path / "r.csv", keep_default_na=False)
    by_name = {os.path.basename(p): g for p, g in df.groupby("path")}
    errors = {name: g.error.iloc[0] for name, g in by_name.items() if (g.status == "error").all()}
    assert errors["zero.jpg"] == "empty file"
    assert "corrupt or truncated" in errors["truncated.jpg"]
    assert "not an image" in errors["text.jpg"]
    assert errors["broken.gif"] == "cannot decode gif (corrupt or truncated)"
    assert errors["photo.jxl"] == "unsupported format: jpeg xl"
    assert "[ERROR" not in proc.stderr  # OpenCV's own complaint about the broken GIF stays out of the way
    assert "pixel limit" in errors["bomb.png"]
    assert errors["broken.jpg"] == "broken symlink"
    assert "symbolic links" in errors["loop1.jpg"]
    assert errors["deleted.jpg"] == "file not found"
    assert errors["pipe.jpg"] == "not a regular file (a named pipe)"  # refused, not waited on
    for name in ("good.jpg", "gray.png", "deep16.png", "rgba.png", 'new\nline, "quoted" näme.jpg'):
        assert (by_name[name].status == "ok").all(), name
    # GIF and AVIF copies of the good photo: the same face, the same class.
    for name in ("anim.gif", "good.avif"):
        assert list(by_name[name].label) == list(by_name["good.jpg"].label), name
    # The HEIC photo is good.jpg (examples/002429.jpg) stored turned, the turn recorded in the file: read
    # upright, the same face in the same place, the same class.
    heic, jpeg = by_name["iphone.heic"], by_name["good.jpg"]
    assert list(heic.label) == list(jpeg.label) and abs(int(heic.x.iloc[0]) - int(jpeg.x.iloc[0])) <= 3
    # The path with a newline, comma, quotes and non-ASCII survives the round trip through pandas.
    assert str(folder / 'new\nline, "quoted" näme.jpg') in set(df.path)


def test_without_the_heic_extra_heic_photos_are_rows_and_the_summary_says_how_to_read_them(tmp_path):
    (tmp_path / "shim").mkdir()
    (tmp_path / "shim" / "pi_heif.py").write_text("raise ImportError('not installed')\n")  # as if absent
    heic = Path(__file__).parent / "data" / "002429.heic"
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path / "shim"), *sys.path])}
    proc = run_cli("classify", heic, heic, example_photos()[0], "-q", env=env)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    df = read_report(proc.stdout)
    assert list(df.error) == ["unsupported format: heif (pip install 'facesort[heic]' reads it)"] * 2 + [""]
    assert "2 HEIC photos could not be read: pip install 'facesort[heic]' reads them" in proc.stderr, proc.stderr


def test_a_file_deleted_during_the_run_becomes_an_error_row(tmp_path):
    from facesort import Classifier, HaarDetector, classify_paths

    photos = [shutil.copy2(p, tmp_path / p.name) for p in example_photos()[:3]]

    def paths():
        for i, p in enumerate(photos):
            if i == 1:
                os.unlink(p)  # gone between the walk and the read
            yield p

    rows = list(classify_paths(paths(), Classifier(device="cpu"), HaarDetector()))
    assert [r.status for r in rows if r.path == str(photos[1])] == ["error"]
    assert sum(r.status == "ok" for r in rows) >= 2


def test_unreadable_file_and_folder_are_rows_when_run_as_an_unprivileged_user():
    import tempfile

    tmp_path = Path(tempfile.mkdtemp(prefix="facesort-perm-"))  # under /tmp: reachable by any user
    tmp_path.chmod(0o755)
    secret = tmp_path / "secret.jpg"
    shutil.copy2(example_photos()[0], secret)
    secret.chmod(0)
    private = tmp_path / "private"  # a folder that cannot be listed: its photos must not vanish in silence
    private.mkdir()
    shutil.copy2(example_photos()[1], private / "hidden-from-us.jpg")
    private.chmod(0)
    as_user = []
    if os.geteuid() == 0:
        if not shutil.which("setpriv"):
            pytest.skip("root without setpriv: cannot drop privileges")
        as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        # A Python under /root (pyenv's, with its libpython there) is not one the user can run at all.
        probe = subprocess.run([*as_user, sys.executable, "-c", "import facesort"], capture_output=True, text=True)
        if probe.returncode != 0:
            pytest.skip(f"the unprivileged user cannot run this Python: {probe.stderr[-200:]}")
    cmd = [*as_user, sys.executable, "-m", "facesort", "classify", str(tmp_path), "-q"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ | {"HOME": str(tmp_path)})
    private.chmod(0o755)
    shutil.rmtree(tmp_path)
    assert proc.returncode == 0, proc.stderr
    df = read_report(proc.stdout)
    assert df.path.tolist() == [str(secret), str(private)]  # a folder's files, then its subfolders
    assert df.status.tolist() == ["error"] * 2 and df.error.tolist() == ["permission denied"] * 2


def test_image_without_a_face_gets_one_no_face_row(tmp_path):
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((200, 300, 3), 180, np.uint8))
    proc = run_cli("classify", tmp_path / "wall.png")
    df = read_report(proc.stdout)
    assert df.status.tolist() == ["no_face"] and df.face.tolist() == [""]


def test_detector_none_treats_each_image_as_one_crop(photos):
    df = read_report(run_cli("classify", photos, "--detector", "none").stdout)
    assert len(df) == len(example_photos()) and (df.face == 0).all() and (df.status == "ok").all()


def test_no_recursive_stops_at_the_top(photos):
    sub = photos / "sub"
    sub.mkdir()
    shutil.copy2(example_photos()[0], sub / "deep.jpg")
    deep = str(sub / "deep.jpg")
    assert deep in set(read_report(run_cli("classify", photos).stdout).path)
    assert deep not in set(read_report(run_cli("classify", photos, "--no-recursive").stdout).path)


def test_batch_size_does_not_change_results(photos):
    a = read_report(run_cli("classify", photos, "--batch-size", "1", "--workers", "1").stdout)
    b = read_report(run_cli("classify", photos, "--batch-size", "7", "--workers", "3").stdout)
    assert a.path.tolist() == b.path.tolist() and a.label.tolist() == b.label.tolist()
    # On a GPU, cuDNN picks convolution algorithms per batch shape and rounds through TF32: equal to about
    # 1e-3 there (measured on an H100: 7e-4 against the CPU), to float32 rounding on the CPU.
    atol = 5e-3 if cuda_works() else 1e-5
    assert np.allclose(a.p_happy.to_numpy(float), b.p_happy.to_numpy(float), atol=atol)


def test_onnx_runtime_telemetry_is_off_unless_the_user_allows_it(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    proc = run_cli("classify", example_photos()[0], env={**env, "HOME": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    assert not (tmp_path / ".cache" / "Microsoft").exists()  # no device ID, no event store
    assert "telemetry" not in proc.stderr


def test_a_folder_without_images_gets_a_warning_not_silence(tmp_path):
    (tmp_path / "notes.txt").write_text("no photos here")
    proc = run_cli("classify", tmp_path, "-q")
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1  # the header only
    assert "no image files found" in proc.stderr


@pytest.mark.parametrize("absent", ["tensorflow", "tf2onnx", "matplotlib"])
def test_train_without_the_train_extra_says_how_to_get_it_before_any_work(tmp_path, absent):
    # Installed as the README's first command installs it, without the train extra. tf2onnx and matplotlib
    # are first needed at the end of a run (the export, the card's plots): missing, they would lose it whole.
    code = (
        f"import sys; sys.modules[{absent!r}] = None; sys.argv[0] = 'facesort'; from facesort.cli import main; main()"
    )
    out = tmp_path / "model"
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", "--happy", tmp_path / "h.h5", "--gender", tmp_path, "--out", out],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "training needs the train extra" in said and "pip install 'facesort[train]'" in said, said
    assert absent in said or "keras" in said, said  # keras comes first where it is absent too
    assert not out.exists()


COMMANDS = ["classify", "sort", "unsort", "report", "evaluate", "info", "train"]


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_flags_as_flags(command):
    # typer labels each option with its type, flags too ("--dry-run <bool>", as if it took a value).
    proc = run_cli(*([command] if command else []), "--help", env={**os.environ, "COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "<bool>" not in proc.stdout
    flag = {None: "--version", "sort": "--dry-run", "classify": "--resume", "train": "--balance-gender"}.get(command)
    if flag:  # shown, with its help on its line
        assert any(line.split()[1:2] == [flag] and len(line.split()) > 3 for line in proc.stdout.splitlines())
    if command is None:  # each command's summary on one line
        for name in COMMANDS:
            assert sum(line.split()[1:2] == [name] for line in proc.stdout.splitlines()) == 1


def test_exit_codes(photos, tmp_path):
    proc = run_cli("classify", photos, "--model", tmp_path / "nomodel")
    assert proc.returncode == 1 and f"no model folder {tmp_path / 'nomodel'}" in proc.stderr
    # The model's file given instead of its folder says so.
    proc = run_cli("info", "--model", Path(facesort.__file__).parent / "models" / "default" / "model.onnx")
    assert proc.returncode == 1 and "is a file: a model is the folder holding model.onnx" in proc.stderr
    # A model folder whose card is broken, or lacks what inference reads from it: one sentence each.
    broken = tmp_path / "broken-model"
    shutil.copytree(Path(facesort.__file__).parent / "models" / "default", broken)
    card = json.loads((broken / "model.json").read_text())
    for text, said in [
        ("{not json", "unreadable model card"),
        ("[1, 2]", "does not list the classes"),
        (json.dumps({k: v for k, v in card.items() if k != "crop"}), "does not give the input size and crop scale"),
        (json.dumps(card | {"input": card["input"] | {"size": 96}}), "not the (N, 96, 96, 3) face crops its card"),
    ]:
        (broken / "model.json").write_text(text)
        proc = run_cli("classify", photos, "--model", broken)
        assert proc.returncode == 1 and said in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = run_cli("classify", photos, "--out", tmp_path / "no" / "such" / "dir" / "r.csv")
    assert proc.returncode == 1 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    # A page that cannot be written is refused before the run, not after it: no report is left behind.
    proc = run_cli("classify", photos, "--out", tmp_path / "r.csv", "--html", tmp_path / "no" / "r.html")
    assert proc.returncode == 1 and "cannot write" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "r.csv").exists()
    assert run_cli("classify", photos, "--no-such-option").returncode == 2
    assert run_cli("classify", photos, "--device", "tpu").returncode == 2
    (tmp_path / "a-file").write_text("mine")
    proc = run_cli("sort", photos, "--into", tmp_path / "a-file")
    assert proc.returncode == 1 and "is a file, not a folder" in proc.stderr
    assert (tmp_path / "a-file").read_text() == "mine"
    # A mistyped folder: nothing named exists, so nothing is written or created and the exit code is 2.
    proc = run_cli("classify", tmp_path / "photoz", "--out", tmp_path / "typo.csv")
    assert proc.returncode == 2 and "photoz does not exist" in proc.stderr and "Traceback" not in proc.stderr
    proc = run_cli("sort", tmp_path / "photoz", "--into", tmp_path / "sorted")
    assert proc.returncode == 2 and "photoz does not exist" in proc.stderr
    assert not (tmp_path / "typo.csv").exists() and not (tmp_path / "sorted").exists()
    # One of several missing: the others are sorted, the missing one is a row, and the exit code is 1.
    proc = run_cli("sort", photos, tmp_path / "photoz", "--into", tmp_path / "sorted")
    assert proc.returncode == 1 and "photoz does not exist" in proc.stderr
    report = pd.read_csv(tmp_path / "sorted" / "facesort-report.csv", keep_default_na=False)
    assert len(report) == len(list(Path(photos).iterdir())) + 1
    assert (report.action == "not sorted").sum() == 1


@functools.cache
def cuda_works() -> bool:
    """Whether ONNX Runtime really runs the model on a CUDA GPU here (the session's providers say)."""
    from facesort.model import Classifier, ModelError

    try:
        return Classifier(device="cuda").device == "cuda"
    except ModelError:
        return False


def test_device_cpu_and_cuda(photos):
    proc = run_cli("classify", photos, "--device", "cpu")
    assert proc.returncode == 0 and "device cpu" in proc.stderr
    proc = run_cli("classify", photos, "--device", "cuda")
    if cuda_works():
        assert proc.returncode == 0 and "device cuda" in proc.stderr
    else:
        assert proc.returncode == 1 and "--device cuda" in proc.stderr and "Traceback" not in proc.stderr
    # ONNX Runtime's CUDA loader noise stays hidden without --verbose.
    assert "provider_bridge" not in run_cli("classify", photos).stderr


@pytest.mark.skipif(not cuda_works(), reason="ONNX Runtime cannot run on a CUDA GPU here")
def test_cuda_report_matches_cpu(photos, tmp_path):
    """On a GPU the report is the CPU's: the same faces and labels, probabilities within float32 noise."""
    reports = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / f"{device}.csv"
        assert run_cli("classify", photos, "--device", device, "--out", out).returncode == 0
        reports[device] = pd.read_csv(out)
    cpu, gpu = reports["cpu"], reports["cuda"]
    assert list(cpu["path"]) == list(gpu["path"]) and list(cpu["label"]) == list(gpu["label"])
    probs = [c for c in cpu.columns if c.startswith("p_")]
    assert np.abs(cpu[probs].to_numpy() - gpu[probs].to_numpy()).max() < 5e-3


def test_pip_cuda_libraries_load_quietly(tmp_path, capsys):
    """onnxruntime-gpu[cuda,cudnn] puts CUDA and cuDNN in site-packages/nvidia/, where the CUDA provider
    does not look: facesort has onnxruntime load them first, only then, and nothing it prints reaches
    stdout (where a CSV report may be going)."""
    from facesort.model import preload_pip_cuda

    (tmp_path / "onnxruntime").mkdir()
    calls = []

    def preload_dlls():
        calls.append(1)
        print("Failed to load libcublas.so.13")

    fake_ort = types.SimpleNamespace(__file__=str(tmp_path / "onnxruntime" / "__init__.py"), preload_dlls=preload_dlls)
    assert not preload_pip_cuda(fake_ort) and not calls
    (tmp_path / "nvidia").mkdir()
    assert preload_pip_cuda(fake_ort) and calls == [1]
    assert capsys.readouterr().out == ""


def test_python_api_matches_the_cli(photos):
    from facesort import AutoDetector, Classifier, classify_paths, iter_image_files

    clf = Classifier(device="cpu")
    rows = list(classify_paths(iter_image_files([photos]), clf, AutoDetector()))
    df = read_report(run_cli("classify", photos, "--device", "cpu").stdout)
    assert [r.path for r in rows] == df.path.tolist()
    assert np.allclose([r.p_male or 0 for r in rows], df.p_male.replace("", 0).to_numpy(float), atol=1e-5)


def test_info_prints_the_model_card():
    proc = run_cli("info")
    assert proc.returncode == 0
    assert "HappyMale" in proc.stdout and "crop" in proc.stdout and "metrics" in proc.stdout
    # How the shipped model was trained: the command, and that its training faces were found by Haar.
    assert "facesort train --happy" in proc.stdout and '"detector": "haar' in proc.stdout


def test_version_is_the_package_version():
    import facesort

    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout == f"facesort {facesort.__version__}\n"


def test_large_jpeg_decoded_reduced_reports_boxes_in_full_photo_pixels(tmp_path):
    from facesort.images import decode_scaled

    src = example_photos()[0]
    small = cv2.imread(str(src))
    big = cv2.resize(small, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    cv2.imwrite(str(tmp_path / "big.jpg"), big, [cv2.IMWRITE_JPEG_QUALITY, 95])
    image, factor = decode_scaled((tmp_path / "big.jpg").read_bytes(), keep_side=800)
    assert factor >= 2 and image.shape[0] * factor == big.shape[0]
    a = read_report(run_cli("classify", src).stdout).iloc[0]
    b = read_report(run_cli("classify", tmp_path / "big.jpg").stdout).iloc[0]
    assert a.status == b.status == "ok"
    for k in ("x", "y", "w", "h"):
        assert abs(b[k] - 4 * a[k]) <= 0.1 * 4 * a.w, k


def test_min_face_is_not_defeated_by_reduced_decoding():
    from facesort.detect import HaarDetector

    assert HaarDetector().max_decode_reduction() == 8  # default: faces from ~8% of the photo, any reduction
    assert HaarDetector(min_face=24).max_decode_reduction() == 1  # 24 px faces: decode at full size
    assert HaarDetector(min_face=100).max_decode_reduction() == 5  # 1/4 at most (100 px -> 25 px >= 20)


def test_classify_never_imports_tensorflow(photos):
    # Training's heavy stack stays out of the classify path (start-up time, and installs without the extra).
    code = (
        "import sys\n"
        "from facesort.cli import main\n"
        f"sys.argv = ['facesort', 'classify', {str(photos)!r}, '--out', '/dev/null', '-q']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('tensorflow', 'keras', 'tf2onnx', 'h5py') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


def test_cuda_batch_padding_keeps_each_faces_result():
    """On CUDA, batches are padded with blank crops to a few sizes (each new shape costs a session about
    half a second there): padding must give back exactly one result per real face, the one it gets unpadded. The
    padding path is exercised here on a CPU session."""
    from facesort.model import Classifier, padded_batch

    crops = np.random.default_rng(0).integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    clf = Classifier(device="cpu")
    ref = clf.predict(crops)
    clf.device = "cuda"
    got = clf.predict(crops)
    assert padded_batch(5) == 64 and len(got.p_happy) == len(got.p_male) == len(got.probs) == 5
    assert np.allclose(got.probs, ref.probs, atol=1e-6) and np.allclose(got.p_male, ref.p_male, atol=1e-6)


def test_a_full_disk_is_one_sentence_and_exit_1_not_a_traceback(photos, tmp_path):
    def check(proc, says):
        assert proc.returncode == 1 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-2000:]

    # Standard output on a full disk (/dev/full), for the report and for sort's plan.
    for args in (["classify", photos], ["sort", photos, "--into", tmp_path / "s", "--dry-run"]):
        with open("/dev/full", "w") as full:
            cmd = [sys.executable, "-m", "facesort", *map(str, args), "--quiet"]
            proc = subprocess.run(cmd, stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
        check(proc, "cannot write to standard output")
    # Files that cannot grow past 400 bytes: the report, the photos' copies, evaluate's figures.
    small = file_size_limit(400)
    check(run_cli("classify", photos, "--out", tmp_path / "r.csv", preexec_fn=small), f"cannot write {tmp_path}")
    sources = {p.name: p.read_bytes() for p in photos.iterdir()}
    proc = run_cli("sort", photos, "--into", tmp_path / "sorted", preexec_fn=small)
    check(proc, "sorting stopped")
    assert {p.name: p.read_bytes() for p in photos.iterdir()} == sources  # nothing lost
    assert not [p for p in (tmp_path / "sorted").rglob("*") if p.is_file() and p.name != "facesort-report.csv"]
    # The report holds whole rows only (the one cut short was taken back), and a rerun with room finishes.
    lines = (tmp_path / "sorted" / "facesort-report.csv").read_text().splitlines()
    assert lines[0] == "run,source,destination,label,action,error" and all(line.count(",") == 5 for line in lines)
    assert run_cli("sort", photos, "--into", tmp_path / "sorted").returncode == 0
    placed = [p for p in (tmp_path / "sorted").rglob("*.jpg")]
    assert sorted(p.name for p in placed) == sorted(sources)
    report = pd.read_csv(tmp_path / "sorted" / "facesort-report.csv", keep_default_na=False)
    assert (report.action == "copied").sum() == len(sources)
    proc = run_cli(
        "evaluate", EXAMPLES, "--labels", EXAMPLES / "labels.csv", "--plots", tmp_path / "p", preexec_fn=small
    )
    check(proc, "confusion.png")


def test_paths_that_look_like_markup_are_printed_as_they_are(tmp_path):
    # Rich reads [words] in printed text as styles: such a folder name vanished from messages, and [/x] raised;
    # and :x: as an emoji code: the folder ":x: party" was printed as a red cross and " party".
    for name in ("[/x]", "[trip] 2024", ":x: party"):
        proc = run_cli("classify", tmp_path / name)
        assert proc.returncode == 2 and f"{tmp_path / name} does not exist" in proc.stderr, proc.stderr
    (tmp_path / "[/x]").mkdir(parents=True)
    proc = run_cli("classify", tmp_path / "[/x]")  # a folder without photos: the warning names it whole
    assert proc.returncode == 0 and f"no image files found in {tmp_path / '[/x]'}" in proc.stderr, proc.stderr


def test_decoders_messages_about_damaged_files_stay_off_stderr_unless_verbose(tmp_path):
    """libjpeg and libpng print their own complaints ("Corrupt JPEG data: ...", "libpng error: ...") past
    OpenCV's log: they would break into the progress bar and into -q's silence, for files whose rows say it."""
    good = example_photos()[0].read_bytes()
    png = cv2.imencode(".png", cv2.imread(str(example_photos()[0])))[1].tobytes()
    (tmp_path / "padded.jpg").write_bytes(good[:-2] + b"\0" * 4 + good[-2:])  # decodes: "4 extraneous bytes"
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])  # refused: "libpng error: ..."
    quiet = run_cli("classify", tmp_path, "-q")
    assert quiet.returncode == 0 and quiet.stderr == "", quiet.stderr
    rows = pd.read_csv(io.StringIO(quiet.stdout), keep_default_na=False)
    assert rows.set_index("path").loc[str(tmp_path / "cut.png"), "status"] == "error"
    loud = run_cli("classify", tmp_path, "-q", "--verbose")
    assert "Corrupt JPEG data" in loud.stderr and "libpng error" in loud.stderr, loud.stderr
    assert loud.stdout == quiet.stdout


def test_other_output_on_the_stderr_descriptor_passes_the_decoder_filter():
    script = (
        "import os, sys\n"
        "from facesort.images import hide_decoder_messages\n"
        "hide_decoder_messages()\n"
        "os.write(2, b'Corrupt JPEG data: 4 extraneous bytes before marker 0xd9\\n')\n"
        "os.write(2, b'a library speaks\\n')\n"
        "os.write(2, b'libpng warning: iCCP: known incorrect sRGB profile')\n"
        "os.write(2, b'\\n')\n"  # libpng writes its newline apart
        "print('python speaks', file=sys.stderr)\n"
        "os.write(2, b'no newline at the end')\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    assert sorted(proc.stderr.splitlines()) == ["a library speaks", "no newline at the end", "python speaks"]


def test_a_raw_photo_is_classified_as_the_jpeg_beside_it(tmp_path):
    """RAW+JPEG pairs are how many cameras save: the raw (here laid out as a Nikon NEF, turned 90 degrees)
    gets the face, box and class its JPEG gets, not those of its 160x120 thumbnail."""
    from test_images import encode, nef_like

    photo = cv2.imread(str(example_photos()[0]))
    jpeg = encode(".jpg", cv2.rotate(photo, cv2.ROTATE_90_CLOCKWISE))
    (tmp_path / "DSC_0001.JPG").write_bytes(jpeg)
    (tmp_path / "DSC_0001.NEF").write_bytes(nef_like(photo, orientation=6))
    proc = run_cli("classify", tmp_path, "-q")
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(io.StringIO(proc.stdout), keep_default_na=False)
    assert list(rows.status) == ["ok", "ok"]
    jpg, nef = (rows.iloc[i] for i in range(2))
    assert jpg.label == nef.label
    # The same picture but for JPEG's losses (turned before encoding, or after decoding): within 2 pixels.
    assert all(abs(jpg[k] - nef[k]) <= 2 for k in "xywh") and abs(jpg.confidence - nef.confidence) < 0.02


def _photos_with_a_pair(folder: Path) -> Path:
    """The example photos, and one of two faces (its rows are the ones a stop can split)."""
    folder.mkdir()
    for p in example_photos():
        shutil.copy2(p, folder / p.name)
    a, b = (cv2.imread(str(p)) for p in example_photos()[:2])
    h = min(a.shape[0], b.shape[0])
    a, b = (cv2.resize(x, (x.shape[1] * h // x.shape[0], h)) for x in (a, b))
    cv2.imwrite(str(folder / "050000-pair.jpg"), np.hstack([a, b]))
    # Names a report must quote or escape, whose rows a resumed run must still recognise.
    shutil.copy2(example_photos()[2], folder / '060000 new\nline, "quoted".jpg')
    shutil.copy2(example_photos()[3], os.path.join(os.fsencode(folder), b"060001 caf\xe9.jpg"))
    return folder


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_resume_after_a_report_was_cut_anywhere_gives_the_report_of_a_whole_run(tmp_path, fmt):
    photos = _photos_with_a_pair(tmp_path / "in")
    whole = tmp_path / f"whole.{fmt}"
    assert run_cli("classify", photos, "--out", whole, "--format", fmt, "-q").returncode == 0
    data = whole.read_bytes()
    lines = data.splitlines(keepends=True)
    pair = next(i for i, line in enumerate(lines) if b"pair" in line)
    assert b"pair" in lines[pair + 1]  # two faces: a stop can fall between them
    header = len(lines[0]) if fmt == "csv" else 0
    cuts = {
        "inside the header": header // 2,
        "nothing yet": header,
        "between the two faces' rows": sum(map(len, lines[: pair + 1])),
        "inside a row": sum(map(len, lines[:5])) + 7,
        "inside the last row": len(data) - 3,
        "whole": len(data),
    }
    for where, at in cuts.items():
        report = tmp_path / f"r.{fmt}"
        report.write_bytes(data[:at])
        proc = run_cli("classify", photos, "--out", report, "--format", fmt, "--resume")
        assert proc.returncode == 0 and "resuming" in proc.stderr, (where, proc.stderr)
        assert report.read_bytes() == data, where
    # Photos added since: classified, their rows added after the others (the same rows as a whole run's).
    report = tmp_path / f"r.{fmt}"
    added = photos / "000000-added.jpg"
    shutil.copy2(example_photos()[4], added)
    assert run_cli("classify", photos, "--out", report, "--format", fmt, "--resume", "-q").returncode == 0
    rerun = run_cli("classify", photos, "--format", fmt, "-q", errors="surrogateescape").stdout
    rerun = rerun.encode("utf-8", "surrogateescape")
    assert sorted(report.read_bytes().splitlines()) == sorted(rerun.splitlines())
    # After the rows kept: before those of the report's last photo, which is classified again.
    assert str(added).encode() in report.read_bytes().splitlines()[-2]
    added.unlink()
    # No report yet: --resume starts one.
    fresh = tmp_path / f"fresh.{fmt}"
    assert run_cli("classify", photos, "--out", fresh, "--format", fmt, "--resume", "-q").returncode == 0
    assert fresh.read_bytes() == data


def test_resume_leaves_a_report_it_cannot_trust_as_it_is(tmp_path):
    photos = _photos_with_a_pair(tmp_path / "in")
    report = tmp_path / "r.csv"
    assert run_cli("classify", photos, "--out", report, "-q").returncode == 0
    edited = report.read_bytes().replace(b"\n", b"\r\n")  # saved again by a spreadsheet, say
    for bad, says in (
        (edited, "is not a csv report as facesort classify writes it"),
        (b"file,class\na.jpg,HappyMale\n", "does not start with the header of a facesort CSV report"),
    ):
        report.write_bytes(bad)
        proc = run_cli("classify", photos, "--out", report, "--resume")
        assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
        assert report.read_bytes() == bad
    proc = run_cli("classify", photos, "--out", report, "--resume", "--format", "jsonl")
    assert proc.returncode == 2 and "not a whole jsonl report row" in proc.stderr, proc.stderr
    proc = run_cli("classify", photos, "--resume")
    assert proc.returncode == 2 and "give it as --out FILE" in proc.stderr, proc.stderr
    os.mkfifo(tmp_path / "pipe")  # read, it would wait for a writer forever
    proc = run_cli("classify", photos, "--out", tmp_path / "pipe", "--resume", timeout=60)
    assert proc.returncode == 2 and "is not a regular file" in proc.stderr, proc.stderr


def test_exclude_passes_over_matching_names_in_classify_and_sort(photos, tmp_path):
    drafts = photos / "drafts"
    drafts.mkdir()
    shutil.copy2(example_photos()[0], drafts / "draft.jpg")
    proc = run_cli("classify", photos, "--exclude", "drafts", "--exclude", "0*.jpg", "-q")
    assert proc.returncode == 0, proc.stderr
    paths = set(pd.read_csv(io.StringIO(proc.stdout)).path)
    assert paths == {str(p) for p in photos.glob("[1-9]*.jpg")}
    into = tmp_path / "SORTED"
    assert run_cli("sort", photos, "--into", into, "--exclude", "drafts", "-q").returncode == 0
    assert not list(into.rglob("draft.jpg")) and len(list(into.rglob("*.jpg"))) == len(example_photos())


def test_files_from_reads_a_list_of_photos_from_a_file_or_stdin(photos, tmp_path):
    chosen = sorted(photos.iterdir())[:3]
    odd = photos / "a\nb.jpg"  # a name with a newline: only a NUL-separated list can name it
    shutil.copy2(chosen[0], odd)
    listing = tmp_path / "list.txt"
    listing.write_text("\r\n".join(map(str, chosen[1:])) + "\r\n\n")  # CRLF and a blank line, as editors leave
    proc = run_cli("classify", chosen[0], "--files-from", listing, "-q")
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(io.StringIO(proc.stdout)).path) == [str(p) for p in chosen]
    nul = b"\0".join(os.fsencode(p) for p in (odd, chosen[2])) + b"\0"  # find -print0
    proc = run_cli("classify", "--files-from", "-", "-q", input=nul.decode())
    assert proc.returncode == 0, proc.stderr
    assert list(pd.read_csv(io.StringIO(proc.stdout), keep_default_na=False).path) == [str(odd), str(chosen[2])]
    into = tmp_path / "SORTED"
    proc = run_cli("sort", "--into", into, "--files-from", listing, "-q")
    assert proc.returncode == 0 and len(list(into.rglob("*.jpg"))) == 2, proc.stderr
    # An empty list (find found nothing) is a run over no photos; no list and no photos is a usage error.
    proc = run_cli("classify", "--files-from", "-", "-q", input="")
    assert proc.returncode == 0 and proc.stdout.startswith("path,face,") and len(proc.stdout.splitlines()) == 1
    proc = run_cli("classify", "-q")
    assert proc.returncode == 2 and "give the photos or folders" in proc.stderr, proc.stderr
    proc = run_cli("classify", "--files-from", tmp_path / "nope.txt")
    assert proc.returncode == 2 and "cannot read the list" in proc.stderr and "Traceback" not in proc.stderr
