"""Reading images by content: formats, orientation, bit depths, and every kind of bad file."""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from facesort.images import ImageError, decode_image, image_size, iter_image_files, read_image, sniff_format


def encode(ext: str, array: np.ndarray, params=()) -> bytes:
    ok, buf = cv2.imencode(ext, array, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize("ext", [".jpg", ".png", ".bmp", ".webp", ".tiff", ".gif", ".avif", ".jp2"])
def test_each_supported_format_decodes_with_its_size_read_from_the_header(ext):
    img = np.random.default_rng(0).integers(0, 255, (36, 50, 3), np.uint8)  # JPEG 2000 encodes from 32 up
    data = encode(ext, img)
    fmt = sniff_format(data[:64])
    assert fmt == {".jpg": "jpeg", ".jp2": "jpeg2000"}.get(ext, ext[1:])
    assert image_size(data, fmt) == (50, 36)
    assert decode_image(data).shape == (36, 50, 3)


def test_an_animated_gif_is_read_as_its_first_frame():
    first, second = (np.full((20, 30, 3), v, np.uint8) for v in (40, 200))
    buf = io.BytesIO()
    Image.fromarray(first).save(buf, "GIF", save_all=True, append_images=[Image.fromarray(second)])
    assert np.abs(decode_image(buf.getvalue()).astype(int) - 40).max() <= 2


@pytest.mark.parametrize("ext", [".gif", ".avif", ".jp2"])
def test_gif_avif_and_jpeg2000_sizes_from_the_header_are_held_to_the_pixel_limit(ext):
    data = encode(ext, np.zeros((36, 50, 3), np.uint8))
    if ext == ".gif":  # the logical screen, little-endian 16-bit
        forged = data[:6] + (60_000).to_bytes(2, "little") * 2 + data[10:]
    elif ext == ".avif":  # the 'ispe' box: version and flags, then width and height
        i = data.find(b"ispe")
        forged = data[: i + 8] + (100_000).to_bytes(4, "big") * 2 + data[i + 16 :]
    else:  # the JP2 header box: height, then width
        i = data.find(b"ihdr")
        forged = data[: i + 4] + (100_000).to_bytes(4, "big") * 2 + data[i + 12 :]
    with pytest.raises(ImageError, match="exceeds the pixel limit"):
        decode_image(forged)


HEIC = Path(__file__).parent / "data"  # an example photo (examples/002429.jpg) saved as HEIC, as iPhones do


def test_heic_photos_decode_upright_when_the_heic_extra_is_installed():
    pytest.importorskip("pi_heif")
    reference = cv2.imread(str(Path(__file__).parents[1] / "examples" / "002429.jpg"))
    # The second is stored turned a quarter, with the turn recorded in the file (HEIF's 'irot').
    for name in ("002429.heic", "002429-turned.heic"):
        image = decode_image((HEIC / name).read_bytes())
        assert image.shape == reference.shape and np.abs(image.astype(int) - reference).mean() < 3, name


def test_without_the_heic_extra_a_heic_photo_says_how_to_read_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "pi_heif", None)  # as if not installed: importing it fails
    with pytest.raises(ImageError, match=r"unsupported format: heif \(pip install 'facesort\[heic\]' reads it\)"):
        decode_image((HEIC / "002429.heic").read_bytes())


def test_format_is_read_from_content_not_extension(tmp_path):
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(encode(".png", np.zeros((8, 9, 3), np.uint8)))
    assert read_image(path).shape == (8, 9, 3)


def test_exif_orientation_is_applied():
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(buf, "JPEG", exif=exif)
    assert decode_image(buf.getvalue()).shape == (40, 20, 3)


@pytest.mark.parametrize(
    "array",
    [
        np.full((20, 30), 128, np.uint8),
        np.full((20, 30), 40000, np.uint16),
        np.full((20, 30, 4), 90, np.uint8),
        np.full((20, 30, 3), 50000, np.uint16),
    ],
    ids=["gray", "gray16", "rgba", "rgb16"],
)
def test_grayscale_16bit_and_alpha_pngs_become_8bit_bgr(array):
    out = decode_image(encode(".png", array))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", "empty file"),
        (b"hello, I am a text file\n", "not an image"),
        (b"GIF89a" + b"\0" * 40, "cannot decode gif"),
        (b"\x00\x00\x00\x18ftypheic" + b"\0" * 40, "cannot decode heif"),
        (b"\x00\x00\x00\x18ftypisom\0\0\0\0isomiso2" + b"\0" * 40, "not an image"),  # an MP4 video
        (b"\x00\x00\x00\x18ftypmif1\0\0\0\0mif1avif" + b"\0" * 40, "cannot decode avif"),
        (b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\0" * 40, "unsupported format: jpeg xl"),
        (b"8BPS\x00\x01" + b"\0" * 40, "unsupported format: psd"),
        (b'<?xml version="1.0"?>\n<svg width="10"/>', "unsupported format: svg"),
    ],
    ids=["zero-byte", "text", "gif", "heic", "mp4", "avif", "jxl", "psd", "svg"],
)
def test_bad_content_gets_a_reason(data, reason):
    with pytest.raises(ImageError, match=reason):
        decode_image(data)


def test_truncated_jpeg_is_an_error_not_a_crash():
    data = encode(".jpg", np.random.default_rng(1).integers(0, 255, (200, 200, 3), np.uint8))
    with pytest.raises(ImageError):
        decode_image(data[:300])


def test_pixel_limit_refuses_before_decoding():
    data = encode(".png", np.zeros((100, 100, 3), np.uint8))
    with pytest.raises(ImageError, match="exceeds the pixel limit"):
        decode_image(data, max_pixels=9_999)
    # A PNG header claiming 100000 x 100000 is refused from the header alone.
    forged = data[:16] + (100_000).to_bytes(4, "big") * 2 + data[24:]
    with pytest.raises(ImageError, match="100000x100000"):
        decode_image(forged)


def test_missing_broken_symlink_loop_and_directory(tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        read_image(tmp_path / "nope.jpg")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "gone.jpg")
    with pytest.raises(ImageError, match="broken symlink"):
        read_image(tmp_path / "broken.jpg")
    (tmp_path / "a.jpg").symlink_to(tmp_path / "b.jpg")
    (tmp_path / "b.jpg").symlink_to(tmp_path / "a.jpg")
    with pytest.raises(ImageError, match="symbolic links"):
        read_image(tmp_path / "a.jpg")
    (tmp_path / "dir.jpg").mkdir()
    with pytest.raises(ImageError, match="directory"):
        read_image(tmp_path / "dir.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it to read would wait for a writer forever
    with pytest.raises(ImageError, match="a named pipe"):
        read_image(tmp_path / "pipe.jpg")
    with pytest.raises(ImageError, match="a device"):
        read_image("/dev/zero")  # endless: read whole, it would fill memory


def test_walk_is_recursive_sorted_skips_hidden_and_excluded_and_survives_symlink_loops(tmp_path):
    for rel in ["b.jpg", "a.PNG", "notes.txt", ".hidden.jpg", "sub/c.webp", "out/x.jpg", "sub/deeper/d.tif"]:
        p = tmp_path / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # a folder symlink back to the top
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path], exclude=[tmp_path / "out"])]
    assert found == ["a.PNG", "b.jpg", "sub/c.webp", "sub/deeper/d.tif"]
    flat = [p.name for p in iter_image_files([tmp_path], recursive=False)]
    assert flat == ["a.PNG", "b.jpg"]
    # A file named on the command line is taken whatever its extension.
    assert list(iter_image_files([tmp_path / "notes.txt"])) == [tmp_path / "notes.txt"]


def test_a_file_too_large_for_the_pixel_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "huge.jpg"
    with open(path, "wb") as f:  # sparse: no disk used, and read whole it would take 1 GB of memory
        f.truncate(1_000_000_000)
    with pytest.raises(ImageError, match="1,000 MB is larger than an image within the pixel limit of 1,000,000"):
        read_image(path, max_pixels=1_000_000)


def test_unreadable_file_permission(tmp_path):
    path = tmp_path / "secret.jpg"
    path.write_bytes(encode(".jpg", np.zeros((10, 10, 3), np.uint8)))
    path.chmod(0)
    if os.access(path, os.R_OK):
        pytest.skip("running as root: permissions do not stop reads (covered by the CLI test as nobody)")
    with pytest.raises(ImageError, match="permission denied"):
        read_image(path)


def test_the_cli_pixel_limit_default_is_the_library_one():
    from facesort.cli import MAX_PIXELS
    from facesort.images import DEFAULT_MAX_PIXELS

    assert MAX_PIXELS == DEFAULT_MAX_PIXELS  # written twice so `facesort --help` need not import OpenCV


def test_a_folder_that_cannot_be_listed_is_yielded_so_that_it_gets_a_row(tmp_path, monkeypatch):
    for rel in ["a.jpg", "private/b.jpg", "z/c.jpg"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    real_scandir = os.scandir

    def scandir(path):
        if os.path.basename(path) == "private":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    found = [p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path])]
    assert found == ["a.jpg", "private", "z/c.jpg"]


def test_an_unreadable_folder_reads_as_permission_denied(tmp_path):
    folder = tmp_path / "private"
    folder.mkdir()
    folder.chmod(0)
    try:
        if os.access(folder, os.R_OK):
            pytest.skip("running as root: permissions do not stop reads")
        with pytest.raises(ImageError, match="permission denied"):
            read_image(folder)
    finally:
        folder.chmod(0o755)
