"""Two-stage transfer learning: emotion on the happy set, then one backbone with emotion and gender heads.

Stage 2 keeps what stage 1 learned by distillation: on every gender image the emotion head is trained
towards the stage-1 model's p_happy (soft targets), and each batch also carries happy-set images with
their true labels; each loss is masked to the samples that carry its label.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import shutil
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from queue import Queue

import numpy as np

from facesort.crop import CONVENTION, CROP_SCALE, INPUT_SIZE
from facesort.model import CARD_FILE, CLASSES, MODEL_FILE
from training.card import part_way
from training.data import (
    CROP_CACHE,
    GENDER_CLASSES,
    HAPPY_FOLDERS,
    TRAINING_DETECTORS,
    DataError,
    HappySet,
    file_digests,
    folder_crop_cache,
    gender_crops,
    gender_sources,
    happy_crops,
    happy_source,
    happy_sources,
    image_digests,
    photo_folders_of,
    sha256,
    training_detector,
    without_in_both_labels,
)
from training.measure import accuracy


def _mixup(tf, x, y, largest: float, gen):
    """Mixup, against overfitting the 600 happy/sad faces: each uint8 face blended with another of the batch,
    weight up to `largest`, its label alike; drawn from `gen` (a tf.random.Generator)."""
    lam = gen.uniform((tf.shape(x)[0],), 0.0, largest)
    perm = tf.argsort(gen.uniform((tf.shape(x)[0],)))
    xf = tf.cast(x, tf.float32)
    xf = (1 - lam[:, None, None, None]) * xf + lam[:, None, None, None] * tf.gather(xf, perm)
    return tf.cast(xf, tf.uint8), (1 - lam) * y + lam * tf.gather(y, perm)


@dataclass
class TrainConfig:
    happy: list[str]
    gender: str | list[str]  # one gender dataset, or several (repeated --gender)
    out: str
    happy_test: list[str] = field(default_factory=list)
    calibrate: list[str] = field(default_factory=list)  # labelled happy/sad files that set the emotion threshold
    balance_gender: bool = False  # gender threshold set on gender validation so women and men err alike
    landmark_teacher: bool = False  # stage 2's emotion teacher also averages training.landmark_teacher's probe
    emotion_epochs: int = 80
    transfer_epochs: int = 34
    batch_gender: int = 96
    batch_happy: int = 32
    width: float = 1.0
    emotion_rows: str = "lower"  # the emotion head reads the feature map's lower rows (the mouth), or "all"
    distill_weight: float = 1.0
    happy_weight: float = 1.0
    gender_balance: bool = True  # gender loss balanced over (emotion, gender) cells, emotion from stage 1
    self_training: float = 0.5  # final share of self-training (vs stage-1 targets) for emotion on gender images
    confidence: float = 0.8  # self-training uses predictions at least this far from 0.5 (x2)
    teachers: int = 3  # stage-1 emotion models whose average teaches stage 2
    students: int = 2  # stage-2 models, each from another stage-1 model, averaged in the shipped graph
    rounds: int = 1  # stage-2 runs; from the second on, the previous unified model is the emotion teacher
    mixup: float = 0.4  # largest mixing weight of mixup in stage 1 (0: off)
    transfer_mixup: float = 0.0  # the same for stage 2's happy/sad batches (0: off, the shipped model's graph)
    learning_rate: float = 2e-3
    max_gender_images: int = 0  # 0 = all; for quick runs and tests
    detector: str = "haar"  # finds the faces in the training images: haar or auto (training.data)
    happy_detector: str | None = None  # finds them in the happy/sad images instead, where set
    evaluate: str | None = None  # labelled four-class folder, measured for the card only (never for selection)
    seed: int = 0
    workers: int = 2
    cache: str = str(CROP_CACHE)


CHECKPOINT_DIR = ".facesort-checkpoint"  # in --out: the models a stopped run finished (Checkpoint)
PARTIAL = ".partial"  # a stage-2 model stopped part-way, beside the finished ones (Checkpoint.save_partial)
# What reading a kept model can raise: none there, or a file cut short or damaged (it is trained again).
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile)

GENDER_RULE = (
    "offset in -2..2 (steps of 0.25) with the best balanced accuracy (mean of women's and men's recall) on "
    "the gender validation images, nearest 0 among equals; the validation figure is therefore not independent "
    "of it: cross_fit is (offset chosen on half of each class, measured on the other half, both ways)"
)


def peak_memory_mb() -> float | None:
    """This process's peak resident memory in MB; None where the OS does not say (Windows has no `resource`)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def import_tensorflow():
    """(tensorflow, keras), imported with TensorFlow's start-up chatter kept off the user's terminal: it
    is printed from C++ before logging is set up, so only silencing the stderr descriptor stops it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
            import tensorflow as tf
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    tf.get_logger().setLevel("ERROR")
    tf.autograph.set_verbosity(0)
    return tf, keras


def _augment_fn(tf, size: int, gen):
    """Label-preserving augmentation of a uint8 batch: crop jitter, flip, rotation, colour, grayscale. Its
    draws come from `gen` (a tf.random.Generator) and the rotation layer's seed generator, whose states are
    variables (returned with it): saved and restored, a model stopped part-way goes on with the draws it would
    have made."""
    import keras

    rotate = keras.layers.RandomRotation(0.04, fill_mode="reflect")  # about +-15 degrees

    def augment(x):
        n = tf.shape(x)[0]
        x = tf.cast(x, tf.float32)
        # Random zoom-in of 0-15% and shift, so crops from a looser or tighter detection look alike.
        s = gen.uniform((n, 1), 0.85, 1.0)
        off = gen.uniform((n, 2), 0.0, 1.0) * (1.0 - s)
        boxes = tf.concat([off, off + s], axis=1)
        x = tf.image.crop_and_resize(x, boxes, tf.range(n), (size, size))
        # Low resolution: small faces (Happy House's are about 30 pixels) are upscaled blurs at inference.
        r = gen.uniform((), 16, 48, dtype=tf.int32)
        low = tf.image.resize(tf.image.resize(x, (r, r), method="area"), (size, size), method="bilinear")
        x = tf.where(gen.uniform((n, 1, 1, 1)) < 0.3, low, x)
        x = tf.image.stateless_random_flip_left_right(x, gen.make_seeds(1)[:, 0])
        x = rotate(x, training=True)
        x = tf.image.stateless_random_brightness(x, 40.0, gen.make_seeds(1)[:, 0])
        x = tf.image.stateless_random_contrast(x, 0.7, 1.3, gen.make_seeds(1)[:, 0])
        x = tf.image.stateless_random_saturation(x, 0.6, 1.4, gen.make_seeds(1)[:, 0])
        gray = tf.image.grayscale_to_rgb(tf.image.rgb_to_grayscale(x))
        x = tf.where(gen.uniform((n, 1, 1, 1)) < 0.1, gray, x)
        return tf.cast(tf.clip_by_value(x, 0.0, 255.0), tf.uint8)

    return augment, [gen.state, rotate.generator.state]


def _batches(n: int, batch: int, rng: np.random.Generator):
    """Endless shuffled index batches over range(n) (batch <= n)."""
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            yield np.sort(order[i : i + batch])


def _prefetch(iterator, depth: int = 4):
    """Run `iterator` in a thread so disk reads overlap the training step."""
    q: Queue = Queue(depth)
    done = object()

    def worker():
        for item in iterator:
            q.put(item)
        q.put(done)

    threading.Thread(target=worker, daemon=True).start()
    while (item := q.get()) is not done:
        yield item


def _predict(model, x: np.ndarray, batch: int = 512, graph=None) -> np.ndarray:
    """`model` on `x` in batches, eagerly; or through `graph`, a tf.function of it (`_graph_of`): about twice
    as fast, equal to within 2e-6 but not bitwise, so used only where no weight depends on the result."""
    call = graph or (lambda t: model(t, training=False))
    out = [call(x[i : i + batch]) for i in range(0, len(x), batch)]
    if isinstance(out[0], dict):
        return {k: np.concatenate([np.asarray(o[k]).reshape(-1) for o in out]) for k in out[0]}
    return np.concatenate([np.asarray(o).reshape(-1) for o in out])


@dataclass
class _Stream:
    """One model's random draws (_model_stream)."""

    rng: np.random.Generator  # its batches
    gen: object  # tf.random.Generator: its augmentation and mixup
    augment: object  # its augmentation function
    states: list  # the variables holding the state of its TensorFlow draws


