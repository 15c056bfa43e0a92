"""`facesort sort`: every mode, the dry run, collisions, re-runs, and a run killed part-way."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import signal
import sys
from pathlib import Path

import pytest
from conftest import example_photos, file_size_limit, interrupt_once_started, run_cli

FOLDERS = {"HappyMale", "HappyFemale", "SadMale", "SadFemale", "NoFace"}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def placed(into: Path) -> list[Path]:
    return sorted(p for p in into.rglob("*") if p.parent != into and (p.is_file() or p.is_symlink()))


def sort_report(into: Path) -> list[dict]:
    with open(into / "facesort-report.csv", newline="") as f:
        return list(csv.DictReader(f))


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): digest(p) for p in folder.rglob("*") if p.is_file()}


@pytest.fixture
def mixed(photos: Path) -> Path:
    """Photos plus one image without a face and one unreadable file."""
    import cv2
    import numpy as np

    cv2.imwrite(str(photos / "wall.png"), np.full((120, 160, 3), 200, np.uint8))
    (photos / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    return photos


def test_copy_sorts_every_photo_and_leaves_sources_untouched(mixed, tmp_path):
    into = tmp_path / "SORTED"
    before = snapshot(mixed)
    proc = run_cli("sort", mixed, "--into", into)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(mixed) == before
    files = placed(into)
    assert {p.parent.name for p in files} <= FOLDERS
    assert (into / "NoFace" / "wall.png").is_file()
    assert not any(p.name == "corrupt.jpg" for p in files)  # unreadable: not copied...
    rows = sort_report(into)
    corrupt = [r for r in rows if r["source"].endswith("corrupt.jpg")]
    assert corrupt and corrupt[0]["action"] == "not sorted" and corrupt[0]["error"]  # ...but listed
    # Every readable photo is placed exactly once, byte for byte, in the folder of its label.
    assert sorted(digest(p) for p in files) == sorted(v for k, v in before.items() if k != "corrupt.jpg")
    for r in rows:
        if r["destination"]:
            assert Path(r["destination"]).parent.name == r["label"]
    assert not list(into.rglob("*.facesort-tmp"))


def test_second_run_is_a_no_op(photos, tmp_path):
    into = tmp_path / "SORTED"
    run_cli("sort", photos, "--into", into)
    first = snapshot(into / "HappyMale") if (into / "HappyMale").exists() else {}
    files = placed(into)
    proc = run_cli("sort", photos, "--into", into)
    assert proc.returncode == 0
    assert placed(into) == files
    if first:
        assert snapshot(into / "HappyMale") == first
    last_run = [r for r in sort_report(into) if r["run"] == sort_report(into)[-1]["run"]]
    assert {r["action"] for r in last_run} == {"already there"}


def test_a_report_row_torn_by_a_killed_run_does_not_swallow_the_next_runs_first_row(photos, tmp_path):
    into = tmp_path / "SORTED"
    into.mkdir()
    (into / "facesort-report.csv").write_text("run,source,destination,label,action,error\nx,/photos/a.jpg,/SOR")
    assert run_cli("sort", photos, "--into", into).returncode == 0
    rows = sort_report(into)
    assert [r["source"] for r in rows[1:]] == sorted(str(p) for p in photos.iterdir())
    assert all(r["action"] == "copied" for r in rows[1:])


def test_never_overwrites_a_name_already_taken(photos, tmp_path):
    into = tmp_path / "SORTED"
    # Learn where each photo goes, then put a different file under each of those names.
    plan = run_cli("sort", photos, "--into", into, "--dry-run").stdout.splitlines()
    assert not into.exists()  # the dry run created nothing
    assert len(plan) == len(example_photos()) and all(" -> " in line for line in plan)
    for line in plan:
        dest = Path(line.split(" -> ")[1])
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(b"the user's own file")
    run_cli("sort", photos, "--into", into)
    for line in plan:
        src, dest = (Path(s) for s in line.split(" -> "))
        assert dest.read_bytes() == b"the user's own file"
        suffixed = dest.with_name(f"{dest.stem}-1{dest.suffix}")
        assert digest(suffixed) == digest(src)


def test_same_name_from_two_folders_gets_a_suffix(tmp_path):
    photos = tmp_path / "in"
    a, b = photos / "a", photos / "b"
    a.mkdir(parents=True)
    b.mkdir()
    shutil.copy2(example_photos()[0], a / "x.jpg")
    shutil.copy2(example_photos()[0], b / "x.jpg")
    with open(b / "x.jpg", "ab") as f:
        f.write(b"\0")  # same picture, different bytes
    into = tmp_path / "SORTED"
    run_cli("sort", photos, "--into", into)
    names = sorted(p.name for p in placed(into))
    assert names == ["x-1.jpg", "x.jpg"]


def test_move_removes_sources_only_once_placed(mixed, tmp_path):
    into = tmp_path / "SORTED"
    before = snapshot(mixed)
    proc = run_cli("sort", mixed, "--into", into, "--move")
    assert proc.returncode == 0
    assert [p.name for p in mixed.iterdir()] == ["corrupt.jpg"]  # the unreadable file stays
    assert sorted(digest(p) for p in placed(into)) == sorted(v for k, v in before.items() if k != "corrupt.jpg")


def test_a_move_cut_short_after_placing_is_finished_by_the_next_run(photos, tmp_path):
    into = tmp_path / "SORTED"
    plan = [line.split(" -> ") for line in run_cli("sort", photos, "--into", into, "--dry-run").stdout.splitlines()]
    src, dest = Path(plan[0][0]), Path(plan[0][1])
    dest.parent.mkdir(parents=True)
    os.link(src, dest)  # where a killed move stops: placed, source not yet removed
    expected = digest(src)
    assert run_cli("sort", photos, "--into", into, "--move").returncode == 0
    assert not src.exists() and digest(dest) == expected and dest.stat().st_nlink == 1
    assert snapshot(photos) == {}
    row = [r for r in sort_report(into) if r["source"] == str(src)][-1]
    assert row["action"] == "moved" and row["destination"] == str(dest)


@pytest.mark.parametrize("same_filesystem", [True, False])
def test_a_move_whose_source_cannot_be_removed_is_reported_as_placed_with_why(
    photos, tmp_path, monkeypatch, same_filesystem
):
    # A read-only source folder: the photo is in its class folder all the same, and the report says so
    # (it said "not sorted" while the copy was there), with why the source is still there.
    import errno

    from facesort import sorter as sorter_module

    src = sorted(photos.iterdir())[0]
    real_unlink, real_link = os.unlink, os.link

    def unlink(path, *a, **k):
        if Path(path) == src:
            raise PermissionError(errno.EACCES, "Permission denied")
        return real_unlink(path, *a, **k)

    def link(a, b, **k):
        if Path(a) == src and not same_filesystem:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_link(a, b, **k)

    monkeypatch.setattr(sorter_module.os, "unlink", unlink)
    monkeypatch.setattr(sorter_module.os, "link", link)
    sorter = sorter_module.Sorter(tmp_path / "SORTED", "move", False)
    (first,) = sorter.place(str(src), "HappyMale")
    dest = tmp_path / "SORTED" / "HappyMale" / src.name
    assert first.action == ("hardlinked" if same_filesystem else "copied") and first.destination == str(dest)
    assert first.error == "source not removed: Permission denied"
    assert src.exists() and digest(dest) == digest(src)
    (again,) = sorter.place(str(src), "HappyMale")  # the next run finds it placed and still cannot remove it
    assert (again.action, again.error) == ("already there", first.error)
    assert [p.name for p in (tmp_path / "SORTED" / "HappyMale").iterdir()] == [src.name]


@pytest.mark.parametrize("mode", ["copy", "move", "symlink"])
def test_a_name_the_disk_refuses_is_placed_with_those_characters_as_underscores(tmp_path, monkeypatch, mode):
    """FAT, exFAT and NTFS (USB disks, SD cards) refuse : ? * and the like in a name, which Linux and macOS
    names can hold (Finder shows a / where the name holds a :). Such a photo is placed with them as _, its
    sidecar alike, beside a file that already has that name; the next run finds it there. Checked by hand on
    an exFAT disk (FUSE exfat 1.3.0, which says ENOENT; Linux's exfat and vfat say EINVAL); here that refusal
    is made for every name created in SORTED."""
    import errno

    from facesort import sorter as sorter_module

    into = tmp_path / "SORTED"

    def refusing(call):
        def made(a, b, *args, **kw):
            if Path(b).is_relative_to(into) and any(c in Path(b).name for c in ':?*"<>|'):
                raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(b))
            return call(a, b, *args, **kw)

        return made

    for name in ("link", "rename", "symlink"):
        monkeypatch.setattr(sorter_module.os, name, refusing(getattr(os, name)))
    photos = tmp_path / "in"
    photos.mkdir()
    src = photos / "Photo 2019:07:04 what?.jpg"
    shutil.copy(example_photos()[0], src)
    (photos / "Photo 2019:07:04 what?.xmp").write_text("<x:xmpmeta/>")
    (into / "HappyMale").mkdir(parents=True)
    (into / "HappyMale" / "Photo 2019_07_04 what_.jpg").write_bytes(b"another photo")
    placements = sorter_module.Sorter(into, mode).place(str(src), "HappyMale")
    dest = into / "HappyMale" / "Photo 2019_07_04 what_-1.jpg"
    action = {"copy": "copied", "move": "moved", "symlink": "symlinked"}[mode]
    assert [(Path(p.destination).name, p.action) for p in placements] == [
        (dest.name, action),
        ("Photo 2019_07_04 what_-1.xmp", action),
    ]
    assert dest.read_bytes() == example_photos()[0].read_bytes()
    assert (into / "HappyMale" / "Photo 2019_07_04 what_.jpg").read_bytes() == b"another photo"
    assert src.exists() == (mode != "move")
    if mode != "move":  # the next run finds it there
        again = sorter_module.Sorter(into, mode).place(str(src), "HappyMale")
        assert [p.action for p in again] == ["already there"] * 2


def test_photos_that_could_not_be_placed_make_the_exit_code_1_as_cp_does(photos, tmp_path):
    """Files that cannot grow past 20,000 bytes: the larger photos cannot be copied, the smaller ones are. The
    run places what it can, says how many it could not, exits 1, and a rerun with room places the rest."""
    into = tmp_path / "SORTED"
    proc = run_cli("sort", photos, "--into", into, preexec_fn=file_size_limit(20_000))
    large = sorted(p.name for p in photos.iterdir() if p.stat().st_size > 20_000)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    said = " ".join(proc.stderr.split())
    assert f"{len(large)} files could not be placed: the 'not sorted' rows of {into / 'facesort-report.csv'}" in said
    rows = sort_report(into)
    assert sorted(Path(r["source"]).name for r in rows if r["action"] == "not sorted") == large
    assert sorted(p.name for p in placed(into)) == sorted(set(p.name for p in photos.iterdir()) - set(large))
    assert run_cli("sort", photos, "--into", into, "-q").returncode == 0
    assert len(placed(into)) == len(list(photos.iterdir()))


def test_a_move_never_removes_a_source_that_is_its_only_copy(photos, tmp_path):
    into = tmp_path / "SORTED"
    before = snapshot(photos)
    run_cli("sort", photos, "--into", into, "--symlink")
    assert run_cli("sort", photos, "--into", into, "--move").returncode == 0
    assert snapshot(photos) == before  # the links in SORTED are all that point at them: kept
    assert all(p.is_symlink() and p.exists() for p in placed(into))
    # A photo named inside SORTED, already in its class folder: it is its own destination, and stays.
    run_cli("sort", photos, "--into", tmp_path / "C")
    inside = placed(tmp_path / "C")[0]
    assert run_cli("sort", inside, "--into", tmp_path / "C", "--move").returncode == 0
    assert inside.is_file() and sort_report(tmp_path / "C")[-1]["action"] == "already there"


def test_move_with_multi_all_puts_a_group_photo_in_every_class_then_removes_it(tmp_path):
    group, labels = group_photo(tmp_path / "in" / "group.jpg")
    group.with_suffix(".xmp").write_bytes(b"<x:xmpmeta/>")  # and its sidecar, which goes with it
    expected = digest(group)
    assert len(labels) == 2
    proc = run_cli("sort", group.parent, "--into", tmp_path / "S", "--multi", "all", "--move")
    assert proc.returncode == 0
    files = [p for p in placed(tmp_path / "S") if p.suffix == ".jpg"]
    assert {p.parent.name for p in files} == labels and {digest(p) for p in files} == {expected}
    assert all(p.with_suffix(".xmp").read_bytes() == b"<x:xmpmeta/>" for p in files)
    assert list(group.parent.iterdir()) == []
    assert [r["action"] for r in sort_report(tmp_path / "S")] == ["copied", "copied", "moved", "moved"]


def test_hardlink_and_symlink(photos, tmp_path):
    run_cli("sort", photos, "--into", tmp_path / "H", "--hardlink")
    for p in placed(tmp_path / "H"):
        assert p.stat().st_nlink == 2 and os.path.samefile(p, photos / p.name)
    run_cli("sort", photos, "--into", tmp_path / "S", "--symlink")
    links = placed(tmp_path / "S")
    assert links and all(p.is_symlink() and p.resolve() == (photos / p.name).resolve() for p in links)
    assert run_cli("sort", photos, "--into", tmp_path / "S", "--symlink").returncode == 0
    assert placed(tmp_path / "S") == links  # re-run: no duplicates
    assert run_cli("sort", photos, "--into", tmp_path / "X", "--move", "--symlink").returncode == 2


def group_photo(path: Path) -> tuple[Path, set[str]]:
    """Two different people side by side: two faces, of different classes with the shipped model (the first
    pair of example photos for which that holds, so the tests do not hang on one model's calls). Returns the
    photo and its faces' classes, as `classify` reports them."""
    import cv2
    import numpy as np

    photos = example_photos()
    path.parent.mkdir(parents=True)
    for other in photos[1:]:
        imgs = [cv2.resize(cv2.imread(str(p)), (300, 400)) for p in (photos[0], other)]
        cv2.imwrite(str(path), np.hstack(imgs))
        rows = run_cli("classify", path).stdout.splitlines()[1:]
        labels = {line.split(",")[6] for line in rows}
        if len(rows) == 2 and len(labels) == 2:
            return path, labels
    raise AssertionError("no two example photos make a group photo of two classes")


def test_multi_all_places_a_group_photo_in_each_face_class(tmp_path):
    group, labels = group_photo(tmp_path / "in" / "group.jpg")
    run_cli("sort", group.parent, "--into", tmp_path / "S", "--multi", "all")
    assert {p.parent.name for p in placed(tmp_path / "S")} == labels
    run_cli("sort", group.parent, "--into", tmp_path / "L")
    assert len(placed(tmp_path / "L")) == 1


def test_output_inside_the_photos_folder_is_not_scanned(photos):
    into = photos / "SORTED"
    run_cli("sort", photos, "--into", into)
    n = len(placed(into))
    run_cli("sort", photos, "--into", into)
    assert len(placed(into)) == n
    report = sort_report(into)
    assert not any("SORTED" in r["source"] for r in report)


def test_sorting_a_folder_into_itself_is_refused_and_touches_nothing(photos):
    before, entries = snapshot(photos), sorted(photos.iterdir())
    proc = run_cli("sort", photos, "--into", f"{photos}/./")  # the same folder, spelled otherwise
    assert proc.returncode == 2 and "is the folder being sorted" in proc.stderr, proc.stderr
    assert snapshot(photos) == before and sorted(photos.iterdir()) == entries  # no class folders, no report


def make_many(folder: Path, copies: int = 10) -> dict[str, str]:
    """copies x the example photos, each file distinct (a trailing byte), so a run takes a while."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(copies):
        for p in example_photos():
            (folder / f"{p.stem}-{i}{p.suffix}").write_bytes(p.read_bytes() + i.to_bytes(2, "big"))
    return snapshot(folder)


# 480 photos: about 2 s of work on this machine after the first placements, where the interrupt lands.
INTERRUPT_COPIES = 40


@pytest.mark.parametrize("mode", [[], ["--move"]], ids=["copy", "move"])
def test_killed_mid_run_then_resumed_leaves_each_photo_exactly_once(tmp_path, mode):
    photos, into = tmp_path / "in", tmp_path / "SORTED"
    make_many(photos, copies=INTERRUPT_COPIES)
    for photo in sorted(photos.iterdir())[::2]:  # half the photos with an editor's sidecar
        photo.with_suffix(".xmp").write_text(f"edits of {photo.name}")
    before = snapshot(photos)
    cmd = [sys.executable, "-m", "facesort", "sort", str(photos), "--into", str(into), "-q", "--batch-size", "4", *mode]
    interrupt_once_started(cmd, lambda: into.exists() and len(placed(into)) >= 20, signal.SIGKILL)
    assert 0 < len(placed(into)) < len(before), "the kill should land mid-run"

    assert run_cli("sort", photos, "--into", into, *mode).returncode == 0
    assert sorted(digest(p) for p in placed(into)) == sorted(before.values())  # each exactly once
    for sidecar in into.rglob("*.xmp"):  # beside its photo
        assert (sidecar.parent / sidecar.read_text().removeprefix("edits of ")).is_file()
    assert not list(into.rglob("*.facesort-tmp"))
    if mode:
        # The resumed run finishes the moves the kill interrupted, also one that fell between placing
        # a photo and removing its source.
        assert snapshot(photos) == {}
    else:
        assert snapshot(photos) == before


@pytest.mark.parametrize(
    "sig,code,says",
    [(signal.SIGINT, 130, "interrupted:"), (signal.SIGTERM, 143, "terminated:")],
    ids=["ctrl-c", "kill"],
)
def test_ctrl_c_or_sigterm_says_what_is_kept_and_a_rerun_finishes_the_job(tmp_path, sig, code, says):
    photos, into = tmp_path / "in", tmp_path / "SORTED"
    before = make_many(photos, copies=INTERRUPT_COPIES)
    cmd = [sys.executable, "-m", "facesort", "sort", str(photos), "--into", str(into), "-q", "--batch-size", "4"]
    proc = interrupt_once_started(cmd, lambda: into.exists() and len(placed(into)) >= 20, sig)
    assert proc.returncode == code and "Traceback" not in proc.stderr, proc.stderr
    assert says in proc.stderr and "placements recorded in" in proc.stderr, proc.stderr
    assert 0 < len(sort_report(into)) < len(before), "the interrupt should land mid-run"
    assert all(r["action"] for r in sort_report(into))  # every row whole
    assert run_cli("sort", photos, "--into", into).returncode == 0
    assert sorted(digest(p) for p in placed(into)) == sorted(before.values())  # each exactly once
    assert snapshot(photos) == before


def test_ctrl_c_during_classify_leaves_a_report_of_whole_rows(tmp_path):
    photos, report = tmp_path / "in", tmp_path / "r.csv"
    n = len(make_many(photos, copies=INTERRUPT_COPIES))
    cmd = [sys.executable, "-m", "facesort", "classify", str(photos), "--out", str(report), "--batch-size", "4"]
    proc = interrupt_once_started(cmd, lambda: report.exists() and report.stat().st_size > 3000)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, proc.stderr
    assert "interrupted:" in proc.stderr and "files classified so far" in proc.stderr, proc.stderr
    with open(report, newline="") as f:
        rows = list(csv.DictReader(f))
    assert 0 < len({r["path"] for r in rows}) < n, "the interrupt should land mid-run"
    assert all(r["status"] in ("ok", "no_face", "error") for r in rows)  # the last row is whole too
    # --resume classifies the rest: the report is the one a run left alone writes.
    assert run_cli("classify", photos, "--out", report, "--batch-size", "4", "--resume", "-q").returncode == 0
    whole = run_cli("classify", photos, "--batch-size", "4", "-q").stdout
    assert report.read_text() == whole


def test_hardlink_across_filesystems_is_refused_before_anything_is_written(photos):
    import tempfile

    other = Path("/dev/shm")
    if not other.is_dir() or os.stat(other).st_dev == os.stat(photos).st_dev:
        pytest.skip("no second filesystem (/dev/shm) beside the test's folder")
    with tempfile.TemporaryDirectory(dir=other) as tmp:
        into = Path(tmp) / "SORTED"
        proc = run_cli("sort", photos, "--into", into, "--hardlink")
        assert proc.returncode == 2 and "different filesystems" in proc.stderr, proc.stderr
        assert not into.exists()
        # Copying across them is fine.
        assert run_cli("sort", photos, "--into", into, "-q").returncode == 0 and placed(into)


def test_photos_whose_names_are_as_long_as_a_name_can_be_are_sorted_and_a_rerun_is_a_no_op(tmp_path):
    from facesort.sorter import _free_name_candidate

    photo = example_photos()[0].read_bytes()
    # 255 bytes each (the longest name ext4 and most filesystems take), one of them in two-byte characters.
    names = ["x" * 251 + ".jpg", "é" * 125 + "x.jpg"]
    for folder in ("a", "b"):
        for i, name in enumerate(names):
            assert len(os.fsencode(name)) == 255
            (tmp_path / "in" / folder).mkdir(parents=True, exist_ok=True)
            (tmp_path / "in" / folder / name).write_bytes(photo + folder.encode() + bytes([i]))  # all different
    into = tmp_path / "SORTED"
    assert run_cli("sort", tmp_path / "in", "--into", into, "-q").returncode == 0
    assert [r["action"] for r in sort_report(into)] == ["copied"] * 4, sort_report(into)
    got = sorted(p.name for p in placed(into))
    assert all(len(os.fsencode(n)) <= 255 for n in got) and len(set(got)) == 4
    assert sorted(digest(p) for p in placed(into)) == sorted(digest(p) for p in (tmp_path / "in").rglob("*.jpg"))
    assert run_cli("sort", tmp_path / "in", "--into", into, "-q").returncode == 0
    assert [r["action"] for r in sort_report(into)][4:] == ["already there"] * 4
    # The suffixed name is shortened at a character boundary and keeps its extension.
    assert _free_name_candidate("é" * 125 + "x.jpg", 12) == "é" * 124 + "-12.jpg"
    assert _free_name_candidate("photo.jpg", 3) == "photo-3.jpg"


def test_a_file_where_a_class_folder_goes_is_refused_before_anything_is_placed(photos, tmp_path):
    into = tmp_path / "SORTED"
    into.mkdir()
    (into / "SadFemale").write_text("my notes\n")
    for dry in ([], ["--dry-run"]):
        proc = run_cli("sort", photos, "--into", into, *dry)
        assert proc.returncode == 1 and "SadFemale is a file, not a folder" in proc.stderr, proc.stderr
    assert sorted(p.name for p in into.iterdir()) == ["SadFemale"]
    assert (into / "SadFemale").read_text() == "my notes\n"
    # A class folder that is a link to a disk no longer there is named as such, and left as it is.
    (into / "SadFemale").unlink()
    (into / "SadFemale").symlink_to(tmp_path / "unmounted" / "SadFemale")
    proc = run_cli("sort", photos, "--into", into)
    assert proc.returncode == 1, proc.stderr
    assert f"SadFemale is a broken symlink (to {tmp_path / 'unmounted' / 'SadFemale'})" in proc.stderr
    assert sorted(p.name for p in into.iterdir()) == ["SadFemale"] and (into / "SadFemale").is_symlink()
    # So is --into itself.
    proc = run_cli("sort", photos, "--into", into / "SadFemale")
    assert proc.returncode == 1 and "SadFemale: it is a broken symlink (to" in proc.stderr, proc.stderr
    # A file named as the folder of unsure photos stands in the way only of a run that would use it.
    (into / "SadFemale").unlink()
    (into / "Unsure").write_text("my notes\n")
    proc = run_cli("sort", photos, "--into", into, "--unsure-below", "0.9")
    assert proc.returncode == 1 and "Unsure is a file, not a folder" in proc.stderr, proc.stderr
    assert sorted(p.name for p in into.iterdir()) == ["Unsure"]
    assert run_cli("sort", photos, "--into", into, "-q").returncode == 0
    assert len(placed(into)) == len(list(photos.iterdir())) and (into / "Unsure").read_text() == "my notes\n"


@pytest.mark.parametrize("mode", ["--move", "--hardlink"])
def test_a_relative_symlink_among_the_photos_still_names_its_photo_once_sorted(tmp_path, mode):
    """Photo organisers keep albums of relative links (album/a.jpg -> ../originals/a.jpg). Moved or hard-linked
    as the link itself, it would point to SORTED/originals/a.jpg, which does not exist."""
    originals, album, into = tmp_path / "originals", tmp_path / "album", tmp_path / "SORTED"
    originals.mkdir()
    album.mkdir()
    photo = example_photos()[0]
    shutil.copy2(photo, originals / "a.jpg")
    (album / "a.jpg").symlink_to(Path("..") / "originals" / "a.jpg")
    proc = run_cli("sort", album, "--into", into, mode, "-q")
    assert proc.returncode == 0, proc.stderr
    (placed_photo,) = placed(into)
    assert os.path.samefile(placed_photo, originals / "a.jpg")  # resolves, to the photo
    assert (originals / "a.jpg").read_bytes() == photo.read_bytes()
    assert not os.path.lexists(album / "a.jpg") if mode == "--move" else (album / "a.jpg").is_symlink()


def with_sidecars(folder: Path) -> tuple[Path, dict[str, bytes]]:
    """One example photo as a camera pair (DSC_0001.jpg and DSC_0001.png share DSC_0001.xmp) with an
    editor's sidecars: Lightroom's by stem, darktable's by whole name, Apple's .AAE, and a Live Photo's video."""
    folder.mkdir(parents=True)
    jpg = folder / "DSC_0001.jpg"
    shutil.copy2(example_photos()[0], jpg)
    sidecars = {
        "DSC_0001.xmp": b"<x:xmpmeta>lightroom</x:xmpmeta>",
        "DSC_0001.jpg.xmp": b"<x:xmpmeta>darktable</x:xmpmeta>",
        "DSC_0001.AAE": b"<plist>apple</plist>",
        "DSC_0001.MOV": b"\0\0\0\x18ftypqt  ",  # a Live Photo's video half
    }
    for name, data in sidecars.items():
        (folder / name).write_bytes(data)
    return jpg, sidecars


def test_a_photos_sidecars_go_with_it_named_after_it(tmp_path):
    jpg, sidecars = with_sidecars(tmp_path / "in")
    into = tmp_path / "SORTED"
    # The photo's own name is taken in its class folder: it and its sidecars take the next name.
    plan = [line.split(" -> ") for line in run_cli("sort", jpg, "--into", into, "--dry-run").stdout.splitlines()]
    folder = Path(plan[0][1]).parent
    assert plan == [[str(jpg), str(folder / "DSC_0001.jpg")]] + [
        [str(jpg.parent / name), str(folder / name)]
        for name in ("DSC_0001.AAE", "DSC_0001.MOV", "DSC_0001.xmp", "DSC_0001.jpg.xmp")
    ]
    assert not into.exists()
    folder.mkdir(parents=True)
    (folder / "DSC_0001.jpg").write_bytes(b"another photo")
    before = snapshot(jpg.parent)
    proc = run_cli("sort", jpg, "--into", into)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(jpg.parent) == before  # a copy leaves every source as it was
    assert digest(folder / "DSC_0001-1.jpg") == digest(jpg)
    assert (folder / "DSC_0001-1.xmp").read_bytes() == sidecars["DSC_0001.xmp"]
    assert (folder / "DSC_0001-1.jpg.xmp").read_bytes() == sidecars["DSC_0001.jpg.xmp"]
    assert (folder / "DSC_0001-1.AAE").read_bytes() == sidecars["DSC_0001.AAE"]
    assert (folder / "DSC_0001-1.MOV").read_bytes() == sidecars["DSC_0001.MOV"]
    rows = sort_report(into)
    assert [(Path(r["source"]).name, Path(r["destination"]).name, r["action"]) for r in rows] == [
        ("DSC_0001.jpg", "DSC_0001-1.jpg", "copied"),
        ("DSC_0001.AAE", "DSC_0001-1.AAE", "copied"),
        ("DSC_0001.MOV", "DSC_0001-1.MOV", "copied"),
        ("DSC_0001.xmp", "DSC_0001-1.xmp", "copied"),
        ("DSC_0001.jpg.xmp", "DSC_0001-1.jpg.xmp", "copied"),
    ]
    assert {r["label"] for r in rows} == {folder.name}
    assert "1 copied, 4 sidecars copied" in proc.stderr
    # A second run finds everything already there.
    run_cli("sort", jpg, "--into", into)
    last = [r for r in sort_report(into) if r["run"] == sort_report(into)[-1]["run"]]
    assert [r["action"] for r in last] == ["already there"] * 5


def test_a_move_takes_a_photos_own_sidecars_and_copies_those_another_photo_shares(tmp_path):
    jpg, sidecars = with_sidecars(tmp_path / "in")
    png = jpg.with_suffix(".png")  # the same picture again: a camera pair sharing DSC_0001.xmp and .AAE
    import cv2

    cv2.imwrite(str(png), cv2.imread(str(jpg)))
    into = tmp_path / "SORTED"
    proc = run_cli("sort", jpg.parent, "--into", into, "--move")
    assert proc.returncode == 0, proc.stderr
    # The photos and darktable's sidecar of the JPEG moved; the shared sidecars stay for whoever looks there.
    assert sorted(p.name for p in jpg.parent.iterdir()) == ["DSC_0001.AAE", "DSC_0001.MOV", "DSC_0001.xmp"]
    folder = next(p.parent for p in placed(into) if p.name == "DSC_0001.jpg")
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["DSC_0001.jpg", "DSC_0001.png", "DSC_0001.xmp", "DSC_0001.AAE", "DSC_0001.MOV", "DSC_0001.jpg.xmp"]
    )
    for name, data in sidecars.items():
        assert (folder / name).read_bytes() == data
    actions = {(Path(r["source"]).name, r["action"], r["error"]) for r in sort_report(into)}
    assert actions == {
        ("DSC_0001.jpg", "moved", ""),
        ("DSC_0001.png", "moved", ""),
        ("DSC_0001.jpg.xmp", "moved", ""),
        ("DSC_0001.xmp", "copied", "not moved: also the sidecar of DSC_0001.png"),
        ("DSC_0001.AAE", "copied", "not moved: also the sidecar of DSC_0001.png"),
        ("DSC_0001.MOV", "copied", "not moved: also the sidecar of DSC_0001.png"),
        # the PNG's turn: the JPEG's copy is the same file
        ("DSC_0001.xmp", "already there", "not moved: also the sidecar of DSC_0001.jpg"),
        ("DSC_0001.AAE", "already there", "not moved: also the sidecar of DSC_0001.jpg"),
        ("DSC_0001.MOV", "already there", "not moved: also the sidecar of DSC_0001.jpg"),
    }


def test_a_move_killed_before_removing_the_photo_moves_its_sidecars_on_the_rerun(tmp_path):
    jpg, sidecars = with_sidecars(tmp_path / "in")
    into = tmp_path / "SORTED"
    dest = Path(run_cli("sort", jpg, "--into", into, "--dry-run").stdout.splitlines()[0].split(" -> ")[1])
    dest.parent.mkdir(parents=True)
    os.link(jpg, dest)  # where a killed move stops: the photo placed, nothing removed
    assert run_cli("sort", jpg.parent, "--into", into, "--move").returncode == 0
    assert list(jpg.parent.iterdir()) == []
    for name, data in sidecars.items():
        assert (dest.parent / name).read_bytes() == data


def test_a_photo_whose_sidecars_name_is_taken_takes_the_next_name_free_for_all_of_them(tmp_path):
    jpg, sidecars = with_sidecars(tmp_path / "in")
    into = tmp_path / "SORTED"
    dest = Path(run_cli("sort", jpg, "--into", into, "--dry-run").stdout.splitlines()[0].split(" -> ")[1])
    dest.parent.mkdir(parents=True)
    (dest.parent / "DSC_0001.xmp").write_bytes(b"another photo's edits")  # the photo's own name is free
    assert run_cli("sort", jpg.parent, "--into", into, "--move").returncode == 0
    assert (dest.parent / "DSC_0001.xmp").read_bytes() == b"another photo's edits"
    assert list(jpg.parent.iterdir()) == []
    assert not dest.exists() and (dest.parent / "DSC_0001-1.jpg").is_file()
    for name, data in sidecars.items():
        assert (dest.parent / name.replace("DSC_0001", "DSC_0001-1")).read_bytes() == data


def test_a_move_that_leaves_the_photo_where_it_is_copies_its_sidecars(tmp_path):
    # The photo is already in SORTED as a symlink (an earlier --symlink run): moving it would leave the link
    # pointing nowhere, so it stays, and its sidecars stay with it.
    jpg, sidecars = with_sidecars(tmp_path / "in")
    into = tmp_path / "SORTED"
    assert run_cli("sort", jpg, "--into", into, "--symlink", "--no-sidecars").returncode == 0
    assert run_cli("sort", jpg, "--into", into, "--move").returncode == 0
    assert sorted(p.name for p in jpg.parent.iterdir()) == sorted(["DSC_0001.jpg", *sidecars])
    last = [r for r in sort_report(into) if r["run"] == sort_report(into)[-1]["run"]]
    assert [(r["action"], r["error"]) for r in last] == [("already there", "")] + [
        ("copied", "not moved: its photo stays where it is")
    ] * 4


def test_no_sidecars_leaves_them_out(tmp_path):
    jpg, _ = with_sidecars(tmp_path / "in")
    into = tmp_path / "SORTED"
    assert run_cli("sort", jpg.parent, "--into", into, "--move", "--no-sidecars").returncode == 0
    assert [p.name for p in placed(into)] == ["DSC_0001.jpg"]
    assert "DSC_0001.jpg" not in [p.name for p in jpg.parent.iterdir()]


def edited_report(photos: Path, tmp_path: Path, fmt: str = "csv") -> tuple[Path, dict[str, str]]:
    """classify's report of `photos`, with one photo's label changed by hand (in lower case), the rows
    reversed as a spreadsheet might leave them. Returns it and each photo's class in it."""
    import pandas as pd

    report = tmp_path / f"report.{'jsonl' if fmt == 'jsonl' else 'csv'}"
    assert run_cli("classify", photos, "--out", report, "--format", fmt.replace("excel", "csv"), "-q").returncode == 0
    df = pd.read_json(report, lines=True, dtype=False) if fmt == "jsonl" else pd.read_csv(report, dtype=str)
    first = df.index[0]
    new = "SadMale" if df.at[first, "label"] != "SadMale" else "HappyFemale"
    df.at[first, "label"] = new.lower()
    df = df.iloc[::-1]
    if fmt == "jsonl":
        df.to_json(report, orient="records", lines=True)
    elif fmt == "excel":  # as Excel saves "CSV UTF-8" where the decimal separator is a comma
        decimals = [c for c in df.columns if c not in ("path", "face", "label", "status", "error")]
        df[decimals] = df[decimals].apply(lambda col: col.str.replace(".", ",", regex=False))
        df.to_csv(report, index=False, sep=";", encoding="utf-8-sig", lineterminator="\r\n")
    else:
        df.to_csv(report, index=False)
    df.at[first, "label"] = new
    return report, {str(Path(r.path).name): r.label for r in df.itertuples()}


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "excel"])
def test_sort_from_a_report_places_photos_by_its_labels_as_edited_without_a_model(photos, tmp_path, fmt):
    """The report edited on the page, in an editor, or in a spreadsheet: Excel's CSV UTF-8 starts with a
    byte-order mark, and where the decimal separator is a comma it puts semicolons between fields."""
    report, classes = edited_report(photos, tmp_path, fmt)
    into = tmp_path / "SORTED"
    before = snapshot(photos)
    # No model runs: one that cannot be loaded is never looked at.
    page = tmp_path / "page.html"
    proc = run_cli("sort", "--from-report", report, "--into", into, "--model", tmp_path / "no-model", "--html", page)
    assert proc.returncode == 0, proc.stderr
    assert f"wrote {page}: {len(classes)} faces" in proc.stderr and page.stat().st_size > 0
    assert snapshot(photos) == before
    assert {p.name: p.parent.name for p in placed(into)} == classes
    assert {Path(r["source"]).name: r["label"] for r in sort_report(into)} == classes


