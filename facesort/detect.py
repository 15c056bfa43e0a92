"""Face detection: BlazeFace (MediaPipe's short-range and full-range face detectors, run by ONNX Runtime)
and OpenCV's Haar cascades.

The default, `auto`, runs BlazeFace short-range; on a photo where it finds nothing, BlazeFace full-range
(small faces: people seen whole, groups); where that finds nothing either, the Haar passes. With `sideways`,
BlazeFace also looks at each photo turned a quarter each way and upside down (scanned prints, photos that
lost their EXIF orientation).
Every detector returns boxes in the full image's coordinates, largest face first. BlazeFace's boxes are
mapped onto the Haar cascades' on tight face crops (BLAZE_TO_HAAR), so training crops made with either
frame faces alike.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np

from facesort.crop import CROP_SCALE, FaceBox, whole_image_box

BLAZE_DIR = Path(__file__).parent / "models" / "detector"
BLAZE_SCORE = 0.5  # MediaPipe's own threshold for both models
BLAZE_IOU = 0.3  # boxes overlapping more are one face (weighted non-maximum suppression, as MediaPipe does)
# A BlazeFace box (square, brow to chin) as the Haar box of the same face in a tight face crop, the framing
# models were trained on before BlazeFace: side x 0.89, centre moved by (-0.012, -0.113) x side. Medians
# over 2,876 gender/Training crops where both detectors found the face (inter-quartile range of the side
# ratio 0.85-0.93). On whole photos Haar's own boxes come out about 1.2x looser than these.
BLAZE_TO_HAAR = (0.89, -0.012, -0.113)
# --sideways takes a turned view of a photo where BlazeFace's best face score there beats the photo's own by
# more than this. Chosen on 600 gender/Training crops, each also turned a quarter or upside down (python -m
# bench.sideways --choose): the largest margin (of 0, 0.05, 0.1, ...) that keeps 95% of the right turns (575 of
# 600; 0.1 keeps 519), which halves the wrong turns of upright crops (17 -> 11 of 600) against no margin.
SIDEWAYS_MARGIN = 0.05
FULL_TO_SHORT = (0.934, 0.008, 0.047)

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
        if min(height, width) * shrink < HAAR_WINDOW:
            return []  # no window fits (a strip of a photo, 1x5000): shrunk, it would have a side of 0 pixels
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

    @property
    def signature(self) -> str:
        """Everything that shapes its boxes (keys the training crop cache)."""
        return f"haar {self.detect_side} {self.passes} {self.min_face}"


@dataclass(frozen=True)
class BlazeModel:
    """One of MediaPipe's BlazeFace models as facesort runs it: the ONNX file, its square input side, its
    SSD anchor layers (MediaPipe's SsdAnchorsCalculator settings for it, as (stride, anchors per cell),
    layers of one stride merged) and how its boxes sit on the short-range model's for the same face
    (side ratio, centre offset along the face's axes in units of the side; the short-range model's boxes
    are the ones BLAZE_TO_HAAR maps)."""

    file: str
    size: int
    layers: tuple
    to_short: tuple = (1.0, 0.0, 0.0)

    @property
    def path(self) -> Path:
        return BLAZE_DIR / self.file

    def anchors(self) -> np.ndarray:
        centres = []
        for stride, per_cell in self.layers:
            cells = self.size // stride
            for y in range(cells):
                for x in range(cells):
                    centres += [((x + 0.5) / cells, (y + 0.5) / cells)] * per_cell
        return np.array(centres, np.float32)


# Faces from about 15% of the photo's longer side; 896 anchors.
BLAZE_SHORT = BlazeModel("face_detection_short_range.onnx", 128, ((8, 2), (16, 6)))
# Small faces too (people seen whole): of gender validation's faces placed at 6% / 10% / 15% of a 1000-pixel
# photo's side it finds 78% / 97% / 99% (training.small_face_check); 2,304 anchors. FULL_TO_SHORT: medians over
# 2,000 gender/Training crops placed at 30% of a canvas, where both models found the face
# (`python -m training.detector_model --mapping`; side ratio inter-quartile 0.90-0.97). Measured then on
# boxes rounded to whole pixels; the script now reads the models' unrounded boxes and gives (0.934, 0.009,
# 0.048), a thousandth of the side apart, under a pixel for any face: the constant was left as shipped.
BLAZE_FULL = BlazeModel("face_detection_full_range.onnx", 192, ((4, 1),), to_short=FULL_TO_SHORT)


@dataclass
class BlazeFaceDetector:
    """A MediaPipe BlazeFace model (Apache 2.0, converted to ONNX; see facesort/models/detector/README.md),
    short-range unless told: 1-3 ms a photo. The photo is letterboxed to the model's square input."""

    score_threshold: float = BLAZE_SCORE
    align: bool = True  # crops turned with the face's roll (eyes level); False: upright crops
    model: BlazeModel = BLAZE_SHORT
    sideways: bool = False  # also look at the image turned each way (_sideways)
    name = "blazeface"

    @cached_property
    def _session(self):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # photos are detected in parallel threads already
        options.log_severity_level = 4
        return ort.InferenceSession(str(self.model.path), sess_options=options, providers=["CPUExecutionProvider"])

    @cached_property
    def _anchors(self) -> np.ndarray:
        return self.model.anchors()

    @cached_property
    def _io(self) -> tuple[str, int]:
        """The input's name and which output holds the (1, anchors, 16) box and keypoint offsets (the other:
        the (1, anchors, 1) face logits); the two files name them apart."""
        outputs = self._session.get_outputs()
        return self._session.get_inputs()[0].name, max(range(len(outputs)), key=lambda i: outputs[i].shape[-1])

    def model_faces(self, image: np.ndarray) -> list[tuple[float, float, float, float]]:
        """Each face as the model itself frames it, in the image's pixels: (centre x, centre y, side, roll),
        before any mapping onto another framing; in the order weighted non-maximum suppression gives."""
        return self._scored_faces(image)[1]

    def _scored_faces(self, image: np.ndarray) -> tuple[float, list[tuple[float, float, float, float]]]:
        """(the best face score, 0 without a face; model_faces)."""
        height, width = image.shape[:2]
        long_side = max(height, width)
        size = self.model.size
        k = size / long_side
        w, h = max(1, round(width * k)), max(1, round(height * k))
        small = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        left, top = (size - w) // 2, (size - h) // 2
        square = cv2.copyMakeBorder(small, top, size - h - top, left, size - w - left, cv2.BORDER_CONSTANT, value=0)
        x = square[None, :, :, ::-1].astype(np.float32) / 127.5 - 1.0  # RGB in [-1, 1]
        name, boxes = self._io
        outputs = self._session.run(None, {name: x})
        regressors, scores = outputs[boxes], outputs[1 - boxes]
        logits = np.clip(scores[0, :, 0], -100.0, 100.0)
        keep = logits >= np.log(self.score_threshold / (1.0 - self.score_threshold))
        if not keep.any():
            return 0.0, []
        score = 1.0 / (1.0 + np.exp(-logits[keep]))
        r = regressors[0, keep, :8] / size
        anchors = self._anchors[keep]
        centre = anchors + r[:, :2]
        # x0 y0 x1 y1, then the right and left eyes' x y (MediaPipe's first two keypoints), all 0..1
        rows = np.concatenate(
            [centre - r[:, 2:4] / 2, centre + r[:, 2:4] / 2, anchors + r[:, 4:6], anchors + r[:, 6:8]], 1
        )
        faces = []
        for row in _weighted_nms(rows, score, BLAZE_IOU):
            x0, y0, x1, y1 = (row[:4] * size - [left, top, left, top]) / k
            roll = float(np.degrees(np.arctan2(row[7] - row[5], row[6] - row[4]))) if self.align else 0.0
            faces.append(((x0 + x1) / 2, (y0 + y1) / 2, max(x1 - x0, y1 - y0), roll))
        return float(score.max()), faces

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a BGR image, largest first."""
        as_is = self.as_is(image)
        return _sideways(as_is[1], image, [(self, as_is)]) if self.sideways else as_is[1]

    def as_is(self, image: np.ndarray) -> tuple[float, list[FaceBox]]:
        """(best face score, 0 without one; faces, largest first) of the image as it is."""
        score, faces = self._scored_faces(image)
        return score, self._boxes(faces, image)

    def turned_views(
        self, image: np.ndarray, upright_enough: float = 1.0, as_is: tuple[float, list[FaceBox]] | None = None
    ) -> dict[int, tuple[float, list[FaceBox]]]:
        """{quarters: (best face score, 0 without one; faces)} of the image turned 0, 1 (clockwise), -1
        (anticlockwise) and 2 (upside down) quarter turns, the faces as boxes in the image's own pixels, each
        with its roll, so that its crop comes out as upright as the face was in the turned view; only the
        view as it is where its score is at least `upright_enough`. `as_is`: the view as it is, found before
        (self.as_is), not looked for again."""
        # Shrunk once to the model's input, as the model would shrink each view anyway (turning a large photo
        # costs more than the model does), and sized exactly as model_faces sizes it, so that a view turned
        # back upright is the model's input for the upright photo, pixel for pixel.
        height, width = image.shape[:2]
        k = min(1.0, self.model.size / max(height, width))
        if k < 1.0:
            width, height = max(1, round(width * k)), max(1, round(height * k))
        small = image if k == 1.0 else cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        # Where a point (x, y) of each turned view was in the shrunk copy, and how much the turn added to a roll.
        back = {
            0: (lambda x, y: (x, y), 0.0),
            1: (lambda x, y: (y, height - x), -90.0),
            -1: (lambda x, y: (width - y, x), 90.0),
            2: (lambda x, y: (width - x, height - y), 180.0),
        }
        views = {}
        for quarters, (to_small, turn) in back.items():
            if quarters == 0 and as_is is not None:
                views[0] = as_is  # the same model input: `small` is the copy model_faces makes of the image
            else:
                score, faces = self._scored_faces(_turn(small, quarters) if quarters else small)
                faces = [(*(v / k for v in to_small(x, y)), side / k, roll + turn) for x, y, side, roll in faces]
                views[quarters] = score, self._boxes(faces, image)
            if quarters == 0 and views[0][0] >= upright_enough:
                break
        return views

    def _boxes(self, faces: list[tuple[float, float, float, float]], image: np.ndarray) -> list[FaceBox]:
        """model_faces' faces as FaceBoxes in the Haar framing, largest first."""
        height, width = image.shape[:2]
        boxes = []
        for cx, cy, side, roll in faces:
            # Offsets lie along the face's own axes, turned with it: this model's box onto the short-range
            # model's, then that onto the Haar box.
            cos, sin = np.cos(np.radians(roll)), np.sin(np.radians(roll))
            for ratio, dx, dy in (self.model.to_short, BLAZE_TO_HAAR):
                cx, cy = cx + (dx * cos - dy * sin) * side, cy + (dx * sin + dy * cos) * side
                side *= ratio
            roll = roll - 360.0 if roll > 180.0 else roll + 360.0 if roll <= -180.0 else roll  # a turned view's
            box = FaceBox(*(int(round(v)) for v in (cx - side / 2, cy - side / 2, side, side)), roll=round(roll, 2))
            if box.w >= 1 and box.x < width and box.y < height and box.x + box.w > 0 and box.y + box.h > 0:
                boxes.append(box)
        return sorted(boxes, key=lambda b: (-b.area, b.x, b.y))

    def max_decode_reduction(self) -> int:
        return 8

    @property
    def signature(self) -> str:
        digest = hashlib.sha256(self.model.path.read_bytes()).hexdigest()[:16]
        mapping = f" {self.model.to_short}" if self.model.to_short != BLAZE_SHORT.to_short else ""
        return (
            f"blazeface {digest} {self.score_threshold} {BLAZE_IOU} {BLAZE_TO_HAAR}{mapping}"
            + (" roll" if self.align else "")
            + (" sideways" if self.sideways else "")
        )


