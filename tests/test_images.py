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
        (b"IIRO\x08\x00\x00\x00" + b"\0" * 40, "unsupported format: olympus raw"),
        (b"IIU\x00\x18\x00\x00\x00" + b"\0" * 40, "unsupported format: panasonic raw"),
        (b"\x00\x00\x00\x18ftypcrx \0\0\0\x01crx isom" + b"\0" * 40, "unsupported format: canon cr3"),
        (b"FUJIFILMCCD-RAW 0201" + b"\0" * 100, "cannot decode fujifilm raw"),
        (b"FUJIFILMCCD-RAW 0201" + b"\0" * 30, "cannot decode fujifilm raw"),
    ],
    ids=["zero-byte", "text", "gif", "heic", "mp4", "avif", "jxl", "psd", "svg", "orf", "rw2", "cr3", "raf", "raf-cut"],
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


def make_tiff(ifds: list[dict], blobs: list[bytes]) -> bytes:
    """A little-endian TIFF built tag by tag, as cameras write raw files: `ifds[0]` starts the main chain
    (each IFD's "next" is the one after it when it says next=True), others are reached as SubIFDs. A value
    ("blob", k) is the offset of blobs[k], ("ifd", k) that of ifds[k]; tags are (type, [values])."""
    import struct

    blob_at, at = [], 8
    for b in blobs:
        blob_at.append(at)
        at += len(b) + (len(b) % 2)
    ifd_at = []
    for ifd in ifds:
        ifd_at.append(at)
        tags = [t for t in ifd if isinstance(t, int)]
        at += 2 + 12 * len(tags) + 4 + sum(4 * len(ifd[t][1]) for t in tags if len(ifd[t][1]) > 1)

    def value(v):
        return blob_at[v[1]] if isinstance(v, tuple) and v[0] == "blob" else ifd_at[v[1]] if isinstance(v, tuple) else v

    out = bytearray(b"II*\x00" + struct.pack("<I", ifd_at[0]))
    for b in blobs:
        out += b + b"\0" * (len(b) % 2)
    for k, ifd in enumerate(ifds):
        tags = sorted(t for t in ifd if isinstance(t, int))
        extra_at = ifd_at[k] + 2 + 12 * len(tags) + 4
        entries, extra = bytearray(struct.pack("<H", len(tags))), bytearray()
        for tag in tags:
            typ, values = ifd[tag]
            values = [value(v) for v in values]
            code = "H" if typ == 3 else "I"
            if len(values) == 1:
                entries += struct.pack("<HHI", tag, typ, 1) + struct.pack(f"<{code}", values[0]).ljust(4, b"\0")
            else:
                entries += struct.pack("<HHII", tag, typ, len(values), extra_at + len(extra))
                extra += struct.pack(f"<{len(values)}I", *values)  # LONG arrays only
        nxt = ifd_at[k + 1] if ifd.get("next") else 0
        out += entries + struct.pack("<I", nxt) + extra
    return bytes(out)


def example_bgr() -> np.ndarray:
    return cv2.imread(str(Path(__file__).parents[1] / "examples" / "002429.jpg"))


def nef_like(photo: np.ndarray, orientation: int = 1) -> bytes:
    """As a Nikon NEF (or a DNG) lays itself out: a 160x120 thumbnail in the first IFD, and in SubIFDs the
    full-size JPEG preview and the raw sensor data (CFA, 16 bits)."""
    LONG, SHORT = 4, 3
    thumb = cv2.resize(photo, (160, 120))[..., ::-1].tobytes()  # RGB, uncompressed
    preview = encode(".jpg", photo)  # OpenCV writes no EXIF
    h, w = photo.shape[:2]
    raw = bytes(2 * 64 * 48)
    ifd0 = {256: (LONG, [160]), 257: (LONG, [120]), 258: (SHORT, [8]), 259: (SHORT, [1]), 262: (SHORT, [2]),
            273: (LONG, [("blob", 0)]), 274: (SHORT, [orientation]), 277: (SHORT, [3]), 278: (LONG, [120]),
            279: (LONG, [len(thumb)]), 330: (LONG, [("ifd", 1), ("ifd", 2)])}  # fmt: skip
    jpeg_ifd = {254: (LONG, [1]), 256: (LONG, [w]), 257: (LONG, [h]), 259: (SHORT, [6]),
                513: (LONG, [("blob", 1)]), 514: (LONG, [len(preview)])}  # fmt: skip
    raw_ifd = {254: (LONG, [0]), 256: (LONG, [64]), 257: (LONG, [48]), 258: (SHORT, [16]), 259: (SHORT, [1]),
               262: (SHORT, [32803]), 273: (LONG, [("blob", 2)]), 279: (LONG, [len(raw)])}  # fmt: skip
    return make_tiff([ifd0, jpeg_ifd, raw_ifd], [thumb, preview, raw])


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_a_camera_raw_is_read_as_its_full_size_preview_turned_as_the_raw_says(orientation):
    photo = example_bgr()
    data = nef_like(photo, orientation)
    assert sniff_format(data[:64]) == "tiff" and image_size(data, "tiff") == (160, 120)  # the thumbnail
    turn = {1: None, 3: cv2.ROTATE_180, 6: cv2.ROTATE_90_CLOCKWISE, 8: cv2.ROTATE_90_COUNTERCLOCKWISE}[orientation]
    expected = cv2.imdecode(np.frombuffer(encode(".jpg", photo), np.uint8), cv2.IMREAD_COLOR)
    expected = expected if turn is None else cv2.rotate(expected, turn)
    got = decode_image(data)
    assert got.shape == expected.shape and np.array_equal(got, expected)


