"""Placing photos into class folders without ever overwriting or losing a file.

Every destination is created atomically and only if its name is free (`os.link`/`os.symlink` fail
on an existing name, unlike a rename), so a file is never overwritten; copies are written under a
temporary name in the destination folder first, so a run killed mid-copy leaves no partial file
under a real name. A file already placed (same content at the name or a suffixed name) is skipped,
which makes a second run a no-op and a killed run resumable.
"""

from __future__ import annotations

import csv
import errno
import filecmp
import io
import os
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from facesort.model import CLASSES
from facesort.pipeline import ERROR, OK, FaceResult

MODES = ("copy", "move", "hardlink", "symlink")
NO_FACE_DIR = "NoFace"
TMP_SUFFIX = ".facesort-tmp"
REPORT_NAME = "facesort-report.csv"
SOURCE_KEPT = "source not removed"  # the error of a move whose photo was placed but whose source stays
REPORT_COLUMNS = ("run", "source", "destination", "label", "action", "error")


@dataclass
class Placement:
    source: str
    destination: str
    label: str
    action: str  # copied, moved, hardlinked, symlinked, already there, would <mode>, not sorted
    error: str = ""


def destinations(rows: list[FaceResult], multi: str = "largest") -> list[str]:
    """Class folders an image goes to: its largest face's class, every face's class (multi="all"),
    NoFace without a face, none for a file that could not be read."""
    if any(r.status == ERROR for r in rows):
        return []
    labels = [r.label for r in rows if r.status == OK]
    if not labels:
        return [NO_FACE_DIR]
    if multi == "all":
        return list(dict.fromkeys(labels))
    return labels[:1]  # rows come largest face first


def not_a_folder(path: Path) -> str:
    """What stands where a folder should be: a file, or a symlink to nowhere (say, an unmounted disk)."""
    if path.is_symlink() and not path.exists():
        return f"a broken symlink (to {os.readlink(path)})"
    return "a file, not a folder"


class Sorter:
    """Places files under `into`/<class>/ by `mode`; with dry_run only says what it would do."""

    def __init__(self, into: str | os.PathLike, mode: str = "copy", dry_run: bool = False) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        self.into, self.mode, self.dry_run = Path(into), mode, dry_run
        # Unique per run even for runs within one second: the report groups rows by it.
        self.run_id = f"{datetime.now().isoformat(timespec='milliseconds')}-{os.getpid()}"
        for name in (*CLASSES, NO_FACE_DIR):
            folder = self.into / name
            if os.path.lexists(folder) and not folder.is_dir():
                # It would block its class: every photo of it would look for a free name there in vain.
                raise NotADirectoryError(errno.ENOTDIR, f"{folder} is {not_a_folder(folder)}", str(folder))
        if not dry_run:
            self.into.mkdir(parents=True, exist_ok=True)
            self._remove_stale_temporaries()

    def _remove_stale_temporaries(self) -> None:
        """Partial copies of a killed run: ours by name, never a complete file."""
        for name in (*CLASSES, NO_FACE_DIR):
            folder = self.into / name
            if folder.is_dir():
                for tmp in folder.glob(f".*{TMP_SUFFIX}"):
                    tmp.unlink(missing_ok=True)

    def place_all(self, source: str, labels: list[str]) -> list[Placement]:
        """Put `source` into each of the `labels` folders. A move into several copies it into all but the
        last and moves it there, and removes the source only once every folder has it."""
        if self.mode != "move" or len(labels) < 2:
            return [self.place(source, label) for label in labels]
        placements = [self.place(source, label, mode="copy") for label in labels[:-1]]
        if any(p.action == "not sorted" for p in placements):
            return [*placements, Placement(source, "", labels[-1], "not sorted", "not moved: a copy failed")]
        return [*placements, self.place(source, labels[-1])]

    def place(self, source: str, label: str, mode: str | None = None) -> Placement:
        """Put `source` into the `label` folder under a free name (by `mode`, the sorter's unless given),
        or find it already there."""
        mode = mode or self.mode
        src = Path(source)
        folder = self.into / label
        limit = _name_max(folder if folder.is_dir() else self.into)
        for k in range(100_000):
            dest = folder / _free_name_candidate(src.name, k, limit)
            if os.path.lexists(dest):
                if _same_content(src, dest):
                    return self._already_there(source, dest, label, mode)
                continue
            if self.dry_run:
                return Placement(source, str(dest), label, f"would {mode}")
            try:
                folder.mkdir(parents=True, exist_ok=True)
                action, error = self._do(src, dest, mode)
            except FileExistsError:
                continue  # taken since we looked: try the next name
            except OSError as e:
                return Placement(source, str(dest), label, "not sorted", e.strerror or str(e))
            return Placement(source, str(dest), label, action, error)
        return Placement(source, "", label, "not sorted", "no free name")

    def _already_there(self, source: str, dest: Path, label: str, mode: str) -> Placement:
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
            return Placement(source, str(dest), label, "already there")
        if self.dry_run:
            return Placement(source, str(dest), label, "would move")
        try:
            os.unlink(src)
        except OSError as e:
            return Placement(source, str(dest), label, "already there", _kept(e))
        return Placement(source, str(dest), label, "moved")

    def _do(self, src: Path, dest: Path, mode: str) -> tuple[str, str]:
        """Place src at dest; (action, error), error saying why a moved file's source is still there."""
        if mode == "symlink":
            os.symlink(os.path.abspath(src), dest)
            return "symlinked", ""
        if mode == "hardlink":
            # A symlink's photo, not the link: Linux's link() links the symlink itself (so does os.link, even
            # with follow_symlinks=True), which breaks a relative one.
            os.link(os.path.realpath(src) if os.path.islink(src) else src, dest)
            return "hardlinked", ""
        if mode == "move" and os.path.islink(src):
            # The link moves, still naming its photo: a relative one, moved as it is, would point elsewhere.
            os.symlink(os.path.join(os.path.dirname(os.path.abspath(src)), os.readlink(src)), dest)
            try:
                os.unlink(src)
            except OSError as e:
                return "symlinked", _kept(e)
            return "moved", ""
        if mode == "move":
            action = "hardlinked"
            try:
                os.link(src, dest)  # same filesystem: the move is a link, then the unlink
            except OSError as e:
                if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                    raise
                self._copy(src, dest)
                action = "copied"
            try:
                os.unlink(src)  # only once the destination is complete
            except OSError as e:
                # A read-only source folder: the photo is sorted all the same, as a copy (or link).
                return action, _kept(e)
            return "moved", ""
        self._copy(src, dest)
        return "copied", ""

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
        self._append(_csv_line((run, p.source, p.destination, p.label, p.action, p.error)))

    def close(self) -> None:
        os.close(self._fd)


def _csv_line(values) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(values)
    return buf.getvalue()