def _turn(image: np.ndarray, quarters: int) -> np.ndarray:
    """The image turned a quarter clockwise (1), anticlockwise (-1) or upside down (2)."""
    code = {1: cv2.ROTATE_90_CLOCKWISE, -1: cv2.ROTATE_90_COUNTERCLOCKWISE, 2: cv2.ROTATE_180}[quarters]
    return cv2.rotate(image, code)


def _sideways(
    found: list[FaceBox], image: np.ndarray, blazes: list[tuple[BlazeFaceDetector, tuple | None]]
) -> list[FaceBox]:
    """`--sideways`: the photo is also looked at turned a quarter each way and upside down (a scanned print, a
    photo that lost its EXIF orientation), and where BlazeFace is surer of a face in a turned view than in the
    photo as it is, the faces of that view are taken: BlazeFace learned from upright faces, and frames them
    better upright. The first of `blazes` ((detector, its as_is of the photo where already found, or None))
    that finds a face in any view decides; where none does, `found`."""
    for blaze, as_is in blazes:
        # A score within the margin of 1 cannot be beaten by it: the turned views are not looked at.
        views = blaze.turned_views(image, upright_enough=1.0 - SIDEWAYS_MARGIN, as_is=as_is)
        if len(views) == 1:
            return found
        best = max((1, -1, 2), key=lambda turn: views[turn][0])
        if views[best][0] > views[0][0] + SIDEWAYS_MARGIN:
            return views[best][1]
        if views[0][0] > 0 or views[best][0] > 0:
            return found
    return found