def test_sort_from_a_report_that_excel_saved_in_its_own_encoding_finds_photos_in_folders_with_accents(photos, tmp_path):
    """Excel reads a UTF-8 CSV without a byte-order mark as Windows-1252 and saves it in that encoding ("CSV
    (Comma delimited)") or as UTF-8 of what it read ("CSV UTF-8"): a folder named Köln then comes back as
    bytes that are not UTF-8, or as KÃ¶ln. Both still name the photos."""
    folder = tmp_path / "Köln"
    photos.rename(folder)
    report = tmp_path / "report.csv"
    assert run_cli("classify", folder, "--out", report, "-q").returncode == 0
    text = report.read_text(encoding="utf-8")
    expected = {Path(r["path"]).name: r["label"] for r in csv.DictReader(io.StringIO(text)) if r["status"] == "ok"}
    saved = {
        "read right, saved as Windows-1252": text.encode("cp1252"),
        "read as Windows-1252, saved as CSV UTF-8": "\ufeff".encode() + text.encode("utf-8").decode("cp1252").encode(),
    }
    for how, data in saved.items():
        report.write_bytes(data)
        into = tmp_path / how
        proc = run_cli("sort", "--from-report", report, "--into", into)
        assert proc.returncode == 0, (how, proc.stderr)
        assert {p.name: p.parent.name for p in placed(into)} == expected, how
        assert {Path(r["source"]).parent for r in sort_report(into)} == {folder}, how


