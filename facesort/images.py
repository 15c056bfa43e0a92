"""Finding image files and decoding them safely: by content, EXIF-rotated, with a pixel limit."""

from __future__ import annotations

import atexit
import fnmatch
import io
import os
import stat
import struct
import sys
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

# Formats facesort decodes, recognised by their first bytes, not their names. GIF: the first frame. HEIF
# (HEIC, iPhone photos): with the heic extra (pi-heif); OpenCV decodes the others.
SUPPORTED_FORMATS = ("jpeg", "png", "bmp", "webp", "tiff", "gif", "avif", "jpeg2000", "heif", "fujifilm raw")
# Extensions a folder walk picks up: the supported formats, and other image formats, which get an
# "unsupported format" row rather than being passed over in silence.
IMAGE_EXTENSIONS = frozenset(
    ".jpg .jpeg .jpe .jfif .png .bmp .dib .webp .tif .tiff "
    ".gif .avif .jp2 .j2k .heic .heif .jxl .ico .psd .svg "
    # camera raw: read as the JPEG they embed for display (TIFF-based ones and Fujifilm's); the others are
    # named as unsupported
    ".cr2 .nef .nrw .arw .srf .sr2 .dng .pef .srw .3fr .erf .mef .mos .iiq .raf .orf .rw2 .rwl .cr3".split()
)
DEFAULT_MAX_PIXELS = 50_000_000
# In a folder of an HTML page's thumbnails (facesort.html): a walk of the photos passes it over, so a page
# written inside the photos folder does not add its thumbnails to the next run.
THUMBNAILS_MARK = ".facesort-thumbnails"
HEIF_NEEDS_EXTRA = "unsupported format: heif (pip install 'facesort[heic]' reads it)"


class ImageError(Exception):
    """A file that cannot be turned into an image; the message is meant for the report."""


def sniff_format(head: bytes) -> str | None:
    """The image format named by a file's first bytes, or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"BM") and len(head) >= 26:
        return "bmp"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"  # camera raw files too (DNG, NEF, CR2, ARW, ...): see camera_preview
    if head.startswith(b"FUJIFILMCCD-RAW "):
        return "fujifilm raw"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):  # JP2 box, J2K codestream
        return "jpeg2000"
    if head[4:8] == b"ftyp":
        # An ISO media file: AVIF when its brands (major, then compatible, within the ftyp box) name it.
        box = head[8 : int.from_bytes(head[:4], "big")]
        brands = {box[i : i + 4] for i in range(0, len(box) - 3, 4)}
        if brands & {b"avif", b"avis"}:
            return "avif"
        if brands & {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"}:
            return "heif"
        if b"crx " in brands:
            return "canon cr3"
        return None  # another ISO media file: an MP4 or MOV video, ...
    # Named only to say which format a file is that facesort does not read.
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "jpeg xl"
    if head.startswith(b"8BPS"):
        return "psd"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "olympus raw"
    if head[:4] == b"IIU\x00":
        return "panasonic raw"
    if head.startswith(b"\x00\x00\x01\x00"):
        return "ico"
    if head.lstrip().startswith((b"<svg", b"<?xml")) and b"<svg" in head:
        return "svg"
    return None


def image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) read from the header without decoding, or None where the header does not say."""
    try:
        if fmt == "png":
            return struct.unpack(">II", data[16:24])
        if fmt == "bmp":
            w, h = struct.unpack("<ii", data[18:26])
            return abs(w), abs(h)
        if fmt == "jpeg":
            return _jpeg_size(data)
        if fmt == "webp":
            return _webp_size(data)
        if fmt == "tiff":
            return _tiff_size(data)
        if fmt == "gif":
            return struct.unpack("<HH", data[6:10])  # the logical screen, which every frame lies within
        if fmt in ("avif", "heif"):
            return _ispe_size(data)
        if fmt == "jpeg2000":
            return _jpeg2000_size(data)
        if fmt == "fujifilm raw":
            return _jpeg_size(_raf_preview(data))
    except (struct.error, IndexError, ValueError):
        return None
    return None


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    frame = _jpeg_frame(data)
    return frame[:2] if frame else None


