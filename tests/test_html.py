"""The HTML report: built from a real run, checked in a real browser when one is installed."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from conftest import ROOT, run_cli

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
BROWSER_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def browser(profile: Path) -> list[str]:
    return [CHROMIUM, *BROWSER_FLAGS, f"--user-data-dir={profile}", "--virtual-time-budget=5000"]


def rendered_dom(command: list[str], page: Path) -> str:
    """The page's DOM once its script has counted the thumbnails that loaded.

    The page counts them from load and error events, which Chromium's virtual time waits for (it
    counted from img.decode() before, which settles outside it, and 5 of 30 dumps came too early).
    A dump without the count at all is taken again, as a guard; a wrong count is never retried.
    """
    for _ in range(3):
        dump = subprocess.run([*command, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
        dom = dump.stdout
        if "data-thumbs-loaded=" in dom:
            break
    return dom


@pytest.fixture
def report(photos: Path, tmp_path: Path):
    (photos / "notes.jpg").write_text("not a photo")
    import cv2
    import numpy as np

    cv2.imwrite(str(photos / "wall.png"), np.full((100, 140, 3), 190, np.uint8))
    page = tmp_path / "out" / "report.html"
    page.parent.mkdir()
    proc = run_cli("classify", photos, "--out", tmp_path / "report.csv", "--html", page)
    assert proc.returncode == 0, proc.stderr
    return tmp_path / "report.csv", page


def embedded_data(page: Path) -> dict:
    text = page.read_text()
    match = re.search(r'<script id="data" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(match.group(1).replace("<\\/", "</"))


def test_page_is_self_contained_and_matches_the_csv(report):
    csv_path, page = report
    df = pd.read_csv(csv_path, keep_default_na=False)
    data = embedded_data(page)
    faces = df[df.status == "ok"]
    assert len(data["faces"]) == len(faces)
    assert all(f["t"] for f in data["faces"])  # every face has its thumbnail
    assert [d["conf"] for d in data["faces"]] and not re.search(r'(src|href)="https?:', page.read_text())
    assert [p for p in data["noFace"]] == ["../photos/wall.png"]  # relative to the page
    assert data["errors"][0][0].endswith("notes.jpg") and "not an image" in data["errors"][0][1]
    # The same page from the CSV alone.
    again = page.with_name("again.html")
    assert run_cli("report", csv_path, "--html", again).returncode == 0
    assert embedded_data(again)["faces"] == data["faces"]
    # ... and from the JSON Lines report of the same photos.
    jsonl = csv_path.with_suffix(".jsonl")
    photos = Path(df.path[0]).parent
    assert run_cli("classify", photos, "--format", "jsonl", "--out", jsonl, "-q").returncode == 0
    from_jsonl = page.with_name("jsonl.html")
    assert run_cli("report", jsonl, "--html", from_jsonl).returncode == 0
    assert embedded_data(from_jsonl) == data


def test_report_rejects_a_csv_that_is_not_a_facesort_report(tmp_path):
    (tmp_path / "x.csv").write_text("a,b\n1,2\n")
    proc = run_cli("report", tmp_path / "x.csv", "--html", tmp_path / "x.html")
    assert proc.returncode == 2 and "not a facesort report" in proc.stderr
    # A facesort report edited by hand: a label that is not a class, a box that is not a number.
    rows = list(csv.DictReader(io.StringIO(run_cli("classify", sorted(ROOT.glob("examples/*.jpg"))[0]).stdout)))
    for key, value, said in [("label", "Whatever", "label 'Whatever' is not one of"), ("x", "nan", "x 'nan' is not")]:
        with open(tmp_path / "edited.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, rows[0].keys())
            writer.writeheader()
            writer.writerows([rows[0] | {key: value}, *rows[1:]])
        proc = run_cli("report", tmp_path / "edited.csv", "--html", tmp_path / "x.html")
        assert proc.returncode == 2 and f"row 1: {said}" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    (tmp_path / "x.jsonl").write_text('{"path": "a.jpg"}\n{"path": "b.jpg", "stat\n')
    proc = run_cli("report", tmp_path / "x.jsonl", "--html", tmp_path / "x.html")
    assert proc.returncode == 2 and "line 2 is not JSON" in proc.stderr and not (tmp_path / "x.html").exists()


def test_sort_writes_the_page_too(photos, tmp_path):
    page = tmp_path / "sorted.html"
    assert run_cli("sort", photos, "--into", tmp_path / "S", "--html", page).returncode == 0
    assert len(embedded_data(page)["faces"]) >= 12


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian package chromium)")
def test_page_renders_in_a_real_browser(report, tmp_path):
    csv_path, page = report
    df = pd.read_csv(csv_path, keep_default_na=False)
    common = browser(tmp_path / "profile")
    dom = rendered_dom(common, page)
    faces = df[df.status == "ok"]
    assert f'data-cards="{len(faces)}"' in dom
    assert f'data-thumbs-loaded="{len(faces)}"' in dom  # every thumbnail decoded in the browser
    for label, n in faces.label.value_counts().items():
        assert f'data-class="{label}">{n}<' in dom
    shot = ROOT / "tests" / "artifacts" / "report.png"
    shot.parent.mkdir(exist_ok=True)
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,900", page.as_uri()], capture_output=True, timeout=120
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_large_reports_keep_thumbnails_in_a_folder_beside_the_page(report, tmp_path):
    import csv

    from facesort.html import build_page

    csv_path, _ = report
    rows = list(csv.DictReader(open(csv_path, newline="")))
    page = tmp_path / "out" / "large.html"
    shown = build_page(rows, page, embed_limit=5)  # as if it held more than 5 faces' worth
    data = embedded_data(page)
    assert shown["faces"] == len(data["faces"]) > 5
    for face in data["faces"]:
        assert face["t"].startswith("large_files/")
        assert (page.parent / face["t"]).stat().st_size > 500  # a real JPEG, found by relative path
    # A page written inside the folder of photos: the next walk of it does not pick up its thumbnails.
    from facesort.images import iter_image_files

    assert not [p for p in iter_image_files([page.parent]) if "large_files" in p.parts]
    # Written again, the page replaces its own thumbnails; a folder of that name holding other files is refused.
    assert build_page(rows, page, embed_limit=5)["faces"] == shown["faces"]
    mine = tmp_path / "out" / "mine_files"
    mine.mkdir()
    (mine / "0.jpg").write_bytes(b"a photo of mine")
    with pytest.raises(FileExistsError, match="holds files facesort did not write"):
        build_page(rows, page.with_name("mine.html"), embed_limit=5)
    assert (mine / "0.jpg").read_bytes() == b"a photo of mine"
    if CHROMIUM:
        dom = rendered_dom(browser(tmp_path / "profile2"), page)
        assert f'data-thumbs-loaded="{len(data["faces"])}"' in dom


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (Debian package chromium)")
def test_classes_changed_on_the_page_come_out_as_a_report_sort_places_photos_by(report, tmp_path):
    csv_path, page = report
    original = csv_path.read_text()
    rows = list(csv.DictReader(io.StringIO(original)))
    k0 = embedded_data(page)["faces"][0]["i"]  # the row of the page's first face
    new = "SadMale" if rows[k0]["label"] != "SadMale" else "HappyFemale"
    # The page in a frame, as a user would use it: the first face's menu set to another class. The browser is
    # given file access so the frame's script can be driven; the corrected report is read from the frame.
    driver = page.with_name("driver.html")
    driver.write_text(
        f'<iframe id="f" src="{page.name}"></iframe><script>'
        "f.onload = () => { const w = f.contentWindow;"
        " const menu = w.document.querySelector('select.fix[data-k=\"0\"]');"
        f" menu.value = [...menu.options].find(o => o.text === '{new}').value;"
        " menu.dispatchEvent(new Event('change', {bubbles: true}));"
        " const out = document.createElement('textarea'); out.id = 'csv'; out.value = w.correctedReport();"
        " out.textContent = out.value; document.body.appendChild(out);"
        " document.body.dataset.edits = w.document.getElementById('edits').textContent; };"
        "</script>"
    )
    dom = subprocess.run(
        [*browser(tmp_path / "profile"), "--allow-file-access-from-files", "--dump-dom", driver.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    assert 'data-edits="1 classes changed"' in dom, dom[:2000]
    import html as html_module

    corrected = html_module.unescape(re.search(r'<textarea id="csv">(.*?)</textarea>', dom, re.S).group(1))
    # The same report, byte for byte, but the changed face: its new class, with that class's probability.
    expected = [dict(r) for r in rows]
    expected[k0].update(label=new, confidence=rows[k0][f"p_{new}"])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, rows[0].keys(), lineterminator="\n")
    writer.writeheader()
    writer.writerows(expected)
    assert corrected == buf.getvalue() and corrected != original
    # ... which sort takes as it is.
    fixed = tmp_path / "report-corrected.csv"
    fixed.write_text(corrected)
    into = tmp_path / "SORTED"
    assert run_cli("sort", "--from-report", fixed, "--into", into).returncode == 0
    assert (into / new / Path(rows[k0]["path"]).name).is_file()