def test_sort_from_a_report_with_multi_all_places_a_photo_in_each_of_its_faces_classes(photos, tmp_path):
    photo = sorted(photos.iterdir())[0]
    report = tmp_path / "r.csv"
    report.write_text(
        "path,face,label,status,error\n"
        f"{photo},1,SadFemale,ok,\n"  # a second face, listed first
        f"{photo},0,HappyMale,ok,\n"
    )
    assert run_cli("sort", "--from-report", report, "--into", tmp_path / "L").returncode == 0
    assert [p.parent.name for p in placed(tmp_path / "L")] == ["HappyMale"]  # the largest face's class
    assert run_cli("sort", "--from-report", report, "--into", tmp_path / "A", "--multi", "all").returncode == 0
    assert sorted(p.parent.name for p in placed(tmp_path / "A")) == ["HappyMale", "SadFemale"]


def test_sort_from_a_report_sorts_the_rest_when_a_photo_is_gone_and_exits_1(photos, tmp_path):
    report, classes = edited_report(photos, tmp_path)
    gone = sorted(photos.iterdir())[-1]
    gone.unlink()
    into = tmp_path / "SORTED"
    proc = run_cli("sort", "--from-report", report, "--into", into)
    assert proc.returncode == 1 and f"{gone} does not exist now" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    assert {p.name for p in placed(into)} == set(classes) - {gone.name}
    row = [r for r in sort_report(into) if r["source"] == str(gone)][0]
    assert (row["action"], row["error"]) == ("not sorted", "file not found")


