"""The face-crop convention, shared by training and inference.

A detected face box becomes a square centred on the box, CROP_SCALE times its larger side, resized to
INPUT_SIZE x INPUT_SIZE. Where the square runs past the image edge the border pixels are repeated.
Training prepares every image through `crop_face`, and the model card records both numbers, so the
crops a model sees at inference are made exactly as the ones it learned from.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 64
CROP_SCALE = 1.1


@dataclass(frozen=True)
class FaceBox:
    """A face's bounding box in pixel coordinates of the image it was found in."""

    x: int
    y: int
    w: int
    h: int

    @property
    def area(self) -> int:
        return self.w * self.h

    def scaled(self, factor: float) -> FaceBox:
        return FaceBox(*(int(round(v * factor)) for v in (self.x, self.y, self.w, self.h)))


def crop_square(box: FaceBox, scale: float = CROP_SCALE) -> tuple[int, int, int]:
    """The square (x0, y0, side) that the convention cuts around `box`."""
    side = max(1, int(round(scale * max(box.w, box.h))))
    cx = box.x + box.w / 2.0
    cy = box.y + box.h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def crop_face(image: np.ndarray, box: FaceBox, size: int = INPUT_SIZE, scale: float = CROP_SCALE) -> np.ndarray:
    """Cut the convention's square around `box` out of `image` (H, W, 3) and resize it to (size, size, 3).

    Channel order is kept as given.
    """
    height, width = image.shape[:2]
    x0, y0, side = crop_square(box, scale)
    x1, y1 = x0 + side, y0 + side
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if ix0 >= ix1 or iy0 >= iy1:
        raise ValueError(f"face box {box} lies outside the {width}x{height} image")
    patch = image[iy0:iy1, ix0:ix1]
    if (ix0, iy0, ix1, iy1) != (x0, y0, x1, y1):
        patch = cv2.copyMakeBorder(patch, iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1, cv2.BORDER_REPLICATE)
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def whole_image_box(image: np.ndarray, scale: float = CROP_SCALE) -> FaceBox:
    """The box that stands for a whole image that is already a face crop (`--detector none`).

    A tight face crop (the gender set's kind) is about CROP_SCALE times its face, so the face box is the
    image shrunk by that factor about its centre; the convention's square then covers the image.
    """
    height, width = image.shape[:2]
    w = max(1, int(round(width / scale)))
    h = max(1, int(round(height / scale)))
    return FaceBox((width - w) // 2, (height - h) // 2, w, h)
