"""The classifier: one ONNX Runtime session around the shipped (or a user's) model, read with its card."""

from __future__ import annotations

import contextlib
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CLASSES = ("HappyMale", "HappyFemale", "SadMale", "SadFemale")
MODEL_FILE = "model.onnx"
CARD_FILE = "model.json"
DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "default"
# How cuDNN picks convolution algorithms on CUDA. ONNX Runtime's default, EXHAUSTIVE, times every algorithm
# for each new input shape; facesort's batches change shape (a flush ends where a photo's faces end), so
# that search ran again and again. HEURISTIC asks cuDNN's heuristics once per shape instead (BENCHMARKS.md).
CUDNN_SEARCH = "HEURISTIC"
# On CUDA, the first run at a batch shape costs a session about half a second (0.35-0.65 s measured on an
# H100 with HEURISTIC, 1.3-1.5 s with EXHAUSTIVE), and classify_paths' batches come in many sizes: batches
# there are padded with blank crops to a few sizes, powers of two from this one up (BENCHMARKS.md).
CUDA_MIN_BATCH = 64


def padded_batch(n: int) -> int:
    """The batch size a batch of n faces is padded to on CUDA: at least CUDA_MIN_BATCH, else a power of two."""
    return max(CUDA_MIN_BATCH, 1 << max(0, n - 1).bit_length())


class ModelError(Exception):
    """The model cannot be loaded or run as asked (missing files, bad card, device unavailable)."""


@dataclass
class Predictions:
    """Per-face model outputs for one batch."""

    p_happy: np.ndarray  # (N,)
    p_male: np.ndarray  # (N,)
    probs: np.ndarray  # (N, 4) in CLASSES order

    @property
    def labels(self) -> list[str]:
        return [CLASSES[i] for i in self.probs.argmax(axis=1)]

    @property
    def confidence(self) -> np.ndarray:
        return self.probs.max(axis=1)


def load_card(model_dir: str | os.PathLike | None = None) -> dict:
    """The model card (JSON) that sits next to the ONNX file."""
    model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
    card_path = model_dir / CARD_FILE
    if not model_dir.exists():
        raise ModelError(f"no model folder {model_dir}")
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir} is a file: a model is the folder holding {MODEL_FILE} and {CARD_FILE}")
    if not (model_dir / MODEL_FILE).is_file():
        raise ModelError(f"no {MODEL_FILE} in {model_dir}")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError:
        raise ModelError(f"no model card {CARD_FILE} in {model_dir}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"unreadable model card {card_path}: {e}") from None
    if not isinstance(card, dict) or tuple(card.get("classes", ())) != CLASSES:
        raise ModelError(f"model card {card_path} does not list the classes {', '.join(CLASSES)}")
    # What inference reads from the card: the crop it must make (the convention's size and scale).
    try:
        size, scale = int(card["input"]["size"]), float(card["crop"]["scale"])
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"model card {card_path} does not give the input size and crop scale") from None
    if not (8 <= size <= 1024 and 0.5 <= scale <= 4.0):
        raise ModelError(f"model card {card_path}: input size {size} or crop scale {scale} out of range")
    return card


def preload_pip_cuda(ort) -> bool:
    """Load the CUDA and cuDNN libraries that `pip install onnxruntime-gpu[cuda,cudnn]` puts in site-packages/nvidia/.

    The CUDA provider finds only libraries on the loader's path; onnxruntime's own preload_dlls() loads the pip
    copies first. Done only where such copies sit beside onnxruntime (else it would cost start-up and print for
    nothing); what fails to load shows as the session falling back to CPU, so its messages are swallowed.
    Returns whether it tried."""
    if not hasattr(ort, "preload_dlls") or not (Path(ort.__file__).resolve().parent.parent / "nvidia").is_dir():
        return False
    with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(Exception):
        ort.preload_dlls()
    return True


class Classifier:
    """Four-class face classifier: uint8 RGB face crops in, probabilities out, in batches."""

    def __init__(
        self,
        model_dir: str | os.PathLike | None = None,
        device: str = "auto",
        threads: int = 0,
        verbose: bool = False,
        spin: bool = True,
        cudnn_search: str = CUDNN_SEARCH,
    ) -> None:
        import onnxruntime as ort  # deferred: `facesort --help` should not pay for it

        self.model_dir = Path(model_dir) if model_dir else DEFAULT_MODEL_DIR
        self.card = load_card(self.model_dir)
        self.input_size = int(self.card["input"]["size"])
        self.crop_scale = float(self.card["crop"]["scale"])
        if device not in ("auto", "cpu", "cuda"):
            raise ModelError(f"unknown device {device!r}: use auto, cpu or cuda")
        # ONNX Runtime's CUDA loader prints errors when there is no GPU; keep them for --verbose.
        ort.set_default_logger_severity(0 if verbose else 4)
        options = ort.SessionOptions()
        options.log_severity_level = 0 if verbose else 4
        if threads:
            options.intra_op_num_threads = threads
        if not spin:
            # Between batches, inference threads sleep instead of spinning, handing the cores to the
            # threads that decode and detect (measured: crops end to end +8%, photos unchanged).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers: list = ["CPUExecutionProvider"]
        if device != "cpu" and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"cudnn_conv_algo_search": cudnn_search}))
            preload_pip_cuda(ort)
        try:
            self.session = ort.InferenceSession(
                str(self.model_dir / MODEL_FILE), sess_options=options, providers=providers
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"cannot load {self.model_dir / MODEL_FILE}: {e}") from None
        # get_available_providers() claims CUDA on any machine with the GPU wheel; only the
        # session knows what it really runs on.
        self.providers = self.session.get_providers()
        self.device = "cuda" if self.providers[0] == "CUDAExecutionProvider" else "cpu"
        if device == "cuda" and self.device != "cuda":
            raise ModelError(
                "--device cuda: ONNX Runtime cannot run on a CUDA GPU here "
                "(no GPU, driver or CUDA libraries); use --device auto or cpu"
            )
        inputs = self.session.get_inputs()
        self.input_name = inputs[0].name
        expected = [None, self.input_size, self.input_size, 3]
        shape = [d if isinstance(d, int) else None for d in inputs[0].shape]
        if len(inputs) != 1 or len(shape) != 4 or any(d is not None and d != e for d, e in zip(shape, expected)):
            raise ModelError(
                f"{self.model_dir / MODEL_FILE} takes input {inputs[0].shape}, not the (N, {self.input_size}, "
                f"{self.input_size}, 3) face crops its card {CARD_FILE} describes"
            )
        names = [o.name for o in self.session.get_outputs()]
        for needed in ("p_happy", "p_male", "p_classes"):
            if needed not in names:
                raise ModelError(f"{self.model_dir / MODEL_FILE} has no output {needed!r}")

    def predict(self, crops: np.ndarray) -> Predictions:
        """Classify a batch of uint8 RGB crops shaped (N, size, size, 3)."""
        if crops.ndim != 4 or crops.shape[1:] != (self.input_size, self.input_size, 3):
            raise ValueError(f"expected (N, {self.input_size}, {self.input_size}, 3), got {crops.shape}")
        n = len(crops)
        x = np.ascontiguousarray(crops, np.uint8)
        pad = padded_batch(n) - n if self.device == "cuda" and n else 0
        if pad:
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), np.uint8)])
        p_happy, p_male, probs = self.session.run(["p_happy", "p_male", "p_classes"], {self.input_name: x})
        return Predictions(p_happy.reshape(-1)[:n], p_male.reshape(-1)[:n], probs.reshape(-1, len(CLASSES))[:n])