def _jpeg_frame(data: bytes) -> tuple[int, int, int] | None:
    """(width, height, the SOF marker) of a JPEG: 0xC0-0xC2 are what libjpeg decodes, 0xC3 is lossless
    (a camera's raw data), ..."""
    for marker, i in _jpeg_segments(data):
        # SOF0..SOF15 carry the frame size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                return None
            h, w = struct.unpack(">HH", data[i + 5 : i + 9])
            return w, h, marker
    return None


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int]]:
    """(marker, offset) of each marker segment of a JPEG before its scan, fill bytes passed over."""
    i = 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker = data[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if marker in (0xDA, 0xD9):  # start of scan, end of image
            return
        yield marker, i
        i += 2 + struct.unpack(">H", data[i + 2 : i + 4])[0]


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X":
        w = 1 + int.from_bytes(data[24:27], "little")
        h = 1 + int.from_bytes(data[27:30], "little")
        return w, h
    if chunk == b"VP8L":
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8 ":
        w, h = struct.unpack("<HH", data[26:30])
        return w & 0x3FFF, h & 0x3FFF
    return None


def _tiff_size(data: bytes) -> tuple[int, int] | None:
    first = next(_tiff_ifds(data, limit=1), {})
    return (first[256][0], first[257][0]) if 256 in first and 257 in first else None


_TIFF_TYPE_SIZES = {3: 2, 4: 4, 13: 4}  # the integer types offsets and sizes come in: SHORT, LONG, IFD


def _tiff_ifds(data: bytes, limit: int = 64) -> Iterator[dict[int, list[int]]]:
    """Every IFD of a TIFF: the main chain and the SubIFDs (tag 330) under each, as {tag: values}, for
    integer tags only. Bounded: offsets outside the file, loops and more than `limit` IFDs end the walk."""
    endian = "<" if data[:2] == b"II" else ">"
    todo, seen = [struct.unpack(endian + "I", data[4:8])[0]], set()
    while todo and len(seen) < limit:
        offset = todo.pop(0)
        if offset in seen or not 8 <= offset <= len(data) - 2:
            continue
        seen.add(offset)
        count = struct.unpack(endian + "H", data[offset : offset + 2])[0]
        end = offset + 2 + 12 * count
        if end > len(data):
            continue
        ifd: dict[int, list[int]] = {}
        for k in range(count):
            tag, typ, n = struct.unpack(endian + "HHI", data[offset + 2 + 12 * k : offset + 10 + 12 * k])
            size = _TIFF_TYPE_SIZES.get(typ)
            if size is None or not n or n > 4096:
                continue
            at = (
                offset + 10 + 12 * k
                if n * size <= 4
                else struct.unpack(endian + "I", data[offset + 10 + 12 * k : offset + 14 + 12 * k])[0]
            )
            if at + n * size > len(data):
                continue
            ifd[tag] = list(struct.unpack(f"{endian}{n}{'H' if typ == 3 else 'I'}", data[at : at + n * size]))
        yield ifd
        todo += ifd.get(330, [])  # SubIFDs: where NEF and DNG keep the full-size preview
        if end + 4 <= len(data):
            todo.append(struct.unpack(endian + "I", data[end : end + 4])[0])  # the next IFD of the chain


def camera_preview(data: bytes) -> tuple[bytes, int] | None:
    """The largest JPEG a camera raw file (DNG, NEF, CR2, ARW, PEF, ...: a TIFF) embeds to be shown, when it is
    larger than the image the TIFF's first IFD describes (in many raws a small thumbnail), or when that image is
    the sensor's data itself; with the raw's orientation (the TIFF tag, 1-8). None for an ordinary TIFF. The raw
    sensor data is not decoded."""
    try:
        ifds = list(_tiff_ifds(data))
    except struct.error:
        return None
    if not ifds:
        return None
    first = ifds[0]
    first_pixels = first.get(256, [0])[0] * first.get(257, [0])[0]
    best, best_pixels = None, 0
    for ifd in ifds:
        spans = []
        if 513 in ifd and 514 in ifd:  # JPEGInterchangeFormat and its length
            spans.append((ifd[513][0], ifd[514][0]))
        if ifd.get(259, [1])[0] in (6, 7) and len(ifd.get(273, [])) == 1 and len(ifd.get(279, [])) == 1:
            spans.append((ifd[273][0], ifd[279][0]))  # a JPEG-compressed image in one strip (CR2's IFD0)
        for start, length in spans:
            blob = data[start : start + length]
            frame = _jpeg_frame(blob) if blob.startswith(b"\xff\xd8") else None
            if frame and frame[2] in (0xC0, 0xC1, 0xC2) and frame[0] * frame[1] > best_pixels:
                best, best_pixels = blob, frame[0] * frame[1]
    # The first IFD's own image, where OpenCV can show it (not a sensor's raw data, not CR2's old-style JPEG),
    # is read instead when it is as large.
    shown = first.get(259, [1])[0] in (1, 5, 7, 8, 32773, 32946) and first.get(262, [2])[0] not in (32803, 34892)
    if best is None or (shown and best_pixels <= first_pixels):
        return None
    orientation = first.get(274, [1])[0]
    return best, orientation if 1 <= orientation <= 8 else 1


def _raf_preview(data: bytes) -> bytes:
    """A Fujifilm RAF's embedded JPEG (with its own EXIF): its offset and length are at bytes 84 and 88."""
    if len(data) < 92:
        return b""  # cut short: "cannot decode"
    start, length = struct.unpack(">II", data[84:92])
    return data[start : start + length]


def _oriented(image: np.ndarray, orientation: int) -> np.ndarray:
    """`image` turned as the EXIF/TIFF orientation value (1-8) says."""
    if orientation in (5, 6, 7, 8):
        image = cv2.transpose(image)  # 5 as it is; 6, 7 and 8 flipped from it below
    flip = {2: 1, 3: -1, 4: 0, 6: 1, 7: -1, 8: 0}.get(orientation)
    return image if flip is None else cv2.flip(image, flip)


def _ispe_size(data: bytes) -> tuple[int, int] | None:
    """The largest of the 'ispe' (image spatial extents) boxes in the metadata: the image, or the grid its
    tiles make up."""
    sizes, i = [], data.find(b"ispe", 0, 1 << 16)
    while i >= 4:
        w, h = struct.unpack(">II", data[i + 8 : i + 16])  # after the box's version and flags
        sizes.append((w, h))
        i = data.find(b"ispe", i + 4, 1 << 16)
    return max(sizes, key=lambda s: s[0] * s[1]) if sizes else None


def _jpeg2000_size(data: bytes) -> tuple[int, int] | None:
    """From the JP2 header box (height, then width) or the codestream's SIZ marker (the image area's far
    corner less its offset)."""
    if data.startswith(b"\xff\x4f\xff\x51"):
        x, y, x0, y0 = struct.unpack(">IIII", data[8:24])
        return x - x0, y - y0
    i = data.find(b"ihdr", 0, 1 << 16)
    if i < 0:
        return None
    h, w = struct.unpack(">II", data[i + 4 : i + 12])
    return w, h


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode `path` to a BGR uint8 (H, W, 3) array, EXIF orientation applied.

    Grayscale, 16-bit and alpha images come out as 8-bit BGR. Raises ImageError with a reason.
    """
    return decode_image(read_bytes(path, max_pixels), max_pixels)


def max_file_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The largest file that can hold an image within the pixel limit: 8 bytes a pixel (16-bit RGBA, stored
    uncompressed), plus 16 MiB of metadata. Anything larger is refused before it is read into memory."""
    return max_pixels * 8 + (16 << 20)


def read_bytes(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> bytes:
    """A file's bytes, or ImageError with a short reason (missing, broken symlink, permissions, not a regular
    file, too large for the pixel limit...). Opened without blocking, so a named pipe or a device is refused
    instead of waited on forever."""
    fd = None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError
        if not stat.S_ISREG(info.st_mode):
            kind = (
                "named pipe" if stat.S_ISFIFO(info.st_mode) else "socket" if stat.S_ISSOCK(info.st_mode) else "device"
            )
            raise ImageError(f"not a regular file (a {kind})")
        if info.st_size > max_file_bytes(max_pixels):
            raise ImageError(
                f"a file of {info.st_size / 1e6:,.0f} MB is larger than an image within the pixel limit of "
                f"{max_pixels:,} can be"
            )
        with os.fdopen(fd, "rb") as f:
            fd = None  # closed by f
            return f.read()
    except IsADirectoryError:
        raise ImageError("is a directory") from None
    except FileNotFoundError:
        kind = "broken symlink" if os.path.islink(path) else "file not found"
        raise ImageError(kind) from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as e:
        raise ImageError(e.strerror or str(e)) from None
    finally:
        if fd is not None:
            os.close(fd)


# JPEG decodes at 1/2, 1/4 or 1/8 scale for a fraction of the cost; used while the result stays this large.
_REDUCED = ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4), (2, cv2.IMREAD_REDUCED_COLOR_2))


