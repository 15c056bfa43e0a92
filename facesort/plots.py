"""PNG figures drawn with OpenCV, so `facesort evaluate --plots` needs nothing beyond the base install."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np

# A PNG text chunk naming facesort as the writer: `evaluate --plots` replaces a plot of its own from an
# earlier run, never a file of that name it did not write (a user's photo or figure).
_MARK = b"Software\0facesort evaluate"


def _marked(png: bytes) -> bytes:
    """`png` with a tEXt chunk carrying _MARK, placed right after the IHDR chunk (which ends at byte 33)."""
    chunk = b"tEXt" + _MARK
    text = struct.pack(">I", len(_MARK)) + chunk + struct.pack(">I", zlib.crc32(chunk))
    return png[:33] + text + png[33:]


def written_by_facesort(path: str | Path) -> bool:
    """Whether the file at `path` is a PNG that facesort wrote (a plot it may replace)."""
    try:
        with open(path, "rb") as f:
            head = f.read(33 + 12 + len(_MARK))
    except OSError:
        return False
    return head[:8] == b"\x89PNG\r\n\x1a\n" and head[37:].startswith(b"tEXt" + _MARK)


def confusion_png(figures: dict, path: str | Path, title: str = "") -> None:
    """Confusion matrix: rows true, columns predicted; cells shaded by the share of their row."""
    conf = figures["confusion"]
    rows, cols = conf["rows (true)"], conf["columns (predicted)"]
    counts = np.array(conf["counts"], float)
    cell, left, top = 110, 150, 90
    img = np.full((top + cell * len(rows) + 40, left + cell * len(cols) + 20, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    share = counts / np.maximum(1, counts.sum(axis=1, keepdims=True))
    for i in range(len(rows)):
        for j in range(len(cols)):
            x0, y0 = left + j * cell, top + i * cell
            shade = int(255 - 200 * share[i, j])
            cv2.rectangle(img, (x0, y0), (x0 + cell - 2, y0 + cell - 2), (255, shade, shade), -1)
            text = str(int(counts[i, j]))
            colour = (255, 255, 255) if share[i, j] > 0.5 else (0, 0, 0)
            cv2.putText(img, text, (x0 + 30, y0 + 62), font, 0.8, colour, 2, cv2.LINE_AA)
    for i, name in enumerate(rows):
        cv2.putText(img, name, (8, top + i * cell + 60), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for j, name in enumerate(cols):
        cv2.putText(img, name, (left + j * cell + 4, top - 12), font, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    label = title or f"accuracy {figures['accuracy']:.1%} on {figures['images']} photos (rows true, columns predicted)"
    cv2.putText(img, label, (8, 30), font, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
    # Encoded here and written by Python: cv2.imwrite returns False on a full disk instead of raising.
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    Path(path).write_bytes(_marked(png.tobytes()))
