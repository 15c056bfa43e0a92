"""paths -> decoded images -> face boxes -> face crops -> batched model -> per-face results.

Decoding and detection run in a thread pool (OpenCV releases the GIL); the main thread gathers crops
into batches for ONNX Runtime. At most a bounded number of images are in flight, so memory stays flat
however many files there are, and results come out in input order.
"""

from __future__ import annotations

import os
import time
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from facesort import usable_cores
from facesort.crop import FaceBox, crop_face
from facesort.images import DEFAULT_MAX_PIXELS, ImageError, decode_scaled, read_bytes
from facesort.model import CLASSES, Classifier

OK, NO_FACE, ERROR = "ok", "no_face", "error"
DECODE_KEEP_SIDE = 800
CHUNK = 8


@dataclass
class FaceResult:
    """One row of the report: a face, or an image without one, or a file that could not be read."""

    path: str
    face: int | None = None
    box: FaceBox | None = None
    label: str | None = None
    confidence: float | None = None
    p_happy: float | None = None
    p_male: float | None = None
    probs: tuple[float, ...] | None = None
    status: str = OK
    error: str = ""


@dataclass
class _Image:
    path: str
    boxes: list[FaceBox] = field(default_factory=list)
    crops: np.ndarray | None = None
    error: str = ""
    timings: dict = field(default_factory=dict)

    @property
    def n_crops(self) -> int:
        return 0 if self.crops is None else len(self.crops)


@dataclass
class Stats:
    """Running totals for the progress bar, the summary and the benchmark."""

    files: int = 0
    faces: int = 0
    no_face: int = 0
    errors: int = 0
    error_reasons: Counter = field(default_factory=Counter)  # rows with status=error, by their error
    per_class: dict = field(default_factory=lambda: dict.fromkeys(CLASSES, 0))
    seconds: dict = field(default_factory=lambda: dict.fromkeys(("read", "decode", "detect", "crop", "infer"), 0.0))


def _prepare(path: str, detector, size: int, scale: float, max_pixels: int) -> _Image:
    record = _Image(path)
    t0 = time.perf_counter()
    try:
        data = read_bytes(path, max_pixels)
        t1 = time.perf_counter()
        # Large JPEGs decode reduced, still large enough that a face the detector can find keeps more
        # pixels than the model's input; boxes are reported in the full photo's pixels.
        image, factor = decode_scaled(data, max_pixels, DECODE_KEEP_SIDE, detector.max_decode_reduction())
        t2 = time.perf_counter()
        boxes = detector.detect(image)
        record.boxes = boxes if factor == 1 else [b.scaled(factor) for b in boxes]
        t3 = time.perf_counter()
        if boxes:
            # Model input is RGB; OpenCV decodes BGR.
            record.crops = np.stack([crop_face(image, b, size, scale) for b in boxes])[..., ::-1]
        t4 = time.perf_counter()
        record.timings = {"read": t1 - t0, "decode": t2 - t1, "detect": t3 - t2, "crop": t4 - t3}
    except ImageError as e:
        record.error = str(e)
    except Exception as e:  # noqa: BLE001 - one bad file must not stop a run of thousands
        record.error = f"{type(e).__name__}: {e}"
    return record


def pipeline_classifier(model_dir=None, device: str = "auto", verbose: bool = False, **options) -> Classifier:
    """The classifier set up to run beside classify_paths' decoding threads: ONNX Runtime on every core,
    its threads sleeping between batches (`spin=False`), so inference takes the cores whenever decoding
    leaves them idle. Measured on 2 cores with 2 decode threads: crops end to end 2,719/s with 1 spinning
    thread, 3,736/s with 2 sleeping ones; whole photos unchanged (BENCHMARKS.md)."""
    return Classifier(model_dir, device=device, threads=usable_cores(), verbose=verbose, spin=False, **options)


def classify_paths(
    paths: Iterable[str | os.PathLike],
    classifier: Classifier,
    detector,
    batch_size: int = 64,
    workers: int = 2,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    stats: Stats | None = None,
) -> Iterator[FaceResult]:
    """Classify every face in `paths`, yielding results in input order (one row per face, or one row
    for an image without a face or a file that failed)."""
    stats = stats if stats is not None else Stats()
    size, scale = classifier.input_size, classifier.crop_scale
    # In chunks: enough for every worker to keep busy while a batch or two runs; this bounds memory
    # whatever the number of files.
    max_in_flight = max(4 * max(1, workers), 2 * -(-batch_size // CHUNK))
    pending: deque = deque()
    ready: list[_Image] = []
    ready_faces = 0

    def flush() -> Iterator[FaceResult]:
        nonlocal ready, ready_faces
        crops = [r.crops for r in ready if r.crops is not None]
        preds = None
        if crops:
            batch = np.concatenate(crops)
            t = time.perf_counter()
            parts = [classifier.predict(batch[i : i + batch_size]) for i in range(0, len(batch), batch_size)]
            stats.seconds["infer"] += time.perf_counter() - t
            preds = (
                np.concatenate([p.p_happy for p in parts]),
                np.concatenate([p.p_male for p in parts]),
                np.concatenate([p.probs for p in parts]),
            )
        k = 0
        for record in ready:
            yield from _results(record, preds, k, stats)
            k += record.n_crops
        ready, ready_faces = [], 0

    def prepare_chunk(chunk: list[str]) -> list[_Image]:
        return [_prepare(path, detector, size, scale, max_pixels) for path in chunk]

    with ThreadPoolExecutor(max(1, workers)) as pool:

        def take_one() -> None:
            nonlocal ready_faces
            for record in pending.popleft().result():
                for key, value in record.timings.items():
                    stats.seconds[key] += value
                ready.append(record)
                ready_faces += record.n_crops

        # Paths go to the threads a few at a time: one task per file costs more than decoding a small crop.
        for chunk in _chunks(paths, CHUNK):
            pending.append(pool.submit(prepare_chunk, chunk))
            if len(pending) >= max_in_flight:
                take_one()
                if ready_faces >= batch_size:
                    yield from flush()
        while pending:
            take_one()
            if ready_faces >= batch_size:
                yield from flush()
        yield from flush()


def _chunks(paths: Iterable, n: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for path in paths:
        chunk.append(str(path))
        if len(chunk) == n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _results(record: _Image, preds, start: int, stats: Stats) -> Iterator[FaceResult]:
    stats.files += 1
    if record.error:
        stats.errors += 1
        stats.error_reasons[record.error] += 1
        yield FaceResult(record.path, status=ERROR, error=record.error)
        return
    if record.crops is None:
        stats.no_face += 1
        yield FaceResult(record.path, status=NO_FACE)
        return
    p_happy, p_male, probs = preds
    for face, box in enumerate(record.boxes):
        i = start + face
        best = int(probs[i].argmax())
        stats.faces += 1
        stats.per_class[CLASSES[best]] += 1
        yield FaceResult(
            record.path,
            face,
            box,
            CLASSES[best],
            float(probs[i, best]),
            float(p_happy[i]),
            float(p_male[i]),
            tuple(float(v) for v in probs[i]),
        )


def image_label(rows: list[FaceResult]) -> str | None:
    """The class of an image: that of its largest face (face 0), None without one."""
    faces = [r for r in rows if r.status == OK]
    return faces[0].label if faces else None


def group_by_image(results: Iterable[FaceResult]) -> Iterator[list[FaceResult]]:
    """Consecutive rows of one image, together (results come out grouped by image)."""
    group: list[FaceResult] = []
    for row in results:
        if group and row.path != group[0].path:
            yield group
            group = []
        group.append(row)
    if group:
        yield group
