"""Keras -> ONNX with the four-class probabilities derived inside the graph."""

from __future__ import annotations

from pathlib import Path

import tensorflow as tf
import tf2onnx

OPSET = 17


def export_onnx(model, path: str | Path, size: int) -> None:
    """Write `model` (outputs emotion, gender) to `path` with outputs p_happy, p_male, p_classes.

    tf2onnx's from_keras fails on Keras 3 models; tracing a tf.function with a named input signature
    works for any model (../shared/docs/stack.md).
    """
    spec = (tf.TensorSpec((None, size, size, 3), tf.uint8, name="image"),)

    @tf.function(input_signature=spec)
    def serve(image):
        out = model(image, training=False)
        p_happy = tf.reshape(out["emotion"], (-1,))
        p_male = tf.reshape(out["gender"], (-1,))
        # Fixed order: HappyMale, HappyFemale, SadMale, SadFemale.
        p_classes = tf.stack(
            [p_happy * p_male, p_happy * (1 - p_male), (1 - p_happy) * p_male, (1 - p_happy) * (1 - p_male)],
            axis=1,
        )
        return {
            "p_happy": tf.identity(p_happy, name="p_happy"),
            "p_male": tf.identity(p_male, name="p_male"),
            "p_classes": tf.identity(p_classes, name="p_classes"),
        }

    tf2onnx.convert.from_function(serve, input_signature=spec, opset=OPSET, output_path=str(path))