@pytest.mark.parametrize(
    "text,says",
    [
        ("path,face,label,status,error\n{photo},0,Happy,ok,\n", "row 1 ({photo}): label 'Happy' is not one of"),
        ("path,face,label,status,error\n{photo},0,HappyMale,done,\n", "status 'done' is not ok, no_face or error"),
        ("run,source,destination,label,action,error\n", "is not a facesort classify report (no column path, status)"),
    ],
    ids=["label", "status", "a sort report"],
)
def test_sort_from_a_report_it_cannot_use_says_why_and_creates_nothing(photos, tmp_path, text, says):
    photo = sorted(photos.iterdir())[0]
    report = tmp_path / "r.csv"
    report.write_text(text.format(photo=photo))
    into = tmp_path / "SORTED"
    proc = run_cli("sort", "--from-report", report, "--into", into)
    assert proc.returncode == 2 and says.format(photo=photo) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and not into.exists()
    proc = run_cli("sort", photos, "--from-report", report, "--into", into)
    assert proc.returncode == 2 and "not both" in proc.stderr


def test_google_takeouts_metadata_goes_with_its_photo(tmp_path):
    # Takeout's names: NAME.json before 2024, NAME.supplemental-metadata.json since, cut short to fit 51
    # characters (the .json kept). An album's metadata.json and a file that is not Takeout's stay.
    album = tmp_path / "Takeout" / "Google Photos" / "Trip"
    album.mkdir(parents=True)
    photo = example_photos()[0]
    metadata = {
        "IMG_0001.jpg": "IMG_0001.jpg.json",
        "IMG_0002.jpg": "IMG_0002.jpg.supplemental-metadata.json",
        "PXL_20240712_093015123.PORTRAIT.ORIGINAL.jpg": "PXL_20240712_093015123.PORTRAIT.ORIGINAL.jpg.sup.json",
    }
    for i, (name, json_name) in enumerate(metadata.items()):
        (album / name).write_bytes(photo.read_bytes() + bytes([i]))
        (album / json_name).write_text(f'{{"title": "{name}"}}')
    (album / "metadata.json").write_text('{"title": "Trip"}')
    (album / "IMG_0001.jpg.notes.json").write_text("{}")
    into = tmp_path / "SORTED"
    assert run_cli("sort", album, "--into", into, "--move").returncode == 0
    assert sorted(p.name for p in album.iterdir()) == ["IMG_0001.jpg.notes.json", "metadata.json"]
    for name, json_name in metadata.items():
        (placed_photo,) = [p for p in placed(into) if p.name == name]
        assert (placed_photo.parent / json_name).read_text() == f'{{"title": "{name}"}}'