def _model_stream(seed: int, key: tuple[int, ...]) -> _Stream:
    """One model's own random draws: Keras, TensorFlow and Python seeded with `seed`, and a numpy generator,
    a TensorFlow generator and an augmentation function of its own. Each stage-1 and stage-2 model is thereby
    the same whether its run trained the models before it or restored them from a checkpoint (Checkpoint),
    and whatever the threads that feed it drew ahead; and a stage-2 model stopped part-way goes on with the
    draws it would have made (the states saved with it, its batches drawn again up to where it stopped)."""
    tf, keras = import_tensorflow()
    keras.utils.set_random_seed(seed)
    gen = tf.random.Generator.from_seed(seed)
    augment, states = _augment_fn(tf, INPUT_SIZE, gen)
    return _Stream(np.random.default_rng(key), gen, tf.function(augment), states)


class Checkpoint:
    """Each model a run has finished (the stage-1 teachers, the stage-2 students), kept in OUT/CHECKPOINT_DIR
    until the run has written its model: a run stopped part-way (Ctrl-C, a crash, a full disk) and started
    again with the same data and settings restores them instead of training them again, and ends with the
    model it would have written unstopped (each model has its own random draws: _model_stream). Left by a
    run of other data or settings, the folder is replaced."""

    def __init__(self, out: Path, fingerprint: str, report) -> None:
        self.dir = out / CHECKPOINT_DIR
        self.restored: dict[str, float] = {}  # name: seconds it took to train
        stamp = self.dir / "fingerprint"
        try:
            same = stamp.read_text() == fingerprint
        except OSError:
            same = False
        if self.dir.exists() and not same:
            report("info", f"{self.dir}: a stopped run of other data or settings, replaced by this one")
            shutil.rmtree(self.dir)
        if not same:
            self.dir.mkdir()
            _write_atomically(stamp, fingerprint.encode())
        elif names := self.names():
            n = len(names)
            report("info", f"continuing the stopped run kept in {self.dir}: {n} model{'s' * (n > 1)} already trained")

    def names(self) -> list[str]:
        return _kept_models(self.dir)

    def load(self, name: str, model, history: dict | None = None) -> bool:
        """Give `model` the weights saved as `name` (its history entries into `history`); False if none."""
        try:
            with np.load(self.dir / f"{name}.npz") as saved:
                weights = [saved[f"w{i}"] for i in range(len(saved.files) - 2)]
                kept, seconds = json.loads(str(saved["history"])), float(saved["seconds"])
        except _UNREADABLE:  # none, or damaged: trained again
            return False
        model.set_weights(weights)
        for key, values in kept.items():
            history[key].extend(values)
        self.restored[name] = seconds
        return True

    def save(self, name: str, model, history: dict, seconds: float) -> None:
        """Keep `model`'s weights as `name`, with its history entries and the seconds it took to train."""
        weights = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        _savez(self.dir / f"{name}.npz", **weights, history=np.array(json.dumps(history)), seconds=np.array(seconds))
        (self.dir / f"{name}{PARTIAL}").unlink(missing_ok=True)

    def save_partial(self, name: str, model, optimizer, states: list, history: list, seconds: float) -> None:
        """Keep model `name` part-way, after len(`history`) epochs: its weights, its optimizer's variables and
        the `states` of its random draws, with its history and the seconds it has taken."""
        arrays = {f"w{i}": w for i, w in enumerate(model.get_weights())}
        arrays |= {f"o{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)}
        arrays |= {f"r{i}": np.asarray(v) for i, v in enumerate(states)}
        arrays |= {"history": np.array(json.dumps(history)), "seconds": np.array(seconds)}
        _savez(self.dir / f"{name}{PARTIAL}", **arrays)

    def load_partial(self, name: str, model, optimizer, states: list) -> tuple[list, float] | None:
        """Give `model`, `optimizer` (built) and `states` what save_partial kept as `name`: (its history, its
        seconds so far); None where nothing was kept or it cannot be used (the model is trained from its start)."""
        try:
            with np.load(self.dir / f"{name}{PARTIAL}") as saved:
                parts = {k: [saved[f"{k}{i}"] for i in range(sum(f[0] == k for f in saved.files))] for k in "wor"}
                history, seconds = json.loads(str(saved["history"])), float(saved["seconds"])
        except _UNREADABLE:
            return None
        if [len(parts[k]) for k in "wor"] != [len(model.weights), len(optimizer.variables), len(states)]:
            return None
        model.set_weights(parts["w"])
        for variable, value in zip([*optimizer.variables, *states], [*parts["o"], *parts["r"]]):
            variable.assign(value)
        self.restored[part_way(name, len(history))] = seconds
        return history, seconds


def _savez(path: Path, **arrays) -> None:
    """np.savez to `path`, written whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _kept_models(folder: Path) -> list[str]:
    """The names of the models kept in a checkpoint folder (none where there is no such folder)."""
    return sorted(p.stem for p in folder.glob("*.npz"))


def checkpointed(out: str | os.PathLike) -> int:
    """How many finished models a stopped run left in `out` (0 where none)."""
    return len(_kept_models(Path(out) / CHECKPOINT_DIR))


def kept_work(out: str | os.PathLike) -> str:
    """What a stopped run left in `out` to go on from, in words ("" where nothing): its finished models, and
    the epochs of the model it was training."""
    said = [f"the {n} model{'s' * (n > 1)} it finished"] if (n := checkpointed(out)) else []
    for path in sorted((Path(out) / CHECKPOINT_DIR).glob(f"*{PARTIAL}")):
        try:
            with np.load(path) as saved:
                epochs = len(json.loads(str(saved["history"])))
        except _UNREADABLE:
            continue
        said.append(f"epoch {epochs} of the model it was training")
    return " and ".join(said)


def _fingerprint(cfg: TrainConfig, hx, hy, gx, gy) -> str:
    """sha256 of what decides the trained models: the settings that act before export, stage 1's schedule (as
    stage1_batches sets it, which the settings alone do not say) and the training crops and labels themselves
    (so a changed photo, detector, cache or schedule makes another run): the happy/sad crops `hx`, their labels
    `hy`, the gender crops `gx`, theirs `gy`."""
    import hashlib

    from facesort import __version__

    after = {"out", "cache", "workers", "evaluate", "happy_test", "calibrate", "balance_gender", "happy", "gender"}
    settings = {k: v for k, v in asdict(cfg).items() if k not in after}
    schedule = stage1_batches(len(hx), cfg.batch_happy)
    h = hashlib.sha256(json.dumps([__version__, settings, schedule]).encode())
    for a in (hx, hy, gx, gy):
        h.update(str(a.shape).encode())
        for i in range(0, len(a), 4096):  # the gender crops are an on-disk array: a slice at a time
            h.update(np.ascontiguousarray(a[i : i + 4096]).tobytes())
    return h.hexdigest()


# Stage 1's shortest epoch, in batches: the 600-image celeba_smile_train's (600 // 32). A smaller happy/sad set
# is gone through more than once an epoch, so each model takes as many steps as on that file. Measured
# (training.data_curve_probe, seed 0): 150 of its images, 80 epochs of 4 batches, predicted "sad" for every test
# face (75 of 150 on celeba_smile_test); at 18 batches an epoch, 113 (the whole file: 116).
STAGE1_MIN_BATCHES = 18


def batch_of(batch_size: int, n: int) -> int:
    """The batch size on a set of n images: a set smaller than a batch is one batch (both stages, both sets)."""
    return min(batch_size, n)


def stage1_batches(n: int, batch_size: int) -> tuple[int, int]:
    """(batch, batches an epoch) of stage 1 on n happy/sad images."""
    batch = batch_of(batch_size, n)
    return batch, max(n // batch, STAGE1_MIN_BATCHES)


def train_emotion_models(cfg: TrainConfig, hx, hy, report=None, history=None, groups=None, checkpoint=None):
    """Stage 1: cfg.teachers emotion models on the happy/sad crops `hx` (labels `hy`), seeds cfg.seed + k,
    each with its own random draws (_model_stream); the first model's loss and accuracy per epoch go into
    `history`. With `groups` (0/1 per image, e.g. gender) the loss is balanced over (group, emotion) cells
    (training.group_balance_probe). A model kept in `checkpoint` is restored, not trained."""
    tf, keras = import_tensorflow()
    from training.model import build_emotion_model

    report = report or (lambda *a, **k: None)
    bce = keras.losses.BinaryCrossentropy(reduction="none")
    teachers = []
    batch, steps_per_epoch = stage1_batches(len(hx), cfg.batch_happy)
    for k in range(cfg.teachers):
        started = time.time()
        stream = _model_stream(cfg.seed + k, (cfg.seed, 1, k))
        emotion = build_emotion_model(INPUT_SIZE, cfg.width, rows=cfg.emotion_rows)
        teachers.append(emotion)
        name = f"stage1-{k + 1}"
        own = {"emotion_loss": [], "emotion_acc": []}
        if checkpoint and checkpoint.load(name, emotion, own):
            report("info", f"stage 1: emotion model {k + 1}/{cfg.teachers} restored from the stopped run")
            if k == 0 and history is not None:
                for key, values in own.items():
                    history[key].extend(values)
            continue
        report("stage", f"stage 1: emotion model {k + 1}/{cfg.teachers} on {len(hx)} happy/sad images")
        report("epoch", f"emotion {k + 1} 0/{cfg.emotion_epochs}")  # its bar from the start, not its first epoch
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, cfg.emotion_epochs * steps_per_epoch)
        opt = keras.optimizers.Adam(schedule)

        @tf.function
        def step_emotion(x, y, *group, emotion=emotion, opt=opt, augment=stream.augment, gen=stream.gen):
            if group:  # weights from the labels before mixup blends them
                cell = tf.cast(group[0], tf.int32) * 2 + tf.cast(y >= 0.5, tf.int32)
                counts = tf.math.unsorted_segment_sum(tf.ones_like(y), cell, 4)
                present = tf.reduce_sum(tf.cast(counts > 0, tf.float32))
                weight = tf.gather(1.0 / tf.maximum(counts, 1.0), cell) / present
            x = augment(x)
            if cfg.mixup:
                x, y = _mixup(tf, x, y, cfg.mixup, gen)
            with tf.GradientTape() as tape:
                p = tf.reshape(emotion(x, training=True), (-1,))
                if group:
                    loss = tf.reduce_sum(weight * bce(y[:, None], p[:, None]))
                else:
                    loss = tf.reduce_mean(bce(y[:, None], p[:, None]))
            grads = tape.gradient(loss, emotion.trainable_variables)
            opt.apply_gradients(zip(grads, emotion.trainable_variables))
            hit = tf.equal(tf.cast(p >= 0.5, tf.float32), tf.cast(y >= 0.5, tf.float32))
            return loss, tf.reduce_mean(tf.cast(hit, tf.float32))

        it = _batches(len(hx), batch, stream.rng)
        for epoch in range(cfg.emotion_epochs):
            losses, accs = [], []
            for _ in range(steps_per_epoch):
                idx = next(it)
                extra = () if groups is None else (groups[idx],)
                loss, acc = step_emotion(hx[idx], hy[idx], *extra)
                losses.append(float(loss))
                accs.append(float(acc))
            own["emotion_loss"].append(float(np.mean(losses)))
            own["emotion_acc"].append(float(np.mean(accs)))
            report(
                "epoch", f"emotion {k + 1} {epoch + 1}/{cfg.emotion_epochs}", loss=np.mean(losses), acc=np.mean(accs)
            )
        if k == 0 and history is not None:
            for key, values in own.items():
                history[key].extend(values)
        if checkpoint:
            checkpoint.save(name, emotion, own, time.time() - started)

    return teachers


def train(cfg: TrainConfig, report=print) -> dict:
    """Train, export and write the model card. Returns the card."""
    tf, keras = import_tensorflow()

    from training.calibrate import choose_offset, gender_threshold
    from training.export import export_onnx
    from training.model import (
        build_average_model,
        build_calibrated_model,
        build_emotion_model,
        build_unified_model,
    )

    started = time.time()
    keras.utils.set_random_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    out = Path(cfg.out)
    size = INPUT_SIZE
    history: dict[str, list] = {"emotion_loss": [], "emotion_acc": [], "transfer": []}

    # ---- inputs, all checked before any work: a wrong path is one sentence now, not after the training ----
    report("stage", "reading the happy/sad set")
    detector = training_detector(cfg.detector)
    happy_detector = training_detector(cfg.happy_detector) if cfg.happy_detector else detector
    # Photos of a folder: their faces found as `facesort classify` finds them (unless --happy-detector says
    # otherwise), so the model learns from the crops it will be shown of those people.
    photo_detector = training_detector(cfg.happy_detector or "auto")
    happy, happy_folders = happy_sources(cfg.happy)
    held_out = {p: happy_source(p) for p in dict.fromkeys([*cfg.happy_test, *cfg.calibrate])}
    read: dict[str, str] = {}  # each photo file's sha256, read once for the checks below and the card
    gender_paths = [cfg.gender] if isinstance(cfg.gender, str) else list(cfg.gender)
    g_sources = gender_sources(gender_paths, seed=cfg.seed, known=read)
    g_train, g_val = [f for s in g_sources for f in s.train], [f for s in g_sources for f in s.val]
    photo_of = photo_folders_of(g_sources)
    evaluate_files = None
    if cfg.evaluate:
        from facesort.evaluate import labelled_files

        try:
            evaluate_files = labelled_files(cfg.evaluate)
        except ValueError as e:
            raise DataError(f"--evaluate: {e}") from None
    landmark = None
    if cfg.landmark_teacher:
        from training.landmark_teacher import LandmarkTeacher

        report("stage", "the face-landmark network (the second emotion teacher)")
        try:
            landmark = LandmarkTeacher()
        except ValueError as e:
            raise DataError(f"--landmark-teacher: {e}") from None
    # Held-out images that are training images too (a photo given to --happy and, or as a copy, to --evaluate)
    # would make their figures meaningless: said now, before any work, and kept in the card.
    trained_on = set().union(
        *(image_digests(s, read) for s in [*([happy] if happy else []), *happy_folders.values()]),
        *(image_digests(s.train, read) for s in g_sources if s.photos),
    )
    held_sets = {f"--happy-test {p}" if p in cfg.happy_test else f"--calibrate {p}": s for p, s in held_out.items()}
    if evaluate_files:
        held_sets[f"--evaluate {cfg.evaluate}"] = evaluate_files
    for source in (s for s in g_sources if s.photos):  # its gender validation: the photos may be in --happy too
        held_sets[f"--gender {source.path} (its validation tenth)"] = source.val
    overlap = {name: len(image_digests(s, read) & trained_on) for name, s in held_sets.items()}
    overlap = {name: n for name, n in overlap.items() if n}
    for name, n in overlap.items():
        report("info", f"warning: {name} holds {n} of the training images: its figures are not held out")
    if out.exists() and not out.is_dir():
        raise DataError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        os.rmdir(tempfile.mkdtemp(prefix=".training-", dir=out))  # writable: known now, not after the training
    except OSError as e:
        raise DataError(f"--out {out}: {e.strerror or e}") from None

    # ---- data ------------------------------------------------------------------------------------
    report("stage", "face crops of the happy/sad set")
    folder_stats: dict[str, dict] = {}

    def emotion_crops(path, source, detector=None) -> tuple[np.ndarray, np.ndarray]:
        """(crops, labels) of one happy/sad dataset; a folder's photos without a face are left out, counted."""
        if isinstance(source, HappySet):
            return happy_crops(source.x, size, detector=detector)[0], source.y
        source, in_both = without_in_both_labels(source, read)
        x, y, st = folder_crop_cache(source, cfg.cache, size, workers=cfg.workers, detector=detector, faceless="skip")
        st = {**st, "images": st["images"] + in_both, "in_both_emotions": in_both}
        folder_stats[path] = st
        report("info", f"{path}: {st['used']} of {st['images']} photos used{_left_out(st)}")
        missing = [name for label, name in enumerate(HAPPY_FOLDERS) if label not in y]
        if missing:
            raise DataError(f"{path}: none of its {' or '.join(missing)} photos could be used{_left_out(st)}")
        return np.asarray(x), y

    parts, det_happy = [], None
    if happy is not None:
        hx, det_happy = happy_crops(happy.x, size, detector=happy_detector)
        parts.append((hx, happy.y))
    parts += [emotion_crops(p, files, photo_detector) for p, files in happy_folders.items()]
    hx = parts[0][0] if len(parts) == 1 else np.concatenate([x for x, _ in parts])
    hy = np.concatenate([y for _, y in parts]).astype(np.float32)
    # Held-out sets, read and cropped once each (one may be both --happy-test and --calibrate). Held-out
    # images (these and gender validation) are cropped with the crop functions' default detector, the one
    # `facesort classify` uses, whatever found the training faces: the card's figures are what users get.
    held = {p: emotion_crops(p, s) for p, s in held_out.items()}
    test_crops = {Path(p).stem: held[p][0] for p in cfg.happy_test}
    test_labels = {Path(p).stem: held[p][1] for p in cfg.happy_test}
    calibration_sets = {Path(p).stem: held[p] for p in cfg.calibrate}

    report("stage", "face crops of the gender set")
    if cfg.max_gender_images:
        g_train = [g_train[i] for i in rng.permutation(len(g_train))[: cfg.max_gender_images]]
        g_val = [g_val[i] for i in rng.permutation(len(g_val))[: max(50, cfg.max_gender_images // 8)]]
    # Held-out images (validation) are cropped with the detector `facesort classify` uses, as above.
    crop = {"photo_of": photo_of, "cache_dir": cfg.cache, "size": size, "workers": cfg.workers}
    gx, gy, g_by = gender_crops(g_train, **crop, detector=detector, photo_detector=photo_detector)
    vx, vy, v_by = gender_crops(g_val, **crop)
    g_stats, v_stats = g_by.get(None), v_by.get(None)
    for name, st in (("training", g_stats), ("validation", v_stats)):
        if st and st["unreadable"]:
            report("info", f"gender {name} images: {st['used']} of {st['images']} used{_left_out(st)}")
    gender_folders: dict[str, dict] = {}
    for source in (s for s in g_sources if s.photos):
        path = source.path
        kept = gender_folders[path] = {
            "in_both_genders": source.in_both_genders,
            "training": g_by.get(path),
            "validation": v_by.get(path),
        }
        st = [x for x in (kept["training"], kept["validation"]) if x]
        total = {k: sum(x[k] for x in st) for k in ("images", "used", "unreadable", "no_face")}
        total["in_both_genders"] = kept["in_both_genders"]
        report(
            "info",
            f"{path}: {total['used']} of {total['images'] + total['in_both_genders']} photos used for gender, "
            f"{(kept['validation'] or {}).get('used', 0)} of them held out for validation{_left_out(total)}",
        )
    missing = [g for label, g in enumerate(GENDER_CLASSES) if label not in gy]
    if missing or not len(vy):
        which = f"{' or '.join(missing)} training" if missing else "validation"
        raise DataError(f"--gender: none of the {which} images could be used")

    bce = keras.losses.BinaryCrossentropy(reduction="none")
    # Each finished model is kept until the model is written: run again, a stopped run goes on from there.
    checkpoint = Checkpoint(out, _fingerprint(cfg, hx, hy, gx, gy), report)

    # ---- stage 1: emotion ------------------------------------------------------------------------
    # K emotion models from different seeds: the first is the pretrained model of stage 2 (the study's
    # transfer); their average is the teacher on the gender images, a better one than any of them alone
    # (measured: 85% against 77-81% on celeba_smile_test for three).
    teachers = train_emotion_models(cfg, hx, hy, report, history, checkpoint=checkpoint)

    def ensemble(x):
        return np.mean([_predict(t, x) for t in teachers], axis=0)

    stage1 = {k: accuracy(ensemble(x), test_labels[k]) for k, x in test_crops.items()}
    report("info", f"stage 1 emotion accuracy (ensemble of {cfg.teachers}): {stage1}")

    # ---- stage 2: transfer -----------------------------------------------------------------------
    report("stage", "distilling stage-1 emotion onto the gender set")

    def over_gender_set(predict) -> np.ndarray:
        """`predict` over the gender crops, a slice of the on-disk array at a time (never all in memory)."""
        return np.concatenate([predict(np.asarray(gx[i : i + 2048])) for i in range(0, len(gx), 2048)])

    soft = over_gender_set(ensemble)
    probe_figures = None
    if landmark is not None:
        report("stage", "fitting the landmark-network probe, the second emotion teacher")
        landmark.fit(hx, hy)
        probe_figures = {k: accuracy(landmark(x), test_labels[k]) for k, x in test_crops.items()}
        report("info", f"landmark probe emotion accuracy: {probe_figures}")
        soft = 0.5 * (soft + over_gender_set(landmark))
    stage1_weights = [t.get_weights() for t in teachers]

    def balanced_bce(target, pred, group, mask=None):
        """BCE with every (group, target) cell weighing the same. For the emotion head the group is gender,
        so gender says nothing about emotion (CelebA's women smile more often than its men); for the gender
        head it is emotion, so smiling says nothing about gender."""
        cell = group * 2 + tf.cast(target >= 0.5, tf.int32)
        mask = tf.ones_like(target) if mask is None else mask
        counts = tf.math.unsorted_segment_sum(mask, cell, 4)
        present = tf.reduce_sum(tf.cast(counts > 0, tf.float32))
        weight = mask * tf.gather(1.0 / tf.maximum(counts, 1.0), cell) / tf.maximum(present, 1.0)
        return tf.reduce_sum(weight * bce(target[:, None], pred[:, None]))

    def transfer(soft: np.ndarray, round_: int, student: int):
        """One stage-2 run: a unified model from stage-1 model `student`'s weights (the study's transfer),
        emotion on the gender images taught by `soft`."""
        started = time.time()
        stream = _model_stream(cfg.seed + 1000 * round_ + student, (cfg.seed, 2, round_, student))
        augment = stream.augment
        emotion = build_emotion_model(size, cfg.width, rows=cfg.emotion_rows)
        emotion.set_weights(stage1_weights[student % len(stage1_weights)])
        unified = build_unified_model(emotion, name=f"facesort_r{round_}_s{student + 1}")
        name = f"stage2-r{round_}-s{student + 1}"

        def all_models(epochs_done: int) -> None:
            """The bar over all stage-2 models: its time left is nearly the run's (each model's own bar shows
            only that model's, and the next model's bar appears when it starts)."""
            models, models_before = cfg.rounds * cfg.students, (round_ - 1) * cfg.students + student
            if models > 1:
                epochs, done = cfg.transfer_epochs, models_before * cfg.transfer_epochs + epochs_done
                report("epoch", f"stage 2, all {models} models {done}/{models * epochs}")

        if checkpoint.load(name, unified, history):
            report("info", f"stage 2: model {student + 1} of round {round_} restored from the stopped run")
            all_models(cfg.transfer_epochs)
            return unified
        own: list[dict] = []
        n_g, n_h = batch_of(cfg.batch_gender, len(gx)), batch_of(cfg.batch_happy, len(hx))
        steps_per_epoch = len(gx) // n_g
        schedule = keras.optimizers.schedules.CosineDecay(cfg.learning_rate, cfg.transfer_epochs * steps_per_epoch)
        opt2 = keras.optimizers.Adam(schedule)
        opt2.build(unified.trainable_variables)
        # Everything that changes from one epoch to the next beside the weights and the optimizer: kept after
        # each epoch, so that a stopped run goes on from the last one it finished (each takes minutes).
        states = stream.states + [
            layer.seed_generator.state for layer in unified.layers if isinstance(layer, keras.layers.Dropout)
        ]
        before = 0.0  # seconds the epochs restored from a stopped run took
        if kept := checkpoint.load_partial(name, unified, opt2, states):
            own, before = kept
            report(
                "info",
                f"stage 2: model {student + 1} of round {round_} goes on where the stopped run left it, "
                f"{len(own)} of {cfg.transfer_epochs} epochs done",
            )
        first_epoch = len(own)

        ramp = tf.Variable(0.0, trainable=False)  # 0 -> cfg.self_training over the stage

        @tf.function
        def step_transfer(xg, yg, sg, xh, yh):
            x = augment(tf.concat([xg, xh], axis=0))
            if cfg.transfer_mixup:
                # Stage 1's mixup on the happy/sad rows only: the 600 labelled faces are seen ~450 times each.
                xh_mixed, yh = _mixup(tf, x[n_g:], yh, cfg.transfer_mixup, stream.gen)
                x = tf.concat([x[:n_g], xh_mixed], axis=0)
            # The clean view's confident emotion predictions become targets for the augmented view
            # (FixMatch-style self-training), so the 24k unlabelled gender faces teach emotion too.
            weak = tf.reshape(unified(xg, training=False)["emotion"], (-1,))
            confident = tf.cast(tf.abs(weak - 0.5) * 2.0 >= cfg.confidence, tf.float32)
            pseudo = tf.cast(weak >= 0.5, tf.float32)
            g_true = tf.cast(yg, tf.int32)
            with tf.GradientTape() as tape:
                out_ = unified(x, training=True)
                pe = tf.reshape(out_["emotion"], (-1,))
                pg = tf.reshape(out_["gender"], (-1,))
                # Masked per-task losses: gender only where the label exists (gender images); emotion
                # towards stage 1 and self-training on gender images, towards the truth on happy images
                # (whose gender is the gender head's own guess).
                if cfg.gender_balance:
                    # The mirror of the emotion balancing: smiling must not say "female" to the gender head
                    # (the emotion of a gender image is the stage-1 teacher's guess).
                    l_gender = balanced_bce(yg, pg[:n_g], tf.cast(sg >= 0.5, tf.int32))
                else:
                    l_gender = tf.reduce_mean(bce(yg[:, None], pg[:n_g, None]))
                l_distill = balanced_bce(sg, pe[:n_g], g_true)
                l_self = balanced_bce(pseudo, pe[:n_g], g_true, confident)
                g_happy = tf.cast(tf.stop_gradient(pg[n_g:]) >= 0.5, tf.int32)
                l_happy = balanced_bce(yh, pe[n_g:], g_happy)
                l_emotion_g = (1.0 - ramp) * l_distill + ramp * l_self
                loss = l_gender + cfg.distill_weight * l_emotion_g + cfg.happy_weight * l_happy
            grads = tape.gradient(loss, unified.trainable_variables)
            opt2.apply_gradients(zip(grads, unified.trainable_variables))
            acc_g = tf.reduce_mean(tf.cast(tf.equal(tf.cast(pg[:n_g] >= 0.5, tf.float32), yg), tf.float32))
            return l_gender, l_emotion_g, l_happy, acc_g

        finished = threading.Event()

        def feed():
            gi, hi = _batches(len(gx), n_g, stream.rng), _batches(len(hx), n_h, stream.rng)
            for _ in range(first_epoch * steps_per_epoch):  # the batches of the epochs restored: drawn, not read
                next(gi), next(hi)
            while not finished.is_set():
                i, j = next(gi), next(hi)
                yield np.asarray(gx[i]), gy[i].astype(np.float32), soft[i], hx[j], hy[j]

        batches = _prefetch(feed())
        # The gender validation figure of each epoch is for the curves only: measured through a graph of the
        # model, 2.1 s against 5.1 s eagerly on 3,000 faces (AMD EPYC, 2 cores: 3 of an epoch's 100-112 s),
        # outputs within 1.6e-6 and the same accuracy.
        graph = _graph_of(unified)
        report("stage", f"stage 2: transfer on {len(gx)} gender + {len(hx)} happy/sad images")
        bar = "transfer" + (f" r{round_}" if cfg.rounds > 1 else "") + (f" s{student + 1}" if cfg.students > 1 else "")
        # The bars from the model's start, so their time counts its first epoch (a minute or two) too.
        report("epoch", f"{bar} {first_epoch}/{cfg.transfer_epochs}")
        all_models(first_epoch)
        for epoch in range(first_epoch, cfg.transfer_epochs):
            ramp.assign(cfg.self_training * min(1.0, epoch / max(1, cfg.transfer_epochs // 2)))
            sums = np.zeros(4)
            for _ in range(steps_per_epoch):
                sums += [float(v) for v in step_transfer(*next(batches))]
            lg, ld, lh, ag = sums / steps_per_epoch
            val = accuracy(_predict(unified, np.asarray(vx), graph=graph)["gender"], vy)
            own.append(
                {
                    "gender_loss": lg,
                    "emotion_loss_gender_set": ld,
                    "happy_loss": lh,
                    "gender_acc": ag,
                    "gender_val_acc": val,
                    "round": round_,
                    "student": student + 1,
                }
            )
            report("epoch", f"{bar} {epoch + 1}/{cfg.transfer_epochs}", loss=lg + ld + lh, acc=ag, val=val)
            all_models(epoch + 1)
            if epoch + 1 < cfg.transfer_epochs:
                checkpoint.save_partial(name, unified, opt2, states, own, before + time.time() - started)
        finished.set()
        next(batches, None)  # frees the feeding thread, blocked on a full queue, to see it is finished
        history["transfer"].extend(own)
        checkpoint.save(name, unified, {"transfer": own}, before + time.time() - started)
        return unified

    # Several students from different stage-1 models, averaged: the spread between training runs
    # (2-3 points of four-class accuracy between seeds) is mostly averaged away.
    unified = build_average_model([transfer(soft, 1, s) for s in range(cfg.students)], size)
    for round_ in range(2, cfg.rounds + 1):
        # Noisy-student round: the unified model, better than the stage-1 ensemble on emotion, teaches
        # fresh students (again initialised from the stage-1 emotion models) on the gender images.
        report("stage", f"round {round_}: the unified model's emotion teaches new students")
        soft = over_gender_set(lambda x, teacher=unified: _predict(teacher, x)["emotion"])
        unified = build_average_model([transfer(soft, round_, s) for s in range(cfg.students)], size)

    # ---- calibration -----------------------------------------------------------------------------
    calibration = uncalibrated = None
    if calibration_sets:
        report("stage", f"setting the happy/sad threshold on {', '.join(calibration_sets)}")
        uncalibrated = {k: accuracy(_predict(unified, x)["emotion"], test_labels[k]) for k, x in test_crops.items()}
        offset, table = choose_offset(
            {k: (_predict(unified, x)["emotion"], y) for k, (x, y) in calibration_sets.items()}
        )
        unified = build_calibrated_model(unified, emotion_offset=offset, size=size)
        calibration = {
            "emotion_logit_offset": offset,
            "files": list(cfg.calibrate),
            "balanced_accuracy": table,
            "rule": "offset in -2..2 (steps of 0.25) with the best mean balanced accuracy over the files; "
            "figures on these files are not independent of it",
        }
        report("info", f"emotion logit offset {offset:+.2f}: {table}")
    gender_cal = None
    if cfg.balance_gender:
        report("stage", "setting the male/female threshold on the gender validation images")
        gender_cal = gender_threshold(_predict(unified, np.asarray(vx))["gender"], vy, cfg.seed)
        gender_cal["rule"] = GENDER_RULE
        unified = build_calibrated_model(unified, gender_offset=gender_cal["gender_logit_offset"], size=size)
        report("info", f"gender logit offset {gender_cal['gender_logit_offset']:+.2f}: {gender_cal}")

    # ---- export and figures ----------------------------------------------------------------------
    # Everything is written to a folder inside `out` and moved into place at the end, the card last: a run
    # that fails or is interrupted leaves `out` as it was (a model retrained into its own folder is never
    # part new, part old), and the ONNX file and its card always come from one run.
    work = Path(tempfile.mkdtemp(prefix=".training-", dir=out))
    try:
        report("stage", "exporting to ONNX")
        onnx_path = work / MODEL_FILE
        export_onnx(unified, onnx_path, size)
        # A resumed run's time: this run's and the time its restored models took in the runs before.
        train_seconds = time.time() - started + sum(checkpoint.restored.values())
        peak_mb = peak_memory_mb()

        from training.card import write_markdown
        from training.measure import add_fourclass, held_out_figures

        metrics, confusions = held_out_figures(
            lambda x: _predict(unified, np.asarray(x)),
            {k: (x, test_labels[k]) for k, x in test_crops.items()},
            (np.asarray(vx), vy),
        )
        import keras as _k
        import onnx
        import tensorflow as _tf
        import tf2onnx

        data_files = sorted(set(map(str, [*cfg.happy, *cfg.happy_test, *cfg.calibrate])))
        listed = happy_folders | {p: s for p, s in held_out.items() if not isinstance(s, HappySet)}
        card = {
            "name": "facesort four-class face model",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "classes": list(CLASSES),
            "input": {
                "name": "image",
                "size": size,
                "dtype": "uint8",
                "channels": "RGB",
                "layout": "NHWC",
                "normalisation": "inside the graph: per-image standardisation (x - mean) / sqrt(var + 1)",
            },
            "crop": {
                "scale": CROP_SCALE,
                "size": size,
                "convention": CONVENTION,
                "detector": TRAINING_DETECTORS[cfg.detector],
                "measured_with": TRAINING_DETECTORS["auto"],
                **(
                    {"happy_detector": TRAINING_DETECTORS[cfg.happy_detector]}
                    if cfg.happy_detector and cfg.happy_detector != cfg.detector
                    else {}
                ),
                **(
                    {"photo_folders_detector": TRAINING_DETECTORS[cfg.happy_detector or "auto"]}
                    if happy_folders
                    else {}
                ),
            },
            "outputs": {
                "p_happy": "(N,) P(happy)" + (" (threshold calibrated, see calibration)" if calibration else ""),
                "p_male": "(N,) P(male)" + (" (threshold balanced, see gender_threshold)" if gender_cal else ""),
                "p_classes": "(N, 4) in class order: p_happy x p_male products",
            },
            "architecture": {
                "kind": "depthwise-separable CNN, shared backbone, emotion and gender heads"
                + (f"; mean of {cfg.students} such models" if cfg.students > 1 else ""),
                "width": cfg.width,
                "parameters": int(unified.count_params()),
            },
            "training": {
                "command": "facesort " + " ".join(shlex.quote(a) for a in sys.argv[1:])
                if Path(sys.argv[0]).name in ("facesort", "__main__.py")
                else " ".join(sys.argv),
                "config": asdict(cfg) | {"cache": None},
                "approach": "stage 1 emotion CNN on the happy/sad set; stage 2 shared backbone initialised "
                "from it, gender head trained on the gender set while the emotion head is "
                "distilled from stage 1 on gender images and trained on happy images"
                + ("; gender loss balanced over (emotion, gender) cells" if cfg.gender_balance else "")
                + (
                    f"; {cfg.rounds} rounds of stage 2, each after the first taught emotion by the unified model before"
                    if cfg.rounds > 1
                    else ""
                )
                + (
                    f"; {cfg.students} stage-2 models, each from another stage-1 model, averaged in one graph"
                    if cfg.students > 1
                    else ""
                )
                + ("; happy/sad threshold set on held-out labelled files (calibration)" if calibration else "")
                + ("; male/female threshold balanced on gender validation (gender_threshold)" if gender_cal else ""),
                "seconds": round(train_seconds, 1),
                "peak_memory_mb": None if peak_mb is None else round(peak_mb, 1),
                **({"resumed_with": sorted(checkpoint.restored)} if checkpoint.restored else {}),
                "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.system()}",
                "happy_face_detected": det_happy,
                **({"happy_folders": folder_stats} if folder_stats else {}),
                **({"held_out_also_trained_on": overlap} if overlap else {}),
                **({"gender_train": g_stats, "gender_validation": v_stats} if g_stats else {}),
                **({"gender_folders": gender_folders} if gender_folders else {}),
                "history": history,
            },
            "data": {
                "happy": {
                    p: {"photos": len(listed[p]), "files_sha256": _list_digest(listed[p], read)}
                    if p in listed
                    else sha256(p)
                    for p in data_files
                },
                "gender": {
                    **({"folder": gender_paths[0]} if len(gender_paths) == 1 else {"folders": gender_paths}),
                    "train_images": len(g_train),
                    "validation_images": len(g_val),
                    "files_sha256": _list_digest(g_train + g_val, read),  # name, label and content sha256 of each
                },
            },
            "metrics": metrics
            | {"stage1_emotion_ensemble": stage1}
            | ({"landmark_probe_emotion": probe_figures} if probe_figures else {})
            | ({"emotion_uncalibrated": uncalibrated} if calibration else {}),
            "calibration": calibration,
            "gender_threshold": gender_cal,
            "versions": {
                "tensorflow": _tf.__version__,
                "keras": _k.__version__,
                "tf2onnx": tf2onnx.__version__,
                "onnx": onnx.__version__,
                "python": platform.python_version(),
            },
            "onnx_bytes": onnx_path.stat().st_size,
            "fourclass": None,
        }
        if cfg.evaluate:
            # Measured through facesort's own path (the ONNX model and card just written, face detection),
            # with its definitions; for the card only.
            report("stage", f"measuring on {cfg.evaluate} (reporting only)")
            add_fourclass(card, work, cfg.evaluate, confusions, files=evaluate_files)
        (work / CARD_FILE).write_text(json.dumps(card, indent=2) + "\n")
        write_markdown(card, work, confusions)
        unified.save(work / "keras_model.keras")
        _publish(work, out)
        shutil.rmtree(checkpoint.dir, ignore_errors=True)  # the model is written: nothing left to go on from
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return card


def _left_out(stats: dict) -> str:
    """ " (2 unreadable, 1 without a face found)" for a folder's crop stats, or "" where none was left out."""
    said = {
        "unreadable": "unreadable",
        "no_face": "without a face found",
        "in_both_emotions": "in both a happy and a sad folder",
        "in_both_genders": "in both a female and a male folder",
    }
    parts = [f"{stats[key]} {text}" for key, text in said.items() if stats.get(key)]
    return f" ({', '.join(parts)})" if parts else ""


def _publish(work: Path, out: Path) -> None:
    """Move a finished model's files from `work` into `out`, each by an atomic rename, the card last (the
    file that makes a folder a model)."""
    names = sorted(os.listdir(work), key=lambda n: n == CARD_FILE)
    for name in names:
        os.replace(work / name, out / name)


def _graph_of(model):
    import tensorflow as tf

    return tf.function(lambda t: model(t, training=False), reduce_retracing=True)


def _list_digest(files: list[tuple[str, int]], known: dict[str, str] | None = None) -> str:
    """One sha256 over every file of a folder dataset: each file's name, label and content sha256 (or
    "unreadable"), in order (27,000 sha256 values would swamp the card; this one changes if any of them does).
    `known`: digests read before (file_digests)."""
    import hashlib

    digests = file_digests(files, known)
    h = hashlib.sha256()
    for path, label in sorted(files):
        h.update(f"{Path(path).name}\t{label}\t{digests.get(path, 'unreadable')}\n".encode())
    return h.hexdigest()
