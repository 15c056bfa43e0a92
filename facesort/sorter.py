"""Placing photos into class folders without ever overwriting or losing a file.

Every destination is created atomically and only if its name is free (`os.link`/`os.symlink` fail
on an existing name, unlike a rename), so a file is never overwritten; copies are written under a
temporary name in the destination folder first, so a run killed mid-copy leaves no partial file
under a real name. A file already placed (same content at the name or a suffixed name) is skipped,
which makes a second run a no-op and a killed run resumable.

A photo's sidecar files (an editor's edits: `DSC_0001.xmp`, `DSC_0001.NEF.xmp`, `IMG_0001.AAE`) go with it,
named after the photo's destination, so the editor still finds them beside it.
"""

from __future__ import annotations

import bisect
import csv
import errno
import filecmp
import io
import os
import re
import secrets
import shutil
import stat
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

from facesort.images import IMAGE_EXTENSIONS
from facesort.model import CLASSES
from facesort.pipeline import ERROR, NO_FACE, OK, FaceResult

MODES = ("copy", "move", "hardlink", "symlink")
NO_FACE_DIR = "NoFace"
UNSURE_DIR = "Unsure"  # photos whose face the model is less sure of than sort --unsure-below asks
FOLDERS = (*CLASSES, NO_FACE_DIR, UNSURE_DIR)  # every folder sort places photos in
TMP_SUFFIX = ".facesort-tmp"
REPORT_NAME = "facesort-report.csv"
SOURCE_KEPT = "source not removed"  # the error of a move whose photo was placed but whose source stays
REPORT_COLUMNS = ("run", "source", "destination", "label", "action", "error")
# Sidecars, by the extension (any letter case) added to a photo's name without its extension (DSC_0001.xmp:
# Lightroom, Capture One, digiKam, Bridge; IMG_0001.AAE: Apple Photos' edits; IMG_0001.MOV: taken as the video
# half of an iPhone's Live Photo, assuming that a camera numbering stills and videos in one sequence does not give
# a video a still's name, not checked against cameras) or to its whole name
# (DSC_0001.NEF.xmp: darktable; .pp3: RawTherapee; .dop: DxO PhotoLab); and Google Takeout's metadata
# (IMG_0001.jpg.json, IMG_0001.jpg.supplemental-metadata.json: _takeout_json; a numbered duplicate's and a long
# name's, IMG_0001.jpg(1).json: _takeout_names).
SIDECARS_OF_STEM = (".xmp", ".aae", ".mov")
SIDECARS_OF_NAME = (".xmp", ".pp3", ".dop")
SIDECAR_EXTENSIONS = frozenset((*SIDECARS_OF_STEM, *SIDECARS_OF_NAME, ".json"))


class _Sidecar(NamedTuple):
    name: str
    # named by the photo's name without its extension (DSC_0001.xmp: "stem"), by its whole name
    # (DSC_0001.NEF.xmp: "name"), or by Takeout's cut or numbered form of it (_takeout_names: "takeout")
    kind: str
    shared: str  # the name of another photo beside it that shares it (the same stem, or Takeout's cut); or ""


def _run_id() -> str:
    """Unique per run even for runs within one second: a report groups its rows by it."""
    return f"{datetime.now().isoformat(timespec='milliseconds')}-{os.getpid()}"


@dataclass
class Placement:
    source: str
    destination: str
    label: str
    action: str  # copied, moved, hardlinked, symlinked, already there, would <mode>, not sorted
    error: str = ""
    sidecar: bool = False  # a sidecar file that goes with the photo placed before it


def destinations(rows: list[FaceResult], multi: str = "largest", unsure_below: float = 0.0) -> list[str]:
    """Class folders an image goes to: its largest face's class, every face's class (multi="all"),
    NoFace without a face, none for a file that could not be read; Unsure instead of the class of a face
    whose confidence is below `unsure_below`."""
    if any(r.status == ERROR for r in rows):
        return []
    faces = [r for r in rows if r.status == OK]
    if not faces:
        return [NO_FACE_DIR]
    if multi != "all":
        faces = faces[:1]  # rows come largest face first

    def sure(r: FaceResult) -> bool:  # a report's rows (sort --from-report) carry no confidence
        return not unsure_below or (r.confidence or 0.0) >= unsure_below

    return list(dict.fromkeys(r.label if sure(r) else UNSURE_DIR for r in faces))