def test_takeouts_metadata_of_a_numbered_duplicate_or_a_long_name_goes_with_its_photo(tmp_path):
    """Takeout numbers a duplicate name, IMG_0001(1).jpg, and puts the number after the metadata's suffix; and it
    cuts a name with its suffix to 46 characters. Two photos whose names differ only after the cut share one."""
    album = tmp_path / "Takeout" / "Google Photos" / "Photos from 2019"
    album.mkdir(parents=True)
    photo = example_photos()[0]
    long = "Screenshot_20190704-183512_Samsung Internet"  # 43 characters
    metadata = {
        "IMG_0001.jpg": "IMG_0001.jpg.json",
        "IMG_0001(1).jpg": "IMG_0001.jpg(1).json",  # before 2024
        "IMG_0002(2).jpg": "IMG_0002.jpg.supplemental-metadata(2).json",
        # The suffix cut (the name and it to 46 characters), the number kept; all of it but its dot.
        "Screenshot_20190704-183512_Chrome(1).jpg": "Screenshot_20190704-183512_Chrome.jpg.suppleme(1).json",
        "PXL_20190704_183512345.PORTRAIT-01.COVERS.jpg": "PXL_20190704_183512345.PORTRAIT-01.COVERS.jpg..json",
        f"{long}_and_more_to_it.jpg": f"{long}_an.json",  # the photo's own name cut
    }
    for i, (name, json_name) in enumerate(metadata.items()):
        (album / name).write_bytes(photo.read_bytes() + bytes([i]))
        (album / json_name).write_text(f'{{"title": "{name}"}}')
    (album / f"{long}_and_another.jpg").write_bytes(photo.read_bytes() + b"x")  # its metadata is the one above
    (album / "IMG_0003(1).jpg.json").write_text("{}")  # no photo of that name: stays
    into = tmp_path / "SORTED"
    assert run_cli("sort", album, "--into", into, "--move").returncode == 0
    # The cut name's metadata is copied to both photos that share it and stays; the others moved.
    assert sorted(p.name for p in album.iterdir()) == ["IMG_0003(1).jpg.json", f"{long}_an.json"]
    for name, json_name in metadata.items():
        (placed_photo,) = [p for p in placed(into) if p.name == name]
        assert (placed_photo.parent / json_name).read_text() == f'{{"title": "{name}"}}', name
    (other,) = [p for p in placed(into) if p.name == f"{long}_and_another.jpg"]
    assert (other.parent / f"{long}_an.json").is_file()
    rows = {Path(r["source"]).name: r for r in sort_report(into)}
    assert rows[f"{long}_an.json"]["error"] == f"not moved: also the sidecar of {long}_and_another.jpg"
    # Placed beside a photo that already has its name there, the metadata takes Takeout's NAME.json.
    again = tmp_path / "again"
    again.mkdir()
    (again / "IMG_0001(1).jpg").write_bytes(photo.read_bytes() + b"new")
    (again / "IMG_0001.jpg(1).json").write_text("{}")
    assert run_cli("sort", again, "--into", into).returncode == 0
    (renamed,) = [p for p in placed(into) if p.name == "IMG_0001(1)-1.jpg"]
    assert (renamed.parent / "IMG_0001(1)-1.jpg.json").read_text() == "{}"
    assert run_cli("unsort", into).returncode == 0
    assert (again / "IMG_0001.jpg(1).json").is_file() and (album / "IMG_0001.jpg(1).json").is_file()