def _weighted_nms(rows: np.ndarray, score: np.ndarray, iou: float) -> list[np.ndarray]:
    """MediaPipe's weighted non-maximum suppression: each group of boxes (rows' first four columns, x0 y0
    x1 y1) overlapping the best remaining one by more than `iou` becomes their rows' score-weighted mean."""
    boxes = rows[:, :4]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    left = np.argsort(-score)
    out = []
    while len(left):
        best = boxes[left[0]]
        lo = np.maximum(best[:2], boxes[left, :2])
        hi = np.minimum(best[2:], boxes[left, 2:])
        inter = np.prod(np.clip(hi - lo, 0, None), axis=1)
        overlap = inter / (area[left[0]] + area[left] - inter + 1e-9)
        group = left[overlap > iou]
        out.append((rows[group] * score[group, None]).sum(0) / score[group].sum())
        left = left[overlap <= iou]
    return out


@dataclass
class AutoDetector:
    """The default: BlazeFace short-range; on a photo where it finds nothing, BlazeFace full-range (faces
    too small for short-range); where that finds nothing either, the Haar passes (faces both miss). With
    `min_face` (pixels) the Haar passes look on every photo, down to that size, and add the faces BlazeFace
    did not find (small faces in group photos)."""

    min_face: int = DEFAULT_MIN_FACE
    blaze: BlazeFaceDetector = field(default_factory=BlazeFaceDetector)
    full: BlazeFaceDetector | None = None  # default: full-range, turned as `blaze` is
    sideways: bool = False  # BlazeFace also looks at the image turned each way (_sideways)
    name = "auto"

    def __post_init__(self) -> None:
        self.haar = HaarDetector(min_face=self.min_face)
        if self.full is None:
            self.full = BlazeFaceDetector(align=self.blaze.align, model=BLAZE_FULL)

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        short = self.blaze.as_is(image)
        full = None if short[1] else self.full.as_is(image)
        faces = short[1] or full[1]
        found = faces
        if not faces or self.min_face:
            extra = [b for b in self.haar.detect(image) if not any(_centre_inside(b, f) for f in faces)]
            found = sorted(faces + extra, key=lambda b: (-b.area, b.x, b.y))
        # --sideways: each BlazeFace model's view of the photo as it is, found above, is not looked for again.
        return _sideways(found, image, [(self.blaze, short), (self.full, full)]) if self.sideways else found

    def max_decode_reduction(self) -> int:
        return self.haar.max_decode_reduction()

    @property
    def signature(self) -> str:
        sideways = " sideways" if self.sideways else ""
        return f"auto [{self.blaze.signature}] [{self.full.signature}] [{self.haar.signature}]{sideways}"


