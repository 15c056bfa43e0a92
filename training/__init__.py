"""Training for facesort: the transfer-learned four-class Keras model, exported to ONNX.

Needs the `train` extra (TensorFlow, tf2onnx, h5py); `facesort classify` never imports this package.
"""

import facesort  # noqa: F401  (first: it keeps ONNX Runtime's telemetry off before tf2onnx imports onnxruntime)
