"""Shared fixtures: real photos from ../shared/data when present, and synthetic bad inputs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("FACESORT_SHARED", ROOT.parent / "shared")) / "data"
EXAMPLES = ROOT / "examples"

needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"{SHARED} is absent")


def example_photos() -> list[Path]:
    return sorted(p for p in EXAMPLES.iterdir() if p.suffix.lower() in (".jpg", ".png"))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """A folder with the README's example photos (real faces, shipped in examples/)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for p in example_photos():
        shutil.copy2(p, folder / p.name)
    return folder


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """Run the installed `facesort` command as a user would (a fresh process each time)."""
    return subprocess.run(
        [sys.executable, "-m", "facesort", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        **kw,
    )


def file_size_limit(limit: int):
    """preexec_fn: files written by the child may not grow past `limit` bytes (as on a full disk; the write
    fails with EFBIG once SIGXFSZ is ignored). Needs no privileges, unlike mounting a small filesystem."""
    import resource
    import signal

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply
