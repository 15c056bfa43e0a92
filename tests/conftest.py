"""Shared fixtures: real photos from ../shared/data when present, and synthetic bad inputs."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
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


def interrupt_once_started(
    cmd: list[str], started, sig=signal.SIGINT, wait: float = 120, **kw
) -> subprocess.CompletedProcess:
    """Run `cmd`, and send it `sig` (SIGINT: Ctrl-C; SIGKILL: a kill) as soon as `started()` says it is under way
    (or `wait` seconds have passed); `kw` goes to Popen (env=...).

    The command starts with SIGINT as Ctrl-C sends it: a test run in the background of a script inherits
    SIGINT ignored (POSIX shells start background jobs so), and Python then never raises KeyboardInterrupt,
    so the run went on to its end. The callers give it work enough for seconds after `started()`."""
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kw,
    )
    deadline = time.time() + wait
    while time.time() < deadline and proc.poll() is None and not started():
        time.sleep(0.01)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def file_size_limit(limit: int):
    """preexec_fn: files written by the child may not grow past `limit` bytes (as on a full disk; the write
    fails with EFBIG once SIGXFSZ is ignored). Needs no privileges, unlike mounting a small filesystem."""
    import resource

    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply
