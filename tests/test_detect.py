"""Face detection on real photos: BlazeFace, the Haar fallback, and one box convention for both."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest
from conftest import SHARED, example_photos, needs_shared

from facesort.crop import FaceBox, crop_face
from facesort.detect import AutoDetector, BlazeFaceDetector, HaarDetector, make_detector
from facesort.images import read_image


def iou(a: FaceBox, b: FaceBox) -> float:
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    inter = max(0, w) * max(0, h)
    return inter / (a.area + b.area - inter)


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    return [read_image(p) for p in example_photos()]


def test_blazeface_finds_the_face_in_every_example_photo(images):
    blaze = BlazeFaceDetector()
    for image in images:
        faces = blaze.detect(image)
        assert faces, "no face found"
        # The photos are portraits: the face is a sizeable part of the photo, inside it.
        f = faces[0]
        assert 0.1 < f.w / max(image.shape[:2]) < 0.9
        assert 0 <= f.x + f.w / 2 <= image.shape[1] and 0 <= f.y + f.h / 2 <= image.shape[0]


@needs_shared
def test_blazeface_boxes_follow_the_haar_convention_on_face_crops():
    # Models trained before BlazeFace learned from Haar's boxes on the gender set's tight crops; BlazeFace's
    # boxes are mapped onto those, so the same crops come out (Haar's own boxes vary by about 10%).
    files = sorted((SHARED / "gender" / "Validation" / "female").glob("*.jpg"))[:100]
    files += sorted((SHARED / "gender" / "Validation" / "male").glob("*.jpg"))[:100]
    blaze, haar = BlazeFaceDetector(), HaarDetector()
    overlaps = []
    for path in files:
        image = read_image(path)
        a, b = blaze.detect(image), haar.detect(image)
        if a and b:
            overlaps.append(iou(a[0], b[0]))
    assert len(overlaps) >= 150
    assert np.median(overlaps) >= 0.75, np.median(overlaps)


def test_blazeface_boxes_overlap_haars_on_photos(images):
    # On whole photos Haar's boxes are looser (about 1.2x), around the same face.
    blaze, haar = BlazeFaceDetector(), HaarDetector()
    for image in images:
        a, b = blaze.detect(image)[0], haar.detect(image)[0]
        assert iou(a, b) > 0.4
        assert 0.9 < b.w / a.w < 1.6


def test_no_face_in_a_photo_without_one():
    rng = np.random.default_rng(0)
    noise = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (0, 0), 3)
    for name in ("auto", "blazeface", "haar"):
        assert make_detector(name).detect(noise) == [], name
        assert make_detector(name).detect(np.full((300, 300, 3), 128, np.uint8)) == [], name
        # Strips and specks of a photo (a 1x5000 banner, one pixel) hold no face; the Haar passes used to
        # shrink a strip to a side of 0 pixels and fail with OpenCV's assertion text as the row's error.
        for shape in ((1, 5000, 3), (6000, 2, 3), (1, 1, 3), (30, 4000, 3)):
            assert make_detector(name).detect(np.full(shape, 128, np.uint8)) == [], (name, shape)


def test_boxes_are_in_the_photos_pixels_whatever_its_size(images):
    # BlazeFace sees a 128x128 letterbox; the boxes it reports must scale with the photo.
    blaze = BlazeFaceDetector()
    image = images[0]
    a = blaze.detect(image)[0]
    b = blaze.detect(cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC))[0]
    for va, vb in zip((a.x, a.y, a.w, a.h), (b.x, b.y, b.w, b.h)):
        assert abs(vb - 3 * va) <= 0.05 * 3 * a.w


def test_auto_falls_back_to_haar_where_blazeface_finds_nothing(images):
    class Blind(BlazeFaceDetector):  # a model that sees no face in anything
        def _scored_faces(self, image):
            return 0.0, []

    auto = AutoDetector(blaze=Blind(), full=Blind())
    assert auto.detect(images[0]) == HaarDetector().detect(images[0]) != []


def _small(image: np.ndarray, face: FaceBox, fraction: float, canvas: int = 1200) -> tuple[np.ndarray, FaceBox]:
    """The photo shrunk until the face is `fraction` of a grey canvas's side, near its top (a person seen
    whole), and where the face box lands."""
    k = fraction * canvas / face.w
    small = cv2.resize(image, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    out = np.full((canvas, canvas, 3), 128, np.uint8)
    h, w = min(small.shape[0], canvas - 100), min(small.shape[1], canvas - 300)
    out[100 : 100 + h, 300 : 300 + w] = small[:h, :w]
    return out, FaceBox(*(int(round(v * k)) + d for v, d in ((face.x, 300), (face.y, 100), (face.w, 0), (face.h, 0))))


def test_auto_finds_faces_too_small_for_blazeface_short_range(images):
    # People photographed whole: the face about 6% of the photo's side. Short-range sees nothing there; auto's
    # full-range pass finds the face, in the short-range model's framing (not the Haar passes' looser boxes).
    short, auto = BlazeFaceDetector(), AutoDetector()
    for image in images:
        face = short.detect(image)[0]
        photo, where = _small(image, face, 0.06)
        assert short.detect(photo) == []
        found = auto.detect(photo)
        assert found and iou(found[0], where) > 0.5, (found, where)  # the usual detection criterion


def test_full_range_boxes_follow_the_short_range_convention(images):
    # Where both models see a face, the full-range box (mapped by FULL_TO_SHORT) frames it at the short-range
    # box's size, so the crop the classifier gets hardly depends on which model found the face. (On faces
    # turned sideways the two centres differ by up to a fifth of the side, one way or the other: no constant
    # maps that away.)
    short, full = BlazeFaceDetector(), AutoDetector().full
    overlaps, ratios = [], []
    for image in images:
        photo, _ = _small(image, short.detect(image)[0], 0.2)
        a, b = short.detect(photo)[0], full.detect(photo)[0]
        overlaps.append(iou(a, b))
        ratios.append(b.w / a.w)
    assert min(overlaps) > 0.5 and np.median(overlaps) > 0.7, overlaps
    assert 0.93 < np.median(ratios) < 1.07, ratios


def test_min_face_adds_the_small_faces_blazeface_cannot_see(images):
    # A group photo: one large face and four small ones (about 9% of the photo's side, below BlazeFace's
    # reach). By default auto reports what BlazeFace finds; with --min-face the Haar cascades add the rest.
    big = read_image(example_photos()[0])
    canvas = np.full((1200, 1600, 3), 200, np.uint8)
    canvas[100 : 100 + big.shape[0], 100 : 100 + big.shape[1]] = big
    face = BlazeFaceDetector().detect(big)[0]
    for i, image in enumerate(images[1:5]):
        f = BlazeFaceDetector().detect(image)[0]
        side = int(f.w * 1.6)
        x0, y0 = max(0, f.x - int(0.3 * f.w)), max(0, f.y - int(0.3 * f.h))
        patch = cv2.resize(image[y0 : y0 + side, x0 : x0 + side], (150, 150), interpolation=cv2.INTER_AREA)
        canvas[900:1050, 700 + 220 * i : 850 + 220 * i] = patch
    default = AutoDetector().detect(canvas)
    assert len(default) >= 1 and iou(default[0], FaceBox(face.x + 100, face.y + 100, face.w, face.h)) > 0.7
    small = AutoDetector(min_face=60).detect(canvas)
    in_row = [b for b in small if b.y > 850]
    assert len(in_row) >= 3 > len([b for b in default if b.y > 850])
    assert small[0] == default[0]  # largest first, the BlazeFace face kept as it was


def _turned(image: np.ndarray, degrees: float) -> np.ndarray:
    """The photo on a larger grey canvas, turned `degrees` counter-clockwise on screen about its centre."""
    h, w = image.shape[:2]
    big = cv2.copyMakeBorder(image, h // 3, h // 3, w // 3, w // 3, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    m = cv2.getRotationMatrix2D((big.shape[1] / 2, big.shape[0] / 2), degrees, 1.0)
    return cv2.warpAffine(big, m, big.shape[1::-1], borderValue=(128, 128, 128))


def test_blazeface_reads_the_faces_roll_and_the_crop_levels_the_eyes(images):
    # People in photos tilt their heads; the models learn from aligned faces. BlazeFace's eye keypoints give
    # the roll, and the crop turns with it, so a tilted face comes out with its eyes level.
    blaze, upright = BlazeFaceDetector(), BlazeFaceDetector(align=False)

    def roll_in(crop):  # the roll BlazeFace reads in a crop, framed so it sees a whole face
        return blaze.detect(cv2.copyMakeBorder(crop, 64, 64, 64, 64, cv2.BORDER_CONSTANT))[0].roll

    rolls, levelled, unturned = [], [], []
    for image in images:
        level = blaze.detect(image)[0]
        for degrees in (-25, 20):
            turned = _turned(image, degrees)
            face = blaze.detect(turned)[0]
            rolls.append(face.roll - (level.roll - degrees))  # counter-clockwise on screen: negative roll
            levelled.append(abs(roll_in(crop_face(turned, face, size=128))))
            unturned.append(abs(roll_in(crop_face(turned, upright.detect(turned)[0], size=128))))
    assert np.median(np.abs(rolls)) < 5, rolls
    assert np.median(levelled) < 5 and np.median(unturned) > 15, (levelled, unturned)
    assert np.mean(np.less(levelled, unturned)) >= 0.8
    assert upright.detect(images[1])[0].roll == 0.0
    assert upright.signature != blaze.signature  # crop caches keyed by it tell the two apart


def test_a_rolled_crop_is_the_upright_crop_turned():
    # The convention's exact geometry: a roll of 90 degrees (the face's left eye straight below its right)
    # gives the upright square turned a quarter counter-clockwise, pixel for pixel.
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (200, 240, 3), dtype=np.uint8)
    box = FaceBox(70, 50, 80, 80)
    upright = crop_face(image, box, size=88)  # side 88: no resampling
    assert upright.shape == (88, 88, 3)
    np.testing.assert_allclose(crop_face(image, replace(box, roll=90.0), size=88), np.rot90(upright), atol=1)
    # A roll of almost nothing samples the same pixels, and past the image edge the border is repeated.
    np.testing.assert_allclose(crop_face(image, replace(box, roll=1e-6), size=88), upright, atol=1)
    edge = FaceBox(-30, -30, 80, 80, roll=10.0)
    assert crop_face(image, edge).shape == (64, 64, 3)


@pytest.mark.parametrize("turn", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE, cv2.ROTATE_180])
def test_sideways_finds_a_turned_photos_face_and_turns_its_crop_upright(images, turn):
    plain, sideways = AutoDetector(), AutoDetector(sideways=True)
    for image in images:
        h, w = image.shape[:2]
        upright = plain.detect(image)[0]
        assert sideways.detect(image)[0] == upright  # an upright photo stays as it is
        box = sideways.detect(np.ascontiguousarray(cv2.rotate(image, turn)))[0]
        # The box, in the turned photo's pixels, taken back to the upright photo's: the same face, and a roll
        # that turns the crop upright (the upright face's roll plus the turn).
        cx, cy = box.x + box.w / 2, box.y + box.h / 2
        back, added = {
            cv2.ROTATE_90_CLOCKWISE: ((cy, h - cx), 90.0),
            cv2.ROTATE_90_COUNTERCLOCKWISE: ((w - cy, cx), -90.0),
            cv2.ROTATE_180: ((w - cx, h - cy), 180.0),
        }[turn]
        side = box.w
        assert iou(FaceBox(int(back[0] - side / 2), int(back[1] - side / 2), side, side), upright) > 0.6
        assert abs((box.roll - upright.roll - added + 180.0) % 360.0 - 180.0) < 30.0


def test_sideways_classifies_turned_photos_as_upright_ones_and_needs_blazeface(tmp_path):
    import csv

    from conftest import run_cli

    turned = tmp_path / "turned"
    turned.mkdir()
    for photo in example_photos():  # upside down, as a scanned print can be, with no EXIF to undo it
        cv2.imwrite(str(turned / f"{photo.stem}.png"), cv2.rotate(read_image(photo), cv2.ROTATE_180))

    def labels(*args) -> dict[str, str]:
        proc = run_cli("classify", *args)
        assert proc.returncode == 0, proc.stderr
        rows = csv.DictReader(proc.stdout.splitlines())
        return {r["path"].rsplit("/", 1)[-1].split(".")[0]: r["label"] for r in rows if r["face"] in ("0", "")}

    upright = labels(*example_photos())
    assert labels(turned, "--sideways") == upright
    assert sum(a == b for a, b in zip(labels(turned).values(), upright.values())) <= len(upright) // 2
    proc = run_cli("classify", turned, "--sideways", "--detector", "haar")
    assert proc.returncode == 2 and "--sideways looks with BlazeFace" in proc.stderr
