"""Reading the user's two datasets, and turning every image into a face crop by facesort's convention."""

from __future__ import annotations

import hashlib
import json
import os
import random
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facesort.crop import CROP_SCALE, INPUT_SIZE, FaceBox, crop_face, whole_image_box
from facesort.detect import AutoDetector, HaarDetector, make_detector
from facesort.evaluate import class_folders
from facesort.images import ImageError, iter_image_files, read_image

GENDER_CLASSES = ("female", "male")  # label 0, 1
HAPPY_FOLDERS = ("sad", "happy")  # a happy/sad folder's subfolders: label 0, 1
CROP_CACHE = Path.home() / ".cache" / "facesort" / "crops"  # folder datasets' face crops, made once (folder_crop_cache)


class DataError(Exception):
    """A dataset argument that cannot be used; the message is one sentence for the user."""


@dataclass
class HappySet:
    x: np.ndarray  # (N, H, W, 3) uint8 RGB, as stored
    y: np.ndarray  # (N,) 1 = happy, 0 = sad
    sources: list[str]


def load_happy(paths: list[str | os.PathLike]) -> HappySet:
    """Read Happy House HDF5 files (train_set_* or test_set_* keys), unchanged, and concatenate them."""
    import h5py

    xs, ys = [], []
    if not paths:
        raise DataError("no happy/sad HDF5 file given")
    for path in paths:
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{path} is a folder: give the HDF5 file itself (train_set_x, train_set_y)")
        if not path.is_file():
            raise DataError(f"{path}: no such file")
        try:
            with h5py.File(path, "r") as f:
                prefix = next((p for p in ("train_set", "test_set") if f"{p}_x" in f and f"{p}_y" in f), None)
                if prefix is None:
                    raise DataError(
                        f"{path}: expected datasets train_set_x/train_set_y or test_set_x/test_set_y, "
                        f"found {', '.join(sorted(f.keys())) or 'none'}"
                    )
                x = np.asarray(f[f"{prefix}_x"][:])
                y = np.asarray(f[f"{prefix}_y"][:]).reshape(-1)
        except OSError as e:
            raise DataError(f"{path}: not a readable HDF5 file ({e})") from None
        if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
            raise DataError(f"{path}: {prefix}_x must be uint8 (N, H, W, 3) RGB, found {x.dtype} {x.shape}")
        if len(x) != len(y) or len(x) == 0:
            raise DataError(f"{path}: {prefix}_x has {len(x)} images but {prefix}_y {len(y)} labels")
        if not set(np.unique(y)) <= {0, 1}:
            raise DataError(f"{path}: {prefix}_y must hold 0 (sad) and 1 (happy) only")
        xs.append(x)
        ys.append(y.astype(np.int64))
    if len({x.shape[1:] for x in xs}) > 1:
        raise DataError("the HDF5 files hold images of different sizes")
    return HappySet(np.concatenate(xs), np.concatenate(ys), [str(p) for p in paths])