def decode_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode image bytes as `read_image` does."""
    return decode_scaled(data, max_pixels)[0]


def decode_scaled(
    data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS, keep_side: int = 0, max_factor: int = 8
) -> tuple[np.ndarray, int]:
    """Decode image bytes; a large JPEG may decode at 1/2, 1/4 or 1/8 size (at most 1/max_factor) as long
    as its longer side stays at least keep_side (0: always full size). Returns (BGR image, the factor)."""
    if not data:
        raise ImageError("empty file")
    fmt = sniff_format(data[:64])
    if fmt is None:
        raise ImageError("not an image (unrecognised content)")
    if fmt not in SUPPORTED_FORMATS:
        raise ImageError(f"unsupported format: {fmt}")
    size = image_size(data, fmt)
    # A camera raw is read as its preview, whose own size is held to the limit (a sensor's may be beyond it).
    preview = camera_preview(data) if fmt == "tiff" else (_raf_preview(data), 1) if fmt == "fujifilm raw" else None
    if preview is None:
        _check_pixels(size, max_pixels)
    if fmt == "heif":
        image, factor = _decode_heif(data), 1
    elif preview is not None:
        image, factor = _decode_preview(data, fmt, *preview, max_pixels, keep_side, max_factor)
    else:
        image, factor = _decode_opencv(data, fmt, size, keep_side, max_factor)
    if image.shape[0] * image.shape[1] > max_pixels:
        raise ImageError(f"{image.shape[1]}x{image.shape[0]} exceeds the pixel limit of {max_pixels:,}")
    return image, factor


def _check_pixels(size: tuple[int, int] | None, max_pixels: int, what: str = "") -> None:
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(f"{size[0]}x{size[1]}{what} exceeds the pixel limit of {max_pixels:,}")


def _decode_opencv(
    data: bytes, fmt: str, size: tuple[int, int] | None, keep_side: int, max_factor: int
) -> tuple[np.ndarray, int]:
    flag, factor = cv2.IMREAD_COLOR, 1
    if fmt == "jpeg" and keep_side and size is not None:
        fits = ((f, fl) for f, fl in _REDUCED if f <= max_factor and max(size) / f >= keep_side)
        factor, flag = next(fits, (1, flag))
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    except cv2.error as e:
        raise ImageError(f"cannot decode {fmt}: {e.err or e}") from None
    if image is None or image.size == 0:
        raise ImageError(f"cannot decode {fmt} (corrupt or truncated)")
    return image, factor


def _decode_preview(
    data: bytes, fmt: str, jpeg: bytes, orientation: int, max_pixels: int, keep_side: int, max_factor: int
) -> tuple[np.ndarray, int]:
    """A camera raw's embedded JPEG, turned by the raw's orientation unless the JPEG has its own (which
    OpenCV applies). Where the JPEG cannot be decoded, a TIFF's first image, as for any TIFF."""
    size = _jpeg_size(jpeg)
    _check_pixels(size, max_pixels, " (the raw's preview)")
    try:
        image, factor = _decode_opencv(jpeg, "jpeg", size, keep_side, max_factor)
    except ImageError:
        if fmt != "tiff":
            raise ImageError(f"cannot decode {fmt} (its preview is corrupt or truncated)") from None
        size = image_size(data, "tiff")
        _check_pixels(size, max_pixels)
        return _decode_opencv(data, "tiff", size, keep_side, max_factor)
    if _jpeg_orientation(jpeg) is None:
        image = _oriented(image, orientation)
    return image, factor


