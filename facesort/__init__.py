"""facesort: classify every face in folders of photos as HappyMale, HappyFemale, SadMale or SadFemale.

from facesort import AutoDetector, Classifier, classify_paths, iter_image_files
clf = Classifier()                      # the shipped model, CUDA when ONNX Runtime runs there
for row in classify_paths(iter_image_files(["photos/"]), clf, AutoDetector()):
    print(row.path, row.face, row.label, row.confidence)
"""

from __future__ import annotations

import os

__version__ = "0.1.0"

# ONNX Runtime 1.29 and later, on Linux too, write a device ID and an event store under ~/.cache/Microsoft,
# queueing usage and error events (the OS, the program's path) to send to Microsoft, unless this is set before
# onnxruntime is imported. A tool that reads people's photos does not do that on their behalf; 0 allows it.
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, where the OS says)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# Attributes load on first use, so `import facesort` (and `facesort --help`) stays cheap.
_EXPORTS = {
    "Classifier": "facesort.model",
    "ModelError": "facesort.model",
    "CLASSES": "facesort.model",
    "FaceBox": "facesort.crop",
    "crop_face": "facesort.crop",
    "AutoDetector": "facesort.detect",
    "BlazeFaceDetector": "facesort.detect",
    "HaarDetector": "facesort.detect",
    "WholeImage": "facesort.detect",
    "classify_paths": "facesort.pipeline",
    "FaceResult": "facesort.pipeline",
    "iter_image_files": "facesort.images",
    "read_image": "facesort.images",
    "ReportWriter": "facesort.report",
    "Sorter": "facesort.sorter",
}
__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'facesort' has no attribute {name!r}")