def groups_from_report(rows: list[dict]) -> list[list[FaceResult]]:
    """A classify report's rows (read_report's dicts) as each photo's results, largest face first, in the
    order the photos first appear: for sorting by a report's labels as they are, edited by hand too (each
    row's label is rewritten as the class's own name). A
    photo's rows need not be next to each other (a spreadsheet may have reordered them). Labels are taken in
    any letter case. ValueError with one sentence for a row that cannot be used."""
    by_name = {c.lower(): c for c in CLASSES}
    photos: dict[str, list[FaceResult]] = {}
    for n, row in enumerate(rows, 1):
        path, status = row.get("path") or "", str(row.get("status") or "").strip()
        where = f"row {n} ({path})"
        if not path:
            raise ValueError(f"row {n} names no file")
        if status not in (OK, NO_FACE, ERROR):
            raise ValueError(f"{where}: status {status!r} is not {OK}, {NO_FACE} or {ERROR}")
        label = str(row.get("label") or "").strip()
        if status == OK and label.lower() not in by_name:
            raise ValueError(f"{where}: label {label!r} is not one of {', '.join(CLASSES)}")
        try:
            face = None if row.get("face") in (None, "") else int(row["face"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: face {row['face']!r} is not a face number") from None
        label = by_name[label.lower()] if status == OK else None
        if label:
            row["label"] = label  # the class as written elsewhere (for the page of these rows)
        result = FaceResult(path, face=face, label=label, status=status, error=str(row.get("error") or ""))
        photos.setdefault(path, []).append(result)
    for group in photos.values():
        group.sort(key=lambda r: -1 if r.face is None else r.face)
    return list(photos.values())


def not_a_photo_file(path: str) -> str:
    """Why a report's path cannot be sorted now ("file not found", "is a directory", ...), or "" where it can:
    a regular file, or a symlink to one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken symlink" if os.path.islink(path) else "file not found"
    except OSError as e:
        return e.strerror or str(e)
    if stat.S_ISDIR(mode):
        return "is a directory"
    return "" if stat.S_ISREG(mode) else "not a regular file"


def not_a_folder(path: Path) -> str:
    """What stands where a folder should be: a file, or a symlink to nowhere (say, an unmounted disk)."""
    if path.is_symlink() and not path.exists():
        return f"a broken symlink (to {os.readlink(path)})"
    return "a file, not a folder"


class Sorter:
    """Places files under `into`/<class>/ by `mode`, each with its sidecars (unless `sidecars` is False);
    with dry_run only says what it would do. `unsure`: the run may place photos in UNSURE_DIR too."""

    def __init__(
        self,
        into: str | os.PathLike,
        mode: str = "copy",
        dry_run: bool = False,
        sidecars: bool = True,
        unsure: bool = False,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.into, self.mode, self.dry_run, self.sidecars = Path(into), mode, dry_run, sidecars
        self.run_id = _run_id()
        self._listed: OrderedDict[str, tuple] = OrderedDict()  # recent folders' file names (_listing)
        for name in FOLDERS if unsure else (n for n in FOLDERS if n != UNSURE_DIR):
            folder = self.into / name
            if os.path.lexists(folder) and not folder.is_dir():
                # It would block its class: every photo of it would look for a free name there in vain.
                raise NotADirectoryError(errno.ENOTDIR, f"{folder} is {not_a_folder(folder)}", str(folder))
        if not dry_run:
            self.into.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Partial copies of a killed run: ours by name, never a complete file."""
        for name in FOLDERS:
            folder = self.into / name
            for tmp in _our_temporaries(folder):
                tmp.unlink(missing_ok=True)

    def place_all(self, source: str, labels: list[str]) -> list[Placement]:
        """Put `source` (and its sidecars) into each of the `labels` folders. A move into several copies it
        into all but the last and moves it there, and removes the source only once every folder has it."""
        if self.mode != "move" or len(labels) < 2:
            return [p for label in labels for p in self.place(source, label)]
        placements = [p for label in labels[:-1] for p in self.place(source, label, mode="copy")]
        if any(p.action == "not sorted" for p in placements if not p.sidecar):
            return [*placements, Placement(source, "", labels[-1], "not sorted", "not moved: a copy failed")]
        return [*placements, *self.place(source, labels[-1])]

    def place(self, source: str, label: str, mode: str | None = None) -> list[Placement]:
        """Put `source` into the `label` folder under a free name (by `mode`, the sorter's unless given), or
        find it already there; then its sidecars beside it, under the name that is free for all of them. A move
        removes the photo's source last, so that a run killed before then finds the photo already there and its
        sidecars still to move."""
        mode = mode or self.mode
        src = Path(source)
        sidecars = self._sidecars(src) if self.sidecars else []

        def fits(dest: Path) -> bool:  # a name whose sidecars' names are free (or hold them already)
            for side in sidecars:
                target = _beside(dest, src, side)
                if os.path.lexists(target) and not _same_content(src.parent / side.name, target):
                    return False
            return True

        photo, kept_as = self._place_file(src, label, mode, fits=fits)
        placements = [photo]
        if sidecars and photo.destination and photo.action != "not sorted":
            dest = Path(photo.destination)
            # A sidecar moves only with its photo: not where the photo stays (its only copy is the source)
            photo_moves = kept_as is not None or photo.action == "would move"
            for side in sidecars:
                side_mode = "copy" if mode == "move" and (side.shared or not photo_moves) else mode
                p, side_kept_as = self._place_file(src.parent / side.name, label, side_mode, _beside(dest, src, side))
                _remove_source(p, side_kept_as)
                if side_mode != mode and p.action != "not sorted":
                    why = f"also the sidecar of {side.shared}" if side.shared else "its photo stays where it is"
                    p.error = f"not moved: {why}"
                placements.append(p)
        _remove_source(photo, kept_as)  # only once the photo and its sidecars are complete
        return placements

    def _place_file(
        self,
        src: Path,
        label: str,
        mode: str,
        target: Path | None = None,
        fits=lambda dest: True,
        name: str | None = None,
    ) -> tuple[Placement, str | None]:
        """Place `src` in the `label` folder: under the first free name that `fits` (from `name`, else its own),
        or at `target` only (a sidecar). For a move whose source is still to be removed, the action it is if that
        fails (else None). A name the filesystem refuses (FAT, exFAT, NTFS: no : ? * and the like) is retried with
        those characters as _ (_portable_name)."""
        source, sidecar = str(src), target is not None
        folder = self.into / label
        limit = _name_max(folder if folder.is_dir() else self.into)
        name = name or src.name
        candidates = [target] if sidecar else (folder / _free_name_candidate(name, k, limit) for k in range(100_000))
        for dest in candidates:
            if os.path.lexists(dest):
                if _same_content(src, dest):
                    return self._already_there(source, dest, label, mode, sidecar)
                continue
            if not fits(dest):
                continue
            if self.dry_run:
                return Placement(source, str(dest), label, f"would {mode}", sidecar=sidecar), None
            try:
                folder.mkdir(parents=True, exist_ok=True)
                action, kept_as = self._do(src, dest, mode)
            except FileExistsError:
                continue  # taken since we looked: try the next name
            except OSError as e:
                if not sidecar and e.errno in NAME_REFUSED and _portable_name(name) != name:
                    return self._place_file(src, label, mode, fits=fits, name=_portable_name(name))
                return Placement(source, str(dest), label, "not sorted", e.strerror or str(e), sidecar), None
            return Placement(source, str(dest), label, action, sidecar=sidecar), kept_as
        why = f"a different {target.name} is already there" if sidecar else "no free name"
        return Placement(source, "", label, "not sorted", why, sidecar), None

    def _already_there(
        self, source: str, dest: Path, label: str, mode: str, sidecar: bool
    ) -> tuple[Placement, str | None]:
        """A move killed between placing a file and removing its source left both: finish it. Only where
        the destination is a real file of its own (not a symlink, not the source's own name), so that
        removing the source cannot take the only copy."""
        src = Path(source)
        finish = (
            mode == "move"
            and not os.path.islink(dest)
            and os.path.realpath(src) != os.path.realpath(dest)
            and not os.path.islink(src)
        )
        if not finish:
            return Placement(source, str(dest), label, "already there", sidecar=sidecar), None
        if self.dry_run:
            return Placement(source, str(dest), label, "would move", sidecar=sidecar), None
        return Placement(source, str(dest), label, "moved", sidecar=sidecar), "already there"

    def _do(self, src: Path, dest: Path, mode: str) -> tuple[str, str | None]:
        """Place src at dest: (action, None), or for a move ("moved", the action it is if the source, still
        there, cannot be removed)."""
        if mode == "symlink":
            os.symlink(os.path.abspath(src), dest)
            return "symlinked", None
        if mode == "hardlink":
            # A symlink's photo, not the link: Linux's link() links the symlink itself (so does os.link, even
            # with follow_symlinks=True), which breaks a relative one.
            os.link(os.path.realpath(src) if os.path.islink(src) else src, dest)
            return "hardlinked", None
        if mode == "move" and os.path.islink(src):
            # The link moves, still naming its photo: a relative one, moved as it is, would point elsewhere.
            os.symlink(os.path.join(os.path.dirname(os.path.abspath(src)), os.readlink(src)), dest)
            return "moved", "symlinked"
        if mode == "move":
            return "moved", _link_or_copy(src, dest)  # then the unlink
        self._copy(src, dest)
        return "copied", None

    def _sidecars(self, src: Path) -> list[_Sidecar]:
        """The sidecars beside `src`, found in a listing of the folder, so that a case-insensitive filesystem
        does not make one file two."""
        names, claims = self._listing(src.parent)
        stem, ext = os.path.splitext(src.name)
        found = []
        if ext:
            same_stem = [n for n in _starting(names, stem + ".") if "." not in n[len(stem) + 1 :]]
            others = [n for n in same_stem if n != src.name and _ext(n) in IMAGE_EXTENSIONS]
            found += [
                _Sidecar(n, "stem", others[0] if others else "") for n in same_stem if _ext(n) in SIDECARS_OF_STEM
            ]
        for name in _starting(names, src.name + "."):
            tail = name[len(src.name) :]
            if tail.lower() in SIDECARS_OF_NAME or _takeout_json(tail):
                found.append(_Sidecar(name, "name", ""))
        for name in _takeout_names(src.name) if claims else ():
            others = [p for p in claims.get(name, ()) if p != src.name]
            if name in claims:
                found.append(_Sidecar(name, "takeout", others[0] if others else ""))
        return [f for f in found if os.path.lexists(src.parent / f.name)]  # the listing may be older

    def _listing(self, folder: Path) -> tuple[list[str], dict[str, list[str]]]:
        """The names in `folder` that sidecar matching looks at, sorted: the sidecar candidates, and the photos
        that share a stem with one (so a folder without sidecars keeps an empty list); and each Takeout metadata
        file there that a photo's numbered or cut name points to (_takeout_names), with the photos it does for.
        The last 4,096 folders' are kept, so photos that come in any order (--files-from) do not list a folder
        again for each photo."""
        key = str(folder)
        if key in self._listed:
            self._listed.move_to_end(key)
            return self._listed[key]
        sidecars, photos = [], []
        try:
            with os.scandir(folder) as it:
                for entry in it:
                    ext = _ext(entry.name)
                    kind = sidecars if ext in SIDECAR_EXTENSIONS else photos if ext in IMAGE_EXTENSIONS else None
                    try:
                        if kind is not None and not entry.is_dir():
                            kind.append(entry.name)
                    except OSError:
                        pass
        except OSError:
            pass  # a folder that cannot be listed: no sidecars found
        stems = {os.path.splitext(n)[0] for n in sidecars}
        names = sorted([*sidecars, *(n for n in photos if os.path.splitext(n)[0] in stems)])
        jsons, claims = {n for n in sidecars if n.endswith(".json")}, {}
        for photo in sorted(photos) if jsons else ():
            for name in _takeout_names(photo):
                if name in jsons:
                    claims.setdefault(name, []).append(photo)
        self._listed[key] = listing = (names, claims)
        if len(self._listed) > 4096:
            self._listed.popitem(last=False)
        return listing

    @staticmethod
    def _copy(src: Path, dest: Path) -> None:
        # Named apart from the photo, so a photo whose name is as long as a name can be still gets one.
        tmp = dest.parent / f".{os.getpid()}-{secrets.token_hex(4)}{TMP_SUFFIX}"
        try:
            shutil.copy2(src, tmp)
            try:
                os.link(tmp, dest)  # fails if the name was taken meanwhile: never overwrites
            except OSError as e:
                if e.errno in (errno.EEXIST,):
                    raise
                if os.path.lexists(dest):  # filesystem without hard links
                    raise FileExistsError(errno.EEXIST, "exists", str(dest)) from None
                os.rename(tmp, dest)
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)


def _beside(dest: Path, src: Path, sidecar: _Sidecar) -> Path:
    """Where a sidecar of `src` goes when `src` goes to `dest`: its name with the photo's part renamed."""
    if sidecar.kind == "stem":
        return dest.parent / (os.path.splitext(dest.name)[0] + sidecar.name[len(os.path.splitext(src.name)[0]) :])
    if sidecar.kind == "takeout":  # its own name beside its photo's; beside a renamed photo, Takeout's NAME.json
        return dest.parent / (sidecar.name if dest.name == src.name else dest.name + ".json")
    return dest.parent / (dest.name + sidecar.name[len(src.name) :])


def _link_or_copy(src: Path, dest: Path) -> str:
    """`src` also at `dest`, never over a file: a hard link where the filesystem allows one, else a copy (another
    filesystem, or one without hard links). Which it was: "hardlinked" or "copied"."""
    try:
        os.link(src, dest)
        return "hardlinked"
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
            raise
    Sorter._copy(src, dest)
    return "copied"


def _ext(name: str) -> str:
    return os.path.splitext(name)[1].lower()


def _starting(names: list[str], prefix: str) -> list[str]:
    """The names of a sorted list that start with `prefix`."""
    i = j = bisect.bisect_left(names, prefix)
    while j < len(names) and names[j].startswith(prefix):
        j += 1
    return names[i:j]


def _takeout_json(tail: str) -> bool:
    """Whether a name that is a photo's name and `tail` is Google Takeout's metadata of that photo: NAME.json
    (before 2024), NAME.supplemental-metadata.json, or that cut short to fit 51 characters (NAME.supple.json,
    NAME.s.json: the .json end is kept)."""
    middle = tail.removesuffix(".json")
    return middle != tail and (middle == "" or (len(middle) > 1 and "supplemental-metadata".startswith(middle[1:])))


# What a filesystem says of a name it cannot hold: EINVAL (Linux's vfat, exfat), ENOENT (FUSE exfat), EILSEQ
# (bytes that are not UTF-8); and the characters FAT, exFAT and NTFS refuse, with what is no character in UTF-8.
NAME_REFUSED = frozenset((errno.EINVAL, errno.ENOENT, errno.EILSEQ))
_NOT_ON_FAT = re.compile(r'[<>:"/\\|?*\x00-\x1f\udc80-\udcff]')


def _portable_name(name: str) -> str:
    """`name` with the characters FAT, exFAT and NTFS refuse (and bytes that are not UTF-8) as _."""
    return _NOT_ON_FAT.sub("_", name)


_OUR_TEMPORARY = re.compile(rf"\.\d+-[0-9a-f]{{8}}{re.escape(TMP_SUFFIX)}")  # Sorter._copy's partial copies


def _our_temporaries(folder: Path) -> list[Path]:
    """The partial copies Sorter._copy left in `folder` (a killed run's), known by their whole name; none where
    the folder cannot be listed."""
    try:
        return [folder / n for n in os.listdir(folder) if _OUR_TEMPORARY.fullmatch(n)]
    except OSError:
        return []


TAKEOUT_CUT = 46  # Takeout cuts a metadata file's name, less its number and .json, to this many characters


def _takeout_names(photo: str) -> list[str]:
    """The names of Google Takeout's metadata of `photo` that _takeout_json does not match (it needs the photo's
    whole name in front): where Takeout cut the photo's name (over 46 characters with what follows it), and
    where it numbered a duplicate, IMG_0001(1).jpg: IMG_0001.jpg(1).json, IMG_0001.jpg.supplemental-metadata(1).json
    or that cut (IMG_0001.jpg.suppl(1).json), or IMG_0001(1).jpg.supplemental-metadata.json cut into the name.
    The rules are those of the Takeout importers that meet them most (ente's, in its metadata-json.ts)."""
    stem, ext = os.path.splitext(photo)
    number = re.search(r"\(\d+\)$", stem)
    num = number.group(0) if number else ""
    base = stem[: len(stem) - len(num)] + ext
    names = [base[:TAKEOUT_CUT] + num, (base + ".supplemental-metadata")[:TAKEOUT_CUT] + num]
    if num:
        names.append((photo + ".supplemental-metadata")[:TAKEOUT_CUT])
    names = [n + ".json" for n in dict.fromkeys(names)]
    return [n for n in names if not (n.startswith(photo + ".") and _takeout_json(n[len(photo) :]))]


def _remove_source(p: Placement, kept_as: str | None) -> None:
    """Finish a move whose file is placed: remove its source. One that cannot be removed (a read-only folder)
    is sorted all the same, as a copy or link, and the error says so."""
    if kept_as is None:
        return
    try:
        os.unlink(p.source)
    except OSError as e:
        p.action, p.error = kept_as, _kept(e)


def _name_max(folder: Path) -> int:
    """The longest file name, in bytes, the filesystem of `folder` takes (255 almost everywhere)."""
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _free_name_candidate(name: str, k: int, limit: int = 255) -> str:
    """The k-th name tried for a photo called `name`: itself, then `stem-k.ext`, the stem shortened where the
    suffix would make the name longer than `limit` bytes (cut at a character boundary of a UTF-8 name)."""
    if k == 0:
        return name
    stem, ext = os.path.splitext(name)
    tail = f"-{k}{ext}"
    raw, room = os.fsencode(stem), max(1, limit - len(os.fsencode(tail)))
    if len(raw) > room:
        raw = raw[:room]
        lead = len(raw) - 1
        while lead > 0 and raw[lead] & 0xC0 == 0x80:  # back over UTF-8 continuation bytes to the lead byte
            lead -= 1
        needs = 2 if raw[lead] >= 0xC0 else 1
        needs += (raw[lead] >= 0xE0) + (raw[lead] >= 0xF0)
        if lead > 0 and len(raw) - lead < needs:  # the cut split that character: leave it out whole
            raw = raw[:lead]
    return os.fsdecode(raw) + tail


def _kept(e: OSError) -> str:
    return f"{SOURCE_KEPT}: {e.strerror or e}"


def _same_content(src: Path, dest: Path) -> bool:
    try:
        if os.path.samefile(src, dest):
            return True
        return filecmp.cmp(src, dest, shallow=False)
    except OSError:
        return False


class SortReport:
    """SORTED/facesort-report.csv: one row per placement, appended run after run. Each row is written whole
    or not at all: a write cut short (a full disk) is taken back, so the file stays a valid CSV for the
    next run to append to."""

    def __init__(self, into: Path) -> None:
        path = into / REPORT_NAME
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
        try:
            size = os.fstat(self._fd).st_size
            if size == 0:
                self._append(_csv_line(REPORT_COLUMNS))
            else:
                with open(path, "rb") as f:  # a row torn by an earlier facesort, killed mid-write
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        self._append("\n")
        except OSError:
            os.close(self._fd)
            raise

    def _append(self, text: str) -> None:
        data = text.encode("utf-8", "surrogateescape")
        size = os.fstat(self._fd).st_size
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except OSError:
            os.ftruncate(self._fd, size)
            raise

    def write(self, run: str, p: Placement) -> None:
        """A row, its paths absolute (as given, symlinks not resolved), so that unsort finds them from anywhere."""
        source, destination = (os.path.abspath(x) if x else x for x in (p.source, p.destination))
        self._append(_csv_line((run, source, destination, p.label, p.action, p.error)))

    def close(self) -> None:
        os.close(self._fd)


def _csv_line(values) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()


# ---- unsort: putting back what sort placed ------------------------------------------------------------------
PLACED = ("copied", "moved", "hardlinked", "symlinked")  # report actions that put a file into SORTED
UNDONE = ("returned", "removed", "gone")  # unsort's actions that leave nothing of a placement in SORTED


def read_sort_report(into: Path) -> list[dict]:
    """The rows of SORTED/facesort-report.csv. ValueError with one sentence where there is none, or it is
    not a sort's report."""
    path = into / REPORT_NAME
    try:
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as f:
            reader = csv.DictReader(f)
            if tuple(reader.fieldnames or ()) != REPORT_COLUMNS:
                raise ValueError(f"{path} is not a facesort sort report (its columns: {REPORT_COLUMNS})")
            return list(reader)
    except FileNotFoundError:
        raise ValueError(f"{into} holds no {REPORT_NAME}: nothing facesort sorted there to put back") from None
    except OSError as e:
        raise ValueError(f"cannot read {path}: {e.strerror or e}") from None
    except csv.Error as e:
        raise ValueError(f"{path} is not a readable CSV file ({e})") from None


def relative_paths_problem(rows: list[dict], into: Path) -> str:
    """Why the rows cannot be put back from the current folder, or "". A report written before sort recorded
    absolute paths may name files relative to the folder sort ran in, which must then be the current one: there
    a relative destination's class folder is in `into`, and a relative source's folder exists."""
    for row in rows:
        dest, src = row["destination"], row["source"]
        here = True
        if not os.path.isabs(dest):
            try:
                here = os.path.samefile(os.path.dirname(os.path.dirname(dest)) or ".", into)  # INTO/<class>/<name>
            except OSError:
                here = False
        if here and not os.path.isabs(src):
            here = os.path.isdir(os.path.dirname(src) or ".")
        if not here:
            return (
                f"{into / REPORT_NAME} names files by paths relative to the folder sort ran in (as {src}): run "
                "unsort from that folder"
            )
    return ""


def to_undo(rows: list[dict]) -> list[dict]:
    """The placements of a sort report that no unsort has put back yet, last first."""
    open_: dict[tuple[str, str], dict] = {}
    for row in rows:
        key = (row["source"], row["destination"])
        if row["action"] in PLACED and row["destination"]:
            open_[key] = row
        elif row["action"] in UNDONE:
            open_.pop(key, None)
    return list(open_.values())[::-1]


class Unsorter:
    """Puts back what sort placed, by its report, never losing a file: a moved photo goes back to where it was
    (where that name is free), a copy or link is removed only while its source holds the same photo, and
    anything else stays in SORTED: a moved photo whose name another file has taken, a copy whose photo is gone
    or changed."""

    def __init__(self, into: str | os.PathLike, dry_run: bool = False) -> None:
        self.into, self.dry_run = Path(into), dry_run
        self.run_id = _run_id()
        self._cleaned: set[str] = set()  # photo folders whose stale temporaries are removed

    def undo(self, row: dict, needed: bool = False) -> Placement:
        """Put back one placement. `needed`: a placement still to be put back has the same destination (two
        photos of the same name and bytes, moved to one file), so a moved photo returns as a copy."""
        src, dest = row["source"], row["destination"]

        def done(action: str, error: str = "") -> Placement:
            return Placement(src, dest, row["label"], action, error)

        if not os.path.lexists(dest):
            return done("gone", "not in its class folder any more")
        if os.path.lexists(src):
            if not _same_content(src, dest):  # the same file (a link to it) or the same bytes
                moved = row["action"] == "moved"
                return done(
                    "kept", "a different file is where it came from" if moved else "it or its photo changed since"
                )
            if self.dry_run:
                return done("would remove")
            os.unlink(dest)  # a copy, or a link, of what is still at the source
            return done("removed")
        if row["action"] != "moved":  # a copy or link of a photo gone from where it was: maybe its only copy
            return done("kept", "its photo is gone from where it was")
        if self.dry_run:
            return done("would return")
        try:
            folder = os.path.dirname(os.path.abspath(src))
            os.makedirs(folder, exist_ok=True)
            self._remove_stale_temporaries(folder)
            if os.path.islink(dest):  # a symlink among the photos, moved: it goes back as a link
                os.symlink(os.readlink(dest), src)
            elif needed:
                Sorter._copy(Path(dest), Path(src))
                return done("returned")
            else:
                _link_or_copy(Path(dest), Path(src))  # never over a file that appeared meanwhile
        except FileExistsError:
            return done("kept", "a different file is where it came from")
        except OSError as e:
            return done("kept", f"cannot put it back: {e.strerror or e}")
        try:
            os.unlink(dest)
        except OSError as e:
            return done("returned", f"its copy in SORTED not removed: {e.strerror or e}")
        return done("returned")

    def _remove_stale_temporaries(self, folder: str) -> None:
        """A copy back across filesystems that a killed unsort left part-written in a photo folder: ours by its
        whole name (Sorter._copy's), never a complete file."""
        if folder in self._cleaned:
            return
        self._cleaned.add(folder)
        for tmp in _our_temporaries(Path(folder)):
            try:
                tmp.unlink()
            except OSError:
                pass

    def remove_empty_folders(self) -> None:
        """The class folders that unsorting left empty (never one holding anything)."""
        for name in FOLDERS:
            try:
                os.rmdir(self.into / name)
            except OSError:
                pass
