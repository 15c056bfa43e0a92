"""Training for facesort: the transfer-learned four-class Keras model, exported to ONNX.

Needs the `train` extra (TensorFlow, tf2onnx, h5py); `facesort classify` never imports this package.
"""
