"""The network: a small convolutional backbone shared by an emotion head and a gender head.

Sized for throughput: about 6 M multiply-adds per 64x64 face, so ONNX Runtime on two CPU cores
classifies thousands of faces a second. Normalisation (per-image standardisation) is inside the graph:
the input is the uint8 RGB face crop.
"""

from __future__ import annotations

import keras
from keras import layers


@keras.saving.register_keras_serializable("facesort")
class Standardize(layers.Layer):
    """Per-image standardisation: each face's mean and contrast removed, so lighting (a dark garden, a
    bright studio) does not decide the class."""

    def call(self, x):
        x = keras.ops.cast(x, "float32")
        mean = keras.ops.mean(x, axis=(1, 2, 3), keepdims=True)
        var = keras.ops.var(x, axis=(1, 2, 3), keepdims=True)
        return (x - mean) / keras.ops.sqrt(var + 1.0)  # +1 (in 0..255 units) keeps flat images finite


@keras.saving.register_keras_serializable("facesort")
class LogitShift(layers.Layer):
    """p -> sigmoid(logit(p) + offset): moves a sigmoid output's decision threshold inside the graph."""

    def __init__(self, offset: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.offset = float(offset)

    def call(self, p):
        p = keras.ops.clip(keras.ops.cast(p, "float32"), 1e-7, 1.0 - 1e-7)
        return keras.ops.sigmoid(keras.ops.log(p) - keras.ops.log(1.0 - p) + self.offset)

    def get_config(self):
        return super().get_config() | {"offset": self.offset}


def _block(x, filters: int, name: str, stride: int = 1):
    """Depthwise-separable conv block (MobileNet style): cheap in multiply-adds, fast on CPU."""
    x = layers.DepthwiseConv2D(3, strides=stride, padding="same", use_bias=False, name=f"{name}_dw")(x)
    x = layers.BatchNormalization(name=f"{name}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{name}_dw_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_pw")(x)
    x = layers.BatchNormalization(name=f"{name}_pw_bn")(x)
    return layers.ReLU(6.0, name=f"{name}_pw_relu")(x)


def build_backbone(size: int = 64, width: float = 1.0) -> keras.Model:
    """uint8 (N, size, size, 3) RGB -> (N, size/16, size/16, C) feature map."""
    c = lambda n: max(8, int(n * width))  # noqa: E731
    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    x = Standardize(name="standardise")(inputs)
    x = layers.Conv2D(c(24), 3, strides=2, padding="same", use_bias=False, name="stem")(x)  # 32x32
    x = layers.BatchNormalization(name="stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    x = _block(x, c(48), "b1")
    x = _block(x, c(64), "b2", stride=2)  # 16x16
    x = _block(x, c(64), "b3")
    x = _block(x, c(128), "b4", stride=2)  # 8x8
    x = _block(x, c(160), "b5")
    x = _block(x, c(320), "b6", stride=2)  # 4x4: wide layers are cheap at this size
    x = _block(x, c(384), "b7")
    return keras.Model(inputs, x, name="backbone")


def _emotion_head(features, dropout: float, rows: str = "lower"):
    # Emotion is read from the lower half of the face (the mouth): the rest of the face says more about
    # who someone is than how they feel, and that is a shortcut the small happy/sad set invites. Measured
    # against the whole face (rows="all"; training.head_probe): better on celeba_smile_test at every seed.
    if rows == "lower":
        n = features.shape[1]
        lower = layers.Cropping2D(((n // 2, 0), (0, 0)), name="mouth_rows")(features)
    elif rows == "all":
        lower = layers.Identity(name="mouth_rows")(features)
    else:
        raise ValueError(f"rows must be 'lower' or 'all', not {rows!r}")
    x = layers.GlobalAveragePooling2D(name="mouth_pool")(lower)
    x = layers.Dropout(dropout, name="emotion_dropout")(x)
    return layers.Dense(1, activation="sigmoid", name="emotion")(x)


def build_emotion_model(size: int = 64, width: float = 1.0, dropout: float = 0.3, rows: str = "lower") -> keras.Model:
    """Stage 1: backbone + emotion head (sigmoid p_happy), reading the feature map's lower rows (or all)."""
    backbone = build_backbone(size, width)
    return keras.Model(backbone.input, _emotion_head(backbone.output, dropout, rows), name="emotion_model")


def build_unified_model(emotion_model: keras.Model, dropout: float = 0.3, name: str = "facesort") -> keras.Model:
    """Stage 2: the emotion model (backbone and head, weights kept) plus a new gender head on the same
    backbone features."""
    features = emotion_model.get_layer("mouth_rows").input
    p_happy = emotion_model.output
    g = layers.GlobalAveragePooling2D(name="pool")(features)
    g = layers.Dropout(dropout, name="gender_dropout")(g)
    p_male = layers.Dense(1, activation="sigmoid", name="gender")(g)
    return keras.Model(emotion_model.input, {"emotion": p_happy, "gender": p_male}, name=name)


def build_average_model(members: list[keras.Model], size: int = 64) -> keras.Model:
    """One model whose emotion and gender are the means of several unified models' (an ensemble, exported
    as one graph)."""
    if len(members) == 1:
        return members[0]
    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    outs = [m(inputs) for m in members]
    emotion = layers.Average(name="emotion_mean")([o["emotion"] for o in outs])
    gender = layers.Average(name="gender_mean")([o["gender"] for o in outs])
    return keras.Model(inputs, {"emotion": emotion, "gender": gender}, name="facesort_ensemble")


def build_calibrated_model(
    model: keras.Model, emotion_offset: float = 0.0, gender_offset: float = 0.0, size: int = 64
) -> keras.Model:
    """`model` with its emotion and gender logits moved by the offsets (training.calibrate); unchanged at 0."""
    if not emotion_offset and not gender_offset:
        return model
    inputs = keras.Input((size, size, 3), dtype="uint8", name="image")
    out = model(inputs)
    emotion, gender = out["emotion"], out["gender"]
    if emotion_offset:
        emotion = LogitShift(emotion_offset, name="emotion_calibrated")(emotion)
    if gender_offset:
        gender = LogitShift(gender_offset, name="gender_calibrated")(gender)
    return keras.Model(inputs, {"emotion": emotion, "gender": gender}, name="facesort_calibrated")