def _jpeg_orientation(jpeg: bytes) -> int | None:
    """The orientation tag of a JPEG's own EXIF (APP1) segment, None without one."""
    for marker, i in _jpeg_segments(jpeg):
        if marker == 0xE1 and jpeg[i + 4 : i + 10] == b"Exif\0\0":
            length = struct.unpack(">H", jpeg[i + 2 : i + 4])[0]
            try:
                ifd0 = next(_tiff_ifds(jpeg[i + 10 : i + 2 + length], limit=1), {})
            except struct.error:
                return None
            return ifd0.get(274, [None])[0]
    return None


def _decode_heif(data: bytes) -> np.ndarray:
    """A HEIF/HEIC image as 8-bit BGR through pi-heif (libheif), which applies the file's own rotation and
    mirroring (HEIF records them in the container, not in EXIF)."""
    try:
        import pi_heif
    except ImportError:
        raise ImageError(HEIF_NEEDS_EXTRA) from None
    try:
        heif = pi_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        pixels = np.array(heif, copy=True)  # the buffer belongs to `heif`: copied while it is alive
    except Exception as e:  # libheif's errors come as several types; each means a bad file here
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ImageError(f"cannot decode heif (corrupt or truncated: {reason})") from None
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGR if pixels.shape[2] == 4 else cv2.COLOR_RGB2BGR)