def _centre_inside(a: FaceBox, b: FaceBox) -> bool:
    cx, cy = a.x + a.w / 2, a.y + a.h / 2
    return b.x <= cx <= b.x + b.w and b.y <= cy <= b.y + b.h


@dataclass
class WholeImage:
    """`--detector none`: every image is one face crop already."""

    crop_scale: float = CROP_SCALE
    name = "none"

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        return [whole_image_box(image, self.crop_scale)]

    def max_decode_reduction(self) -> int:
        return 8

    @property
    def signature(self) -> str:
        return f"none {self.crop_scale}"


def _load_cascade(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(cv2.data.haarcascades + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's {name} is missing: install opencv-python-headless < 5")
    return cascade


def make_detector(name: str, min_face: int = DEFAULT_MIN_FACE, crop_scale: float = CROP_SCALE, sideways: bool = False):
    """The detector called `name` on the command line; `sideways` (auto and blazeface only): BlazeFace also looks
    at each photo turned a quarter each way and upside down (_sideways)."""
    if sideways and name not in ("auto", "blazeface"):
        raise ValueError(f"--sideways looks with BlazeFace: use --detector auto or blazeface, not {name}")
    if name == "auto":
        return AutoDetector(min_face=min_face, sideways=sideways)
    if name == "blazeface":
        return BlazeFaceDetector(sideways=sideways)
    if name == "haar":
        return HaarDetector(min_face=min_face)
    if name == "none":
        return WholeImage(crop_scale)
    raise ValueError(f"unknown detector {name!r}: use auto, blazeface, haar or none")