def test_a_cr2_like_raw_is_read_from_its_first_ifds_jpeg_and_an_ordinary_tiff_as_before():
    from facesort.images import camera_preview

    LONG, SHORT = 4, 3
    photo = example_bgr()
    full, small = encode(".jpg", photo), encode(".jpg", cv2.resize(photo, (80, 60)))
    h, w = photo.shape[:2]
    # Canon's CR2: the full-size JPEG in the first IFD's one strip (old-style JPEG, compression 6), a small
    # thumbnail in the next.
    ifd0 = {256: (LONG, [w]), 257: (LONG, [h]), 259: (SHORT, [6]), 273: (LONG, [("blob", 0)]),
            279: (LONG, [len(full)]), "next": True}  # fmt: skip
    ifd1 = {259: (SHORT, [6]), 513: (LONG, [("blob", 1)]), 514: (LONG, [len(small)])}
    cr2 = make_tiff([ifd0, ifd1], [full, small])
    assert camera_preview(cr2) == (full, 1)
    assert decode_image(cr2).shape == photo.shape
    # A TIFF as image editors write it has no preview: OpenCV reads its pixels, as before.
    assert camera_preview(encode(".tiff", photo)) is None
    assert np.array_equal(decode_image(encode(".tiff", photo)), photo)


def test_a_raw_preview_is_held_to_the_pixel_limit_and_a_damaged_raw_is_refused_not_a_crash():
    photo = example_bgr()
    data = nef_like(photo)
    with pytest.raises(ImageError, match=r"the raw's preview\) exceeds the pixel limit"):
        decode_image(data, max_pixels=photo.shape[0] * photo.shape[1] - 1)
    rng = np.random.default_rng(0)
    for _ in range(400):
        bad = bytearray(data)
        for i in rng.integers(0, 2000, rng.integers(1, 8)):  # within the header and the IFDs' reach
            bad[int(i) if i < 8 else len(data) - 1 - int(i)] = int(rng.integers(0, 256))
        try:
            assert decode_image(bytes(bad)).ndim == 3
        except ImageError:
            pass


def test_a_fujifilm_raf_is_read_as_its_embedded_jpeg_with_that_jpegs_own_orientation():
    photo = example_bgr()
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[274] = 6  # the JPEG's own EXIF says: turn 90 degrees clockwise to show
    Image.fromarray(photo[..., ::-1]).save(buf, "JPEG", exif=exif.tobytes())
    jpeg = buf.getvalue()
    header = b"FUJIFILMCCD-RAW 0201FF383501".ljust(84, b"\0")
    raf = header + (100).to_bytes(4, "big") + len(jpeg).to_bytes(4, "big")
    raf = raf.ljust(100, b"\0") + jpeg + bytes(5000)  # then the sensor data
    assert sniff_format(raf[:64]) == "fujifilm raw" and image_size(raf, "fujifilm raw") == photo.shape[1::-1]
    assert decode_image(raf).shape == (photo.shape[1], photo.shape[0], 3)


RAW = Path(__file__).parent / "data" / "raw"


def _tiff_tag(data: bytearray, ifd_at: int, tag: int, value: int | None = None) -> int:
    """Read a one-value tag of the IFD at `ifd_at`, or set it to `value` in place."""
    import struct

    endian = "<" if data[:2] == b"II" else ">"
    for k in range(struct.unpack_from(endian + "H", data, ifd_at)[0]):
        entry = ifd_at + 2 + 12 * k
        t, typ, _ = struct.unpack_from(endian + "HHI", data, entry)
        if t == tag:
            code = endian + ("H" if typ == 3 else "I")
            if value is not None:
                struct.pack_into(code, data, entry + 8, value)
            return struct.unpack_from(code, data, entry + 8)[0]
    raise KeyError(tag)


