"""A second emotion teacher for stage 2: a linear probe on MediaPipe's face-landmark network.

The network (from the MediaPipe wheel, Apache 2.0, converted with tf2onnx as the detector is) was trained
on far more faces than the happy/sad set has. Its 128x6x6 activation map, flattened and standardised, with an
L2 logistic regression fitted on the happy/sad training crops, is the probe `training.landmark_probe` measured
(training/EXPERIMENTS.md). It is only a teacher: the shipped graph does not contain it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from training.detector_model import file_from_wheel

LANDMARK_MEMBER = "mediapipe/modules/face_landmark/face_landmark.tflite"
LANDMARK_SHA256 = "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
LANDMARK_INPUT = "input_1"
LANDMARK_SIZE = 192
PROBE_LAYER = "p_re_lu_15"  # 128x6x6, the layer rule 2 of training/EXPERIMENTS.md chose by CV
PROBE_C = 0.001  # the L2 strength CV chose there (scikit-learn's C)


def landmark_model(wheel: Path | None = None, outputs: tuple[str, ...] | None = None):
    """The face-landmark network as an ONNX ModelProto; with `outputs`, cut down to the part that computes
    them, with a free batch dimension."""
    import onnx
    import tf2onnx

    with tempfile.TemporaryDirectory() as tmp:
        tflite = file_from_wheel(LANDMARK_MEMBER, LANDMARK_SHA256, Path(tmp), wheel)
        proto, _ = tf2onnx.convert.from_tflite(str(tflite), opset=17)
    if outputs:
        proto = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(proto)).extract_model(
            [LANDMARK_INPUT], list(outputs)
        )
        proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "n"
        del proto.graph.value_info[:]  # shapes inferred for batch 1
        for out in proto.graph.output:
            out.type.tensor_type.ClearField("shape")
    return proto


def network_input(faces: np.ndarray) -> np.ndarray:
    """The network's input for RGB uint8 crops: resized to LANDMARK_SIZE, float32 in 0..1."""
    x = np.stack([cv2.resize(f, (LANDMARK_SIZE,) * 2, interpolation=cv2.INTER_LINEAR) for f in faces])
    return x.astype(np.float32) / 255.0


def probe_features(session, faces: np.ndarray, batch: int = 64) -> np.ndarray:
    """(n, 4608) float32: PROBE_LAYER's activations of the RGB uint8 crops, resized to the network's input."""
    rows = []
    for i in range(0, len(faces), batch):
        (a,) = session.run([PROBE_LAYER], {LANDMARK_INPUT: network_input(faces[i : i + batch])})
        rows.append(a.reshape(len(a), -1))
    return np.concatenate(rows)


def fit_logistic(x: np.ndarray, y: np.ndarray, c: float, iterations: int = 100) -> tuple[np.ndarray, float]:
    """(w, b) minimising C * sum(log loss) + |w|^2 / 2 (scikit-learn's LogisticRegression, intercept not
    penalised). Newton's method in the span of the samples (w = x.T @ a), which has as many unknowns as
    samples: 600 here against 4,608 features."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    n = len(x)
    k = x @ x.T
    a, b = np.zeros(n), 0.0

    def objective(a, b):
        z = k @ a + b
        return c * np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * a @ k @ a

    for _ in range(iterations):
        z = k @ a + b
        p = 1.0 / (1.0 + np.exp(-z))
        r = c * (p - y)
        grad = np.concatenate([k @ (r + a), [r.sum()]])
        wgt = c * p * (1.0 - p)
        hess = np.empty((n + 1, n + 1))
        hess[:n, :n] = k @ (wgt[:, None] * k) + k
        hess[:n, n] = hess[n, :n] = k @ wgt
        hess[n, n] = wgt.sum()
        step = np.linalg.lstsq(hess, grad, rcond=None)[0]
        before, t = objective(a, b), 1.0
        while t > 1e-8 and objective(a - t * step[:n], b - t * step[n]) > before - 1e-4 * t * (grad @ step):
            t /= 2
        a, b = a - t * step[:n], b - t * step[n]
        if np.abs(t * step).max() < 1e-9:
            break
    return x.T @ a, float(b)


class LandmarkTeacher:
    """p_happy from the landmark network's features, fitted on labelled RGB face crops."""

    def __init__(self, wheel: Path | None = None):
        import onnxruntime as ort

        proto = landmark_model(wheel, (PROBE_LAYER,))
        self.session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])

    def fit(self, faces: np.ndarray, y: np.ndarray) -> LandmarkTeacher:
        f = probe_features(self.session, faces)
        self.mean = f.mean(0)
        self.scale = f.std(0)
        self.scale[self.scale == 0] = 1.0
        self.w, self.b = fit_logistic((f - self.mean) / self.scale, (np.asarray(y) >= 0.5), PROBE_C)
        return self

    def __call__(self, faces: np.ndarray) -> np.ndarray:
        z = ((probe_features(self.session, faces) - self.mean) / self.scale) @ self.w + self.b
        return (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
