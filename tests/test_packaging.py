"""What `pip install .` asks for on each platform: one ONNX Runtime build and one TensorFlow build, never two."""

from __future__ import annotations

import importlib.metadata
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"

# The marker variables pip sees on each machine (platform.system(), platform.machine()).
PLATFORMS = {
    "Linux x86-64": {"platform_system": "Linux", "platform_machine": "x86_64", "sys_platform": "linux"},
    "Windows x64": {"platform_system": "Windows", "platform_machine": "AMD64", "sys_platform": "win32"},
    "macOS, Apple silicon": {"platform_system": "Darwin", "platform_machine": "arm64", "sys_platform": "darwin"},
    "Linux ARM": {"platform_system": "Linux", "platform_machine": "aarch64", "sys_platform": "linux"},
}
# Where the CUDA builds have wheels (PyPI, onnxruntime-gpu 1.31.1 and tensorflow-cpu 2.21.0).
CUDA_PLATFORMS = {"Linux x86-64", "Windows x64"}


def wanted(requirements: list[str], platform: dict, extra: str = "") -> set[str]:
    env = {"python_version": "3.11", "python_full_version": "3.11.7", "extra": extra, **platform}
    return {r.name for r in map(Requirement, requirements) if r.marker is None or r.marker.evaluate(env)}


@pytest.mark.parametrize("name", PLATFORMS)
def test_each_platform_gets_one_onnx_runtime_and_one_tensorflow(name):
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    runtime = wanted(project["dependencies"], PLATFORMS[name]) & {"onnxruntime", "onnxruntime-gpu"}
    tensorflow = wanted(project["optional-dependencies"]["train"], PLATFORMS[name], "train") & {
        "tensorflow",
        "tensorflow-cpu",
    }
    cuda = name in CUDA_PLATFORMS
    assert runtime == {"onnxruntime-gpu" if cuda else "onnxruntime"}
    assert tensorflow == {"tensorflow-cpu" if cuda else "tensorflow"}


def test_the_installed_onnx_runtime_is_one_build():
    # Both own the module `onnxruntime`: whichever was installed last would win, half of the other left behind.
    installed = set()
    for dist in ("onnxruntime", "onnxruntime-gpu"):
        try:
            importlib.metadata.version(dist)
            installed.add(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    assert len(installed) == 1, installed
