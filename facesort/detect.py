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

# Chosen by measured recall on ../shared/data/wild_dev and fourclass_dev (see BENCHMARKS.md).
CASCADE = "haarcascade_frontalface_alt2.xml"
FALLBACK_CASCADE = "haarcascade_frontalface_default.xml"
DETECT_SIDE = 320
SCALE_FACTOR = 1.1
MIN_NEIGHBORS = 5
FALLBACK_MIN_NEIGHBORS = 6
DEFAULT_MIN_FACE = 24
SMALL_IMAGE = 128


@dataclass
class HaarDetector:
    """Frontal faces; a second cascade looks again only where the first found nothing."""

    min_face: int = DEFAULT_MIN_FACE
    detect_side: int = DETECT_SIDE
    scale_factor: float = SCALE_FACTOR
    min_neighbors: int = MIN_NEIGHBORS
    fallback: bool = True
    name = "haar"

    def __post_init__(self) -> None:
        # One cascade per thread: detectMultiScale keeps per-call scratch state inside the object.
        self._local = threading.local()

    def _cascades(self) -> tuple[cv2.CascadeClassifier, cv2.CascadeClassifier]:
        local = self._local
        if not hasattr(local, "primary"):
            local.primary = _load_cascade(CASCADE)
            local.fallback = _load_cascade(FALLBACK_CASCADE)
        return local.primary, local.fallback

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a BGR image, largest first."""
        height, width = image.shape[:2]
        long_side = max(height, width)
        # Large images shrink to detect_side; tiny ones (64x64 datasets) double, as Haar needs room.
        shrink = min(1.0, self.detect_side / long_side) if long_side >= SMALL_IMAGE else 2.0
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if shrink != 1.0:
            interpolation = cv2.INTER_AREA if shrink < 1.0 else cv2.INTER_LINEAR
            gray = cv2.resize(gray, None, fx=shrink, fy=shrink, interpolation=interpolation)
        gray = cv2.equalizeHist(gray)
        # The smallest face searched for, in detection pixels; Haar windows start at 20.
        min_side = max(20, int(round(self.min_face * shrink)))
        primary, fallback = self._cascades()
        found = primary.detectMultiScale(gray, self.scale_factor, self.min_neighbors, minSize=(min_side, min_side))
        if len(found) == 0 and self.fallback:
            found = fallback.detectMultiScale(
                gray, self.scale_factor, FALLBACK_MIN_NEIGHBORS, minSize=(min_side, min_side)
            )
        boxes = [FaceBox(*(int(v) for v in b)).scaled(1.0 / shrink) for b in found]
        return sorted(boxes, key=lambda b: (-b.area, b.x, b.y))


@dataclass
class WholeImage:
    """`--detector none`: every image is one face crop already."""

    crop_scale: float = CROP_SCALE
    name = "none"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return [whole_image_box(image, self.crop_scale)]


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