def _with_preview(name: str, jpeg: bytes, size: tuple[int, int]) -> bytes:
    """ExifTool's sample of a camera's raw file with `jpeg` where its largest preview was: appended, and
    pointed to by the very tags the camera wrote."""
    import struct

    data = bytearray((RAW / name).read_bytes())
    at, w, h = len(data), *size
    if name == "FujiFilm.raf":
        struct.pack_into(">II", data, 84, at, len(jpeg))
        return bytes(data + jpeg)
    first = struct.unpack_from("<I" if data[:2] == b"II" else ">I", data, 4)[0]
    if name == "Nikon.nef":  # the first SubIFD: JPEGInterchangeFormat and its length
        sub = _tiff_tag(data, first, 330)
        _tiff_tag(data, sub, 513, at), _tiff_tag(data, sub, 514, len(jpeg))
    elif name == "CanonRaw.cr2":  # the first IFD's one strip, old-style JPEG
        for tag, v in ((273, at), (279, len(jpeg)), (256, w), (257, h)):
            _tiff_tag(data, first, tag, v)
    elif name == "DNG.dng":  # the last SubIFD: the full-size preview, a JPEG in one strip
        endian = "<" if data[:2] == b"II" else ">"
        entry = next(
            first + 2 + 12 * k
            for k in range(struct.unpack_from(endian + "H", data, first)[0])
            if struct.unpack_from(endian + "H", data, first + 2 + 12 * k)[0] == 330
        )
        count, offsets = struct.unpack_from(endian + "II", data, entry + 4)
        sub = struct.unpack_from(endian + "I", data, offsets + 4 * (count - 1))[0]
        for tag, v in ((273, at), (279, len(jpeg)), (256, w), (257, h)):
            _tiff_tag(data, sub, tag, v)
    return bytes(data + jpeg)


@pytest.mark.parametrize("name", ["Nikon.nef", "CanonRaw.cr2", "DNG.dng", "FujiFilm.raf"])
def test_real_cameras_raw_layouts_are_read_as_their_preview(name):
    photo = example_bgr()
    jpeg = encode(".jpg", photo)
    as_jpeg = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    # As ExifTool ships them (image data cut to a few bytes): refused with a reason, or a tiny picture.
    try:
        assert decode_image((RAW / name).read_bytes()).shape[0] <= 160
    except ImageError:
        pass
    data = _with_preview(name, jpeg, photo.shape[1::-1])
    assert np.array_equal(decode_image(data), as_jpeg)


def test_a_real_nef_is_turned_by_its_orientation_tag():
    import struct

    photo = example_bgr()
    data = bytearray(_with_preview("Nikon.nef", encode(".jpg", photo), photo.shape[1::-1]))
    _tiff_tag(data, struct.unpack_from("<I" if data[:2] == b"II" else ">I", data, 4)[0], 274, 8)
    assert decode_image(bytes(data)).shape == (photo.shape[1], photo.shape[0], 3)


def test_walks_pass_over_nas_thumbnails_recycle_bins_and_excluded_names(tmp_path):
    files = [
        "keep.jpg",
        "trip/keep2.JPG",
        "@eaDir/keep.jpg/SYNOPHOTO_THUMB_XL.jpg",  # a Synology NAS's thumbnails of each photo
        "#recycle/deleted.jpg",
        "$RECYCLE.BIN/S-1-5-21/$R1.jpg",
        "drafts/a.jpg",
        "scan.png",
    ]
    for f in files:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_bytes(b"")
    found = lambda **kw: sorted(p.relative_to(tmp_path).as_posix() for p in iter_image_files([tmp_path], **kw))  # noqa: E731
    assert found() == ["drafts/a.jpg", "keep.jpg", "scan.png", "trip/keep2.JPG"]
    assert found(ignore=["drafts", "*.png"]) == ["keep.jpg", "trip/keep2.JPG"]
    # Named on the command line, a file is read whatever its name or folder.
    thumb = tmp_path / files[2]
    assert list(iter_image_files([thumb], ignore=["*.jpg"])) == [thumb]


def test_a_raw_whose_first_ifd_is_the_sensor_data_is_read_as_its_smaller_preview():
    """As Pentax's PEF lays itself out: the raw data first (larger than any preview, and no picture OpenCV can
    show), the preview JPEG in the next IFD."""
    LONG, SHORT = 4, 3
    photo = example_bgr()
    preview, raw = encode(".jpg", photo), bytes(64)
    ifd0 = {256: (LONG, [6000]), 257: (LONG, [4000]), 258: (SHORT, [16]), 259: (SHORT, [65535]),
            262: (SHORT, [32803]), 273: (LONG, [("blob", 0)]), 279: (LONG, [len(raw)]), "next": True}  # fmt: skip
    ifd1 = {259: (SHORT, [6]), 513: (LONG, [("blob", 1)]), 514: (LONG, [len(preview)])}
    pef = make_tiff([ifd0, ifd1], [raw, preview])
    as_jpeg = cv2.imdecode(np.frombuffer(preview, np.uint8), cv2.IMREAD_COLOR)
    assert np.array_equal(decode_image(pef), as_jpeg)
    # The sensor's size is not held to the pixel limit, as it is never decoded; the preview's is.
    assert np.array_equal(decode_image(pef, max_pixels=20_000_000), as_jpeg)
    with pytest.raises(ImageError, match="preview"):
        decode_image(pef, max_pixels=as_jpeg.shape[0] * as_jpeg.shape[1] - 1)
