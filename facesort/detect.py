"""Face detection with OpenCV's Haar cascades, the one detector that installs offline with its model.

Detection runs on a grayscale copy shrunk so its longer side is at most `detect_side` pixels; boxes are
returned in the full image's coordinates, largest face first.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from facesort.crop import CROP_SCALE, FaceBox, whole_image_box

# Chosen by measured recall on ../shared/data/fourclass_dev (1,200 photos) and wild_dev (200), see
# BENCHMARKS.md: a strict pass first; looser passes only where the one before found nothing, so photos
# with a clear face get few false positives and hard ones still get a face. Each: cascade, scale factor,
# min neighbours.
PASSES = (
    ("haarcascade_frontalface_alt2.xml", 1.15, 5),
    ("haarcascade_frontalface_default.xml", 1.1, 3),
    ("haarcascade_frontalface_alt2.xml", 1.05, 2),
)
DETECT_SIDE = 256
HAAR_WINDOW = 20  # the cascades' smallest window, in detection pixels
DEFAULT_MIN_FACE = 0  # 0: faces from HAAR_WINDOW / DETECT_SIDE (about 8%) of the photo's longer side
SMALL_IMAGE = 128


@dataclass
class HaarDetector:
    """Frontal faces by a cascade of Haar passes; largest face first.

    Detection runs on a copy whose longer side is detect_side pixels, which finds faces from about 8% of
    the photo's longer side; min_face (pixels of the photo) asks for smaller ones and detects at the
    resolution they need (slower on large photos)."""

    min_face: int = DEFAULT_MIN_FACE
    detect_side: int = DETECT_SIDE
    passes: tuple = PASSES
    name = "haar"

    def __post_init__(self) -> None:
        # One set of cascades per thread: detectMultiScale keeps scratch state inside the object.
        self._local = threading.local()

    def _cascades(self) -> list[cv2.CascadeClassifier]:
        local = self._local
        if not hasattr(local, "cascades"):
            local.cascades = [_load_cascade(name) for name, _, _ in self.passes]
        return local.cascades

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a BGR image, largest first."""
        height, width = image.shape[:2]
        long_side = max(height, width)
        # Large images shrink to detect_side; tiny ones (64x64 datasets) double, as Haar needs room.
        shrink = min(1.0, self.detect_side / long_side) if long_side >= SMALL_IMAGE else 2.0
        if self.min_face and shrink < 1.0:
            shrink = min(1.0, max(shrink, HAAR_WINDOW / self.min_face))
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if shrink != 1.0:
            interpolation = cv2.INTER_AREA if shrink < 1.0 else cv2.INTER_LINEAR
            gray = cv2.resize(gray, None, fx=shrink, fy=shrink, interpolation=interpolation)
        gray = cv2.equalizeHist(gray)
        min_side = max(HAAR_WINDOW, int(round(self.min_face * shrink)))
        found = ()
        for cascade, (_, scale_factor, min_neighbors) in zip(self._cascades(), self.passes):
            found = cascade.detectMultiScale(gray, scale_factor, min_neighbors, minSize=(min_side, min_side))
            if len(found):
                break
        boxes = [FaceBox(*(int(v) for v in b)).scaled(1.0 / shrink) for b in found]
        return sorted(boxes, key=lambda b: (-b.area, b.x, b.y))

    def max_decode_reduction(self) -> int:
        """How far a photo may be shrunk at decode: never so far that the smallest face asked for
        (`--min-face`) falls below the cascades' window."""
        return max(1, self.min_face // HAAR_WINDOW) if self.min_face else 8


@dataclass
class WholeImage:
    """`--detector none`: every image is one face crop already."""

    crop_scale: float = CROP_SCALE
    name = "none"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return [whole_image_box(image, self.crop_scale)]

    def max_decode_reduction(self) -> int:
        return 8


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {name} is missing: install opencv-python-headless < 5")
    return cascade


def make_detector(name: str, min_face: int = DEFAULT_MIN_FACE, crop_scale: float = CROP_SCALE):
    """The detector called `name` on the command line."""
    if name == "haar":
        return HaarDetector(min_face=min_face)
    if name == "none":
        return WholeImage(crop_scale)
    raise ValueError(f"unknown detector {name!r}: use haar or none")
