"""The face-crop convention, shared by training and inference.

A detected face box becomes a square centred on the box, CROP_SCALE times its larger side, resized to
INPUT_SIZE x INPUT_SIZE. Where the detector also gives the eyes (BlazeFace), the square is turned with the
face (its roll), so the eyes come out level, as in the aligned faces the models learn from. Where the
square runs past the image edge the border pixels are repeated.
Training prepares every image through `crop_face`, and the model card records both numbers, so the
crops a model sees at inference are made exactly as the ones it learned from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

INPUT_SIZE = 64
CROP_SCALE = 1.1
CONVENTION = (
    "square centred on the detected face box, scale x its larger side, turned with the face's roll where the "
    "detector gives the eyes (BlazeFace), border pixels repeated past the image edge (facesort.crop)"
)


@dataclass(frozen=True)
class FaceBox:
    """A face's bounding box in pixel coordinates of the image it was found in, and its roll: the angle in
    degrees of the line from the face's right eye to its left (image y axis down; 0 = eyes level, positive =
    the face turned clockwise on screen)."""

    x: int
    y: int
    w: int
    h: int
    roll: float = 0.0

    @property
    def area(self) -> int:
        return self.w * self.h

    def scaled(self, factor: float) -> FaceBox:
        return FaceBox(*(int(round(v * factor)) for v in (self.x, self.y, self.w, self.h)), roll=self.roll)


def crop_square(box: FaceBox, scale: float = CROP_SCALE) -> tuple[int, int, int]:
    """The square (x0, y0, side) that the convention cuts around `box`."""
    side = max(1, int(round(scale * max(box.w, box.h))))
    cx = box.x + box.w / 2.0
    cy = box.y + box.h / 2.0
    return int(round(cx - side / 2.0)), int(round(cy - side / 2.0)), side


def _square_patch(image: np.ndarray, x0: int, y0: int, side: int) -> np.ndarray:
    """image[y0:y0+side, x0:x0+side], border pixels repeated where it runs past the edge."""
    height, width = image.shape[:2]
    x1, y1 = x0 + side, y0 + side
    ix0, iy0, ix1, iy1 = max(0, x0), max(0, y0), min(width, x1), min(height, y1)
    if ix0 >= ix1 or iy0 >= iy1:
        raise ValueError(f"face square ({x0}, {y0}, side {side}) lies outside the {width}x{height} image")
    patch = image[iy0:iy1, ix0:ix1]
    if (ix0, iy0, ix1, iy1) != (x0, y0, x1, y1):
        patch = cv2.copyMakeBorder(patch, iy0 - y0, y1 - iy1, ix0 - x0, x1 - ix1, cv2.BORDER_REPLICATE)
    return patch


def crop_face(image: np.ndarray, box: FaceBox, size: int = INPUT_SIZE, scale: float = CROP_SCALE) -> np.ndarray:
    """Cut the convention's square around `box` out of `image` (H, W, 3), turned by the box's roll, and
    resize it to (size, size, 3).

    Channel order is kept as given.
    """
    x0, y0, side = crop_square(box, scale)
    if not box.roll:
        patch = _square_patch(image, x0, y0, side)
        interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
        return cv2.resize(patch, (size, size), interpolation=interpolation)
    # The turned square: the upright square that holds it is cut (and, for a large face, first shrunk by
    # area averaging, as the upright path does), then sampled along the face's axes.
    t = math.radians(box.roll)
    c, s = math.cos(t), math.sin(t)
    cx, cy = x0 + side / 2.0, y0 + side / 2.0
    half = side / 2.0 * (abs(c) + abs(s))
    bx0, by0 = math.floor(cx - half), math.floor(cy - half)
    bside = math.ceil(cx + half) - bx0
    patch = _square_patch(image, bx0, by0, bside)
    f = 1.0
    if side > size:
        small = max(1, round(bside * size / side))
        patch = cv2.resize(patch, (small, small), interpolation=cv2.INTER_AREA)
        f = small / bside
    # Output pixel (u, v) samples the patch at f * (centre + R(roll) @ ((u, v) + 0.5 - size / 2) * side / size
    # - patch origin) - 0.5 (pixel centres), as one affine map.
    k = f * side / size
    d = 0.5 - size / 2.0
    tx = f * (cx - bx0) - 0.5 + k * (c * d - s * d)
    ty = f * (cy - by0) - 0.5 + k * (s * d + c * d)
    m = np.array([[k * c, -k * s, tx], [k * s, k * c, ty]])
    return cv2.warpAffine(
        patch, m, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE
    )


def whole_image_box(image: np.ndarray, scale: float = CROP_SCALE) -> FaceBox:
    """The box that stands for a whole image that is already a face crop (`--detector none`).

    A tight face crop (the gender set's kind) is about CROP_SCALE times its face, so the face box is the
    image shrunk by that factor about its centre; the convention's square then covers the image.
    """
    height, width = image.shape[:2]
    w = max(1, int(round(width / scale)))
    h = max(1, int(round(height / scale)))
    return FaceBox((width - w) // 2, (height - h) // 2, w, h)
