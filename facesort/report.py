"""Writing results: CSV (one row per face) or JSON Lines, streamed row by row."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import IO

from facesort.model import CLASSES
from facesort.pipeline import FaceResult

COLUMNS = (
    "path",
    "face",
    "x",
    "y",
    "w",
    "h",
    "label",
    "confidence",
    "p_happy",
    "p_male",
    *(f"p_{c}" for c in CLASSES),
    "status",
    "error",
)
FORMATS = ("csv", "jsonl")
# The columns holding numbers other than the face's index: where a spreadsheet saved the report with
# semicolons between fields, they may hold decimal commas (0,9), read back as 0.9.
DECIMALS = ("x", "y", "w", "h", "confidence", "p_happy", "p_male", *(f"p_{c}" for c in CLASSES))
_DECIMAL_COMMA = re.compile(r"[-+]?\d+,\d+(?:[eE][-+]?\d+)?")
# A file name that is not UTF-8 (Linux names are bytes) reaches Python as lone surrogates (os.fsdecode).
_LONE_SURROGATE = re.compile(r"[\ud800-\udfff]")


def result_row(r: FaceResult) -> dict:
    """A result as a flat dict keyed by COLUMNS; missing values are None."""
    row = dict.fromkeys(COLUMNS)
    row.update(path=r.path, face=r.face, label=r.label, status=r.status, error=r.error)
    if r.box is not None:
        row.update(x=r.box.x, y=r.box.y, w=r.box.w, h=r.box.h)
    if r.probs is not None:
        row.update(confidence=round(r.confidence, 6), p_happy=round(r.p_happy, 6), p_male=round(r.p_male, 6))
        row.update({f"p_{c}": round(p, 6) for c, p in zip(CLASSES, r.probs)})
    return row


class ReportWriter:
    """Writes rows to an open text stream as they come; CSV quotes commas, quotes and newlines."""

    def __init__(self, stream: IO[str], fmt: str = "csv", header: bool = True) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown format {fmt!r}: use csv or jsonl")
        self.stream, self.fmt = stream, fmt
        if fmt == "csv":
            self._csv = csv.DictWriter(stream, COLUMNS, lineterminator="\n")
            if header:
                self._csv.writeheader()

    def write(self, result: FaceResult) -> None:
        self.write_row(result_row(result))

    def write_row(self, row: dict) -> None:
        """A row as result_row gives it, or as read_report reads it back (the same bytes again)."""
        if self.fmt == "csv":
            self._csv.writerow(row)
        else:
            # JSON must be UTF-8: such a name's raw bytes would make the line unreadable, so they are written as
            # \udcXX escapes, which json.loads gives back as the string os.fsencode turns into the same bytes.
            line = json.dumps(row, ensure_ascii=False)
            self.stream.write(_LONE_SURROGATE.sub(lambda m: f"\\u{ord(m[0]):04x}", line) + "\n")


def csv_reader(stream: IO[str]) -> csv.DictReader:
    """A DictReader over a CSV file as facesort writes it or as a spreadsheet saves it: fields separated by
    commas, semicolons (Excel where the decimal separator is a comma) or tabs, whichever the header line holds
    most of. Open the file with the encoding utf-8-sig: Excel's "CSV UTF-8" starts with a byte-order mark."""
    header = stream.readline()
    stream.seek(0)
    return csv.DictReader(stream, delimiter=max(",;\t", key=header.count))


def spreadsheet_path(path: str) -> str:
    """`path` as a CSV report names it or, where no such file exists, the one a spreadsheet meant. Excel reads
    a UTF-8 file without a byte-order mark as Windows-1252, and saves it as that ("CSV (Comma delimited)": the
    folder Köln/, read right, comes back as bytes that are not UTF-8) or as UTF-8 of what it read ("CSV
    UTF-8": Köln/ comes back as KÃ¶ln/). The first of the name and those two readings of it that exists."""
    if os.path.lexists(path):
        return path
    for recode in (lambda p: os.fsencode(p).decode("cp1252"), lambda p: p.encode("cp1252").decode("utf-8")):
        try:
            meant = recode(path)
        except (UnicodeError, ValueError):
            continue
        if os.path.lexists(meant):
            return meant
    return path


def read_report(stream: IO[str]) -> list[dict]:
    """The rows of a report ReportWriter wrote, CSV or JSON Lines, told apart by content (a JSON Lines report
    starts with "{"), also as a spreadsheet saved it (csv_reader; decimal commas read as points, paths as
    spreadsheet_path finds them). ValueError with one sentence where a JSON line cannot be read."""
    jsonl = stream.read(4096).lstrip().startswith("{")
    stream.seek(0)
    if not jsonl:
        reader = csv_reader(stream)
        rows = list(reader)
        if reader.reader.dialect.delimiter != ",":
            for row in rows:
                for key in DECIMALS:
                    if _DECIMAL_COMMA.fullmatch(row.get(key) or ""):
                        row[key] = row[key].replace(",", ".")
        for row in rows:
            if row.get("path"):
                row["path"] = spreadsheet_path(row["path"])
        return rows
    rows = []
    for n, line in enumerate(stream, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise ValueError(f"line {n} is not JSON: not a facesort JSON Lines report") from None
    if not all(isinstance(r, dict) for r in rows):
        raise ValueError("is not a facesort report (a line is not a JSON object)")
    return rows


def resume_point(path: str | os.PathLike, fmt: str) -> tuple[int, list[dict]]:
    """Where a classify run that was stopped (Ctrl-C, a kill, a full disk) left its report: (the length in
    bytes of what can be kept, its rows). Kept: every file's rows but the last file's, which may be short of
    a face; and, where the file ends in a row cut short, the file before it too. ValueError with one sentence
    where the report is not one that classify wrote in `fmt` as it is (edited, or another format): it is
    not to be cut."""
    with open(path, "rb") as f:
        raw = f.read()
    if fmt == "csv" and (",".join(COLUMNS) + "\n").encode().startswith(raw):
        return 0, []  # stopped before its header was whole: begun again
    text = raw.decode("utf-8", "surrogateescape")
    if fmt == "csv":
        lines = list(csv.reader(io.StringIO(text, newline="")))
        if lines and tuple(lines[0]) != COLUMNS:
            raise ValueError("does not start with the header of a facesort CSV report")
        records = lines[1:]
        whole = [len(r) == len(COLUMNS) for r in records]
        rows = [dict(zip(COLUMNS, r)) for r in records]
    else:
        rows, whole = [], []
        for line in text.splitlines(keepends=True):
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and set(row) == set(COLUMNS) and line.endswith("\n")
            except ValueError:
                row, ok = {}, False
            rows.append(row)
            whole.append(ok)
    if rows and not raw.endswith(b"\n"):
        whole[-1] = False
    if not all(whole[:-1]):
        raise ValueError(f"has a row that is not a whole {fmt} report row before its end")
    cut_short = bool(rows) and not whole[-1]
    if cut_short:
        rows.pop()
    # Drop the last file's rows (and the one before where a row was cut short: it may have been the last's).
    for _ in range(1 + cut_short):
        while rows and len(rows) > 1 and rows[-2]["path"] == rows[-1]["path"]:
            rows.pop()
        if rows:
            rows.pop()
    kept = io.StringIO(newline="")
    writer = ReportWriter(kept, fmt, header=bool(raw))
    for row in rows:
        writer.write_row(row)
    prefix = kept.getvalue().encode("utf-8", "surrogateescape")
    if not raw.startswith(prefix):
        raise ValueError(f"is not a {fmt} report as facesort classify writes it (edited or converted?)")
    return len(prefix), rows
