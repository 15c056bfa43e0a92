"""Probe whether MediaPipe's face-landmark network tells happy from sad better than the shipped model.

    python -m training.landmark_probe [--wheel mediapipe-0.10.14-....whl] [--data ../shared/data] [--json F]

Needs scikit-learn (not a facesort dependency: `pip install scikit-learn`) and the train extra. Each happy/sad
image is cropped as the model card's figures are measured (`training.data.happy_crops`: `auto`, the convention,
64x64), resized to the landmark network's 192x192, and described two ways: by its 468 landmarks (x, y, centred,
scaled by the distance between the eyes), and by the network's inner activations (two layers, pooled and
flattened; the one with the best 5-fold CV on the training file is kept). A logistic regression on
celeba_smile_train (C by 5-fold CV) is measured alone, and combined with the shipped model's emotion logit, on
the two happy/sad test files. No labelled photo of fourclass_dev or wild_dev is used. The results and the rules
they were judged by are in training/EXPERIMENTS.md; neither probe was adopted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from facesort.model import Classifier
from training.data import happy_crops, load_happy
from training.landmark_teacher import LANDMARK_INPUT, landmark_model, network_input

LAYERS = ("p_re_lu_15", "p_re_lu_18")  # the last 128-channel activations, at 6x6 and 3x3
EYES = ([33, 133], [362, 263])  # the corners of each eye in MediaPipe's face mesh
FILES = {"train": "celeba_smile_train", "test_happy": "test_happy", "celeba_smile_test": "celeba_smile_test"}


def landmark_session(wheel: Path | None):
    """An ONNX Runtime session of the face-landmark network with LAYERS as extra outputs."""
    import onnx
    import onnxruntime as ort

    proto = landmark_model(wheel)
    for name in LAYERS:
        proto.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    return ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])


def describe(session, faces: np.ndarray) -> dict[str, np.ndarray]:
    """Each way of describing the RGB crops: 'landmarks', and LAYERS pooled ('_gap') and flattened."""
    names = ["conv2d_21", *LAYERS]
    rows: dict[str, list] = {name: [] for name in names}
    for i in range(len(faces)):  # one at a time: the whole network's batch is fixed at 1
        for name, out in zip(names, session.run(names, {LANDMARK_INPUT: network_input(faces[i : i + 1])})):
            rows[name].append(out[0])
    xy = np.stack(rows["conv2d_21"]).reshape(len(faces), 468, 3)[:, :, :2]
    xy = xy - xy.mean(1, keepdims=True)
    eyes = np.linalg.norm(xy[:, EYES[0]].mean(1) - xy[:, EYES[1]].mean(1), axis=1)
    out = {"landmarks": (xy / eyes[:, None, None]).reshape(len(faces), -1)}
    for name in LAYERS:
        a = np.stack(rows[name])  # (n, channels, h, w)
        out[f"{name}_gap"] = a.mean((2, 3))
        out[f"{name}_flat"] = a.reshape(len(a), -1)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--wheel", type=Path, help="a mediapipe 0.10.14 wheel (default: the cached one, else pip download it)"
    )
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--json", type=Path, help="write the counts here")
    args = parser.parse_args(argv)
    try:
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import GridSearchCV, StratifiedKFold, cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
    except ImportError:
        print("error: this probe needs scikit-learn: pip install scikit-learn", file=sys.stderr)
        return 2

    session = landmark_session(args.wheel)
    shipped = Classifier(None, device="cpu")
    sets = {}
    for key, name in FILES.items():
        s = load_happy([args.data / "happy" / f"{name}.h5"])
        faces = happy_crops(s.x)[0]
        p = np.clip(shipped.predict(faces).p_happy.astype(np.float64), 1e-6, 1 - 1e-6)
        sets[key] = (describe(session, faces), s.y.astype(int), np.log(p / (1 - p)))

    folds = StratifiedKFold(5, shuffle=True, random_state=0)
    features, y, shipped_logit = sets["train"]

    def fit(x, grid, scale: bool):
        """Logistic regression with C by 5-fold CV; activations are standardised, landmarks (already in
        units of the eye distance) are not."""
        steps = [StandardScaler()] if scale else []
        model = make_pipeline(*steps, LogisticRegression(max_iter=5000))
        return GridSearchCV(model, {"logisticregression__C": grid}, cv=folds).fit(x, y)

    candidates = {"landmarks": fit(features["landmarks"], [0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100], False)}
    grid = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1]
    layers = {k: fit(v, grid, True) for k, v in features.items() if k != "landmarks"}
    for k, search in {**candidates, **layers}.items():
        print(f"{k:18s} 5-fold CV on celeba_smile_train {search.best_score_:.2%} (C {search.best_params_})")
    best_layer = max(layers, key=lambda k: layers[k].best_score_)
    candidates[best_layer] = layers[best_layer]

    counts: dict[str, dict[str, int]] = {}
    for k, search in candidates.items():
        probe = search.best_estimator_
        # The combination learns from out-of-fold probe logits; the shipped model's own logit on its
        # training images is in-sample (it fits them almost perfectly), which the weights it gets reflect.
        oof = cross_val_predict(probe, features[k], y, cv=folds, method="decision_function")
        combine = LogisticRegression(max_iter=5000).fit(np.c_[oof, shipped_logit], y)
        for name in ("test_happy", "celeba_smile_test"):
            f, yt, logit = sets[name]
            alone = int((probe.predict(f[k]) == yt).sum())
            both = int((combine.predict(np.c_[probe.decision_function(f[k]), logit]) == yt).sum())
            ship = int(((logit > 0) == yt).sum())
            counts[f"{k}, {name}"] = {"probe": alone, "combination": both, "shipped": ship, "of": len(yt)}
            print(f"{k:18s} {name:18s} probe {alone}  combination {both}  shipped {ship}  of {len(yt)}")
    if args.json:
        args.json.write_text(json.dumps(counts, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