def iter_image_files(
    inputs: Iterable[str | os.PathLike],
    recursive: bool = True,
    exclude: Iterable[str | os.PathLike] = (),
    ignore: Iterable[str] = (),
) -> Iterator[Path]:
    """Yield the files to classify, lazily: files named directly always, images found in folders.

    Folder walks skip hidden entries, the folders in `exclude` (a sort's output folder), the system folders
    in SYSTEM_FOLDERS and the files and folders whose names match a glob pattern in `ignore`; they follow
    symlinked folders but never into a loop, and yield files sorted by name within each folder. A folder
    that cannot be listed is yielded itself, so that it gets an error row. A folder of a page's thumbnails
    (marked THUMBNAILS_MARK) is passed over.
    """
    excluded = {os.path.realpath(p) for p in exclude}
    patterns = tuple(ignore)
    for item in inputs:
        path = Path(item)
        if os.path.isdir(path):  # unlike Path.is_dir, never raises (an inaccessible path is a row)
            yield from _walk(path, recursive, excluded, set(), patterns)
        else:
            # A named file is processed whatever its name; a missing one becomes an error row.
            yield path


# Folders that hold no photos of the user's own, or copies of them, passed over by every walk: a Synology
# NAS's thumbnails of each photo (@eaDir), its recycle bin and snapshots; Windows's recycle bin and system
# folder on a removable drive; fsck's lost+found.
SYSTEM_FOLDERS = frozenset(
    {"@eaDir", "#recycle", "#snapshot", "$RECYCLE.BIN", "System Volume Information", "lost+found"}
)