def test_sort_from_a_report_leaves_a_path_that_is_no_longer_a_photo_file_where_it_is(photos, tmp_path):
    # A report edited by hand, or a file replaced since: a folder or a named pipe is not placed.
    pipe = photos / "pipe.jpg"
    os.mkfifo(pipe)
    report = tmp_path / "r.csv"
    report.write_text(f"path,face,label,status,error\n{photos},0,HappyMale,ok,\n{pipe},0,SadMale,ok,\n")
    into = tmp_path / "SORTED"
    proc = run_cli("sort", "--from-report", report, "--into", into, "--move", timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert [(r["action"], r["error"]) for r in sort_report(into)] == [
        ("not sorted", "is a directory"),
        ("not sorted", "not a regular file"),
    ]
    assert pipe.exists() and placed(into) == []


def tree(folder: Path) -> dict[str, str]:
    """Every file and link under `folder` by relative path: a file's digest, a link's target."""
    return {
        str(p.relative_to(folder)): f"-> {os.readlink(p)}" if p.is_symlink() else digest(p)
        for p in folder.rglob("*")
        if p.is_symlink() or p.is_file()
    }


def test_unsort_removes_the_partial_copy_a_killed_unsort_left_among_the_photos(photos, tmp_path):
    """Putting a moved photo back across filesystems copies it under a temporary name first; killed then
    (power cut, SIGKILL), that part-written copy stays. The next unsort removes it, and only it."""
    into = tmp_path / "SORTED"
    before = snapshot(photos)
    assert run_cli("sort", photos, "--into", into, "--move", "-q").returncode == 0
    stale = photos / ".4242-0badc0de.facesort-tmp"
    stale.write_bytes(b"half a photo")
    (photos / ".draft.facesort-tmp").write_text("mine")  # not a name facesort gives
    assert run_cli("unsort", into, "-q").returncode == 0
    assert not stale.exists() and (photos / ".draft.facesort-tmp").read_text() == "mine"
    (photos / ".draft.facesort-tmp").unlink()
    assert snapshot(photos) == before


@pytest.mark.parametrize("mode", ["--move", "--copy", "--hardlink", "--symlink"])
def test_unsort_puts_every_photo_back_as_it_was(tmp_path, mode):
    photos = tmp_path / "in"
    make_many(photos / "trip", copies=1)
    make_many(photos, copies=1)
    first = sorted((photos / "trip").iterdir())[0]
    first.with_suffix(".xmp").write_text("edits")  # a sidecar goes back too
    relative = photos / "album" / "link.jpg"
    relative.parent.mkdir()
    relative.symlink_to(Path("..") / "trip" / first.name)  # a symlink among the photos comes back as a link
    before = tree(photos)
    into = tmp_path / "SORTED"
    sort_args = ["--move"] if mode == "--move" else [] if mode == "--copy" else [mode]
    assert run_cli("sort", photos, "--into", into, "--multi", "all", *sort_args).returncode == 0
    sorted_tree = tree(photos)
    plan = run_cli("unsort", into, "--dry-run")
    placements = [r for r in sort_report(into) if r["action"] != "already there"]
    assert plan.returncode == 0 and len(plan.stdout.splitlines()) == len(placements)
    assert tree(photos) == sorted_tree  # the dry run changed nothing
    proc = run_cli("unsort", into)
    assert proc.returncode == 0, proc.stderr
    put_back = tree(photos)
    after = dict(put_back)
    if mode == "--move":  # the link came back naming its photo by an absolute path, the way it was moved
        assert os.path.normpath(after.pop("album/link.jpg")[3:]) == str(first)
        before.pop("album/link.jpg")
    assert after == before
    assert [p.name for p in into.iterdir()] == ["facesort-report.csv"]  # the class folders, empty, are gone
    again = run_cli("unsort", into)
    assert again.returncode == 0 and "nothing to put back" in again.stderr
    assert tree(photos) == put_back  # the second run changed nothing


def test_unsort_never_removes_or_overwrites_a_file_that_changed_since(tmp_path):
    photos, into = tmp_path / "in", tmp_path / "SORTED"
    make_many(photos, copies=1)
    assert run_cli("sort", photos, "--into", into).returncode == 0
    copies = placed(into)
    copies[0].write_bytes(b"retouched in SORTED")  # its photo is no longer the same: it stays
    Path(sort_report(into)[2]["source"]).unlink()  # a photo deleted since: its copy is the only one, it stays
    proc = run_cli("unsort", into)
    assert proc.returncode == 1 and "2 files stay in" in proc.stderr, proc.stderr
    assert copies[0].read_bytes() == b"retouched in SORTED"
    unsorted = {r["destination"]: r["error"] for r in sort_report(into) if r["action"] == "kept"}
    assert unsorted == {
        str(copies[0]): "it or its photo changed since",
        sort_report(into)[2]["destination"]: "its photo is gone from where it was",
    }
    assert Path(sort_report(into)[2]["destination"]).is_file()
    assert len(placed(into)) == 2

    photos, moved = tmp_path / "in2", tmp_path / "MOVED"
    make_many(photos, copies=1)
    assert run_cli("sort", photos, "--into", moved, "--move").returncode == 0
    taken = Path(sort_report(moved)[1]["source"])
    taken.write_bytes(b"a new file under the old name")  # where a moved photo came from, another file is now
    proc = run_cli("unsort", moved)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert taken.read_bytes() == b"a new file under the old name"
    row = [r for r in sort_report(moved) if r["source"] == str(taken)][-1]
    assert (row["action"], row["error"]) == ("kept", "a different file is where it came from")
    assert Path(row["destination"]).is_file()  # still in SORTED
    assert len(placed(moved)) == 1 and len(list(photos.iterdir())) == len(example_photos())


def test_unsort_of_a_folder_sort_did_not_write_says_so(tmp_path):
    proc = run_cli("unsort", tmp_path)
    assert proc.returncode == 2 and "holds no facesort-report.csv" in proc.stderr and "Traceback" not in proc.stderr


def test_unsort_killed_between_putting_a_photo_back_and_removing_it_from_sorted_finishes_on_the_rerun(tmp_path):
    photos, into = tmp_path / "in", tmp_path / "SORTED"
    before = make_many(photos, copies=1)
    assert run_cli("sort", photos, "--into", into, "--move").returncode == 0
    row = sort_report(into)[0]
    os.link(row["destination"], row["source"])  # where a killed unsort stops: back, and still in SORTED
    assert run_cli("unsort", into).returncode == 0
    assert snapshot(photos) == before and placed(into) == []
    mine = [r for r in sort_report(into) if r["source"] == row["source"]]
    assert [r["action"] for r in mine] == ["moved", "removed"]


def test_sort_from_a_report_of_relative_paths_reads_them_from_the_current_folder_and_says_so(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # the working tree's facesort
    assert run_cli("classify", photos.name, "--out", "r.csv", "-q", cwd=tmp_path, env=env).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_cli("sort", "--from-report", tmp_path / "r.csv", "--into", tmp_path / "S", cwd=elsewhere, env=env)
    assert proc.returncode == 1 and "nothing was sorted" in proc.stderr, proc.stderr
    assert "relative paths are read from the current folder" in proc.stderr
    proc = run_cli("sort", "--from-report", "r.csv", "--into", "S", cwd=tmp_path, env=env)
    assert proc.returncode == 0 and len(placed(tmp_path / "S")) == len(example_photos())


def test_unsort_finds_the_files_of_a_sort_run_with_relative_paths_from_anywhere(photos, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}  # the working tree's facesort
    before = snapshot(photos)
    assert run_cli("sort", photos.name, "--into", "SORTED", "--move", "-q", cwd=tmp_path, env=env).returncode == 0
    report = tmp_path / "SORTED" / "facesort-report.csv"
    rows = sort_report(tmp_path / "SORTED")
    assert all(Path(r["source"]).is_absolute() and Path(r["destination"]).is_absolute() for r in rows)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert run_cli("unsort", tmp_path / "SORTED", cwd=elsewhere, env=env).returncode == 0
    assert snapshot(photos) == before and not list(elsewhere.iterdir())
    # A report written before sort recorded absolute paths: relative ones, read from the folder sort ran in.
    assert run_cli("sort", photos.name, "--into", "SORTED", "--move", "-q", cwd=tmp_path, env=env).returncode == 0
    old = report.read_text().replace(f"{tmp_path}/", "")
    report.write_text(old)
    proc = run_cli("unsort", tmp_path / "SORTED", cwd=elsewhere, env=env)
    assert proc.returncode == 2 and "run unsort from that folder" in proc.stderr, proc.stderr
    assert snapshot(photos) == {} and report.read_text() == old  # nothing done
    assert run_cli("unsort", "SORTED", cwd=tmp_path, env=env).returncode == 0
    assert snapshot(photos) == before


def test_unsure_below_puts_the_photos_the_model_is_less_sure_of_in_unsure_and_unsort_takes_them_back(photos, tmp_path):
    report = tmp_path / "r.csv"
    assert run_cli("classify", photos, "--out", report).returncode == 0
    with open(report, newline="") as f:
        faces = {
            Path(r["path"]).name: (r["label"], float(r["confidence"])) for r in csv.DictReader(f) if r["face"] == "0"
        }
    ordered = sorted(c for _, c in faces.values())
    threshold = (ordered[5] + ordered[6]) / 2  # half the example photos either side
    assert ordered[6] - ordered[5] > 1e-4  # the report's 6 decimals decide nothing here
    before = snapshot(photos)
    into = tmp_path / "SORTED"
    proc = run_cli("sort", photos, "--into", into, "--unsure-below", str(threshold), "--move")
    assert proc.returncode == 0, proc.stderr
    expected = {name: "Unsure" if c < threshold else label for name, (label, c) in faces.items()}
    assert {p.name: p.parent.name for p in placed(into)} == expected
    assert list(expected.values()).count("Unsure") == 6
    assert f"12 moved (6 in Unsure/: confidence below {threshold:g})" in proc.stderr
    assert {r["label"] for r in sort_report(into)} == set(expected.values())
    assert run_cli("unsort", into).returncode == 0
    assert snapshot(photos) == before and [p.name for p in into.iterdir()] == ["facesort-report.csv"]
    # A report's labels, corrected by hand, are sorted as they are: the model's confidence is not theirs.
    proc = run_cli("sort", "--from-report", report, "--into", tmp_path / "R", "--unsure-below", "0.5")
    assert proc.returncode == 2 and "--unsure-below is for the model's own labels" in proc.stderr
    assert not (tmp_path / "R").exists()


def test_unsure_below_with_multi_all_sends_each_unsure_face_to_unsure_once():
    from facesort.pipeline import FaceResult
    from facesort.sorter import destinations

    faces = [
        FaceResult("g.jpg", 0, label="HappyMale", confidence=0.95),
        FaceResult("g.jpg", 1, label="SadFemale", confidence=0.41),
        FaceResult("g.jpg", 2, label="HappyFemale", confidence=0.55),
    ]
    assert destinations(faces, "all", 0.6) == ["HappyMale", "Unsure"]
    assert destinations(faces, "largest", 0.6) == ["HappyMale"]
    assert destinations(faces[1:], "largest", 0.6) == ["Unsure"]
    assert destinations(faces, "all") == ["HappyMale", "SadFemale", "HappyFemale"]
    assert destinations([FaceResult("w.png", status="no_face")], "largest", 0.99) == ["NoFace"]
    assert destinations([FaceResult("r.jpg", 0, label="SadMale")]) == ["SadMale"]  # a report's row: no confidence
