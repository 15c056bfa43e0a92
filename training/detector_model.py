"""Make facesort's face-detector model: MediaPipe's BlazeFace short-range model, converted to ONNX.

    python -m training.detector_model [--wheel mediapipe-0.10.14-....whl] [--out PATH]

The model comes out of MediaPipe's Python wheel (Apache 2.0; the wheel is fetched with `pip download`
unless given), is checked against the digest below and converted with tf2onnx, so facesort runs it on ONNX
Runtime without MediaPipe or TensorFlow.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEDIAPIPE = "mediapipe==0.10.14"
MEMBER = "mediapipe/modules/face_detection/face_detection_short_range.tflite"
TFLITE_SHA256 = "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"
OUT = Path(__file__).resolve().parents[1] / "facesort" / "models" / "detector" / "face_detection_short_range.onnx"


def tflite_from_wheel(member: str, digest: str, tmp: Path, wheel: Path | None = None) -> Path:
    """`member` of the MediaPipe wheel (fetched into `tmp` with `pip download` unless given), written to
    `tmp`. ValueError, with a sentence for the user, where the wheel cannot be had or read, or the member's
    sha256 is not `digest`."""
    if wheel is None:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp), MEDIAPIPE]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            why = (proc.stderr.strip().splitlines() or ["no message"])[-1]
            raise ValueError(f"could not fetch the {MEDIAPIPE} wheel with pip download ({why})")
        wheel = next(tmp.glob("mediapipe-*.whl"))
    try:
        data = zipfile.ZipFile(wheel).read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as e:
        raise ValueError(f"{wheel} is not a {MEDIAPIPE} wheel holding {member} ({e})") from None
    if hashlib.sha256(data).hexdigest() != digest:
        raise ValueError(f"{member} in {wheel} is not the model this was made for")
    out = tmp / Path(member).name
    out.write_bytes(data)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help=f"a {MEDIAPIPE} wheel (default: pip download it)")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            tflite = tflite_from_wheel(MEMBER, TFLITE_SHA256, Path(tmp), args.wheel)
        except ValueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        import tf2onnx

        tf2onnx.convert.from_tflite(str(tflite), opset=17, output_path=str(args.out))
    print(f"{args.out}: sha256 {hashlib.sha256(args.out.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