def _walk(
    folder: Path, recursive: bool, excluded: set[str], seen: set[str], ignore: tuple[str, ...] = ()
) -> Iterator[Path]:
    real = os.path.realpath(folder)
    if real in seen or real in excluded:
        return
    seen.add(real)
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError:
        # A folder that cannot be listed (no permission) would hide its photos without a word: it is
        # yielded itself, and reading it gives its row the reason ("permission denied").
        yield folder
        return
    if any(entry.name == THUMBNAILS_MARK for entry in entries):
        return
    subfolders = []
    for entry in entries:
        if entry.name.startswith(".") or any(fnmatch.fnmatch(entry.name, p) for p in ignore):
            continue
        try:
            is_dir = entry.is_dir()
        except OSError:
            is_dir = False
        if is_dir:
            if entry.name not in SYSTEM_FOLDERS:
                subfolders.append(Path(entry.path))
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_EXTENSIONS:
            yield Path(entry.path)
    if recursive:
        for sub in subfolders:
            yield from _walk(sub, recursive, excluded, seen, ignore)


# What libjpeg and libpng print to the process's stderr themselves (not through OpenCV's log, which
# `setLogLevel` silences) about a damaged file they decode anyway or refuse: "Corrupt JPEG data: premature
# end of data segment", "libpng error: IDAT: CRC error", ... The file's row gives the reason already.
_DECODER_MESSAGES = (
    b"Corrupt JPEG data",
    b"Premature end of JPEG file",
    b"Invalid SOS parameters for sequential JPEG",
    b"Inconsistent progression sequence",
    b"Unknown Adobe color transform code",
    b"Warning: unknown JFIF revision number",
    b"Application transferred too many scanlines",
    b"libpng warning:",
    b"libpng error:",
)
_hidden = False


def hide_decoder_messages() -> None:
    """From now on, drop the lines the image decoders print on this process's stderr about damaged files.

    The C libraries write to file descriptor 2, which becomes a pipe read by a thread that passes every
    other byte on unchanged. Python's own `sys.stderr` (the progress bar, messages, tracebacks) writes to
    the terminal directly, as before, and so does everything once the process exits. Once per process."""
    global _hidden
    if _hidden:
        return
    try:
        sys.stderr.flush()
        terminal = os.dup(2)
        read_end, write_end = os.pipe()
    except (OSError, AttributeError, ValueError):  # no stderr at all (pythonw), or closed
        return
    old = sys.stderr
    sys.stderr = io.TextIOWrapper(
        io.FileIO(terminal, "w", closefd=False),
        encoding=getattr(old, "encoding", None) or "utf-8",
        errors=getattr(old, "errors", None) or "backslashreplace",
        line_buffering=True,  # a printed line leaves in one write, not torn by the thread's writes
    )
    os.dup2(write_end, 2)
    os.close(write_end)
    forwarder = threading.Thread(target=_forward, args=(read_end, terminal), name="stderr-filter", daemon=True)
    forwarder.start()
    _hidden = True

    def restore() -> None:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(terminal, 2)  # closes the pipe's last write end: the thread drains it and ends
        forwarder.join(timeout=5)

    atexit.register(restore)


def _forward(read_end: int, terminal: int) -> None:
    pending = b""
    while chunk := os.read(read_end, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not line.startswith(_DECODER_MESSAGES))
        # An unfinished line is held back only while it may still turn out to be a decoder's message
        # (libpng writes its message and the newline apart); anything else passes at once.
        if pending and not any(pending.startswith(m) or m.startswith(pending) for m in _DECODER_MESSAGES):
            kept, pending = kept + pending, b""
        _write_all(terminal, kept)
    if pending and not pending.startswith(_DECODER_MESSAGES):
        _write_all(terminal, pending)
    os.close(read_end)


def _write_all(fd: int, data: bytes) -> None:
    while data:
        try:
            data = data[os.write(fd, data) :]
        except OSError:  # the terminal is gone: nothing more can be shown
            return