def happy_folder_files(folder: str | os.PathLike) -> list[tuple[str, int]]:
    """(photo, 1 happy / 0 sad) for every image under folder/happy/ and folder/sad/ (names in any letter case),
    or under the class folders `facesort sort` writes (HappyMale/, SadFemale/, ...: each photo labelled with
    its class's emotion; NoFace/ and the report are passed over). Folders are walked as `facesort classify`
    walks them (recursively, by image extension, hidden and system folders passed over)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    classes = class_folders(folder)
    plain = [_subfolder(folder, name) for name in HAPPY_FOLDERS]
    if classes and any(plain):
        raise DataError(f"{folder}: both happy/ or sad/ and class folders (HappyMale/, ...); keep one layout")
    if classes:
        groups = [(d, int(c.startswith("Happy"))) for d, c in classes]
    elif all(plain):
        groups = [(d, label) for label, d in enumerate(plain)]
    else:
        raise DataError(
            f"{folder}: expected happy/ and sad/ folders of photos, or the class folders facesort sort writes "
            "(HappyMale/, HappyFemale/, SadMale/, SadFemale/)"
        )
    files = [(str(p), label) for d, label in groups for p in iter_image_files([d])]
    for name in ("happy", "sad"):
        if HAPPY_FOLDERS.index(name) not in {label for _, label in files}:
            where = f"its {name.capitalize()}Male/ or {name.capitalize()}Female/ folders" if classes else f"{name}/"
            raise DataError(f"{folder}: no {name} photos in {where} (both emotions are needed)")
    return files


def happy_source(path: str | os.PathLike) -> HappySet | list[tuple[str, int]]:
    """One happy/sad dataset a user names, read and checked: a Happy House HDF5 file (load_happy) or a folder
    of labelled photos (happy_folder_files)."""
    return happy_folder_files(path) if Path(path).is_dir() else load_happy([path])


def happy_sources(paths: list[str | os.PathLike]) -> tuple[HappySet | None, dict[str, list[tuple[str, int]]]]:
    """The happy/sad training data a user names: its HDF5 files read as one set (load_happy), or None, and
    its folders of labelled photos, each listed (happy_folder_files)."""
    if not paths:
        raise DataError("no happy/sad data given")
    folders = {str(p): happy_folder_files(p) for p in paths if Path(p).is_dir()}
    files = [p for p in paths if str(p) not in folders]
    return (load_happy(files) if files else None), folders


def file_digests(files: list[tuple], known: dict[str, str] | None = None) -> dict[str, str]:
    """{path: sha256 of the file's bytes} for the readable files of `files` ((path, ...) rows); an unreadable one
    is left out (it is counted where it is cropped). `known` holds digests read before, and takes the new ones,
    so that a run reads each file once."""
    known = {} if known is None else known
    for path, *_ in files:
        if path not in known:
            try:
                known[path] = sha256(path)
            except OSError:
                continue
    return {path: known[path] for path, *_ in files if path in known}


def in_both_labels(files: list[tuple[str, int]], known: dict[str, str] | None = None) -> set[str]:
    """The photos whose very content (file_digests, with `known`) carries both labels (happy and sad, or female
    and male): a photo copied into a Happy and a Sad class folder, as `sort --multi all` does with a group
    photo, whose largest face (the one training takes) cannot be both."""
    digests = file_digests(files, known)
    labels: dict[str, set[int]] = {}
    for path, label in files:
        if path in digests:
            labels.setdefault(digests[path], set()).add(label)
    return {path for path, _ in files if path in digests and len(labels[digests[path]]) > 1}


def without_in_both_labels(
    files: list[tuple[str, int]], known: dict[str, str] | None = None
) -> tuple[list[tuple[str, int]], int]:
    """`files` less the photos in_both_labels finds, and how many those were (each dataset counts them)."""
    both = in_both_labels(files, known)
    return [f for f in files if f[0] not in both], len(both)


def image_digests(source: HappySet | list[tuple], known: dict[str, str] | None = None) -> set[tuple[str, str]]:
    """What identifies each image of a dataset, to find the same image in two of them: the sha256 of an HDF5
    image's pixels, or of a photo file's bytes (file_digests, with `known`: so a copy of a photo is the same
    photo; an HDF5 image and a photo file are never compared)."""
    if isinstance(source, HappySet):
        return {("pixels", hashlib.sha256(np.ascontiguousarray(x).tobytes()).hexdigest()) for x in source.x}
    return {("file", d) for d in file_digests(source, known).values()}


def _subfolder(folder: Path, name: str) -> Path | None:
    """folder/name, its name matched in any letter case (Training/, training/, TRAINING/); None where there is
    none. Two that differ only in case are an error: which one the user meant cannot be known."""
    try:
        found = sorted(d for d in folder.iterdir() if d.is_dir() and d.name.lower() == name.lower())
    except OSError:
        return None
    if len(found) > 1:
        raise DataError(f"{folder}: both {found[0].name}/ and {found[1].name}/; keep one")
    return found[0] if found else None


def _class_files(folder: Path) -> list[tuple[str, int]]:
    subs = [_subfolder(folder, name) for name in GENDER_CLASSES]
    missing = [name for name, sub in zip(GENDER_CLASSES, subs) if sub is None]
    if missing:
        raise DataError(f"{folder}: no {missing[0]}/ folder (expected {'/ and '.join(GENDER_CLASSES)}/)")
    files = []
    for label, sub in enumerate(subs):
        found = sorted(str(p) for p in sub.iterdir() if p.is_file() and not p.name.startswith("."))
        if not found:
            raise DataError(f"{sub}: the folder is empty")
        files += [(p, label) for p in found]
    return files


def gender_files(
    folder: str | os.PathLike, val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, validation) lists of (path, label) from Training/ and Validation/, or from female/ and
    male/ with a validation split drawn here; folder names in any letter case."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder")
    training, validation = _subfolder(folder, "Training"), _subfolder(folder, "Validation")
    if training:
        train = _class_files(training)
        val = _class_files(validation) if validation else []
        if val:
            return train, val
        files = train
    else:
        files = _class_files(folder)
    return _split(files, val_fraction, seed)


@dataclass
class GenderSource:
    path: str
    train: list[tuple[str, int]]  # (file, 0 female / 1 male)
    val: list[tuple[str, int]]
    photos: bool  # photos whose faces are to be found (class folders), not the face crops of a gender set
    in_both_genders: int = 0  # photos left out: their very content is in a female and a male folder


def gender_source(folder: str | os.PathLike, seed: int = 0, known: dict[str, str] | None = None) -> GenderSource:
    """One gender dataset a user names: a folder of face crops (gender_files), or the class folders
    `facesort sort` writes (HappyMale/, SadFemale/, ...: each photo labelled with its class's gender, walked as
    `facesort classify` walks them), from which a tenth is held out for validation. A photo whose very content
    is in a female and a male folder (a group photo that `sort --multi all` copied into both) is left out and
    counted; `known`: file digests read before (file_digests)."""
    path = Path(folder)
    classes = class_folders(path) if path.is_dir() else []
    crops = [_subfolder(path, name) for name in ("Training", *GENDER_CLASSES)] if path.is_dir() else []
    if path.is_dir() and not classes and not any(crops):
        raise DataError(
            f"{folder}: expected Training/ and Validation/, or female/ and male/ folders, or the class folders "
            "facesort sort writes (HappyMale/, HappyFemale/, SadMale/, SadFemale/)"
        )
    if classes and any(crops):
        raise DataError(f"{folder}: both face-crop folders (Training/, female/, male/) and class folders; keep one")
    if not classes:
        return GenderSource(str(folder), *gender_files(folder, seed=seed), photos=False)
    files = [(str(p), int(not c.endswith("Female"))) for d, c in classes for p in iter_image_files([d])]
    for label, name in enumerate(GENDER_CLASSES):
        if label not in {lab for _, lab in files}:
            kind = name.capitalize()
            raise DataError(f"{folder}: no photos in its Happy{kind}/ or Sad{kind}/ folders (both genders are needed)")
    files, in_both = without_in_both_labels(files, known)
    return GenderSource(str(folder), *_split(files, 0.1, seed), photos=True, in_both_genders=in_both)


def gender_sources(
    paths: list[str | os.PathLike], seed: int = 0, known: dict[str, str] | None = None
) -> list[GenderSource]:
    """The gender datasets a user names (gender_source each)."""
    if not paths:
        raise DataError("no gender data given")
    return [gender_source(p, seed, known) for p in paths]


def photo_folders_of(sources: list[GenderSource]) -> dict[str, str]:
    """photo -> its folder, for the photos of class-folder sources (gender_crops)."""
    return {f: s.path for s in sources if s.photos for f, _ in s.train + s.val}


def _split(files: list[tuple[str, int]], val_fraction: float, seed: int):
    """(train, validation): a seeded draw of val_fraction of `files` (at least one) held out."""
    rng = random.Random(seed)
    files = files[:]
    rng.shuffle(files)
    n_val = max(1, int(len(files) * val_fraction))
    return sorted(files[n_val:]), sorted(files[:n_val])


def sha256(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ---- crops by the shared convention ---------------------------------------------------------------

TrainingDetector = AutoDetector | HaarDetector
TRAINING_DETECTORS = {
    "auto": "auto: BlazeFace short-range, boxes mapped onto the Haar cascades' on tight crops, crops turned so "
    "the eyes are level; BlazeFace full-range where it finds no face, the Haar cascades where neither does "
    "(facesort.detect)",
    "haar": "haar: the Haar cascades (facesort.detect), as before BlazeFace; at inference the default is auto, "
    "whose boxes are mapped onto these",
}


def training_detector(name: str) -> TrainingDetector:
    """The detector that finds the faces in training images: `auto` (what `facesort classify` uses by
    default) or `haar` (what models were trained with before BlazeFace, the shipped one among them)."""
    if name not in TRAINING_DETECTORS:
        raise DataError(f"unknown training detector {name!r}: use {' or '.join(TRAINING_DETECTORS)}")
    return make_detector(name)


def _median_box(boxes: list[tuple[float, float, float, float]]) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in np.median(np.array(boxes), axis=0))


def happy_crops(
    x: np.ndarray, size: int = INPUT_SIZE, scale: float | None = None, detector: TrainingDetector | None = None
) -> tuple[np.ndarray, float]:
    """Face crops of HDF5 images: the detected face, or where none is found the median detected box of
    the set (in relative coordinates). Returns (crops, fraction detected)."""
    detector = detector or AutoDetector()  # the detector `facesort classify` uses by default
    kw = {} if scale is None else {"scale": scale}
    found: list[FaceBox | None] = []
    rel = []
    for img in x:
        boxes = detector.detect(img[..., ::-1])
        box = boxes[0] if boxes else None
        found.append(box)
        if box is not None:
            h, w = img.shape[:2]
            rel.append((box.x / w, box.y / h, box.w / w, box.h / h))
    fallback = _median_box(rel) if rel else None
    crops = np.empty((len(x), size, size, 3), np.uint8)
    for i, (img, box) in enumerate(zip(x, found)):
        if box is None:
            if fallback is None:
                box = whole_image_box(img, **kw)
            else:
                h, w = img.shape[:2]
                fx, fy, fw, fh = fallback
                box = FaceBox(int(fx * w), int(fy * h), max(1, int(fw * w)), max(1, int(fh * h)))
        crops[i] = crop_face(img, box, size, **kw)
    return crops, len(rel) / max(1, len(x))


def face_crop(bgr: np.ndarray, detector, size: int = INPUT_SIZE, **kw) -> tuple[np.ndarray, bool]:
    """(RGB crop of the image's largest face, whether one was found). Where no face is found in a tight
    crop (0.4% of the gender set), the image is its own face box, exactly as `--detector none` treats it at
    inference."""
    boxes = detector.detect(bgr)
    box = boxes[0] if boxes else whole_image_box(bgr, **kw)
    return crop_face(bgr, box, size, **kw)[..., ::-1], bool(boxes)


def _stamp(path: str) -> tuple[int, int] | tuple[None, None]:
    try:
        st = os.stat(path)
    except OSError:
        return None, None  # read (and counted unreadable) with the others
    return st.st_size, st.st_mtime_ns


def _file_crop(path: str, detector: TrainingDetector, size: int, kw: dict) -> tuple[np.ndarray | None, bool]:
    try:
        bgr = read_image(path)
    except ImageError:
        return None, False
    return face_crop(bgr, detector, size, **kw)


def folder_crop_cache(
    files: list[tuple[str, int]],
    cache_dir: str | os.PathLike,
    size: int = INPUT_SIZE,
    scale: float | None = None,
    workers: int = 2,
    progress=None,
    detector: TrainingDetector | None = None,
    faceless: str = "whole",
) -> tuple[np.memmap, np.ndarray, dict]:
    """Face crops of a folder dataset in an on-disk array, made once and reused (keyed by the file list
    and crop convention), so training streams batches from disk instead of holding the set in memory.
    Returns (crops memmap, labels, stats); unreadable images are dropped and counted in stats. An image
    where no face is found is its own face box (`faceless="whole"`: the gender set's tight crops) or is
    dropped and counted (`"skip"`: photos, where the whole picture is no face)."""
    if faceless not in ("whole", "skip"):
        raise ValueError(f"faceless must be 'whole' or 'skip', not {faceless!r}")
    kw = {} if scale is None else {"scale": scale}
    detector = detector or AutoDetector()
    # The key covers everything that shapes a crop, so a changed convention, detector or file (a photo
    # replaced under its name: its size and modification time) re-makes them.
    keyed = [[(*f, *_stamp(f[0])) for f in files], size, scale, CROP_SCALE, detector.signature, faceless]
    key = hashlib.sha256(json.dumps(keyed).encode()).hexdigest()[:16]
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    xpath, meta_path = cache_dir / f"{key}.u8", cache_dir / f"{key}.json"
    if meta_path.is_file():
        meta = json.loads(meta_path.read_text())
        crops = np.memmap(xpath, np.uint8, "r", shape=(meta["n"], size, size, 3))
        return crops, np.array(meta["labels"], np.int64), meta["stats"]
    out = np.memmap(xpath, np.uint8, "w+", shape=(max(1, len(files)), size, size, 3))
    labels, n, detected, unreadable, faceless_files = [], 0, 0, [], []
    with ThreadPoolExecutor(workers) as pool:
        results = pool.map(lambda f: _file_crop(f[0], detector, size, kw), files, chunksize=64)
        for (path, label), (crop, was_detected) in zip(files, results):
            if progress:
                progress()
            if crop is None:
                unreadable.append(path)
                continue
            if not was_detected and faceless == "skip":
                faceless_files.append(path)
                continue
            out[n] = crop
            labels.append(label)
            n += 1
            detected += was_detected
    out.flush()
    del out
    stats = {
        "images": len(files),
        "used": n,
        "unreadable": len(unreadable),
        "unreadable_files": unreadable[:20],
        "face_detected": detected / max(1, n),
    }
    if faceless == "skip":
        stats |= {"no_face": len(faceless_files), "no_face_files": faceless_files[:20]}
    meta_path.write_text(json.dumps({"n": n, "labels": labels, "stats": stats}))
    crops = np.memmap(xpath, np.uint8, "r", shape=(n, size, size, 3))
    return crops, np.array(labels, np.int64), stats


class StackedCrops:
    """Several crop arrays (on-disk memmaps) read as one, by slices or index arrays, never loaded whole."""

    def __init__(self, parts: list[np.ndarray]) -> None:
        self.parts = parts
        self.offsets = np.cumsum([0, *map(len, parts)])
        self.shape = (int(self.offsets[-1]), *parts[0].shape[1:])
        self.dtype = parts[0].dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        index = np.arange(len(self))[index] if isinstance(index, slice) else np.asarray(index)
        out = np.empty((len(index), *self.shape[1:]), self.dtype)
        part = np.searchsorted(self.offsets, index, side="right") - 1
        for k in np.unique(part):
            at = part == k
            out[at] = self.parts[k][index[at] - self.offsets[k]]
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = self[:]
        return whole if dtype is None else whole.astype(dtype)


def stack_crops(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray | StackedCrops, np.ndarray]:
    """(crops, labels) of several (crops, labels) pairs as one; a single array as it is."""
    parts = [(x, y) for x, y in parts if len(x)] or parts[:1]
    x = parts[0][0] if len(parts) == 1 else StackedCrops([x for x, _ in parts])
    return x, np.concatenate([y for _, y in parts])


def gender_crops(
    files: list[tuple[str, int]],
    photo_of: dict[str, str],
    cache_dir: str | os.PathLike,
    size: int = INPUT_SIZE,
    workers: int = 2,
    detector: TrainingDetector | None = None,
    photo_detector: TrainingDetector | None = None,
) -> tuple[np.ndarray | StackedCrops, np.ndarray, dict]:
    """(crops, labels, stats) of gender `files` as one array: the face crops of gender sets by `detector` (an
    image without a face found taken whole), and the photos of class folders (`photo_of`: photo -> its
    folder) by `photo_detector` (a photo without one left out), each through folder_crop_cache. `stats` has
    the gender sets' under None and each photo folder's under its path."""
    parts, stats = [], {}
    crops = [f for f in files if f[0] not in photo_of]
    if crops or not files:
        x, y, stats[None] = folder_crop_cache(crops, cache_dir, size, workers=workers, detector=detector)
        parts.append((x, y))
    for folder in dict.fromkeys(photo_of.values()):
        mine = [f for f in files if photo_of.get(f[0]) == folder]
        if mine:
            x, y, stats[folder] = folder_crop_cache(
                mine, cache_dir, size, workers=workers, detector=photo_detector, faceless="skip"
            )
            parts.append((x, y))
    return (*stack_crops(parts), stats)
