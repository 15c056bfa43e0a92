"""The `facesort` command: classify, sort, train, info. Thin: the work is in the library modules."""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from facesort import usable_cores

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Classify every face in photos as HappyMale, HappyFemale, SadMale or SadFemale.\n\n"
    "Exit codes: 0 every input was processed (unreadable files are rows with status=error); "
    "1 the run could not proceed (model missing, output not writable), or a path named does not exist (the "
    "others are processed), or unsort left files in place (each a kept row saying why); 2 usage error (none of "
    "the paths named exists, an output that would replace a photo or a report); 130 interrupted (Ctrl-C), 143 "
    "terminated (SIGTERM: kill, timeout); what was written so far stays whole.",
)


def _print_version(value: bool) -> None:
    if value:
        from facesort import __version__

        print(f"facesort {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print facesort's version and exit."),
    ] = False,
) -> None:
    pass


class Detector(StrEnum):
    auto = "auto"
    blazeface = "blazeface"
    haar = "haar"
    none = "none"


class TrainDetector(StrEnum):
    auto = "auto"
    haar = "haar"


class Device(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


class Multi(StrEnum):
    largest = "largest"
    all = "all"


def _console(stderr: bool = False, **kw):
    """A rich console that prints names as they are: without emoji codes, a folder named `:x: party` (or a
    CSV header `root:x:0`) is not printed as a red cross."""
    from rich.console import Console

    return Console(stderr=stderr, emoji=False, **kw)


def _err_console():
    return _console(stderr=True, soft_wrap=True)


def _plain(text) -> str:
    """Text for a rich console printed as it is: a path such as photos/[2024]/ is not markup (a name like
    [/x] even made rich raise)."""
    from rich.markup import escape

    return escape(str(text))


def fail(message: str, code: int = 1) -> None:
    _err_console().print(f"[bold red]error:[/] {_plain(message)}", highlight=False)
    raise typer.Exit(code)


Paths = Annotated[
    list[Path] | None,
    typer.Argument(help="Photos and folders of photos.", show_default=False, readable=False),
]
FilesFrom = Annotated[
    Path | None,
    typer.Option(
        "--files-from",
        metavar="FILE",
        help="Also the photos and folders listed in FILE, one a line, or NUL-separated as find -print0 and "
        "xargs -0 write; - reads the list from standard input (find ... | facesort classify --files-from -).",
        show_default=False,
    ),
]
Recursive = Annotated[bool, typer.Option("--recursive/--no-recursive", help="Walk folders recursively.")]
Exclude = Annotated[
    list[str] | None,
    typer.Option(
        "--exclude",
        metavar="PATTERN",
        help="Pass over the files and folders whose names match this glob pattern in a folder walk (repeatable: "
        "--exclude '*.png' --exclude drafts). Hidden entries, a NAS's @eaDir thumbnails and recycle bins are "
        "always passed over.",
        show_default=False,
    ),
]
DetectorOpt = Annotated[
    Detector,
    typer.Option(
        help="auto: BlazeFace short-range; on a photo where it finds nothing, BlazeFace full-range (small "
        "faces), then OpenCV's Haar cascades; blazeface (short-range) or haar: only that one; "
        "none: each image is one face crop already."
    ),
]
MinFace = Annotated[
    int,
    typer.Option(
        min=0,
        help="Smallest face to find, in pixels of the photo. 0 (default): BlazeFace short-range finds faces from "
        "about 15% of the photo's longer side, full-range (where short-range finds none) from about 5%, the Haar "
        "cascades from about 8%. Given, the Haar cascades look on every "
        "photo (with auto, beside BlazeFace) at the resolution that size needs (slower on large photos).",
    ),
]
Sideways = Annotated[
    bool,
    typer.Option(
        "--sideways",
        help="Also look at each photo turned a quarter each way and upside down, and take a turned view where "
        "BlazeFace is surer of a face there: for scanned prints and photos that lost their EXIF orientation "
        "(auto and blazeface; slower).",
    ),
]
DeviceOpt = Annotated[Device, typer.Option(help="auto: CUDA when ONNX Runtime really runs there, else CPU.")]
BatchSize = Annotated[int, typer.Option(min=1, help="Faces per ONNX Runtime call.")]
Workers = Annotated[int, typer.Option(min=1, help="Threads decoding and detecting.")]
ModelOpt = Annotated[
    Path | None, typer.Option("--model", help="Model folder (model.onnx + model.json); default: shipped.")
]
MaxPixels = Annotated[
    int,
    typer.Option(min=1, help="Refuse images larger than this (decompression bombs), and files too large to hold one."),
]
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Show ONNX Runtime's and OpenCV's logs and the image decoders' messages."),
]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Also write an HTML page of the faces here.")]


# facesort.images.DEFAULT_MAX_PIXELS, written here so that `facesort --help` does not import OpenCV.
MAX_PIXELS = 50_000_000


def _joined(paths, most: int = 5) -> str:
    shown = ", ".join(str(p) for p in paths[:most])
    return shown if len(paths) <= most else f"{shown} and {len(paths) - most:,} more"


def _inputs(paths: list[Path] | None, files_from: Path | None) -> list[Path]:
    """The paths named on the command line, then those listed in --files-from: one a line, or separated by
    NUL bytes where the list has any (names may hold newlines). Usage errors exit 2."""
    listed: list[Path] = []
    if files_from is not None:
        try:
            raw = sys.stdin.buffer.read() if str(files_from) == "-" else files_from.read_bytes()
        except OSError as e:
            fail(f"cannot read the list {files_from}: {e.strerror or e}", 2)
        if b"\0" in raw:
            names = raw.split(b"\0")
        else:
            names = [line.removesuffix(b"\r") for line in raw.split(b"\n")]
        listed = [Path(os.fsdecode(n)) for n in names if n]
        if not listed and not paths:
            where = "standard input" if str(files_from) == "-" else files_from
            _err_console().print(f"[yellow]warning:[/] {_plain(where)} lists no photos", highlight=False)
    elif not paths:
        fail("give the photos or folders to read (or --files-from FILE)", 2)
    return [*(paths or []), *listed]


def _default_workers() -> int:
    return max(1, min(8, usable_cores()))


class _Run:
    """What classify and sort share: the model, the detector, the file walk, progress and summary."""

    def __init__(
        self,
        paths,
        recursive,
        detector,
        min_face,
        device,
        batch_size,
        workers,
        model,
        max_pixels,
        verbose,
        quiet,
        exclude=(),
        ignore=(),
        sideways=False,
    ):
        from facesort.detect import make_detector
        from facesort.images import hide_decoder_messages
        from facesort.model import ModelError
        from facesort.pipeline import pipeline_classifier

        # A path named on the command line that does not exist is most often a typo: when none exists the
        # run stops before anything is written; otherwise the others are processed, the missing ones are
        # error rows, and the exit code is 1 (`finish`), as `cp` and `cat` do.
        self.missing = [p for p in paths if not os.path.lexists(p)]
        if self.missing and len(self.missing) == len(paths):
            fail(f"{_joined(self.missing)} {'does' if len(self.missing) == 1 else 'do'} not exist", 2)
        for p in self.missing[:5]:
            _err_console().print(f"[yellow]warning:[/] {_plain(p)} does not exist (reported as an error row)")
        if len(self.missing) > 5:
            _err_console().print(f"[yellow]warning:[/] and {len(self.missing) - 5:,} more paths that do not exist")
        import cv2

        # OpenCV logs a decoder's complaint about a corrupt file to stderr, and libjpeg and libpng print
        # their own; the file's row says it already.
        cv2.utils.logging.setLogLevel(
            cv2.utils.logging.LOG_LEVEL_INFO if verbose else cv2.utils.logging.LOG_LEVEL_SILENT
        )
        if not verbose:
            hide_decoder_messages()
        try:
            self.classifier = pipeline_classifier(model, device.value, verbose)
        except ModelError as e:
            fail(str(e))
        try:
            self.detector = make_detector(detector.value, min_face, self.classifier.crop_scale, sideways)
        except ValueError as e:
            fail(str(e), 2)
        self.paths, self.recursive, self.exclude, self.ignore = paths, recursive, exclude, tuple(ignore or ())
        self.skip: set[str] = set()  # files a resumed report has already (real paths)
        self.batch_size, self.workers, self.max_pixels = batch_size, workers, max_pixels
        self.quiet = quiet
        self.console = _err_console()
        if not quiet:
            self.console.print(
                f"facesort: model {_plain(self.classifier.model_dir.name)}, device [bold]{self.classifier.device}[/] "
                f"({', '.join(self.classifier.providers)}), detector {detector.value}"
                + (" --sideways" if sideways else ""),
                highlight=False,
            )

    def files(self):
        from facesort.images import iter_image_files

        found = iter_image_files(self.paths, self.recursive, self.exclude, self.ignore)
        if not self.skip:
            return found
        return (p for p in found if os.path.realpath(p) not in self.skip)

    def results(self):
        """Per-face results, with a progress bar on a terminal."""
        from facesort.pipeline import Stats, classify_paths

        self.stats = Stats()
        self.started = time.perf_counter()
        stream = classify_paths(
            self.files(), self.classifier, self.detector, self.batch_size, self.workers, self.max_pixels, self.stats
        )
        if self.quiet or not self.console.is_terminal:
            yield from stream
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        columns = (
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[faces]} faces"),
            TextColumn("{task.fields[rate]:.1f} img/s"),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("classifying", total=None, faces=0, rate=0.0)

            def count() -> None:
                # The files counted by a second walk beside the run, for the bar's total and the ETA: the run
                # does not wait for it (a walk of many thousand photos on a network share takes a while).
                try:
                    progress.update(task, total=sum(1 for _ in self.files()))
                except Exception:  # noqa: BLE001 - without a total the bar still counts
                    pass

            threading.Thread(target=count, name="count-files", daemon=True).start()
            last = None
            for row in stream:
                if row.path != last:
                    last = row.path
                    elapsed = time.perf_counter() - self.started
                    progress.update(
                        task,
                        completed=self.stats.files,
                        faces=self.stats.faces,
                        rate=self.stats.files / elapsed if elapsed else 0.0,
                    )
                yield row
            progress.update(task, completed=self.stats.files)

    def finish(self) -> None:
        """Exit 1 where a path named on the command line did not exist (after the report is complete)."""
        if self.missing:
            fail(
                f"{_joined(self.missing)} {'does' if len(self.missing) == 1 else 'do'} not exist "
                "(error rows in the report; the other paths were processed)"
            )

    def summary(self, title: str = "facesort") -> None:
        if self.stats.files == 0 and self.paths:  # a wrong folder, or photos one level down with --no-recursive
            where = _joined(self.paths)
            how = "top level only, --no-recursive" if not self.recursive else "subfolders included"
            self.console.print(
                f"[yellow]warning:[/] no image files found in {_plain(where)} ({how}; "
                "images are found by extension: .jpg, .png, .webp, ...)",
                highlight=False,
            )
        from facesort.images import HEIF_NEEDS_EXTRA

        heif_unread = self.stats.error_reasons[HEIF_NEEDS_EXTRA]  # HEIC photos met without the heic extra
        if heif_unread:
            self.console.print(
                f"[yellow]warning:[/] {heif_unread} HEIC photo{'s' if heif_unread > 1 else ''} could not be read: "
                "pip install 'facesort\\[heic]' reads them",
                highlight=False,
            )
        if self.quiet:
            return
        from rich.table import Table

        s, elapsed = self.stats, time.perf_counter() - self.started
        table = Table(title=title, show_header=True, header_style="bold")
        table.add_column("")
        table.add_column("count", justify="right")
        for label, n in s.per_class.items():
            table.add_row(f"{label} faces", str(n))
        table.add_row("images without a face", str(s.no_face))
        table.add_row("files with errors", str(s.errors))
        table.add_row("images", str(s.files))
        table.add_row("images per second", f"{s.files / elapsed:.1f}" if elapsed else "-")
        self.console.print(table)


@contextmanager
def _output_errors(out: str | Path, then: str = ""):
    """Around writes of a report or of stdout: a reader that went away (`| head`) ends the run quietly, as
    other Unix tools do; any other write error (a full disk) is one sentence (`then` added) and exit 1."""
    try:
        yield
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except OSError as e:
        fail(f"cannot write {'to standard output' if out == '-' else out}: {e.strerror or e}{then}")


class _Terminated(KeyboardInterrupt):
    """SIGTERM (`kill`, `timeout`, a service stopping) taken as Ctrl-C is: stop where the run is, cleanly."""


def _terminate(signum, frame) -> None:
    raise _Terminated


@contextmanager
def _interruptible(say):
    """Ctrl-C or SIGTERM during a run: one line on stderr (`say()` tells what is kept and how to go on), exit
    code 130 or 143 as shells expect of a command stopped so; what was written so far stays whole."""
    import signal

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except KeyboardInterrupt as e:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second one must not cut the message short
        terminated = isinstance(e, _Terminated)
        _err_console().print(
            f"[yellow]{'terminated' if terminated else 'interrupted'}:[/] {_plain(say())}", highlight=False
        )
        raise typer.Exit(143 if terminated else 130) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def _open_output(out: str, mode: str = "w"):
    if out == "-":
        return sys.stdout, False
    try:
        return open(out, mode, newline="", encoding="utf-8", errors="surrogateescape"), True
    except OSError as e:
        fail(f"cannot write {out}: {e.strerror or e}")


@app.command()
def classify(
    paths: Paths = None,
    files_from: FilesFrom = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Report file; - for stdout.")] = "-",
    fmt: Annotated[Format, typer.Option("--format", help="Report format.")] = Format.csv,
    recursive: Recursive = True,
    exclude: Exclude = None,
    detector: DetectorOpt = Detector.auto,
    min_face: MinFace = 0,
    sideways: Sideways = False,
    device: DeviceOpt = Device.auto,
    batch_size: BatchSize = 64,
    workers: Workers = _default_workers(),
    model: ModelOpt = None,
    max_pixels: MaxPixels = MAX_PIXELS,
    verbose: Verbose = False,
    quiet: Quiet = False,
    html_out: HtmlOpt = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Go on with the --out report of a run that was stopped, or bring it up to date: the photos it has "
            "whole rows for are not classified again, the others' rows (photos added since too) are added. The "
            "same model and options are expected.",
        ),
    ] = False,
) -> None:
    """Classify every face and write a report: one row per face (CSV or JSON Lines)."""
    from facesort.report import ReportWriter, result_row, resume_point

    paths = _inputs(paths, files_from)
    if out != "-":
        _refuse_photo(Path(out), "--out")
    _check_file_target(html_out, report=None if out == "-" else Path(out))
    offset, done = None, []
    if resume and out == "-":
        fail("--resume goes on with a report file: give it as --out FILE", 2)
    if resume and os.path.lexists(out) and not os.path.isfile(out):
        # A named pipe would be read forever, a device cannot be cut back to a row's end.
        fail(f"--resume goes on with a report file: {out} is not a regular file", 2)
    if resume and os.path.lexists(out):
        try:
            offset, done = resume_point(out, fmt.value)
        except OSError as e:
            fail(f"cannot read {out}: {e.strerror or e}", 2)
        except ValueError as e:
            fail(f"{out} {e}: nothing was written to it; give another --out, or leave out --resume", 2)
    walk = (paths, recursive, detector, min_face, device, batch_size, workers, model, max_pixels, verbose, quiet)
    run = _Run(*walk, ignore=exclude, sideways=sideways)
    done_files = len({r["path"] for r in done})
    if offset is not None:
        run.skip = {os.path.realpath(r["path"]) for r in done}
        if not quiet:
            run.console.print(f"resuming {_plain(out)}: {done_files:,} files in it are kept", highlight=False)
        try:
            with open(out, "r+b") as f:
                f.truncate(offset)  # a cut-short row, and the rows of the file that may lack a face
        except OSError as e:
            fail(f"cannot write {out}: {e.strerror or e}")
    stream, close = _open_output(out, "w" if offset is None else "a")
    kept = list(done) if html_out else None
    written, files, last = False, done_files, None
    where = "the report" if out == "-" else out
    try:
        with _output_errors(out):
            writer = ReportWriter(stream, fmt.value, header=not offset)
        then = "" if out == "-" else "; the same command with --resume classifies the rest"
        with _interruptible(lambda: f"{where} has the rows of the {files:,} files classified so far{then}"):
            for row in run.results():
                if kept is not None:
                    kept.append(result_row(row))
                with _output_errors(out):
                    writer.write(row)
                if row.path != last:
                    files, last = files + 1, row.path
        written = True
    finally:
        if close:
            try:
                stream.close()  # flushes: a full disk can show here first
            except OSError as e:
                if written:  # otherwise the error that stopped the run has been reported already
                    fail(f"cannot write {out}: {e.strerror or e}")
    run.summary()
    if html_out:
        _write_html(kept, html_out, None if quiet else run.console)
    run.finish()


def _refuse_photo(path: Path, option: str) -> None:
    """A report written over a photo would destroy it (and with it one of the inputs, truncated before it is
    read): an existing file named as an image is refused, a usage error."""
    from facesort.images import IMAGE_EXTENSIONS

    if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file():
        fail(f"{path} is a photo: facesort does not write over it (choose another {option})", 2)


def _check_file_target(path: Path | None, option: str = "--html", report: Path | None = None) -> None:
    """Refuse an output file that cannot be written before the run, not after it (as --out does), or that
    would replace a photo or `report`, the report this run reads or writes (a usage error)."""
    if path is None:
        return
    _refuse_photo(path, option)
    if report is not None and path.resolve() == report.resolve():
        fail(f"{option} {path} is the report {report}: the page would replace it (choose another {option})", 2)
    if not path.parent.is_dir():
        fail(f"cannot write {path}: no folder {path.parent}")
    if path.is_dir():
        fail(f"cannot write {path}: it is a folder")


def _write_html(rows: list[dict], path: Path, console=None) -> None:
    from facesort.html import build_page

    try:
        shown = build_page(rows, path)
    except OSError as e:
        fail(f"cannot write {path}: {e.strerror or e}")
    if console is not None:
        console.print(f"wrote {_plain(path)}: {shown['faces']} faces", highlight=False)


def _check_same_filesystem(paths, into: Path) -> None:
    """--hardlink: a hard link cannot cross filesystems, so every photo would be a 'not sorted' row; said
    before the run instead (a usage error)."""
    target = into
    while not os.path.exists(target) and target != target.parent:
        target = target.parent
    device = os.stat(target).st_dev
    for p in paths:
        if os.path.exists(p) and os.stat(p).st_dev != device:
            fail(
                f"--hardlink: {p} and {into} are on different filesystems, and a hard link cannot cross them "
                "(copy, the default, or --symlink instead)",
                2,
            )


@app.command(
    "sort",
    help="Copy (or move, link) photos into INTO/{HappyMale,HappyFemale,SadMale,SadFemale,NoFace}, and Unsure with "
    "--unsure-below.",
)
def sort_cmd(
    into: Annotated[Path, typer.Option("--into", help="Output folder for the four class folders.")],
    paths: Paths = None,
    files_from: FilesFrom = None,
    from_report: Annotated[
        Path | None,
        typer.Option(
            "--from-report",
            metavar="REPORT",
            help="Sort the photos of a classify report by its labels as they are (edited by hand too) instead of "
            "classifying them: no model runs.",
            show_default=False,
        ),
    ] = None,
    move: Annotated[bool, typer.Option("--move", help="Move instead of copy.")] = False,
    hardlink: Annotated[bool, typer.Option("--hardlink", help="Hard-link instead of copy.")] = False,
    symlink: Annotated[bool, typer.Option("--symlink", help="Symlink instead of copy.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; create nothing.")] = False,
    sidecars: Annotated[
        bool,
        typer.Option(
            help="Place each photo's sidecar files (DSC_0001.xmp, DSC_0001.NEF.xmp, IMG_0001.AAE, .pp3, .dop, Google "
            "Takeout's IMG_0001.jpg.json) "
            "beside it, named after it.",
        ),
    ] = True,
    multi: Annotated[
        Multi, typer.Option(help="largest: class of the largest face; all: every face's class.")
    ] = Multi.largest,
    unsure_below: Annotated[
        float | None,
        typer.Option(
            "--unsure-below",
            metavar="P",
            min=0.0,
            max=1.0,
            help="Put a photo whose face's confidence (its class's probability) is below P in INTO/Unsure/ "
            "instead of its class folder, to look over by hand (0.8: about two thirds of photos sorted, 93% of them "
            "right on the dev sets; README).",
            show_default=False,
        ),
    ] = None,
    recursive: Recursive = True,
    exclude: Exclude = None,
    detector: DetectorOpt = Detector.auto,
    min_face: MinFace = 0,
    sideways: Sideways = False,
    device: DeviceOpt = Device.auto,
    batch_size: BatchSize = 64,
    workers: Workers = _default_workers(),
    model: ModelOpt = None,
    max_pixels: MaxPixels = MAX_PIXELS,
    verbose: Verbose = False,
    quiet: Quiet = False,
    html_out: HtmlOpt = None,
) -> None:
    from facesort.pipeline import group_by_image
    from facesort.sorter import (
        REPORT_NAME,
        SOURCE_KEPT,
        UNSURE_DIR,
        Sorter,
        SortReport,
        destinations,
        not_a_folder,
        not_a_photo_file,
    )

    if sum((move, hardlink, symlink)) > 1:
        fail("choose one of --move, --hardlink, --symlink", 2)
    mode = "move" if move else "hardlink" if hardlink else "symlink" if symlink else "copy"
    if from_report is not None:
        if paths or files_from:
            fail("give the photos to classify, or --from-report, not both", 2)
        if unsure_below is not None:
            fail(
                "--from-report sorts by the report's labels as they are (yours where you corrected them); "
                "--unsure-below is for the model's own labels: classify and sort in one go to use it",
                2,
            )
        groups, report_rows = _report_groups(from_report, page=html_out is not None)
        paths = list(dict.fromkeys(Path(g[0].path).parent for g in groups))  # the folders the photos are in
    else:
        paths = _inputs(paths, files_from)
    if from_report is None and any(os.path.isdir(p) and os.path.realpath(p) == os.path.realpath(into) for p in paths):
        fail(f"--into {into} is the folder being sorted: give another folder (one inside it is fine)", 2)
    if os.path.lexists(into) and not os.path.isdir(into):
        fail(f"cannot write to {into}: it is {not_a_folder(into)}")
    if hardlink:
        _check_same_filesystem(paths, into)
    _check_file_target(html_out, report=into / REPORT_NAME)
    if from_report is not None:
        _check_file_target(html_out, report=from_report)
        run = None
    else:
        walk = (paths, recursive, detector, min_face, device, batch_size, workers, model, max_pixels, verbose, quiet)
        run = _Run(*walk, exclude=[into], ignore=exclude, sideways=sideways)
        groups = group_by_image(run.results())
    try:
        sorter = Sorter(into, mode, dry_run, sidecars, unsure=unsure_below is not None)
        report = None if dry_run else SortReport(into)
    except OSError as e:
        fail(f"cannot write to {into}: {e.strerror or e}")
    from facesort.report import result_row
    from facesort.sorter import Placement

    counts: dict[str, int] = {}
    not_removed, unsure, gone, failed = 0, 0, [], 0
    stopped = (
        "; sorting stopped (the photos placed before this one are in their class folders, and a rerun once "
        "there is room finishes the job without placing any twice)"
    )
    kept = [] if html_out and run else None

    def said() -> str:
        n = sum(counts.values())
        if dry_run:
            return f"{n:,} placements planned; nothing was created"
        return f"{n:,} placements recorded in {into / REPORT_NAME}; the same command again sorts the rest"

    with _interruptible(said):
        for rows in groups:
            if kept is not None:
                kept += [result_row(r) for r in rows]
            source = rows[0].path
            labels = destinations(rows, multi.value, unsure_below or 0.0)
            why = not_a_photo_file(source) if run is None and labels else ""  # changed since the report?
            if why:
                gone += [source] if why == "file not found" else []
                placements = [Placement(source, "", labels[0], "not sorted", why)]
            else:
                placements = sorter.place_all(source, labels)
                failed += sum(p.action == "not sorted" for p in placements)  # readable, but could not be placed
            placements = placements or [Placement(source, "", "", "not sorted", rows[0].error)]
            for p in placements:
                action = f"sidecars {p.action}" if p.sidecar else p.action
                counts[action] = counts.get(action, 0) + 1
                not_removed += p.error.startswith(SOURCE_KEPT)
                unsure += p.label == UNSURE_DIR and not p.sidecar and p.action != "not sorted"
                if dry_run:
                    with _output_errors("-"):
                        print(f"{p.source} -> {p.destination or '(not sorted: ' + p.error + ')'}", flush=True)
                else:
                    # Sorting on without a record of what went where would leave the user guessing: it stops.
                    with _output_errors(into / REPORT_NAME, stopped):
                        report.write(sorter.run_id, p)
    if report:
        report.close()
    if run:
        run.summary("facesort sort")
    if not quiet:
        below = f" ({unsure} in {UNSURE_DIR}/: confidence below {unsure_below:g})" if unsure_below is not None else ""
        _err_console().print((_counted(counts) or "nothing to sort") + below)
    if not_removed:
        _err_console().print(
            f"[yellow]warning:[/] {not_removed} files are in their class folders but could not be removed from "
            f"where they were (see the error column of {_plain(into / REPORT_NAME)})"
        )
    if html_out:
        _write_html(kept if run else report_rows, html_out, None if quiet else _err_console())
    if run:
        run.finish()
    elif gone:
        relative = any(not os.path.isabs(p) for p in gone)
        fail(
            f"{_joined(gone)} {'does' if len(gone) == 1 else 'do'} not exist now ('not sorted' rows in "
            f"{_plain(into / REPORT_NAME)}; "
            + ("the other photos of the report were sorted)" if set(counts) - {"not sorted"} else "nothing was sorted)")
            + ("; the report's relative paths are read from the current folder, as classify wrote them" * relative)
        )
    if failed:  # as cp does: the others placed, the exit code says not all were
        fail(
            f"{failed} file{'s' * (failed > 1)} could not be placed: the 'not sorted' rows of "
            f"{_plain(into / REPORT_NAME)} say why, and the same command places {'them' if failed > 1 else 'it'} "
            "once that is mended"
        )


def _read_report_file(path: Path) -> tuple[list[dict], set[str]]:
    """A classify report's rows (CSV or JSON Lines, told by content) and its columns (a CSV's header, even
    without rows); a file that cannot be read is one sentence and exit 2."""
    import csv

    from facesort.report import csv_reader, read_report

    try:  # utf-8-sig: a report saved by a spreadsheet may start with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
            rows = read_report(f)
            f.seek(0)
            return rows, set(rows[0] if rows else csv_reader(f).fieldnames or ())
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror or e}", 2)
    except ValueError as e:
        fail(f"{path} {e}", 2)
    except csv.Error as e:
        fail(f"{path} is not a readable CSV file ({e})", 2)


def _counted(counts: dict[str, int]) -> str:
    """What sort or unsort did, as one line: "12 copied, 3 sidecars copied" ("" for nothing)."""
    return ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))


def _report_groups(path: Path, page: bool = False):
    """--from-report: the report's photos as sort places them, and its rows (checked for an HTML page too where
    `page`); usage errors exit 2."""
    from facesort.html import check_rows
    from facesort.sorter import groups_from_report

    rows, columns = _read_report_file(path)
    missing = {"path", "status", "label"} - columns if rows or columns else set()
    if missing:
        fail(f"{path} is not a facesort classify report (no column {', '.join(sorted(missing))})", 2)
    try:
        groups = groups_from_report(rows)
    except ValueError as e:
        fail(f"{path}, {e}", 2)
    if page:
        try:
            check_rows(rows)
        except ValueError as e:
            fail(f"{path} cannot be shown on an --html page: {e}", 2)
    return groups, rows


@app.command()
def unsort(
    into: Annotated[Path, typer.Argument(help="A folder that facesort sort wrote (it holds facesort-report.csv).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; change nothing.")] = False,
    quiet: Quiet = False,
) -> None:
    """Put back what sort placed in INTO, by its report: moved photos return, copies and links go."""
    from facesort.sorter import (
        REPORT_NAME,
        SortReport,
        Unsorter,
        read_sort_report,
        relative_paths_problem,
        to_undo,
    )

    try:
        rows = to_undo(read_sort_report(into))
    except ValueError as e:
        fail(str(e), 2)
    problem = relative_paths_problem(rows, into)
    if problem:
        fail(problem, 2)
    unsorter = Unsorter(into, dry_run)
    report = None
    if not dry_run:
        try:
            report = SortReport(into)
        except OSError as e:
            fail(f"cannot write to {into}: {e.strerror or e}")
    counts: dict[str, int] = {}
    kept = 0

    def said() -> str:
        return f"{sum(counts.values()):,} files put back or planned; the same command again puts back the rest"

    from collections import Counter

    waiting = Counter(row["destination"] for row in rows)
    with _interruptible(said):
        for row in rows:
            waiting[row["destination"]] -= 1
            p = unsorter.undo(row, needed=waiting[row["destination"]] > 0)
            counts[p.action] = counts.get(p.action, 0) + 1
            kept += p.action == "kept"
            if dry_run:
                shown = {"would return": p.source, "would remove": f"(remove: {p.source} holds the same photo)"}
                with _output_errors("-"):
                    print(f"{p.destination} -> {shown.get(p.action) or f'({p.action}: {p.error})'}", flush=True)
            else:
                with _output_errors(into / REPORT_NAME, "; putting back stopped (a rerun goes on)"):
                    report.write(unsorter.run_id, p)
    if report:
        report.close()
        unsorter.remove_empty_folders()
    if not quiet:
        _err_console().print(_counted(counts) or "nothing to put back")
    if kept:
        fail(f"{kept} files stay in {_plain(into)} (why: the error column of {_plain(into / REPORT_NAME)})")


@app.command()
def report(
    csv_file: Annotated[
        Path, typer.Argument(help="A report written by facesort classify (CSV, or JSON Lines from --format jsonl).")
    ],
    html_out: Annotated[Path, typer.Option("--html", help="The HTML page to write.")],
) -> None:
    """Turn a report into one HTML page: faces by class, least confident first, no-face and error files."""
    _check_file_target(html_out, report=csv_file)
    rows, _ = _read_report_file(csv_file)
    from facesort.html import NUMBERS, check_rows
    from facesort.images import hide_decoder_messages

    missing = {"path", "status", "label", *NUMBERS} - set(rows[0] if rows else {})
    if missing:
        fail(f"{csv_file} is not a facesort report (no column {', '.join(sorted(missing))})", 2)
    try:
        check_rows(rows)
    except ValueError as e:
        fail(f"{csv_file} is not a report facesort can show: {e}", 2)
    hide_decoder_messages()  # thumbnails are cut from the photos: a damaged one is a card without a picture
    _write_html(rows, html_out, _err_console())


@app.command()
def evaluate(
    folder: Annotated[
        Path,
        typer.Argument(
            help="Folder with HappyMale/, HappyFemale/, SadMale/, SadFemale/ (any case; happy_male/ too) "
            "or see --labels."
        ),
    ],
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            help="CSV file labelling the photos instead of class folders: a column file (or path, filename, "
            "image; relative to FOLDER) and a column class (or label: HappyMale, HappyFemale, SadMale or "
            "SadFemale), or instead columns emotion (happy/sad) and gender (male/female); only the photos it "
            "names are measured.",
        ),
    ] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Write the figures as JSON here.")] = None,
    plots: Annotated[Path | None, typer.Option("--plots", help="Write the confusion matrix PNG here.")] = None,
    detector: DetectorOpt = Detector.auto,
    min_face: MinFace = 0,
    sideways: Sideways = False,
    device: DeviceOpt = Device.auto,
    batch_size: BatchSize = 64,
    workers: Workers = _default_workers(),
    model: ModelOpt = None,
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Measure the model on labelled photos: accuracy, per-class P/R/F1, confusion, emotion and gender."""
    import json

    from facesort.evaluate import by_confidence, labelled_files, metrics, predict_folder

    try:
        files = labelled_files(folder, labels)
    except ValueError as e:
        fail(str(e), 2)
    _check_file_target(json_out, "--json")
    if plots is not None and plots.exists() and not plots.is_dir():
        fail(f"cannot write to {plots}: it is a file, not a folder")
    if plots is not None and os.path.lexists(plots / "confusion.png"):
        from facesort.plots import written_by_facesort

        if not written_by_facesort(plots / "confusion.png"):
            fail(
                f"{plots / 'confusion.png'} was not written by facesort: facesort does not write over it "
                "(choose another --plots folder)",
                2,
            )
    walk = ([folder], True, detector, min_face, device, batch_size, workers, model, MAX_PIXELS, verbose, quiet)
    run = _Run(*walk, sideways=sideways)
    errors: list[tuple[str, str]] = []
    confidences: list[float] = []
    y_true, y_pred = predict_folder(
        folder, run.classifier, run.detector, batch_size, workers, files=files, errors=errors, confidences=confidences
    )
    if errors:
        shown = "; ".join(f"{p}: {e}" for p, e in errors[:3]) + ("; ..." if len(errors) > 3 else "")
        _err_console().print(
            f"[yellow]warning:[/] {len(errors)} labelled photo(s) could not be read and count as no face found: "
            f"{_plain(shown)}",
            highlight=False,
        )
    figures = metrics(y_true, y_pred) | {"by_confidence": by_confidence(y_true, y_pred, confidences)}
    show_metrics(figures)
    if json_out:
        try:
            json_out.write_text(json.dumps(figures, indent=2) + "\n")
        except OSError as e:
            fail(f"cannot write {json_out}: {e.strerror or e}")
    if plots:
        from facesort.plots import confusion_png

        try:
            plots.mkdir(parents=True, exist_ok=True)
            confusion_png(figures, plots / "confusion.png")
        except OSError as e:
            fail(f"cannot write {plots / 'confusion.png'}: {e.strerror or e}")


def show_metrics(figures: dict) -> None:
    """Rich tables of evaluate's figures, on stdout (they are the command's output)."""
    from rich.table import Table

    console = _console()
    head = Table(title=f"{figures['images']} labelled photos")
    for col in ("", "value", "95% interval"):
        head.add_column(col, justify="right" if col else "left")
    intervals = figures.get("interval_95", {})
    for key in ("accuracy", "emotion_accuracy", "gender_accuracy", "emotion_accuracy_women", "emotion_accuracy_men"):
        value, interval = figures[key], intervals.get(key)
        head.add_row(
            key.replace("_", " "),
            "-" if value is None else f"{value:.2%}",
            f"{interval[0]:.1%} - {interval[1]:.1%}" if interval else "-",
        )
    head.add_row("photos with no face found", str(figures["no_face"]), "")
    console.print(head)
    per = Table(title="per class")
    for col in ("class", "precision", "recall", "F1", "photos"):
        per.add_column(col, justify="right" if col != "class" else "left")
    for c, m in figures["per_class"].items():
        per.add_row(
            c, *(f"{m[k]:.2%}" if m[k] is not None else "n/a" for k in ("precision", "recall", "f1")), str(m["support"])
        )
    console.print(per)
    conf = figures["confusion"]
    table = Table(title="confusion (rows: true, columns: predicted)")
    table.add_column("")
    for c in conf["columns (predicted)"]:
        table.add_column(c, justify="right")
    for name, counts in zip(conf["rows (true)"], conf["counts"]):
        table.add_row(name, *map(str, counts))
    console.print(table)
    if figures.get("by_confidence"):
        unsure = Table(title="sort --unsure-below P (the others to Unsure/)")
        for col in ("P", "in their class", "right there", "95% interval"):
            unsure.add_column(col, justify="right")
        for row in figures["by_confidence"]:
            interval = row["interval_95"]
            unsure.add_row(
                f"{row['unsure_below']:g}",
                f"{row['sorted']} ({row['sorted_share']:.1%})",
                "-" if row["accuracy"] is None else f"{row['accuracy']:.2%}",
                f"{interval[0]:.1%} - {interval[1]:.1%}" if interval else "-",
            )
        console.print(unsure)


@app.command()
def info(model: ModelOpt = None) -> None:
    """Print the model card: input, crop convention, classes, metrics, training."""
    import json

    from facesort.model import DEFAULT_MODEL_DIR, ModelError, load_card

    try:
        card = load_card(model)
    except ModelError as e:
        fail(str(e))
    console = _console()
    console.print(f"[bold]{_plain(card.get('name', 'model'))}[/] in {_plain(model or DEFAULT_MODEL_DIR)}")
    keys = ("classes", "input", "crop", "outputs", "metrics", "calibration", "gender_threshold", "architecture")
    summary = {k: card[k] for k in keys if card.get(k) is not None}
    training = card.get("training", {})
    training_keys = (
        "command",
        "commit",
        "approach",
        "seconds",
        "peak_memory_mb",
        "resumed_with",
        "machine",
        "reproduce",
        "held_out_also_trained_on",
    )
    summary["training"] = {k: training[k] for k in training_keys if training.get(k) is not None}
    summary["versions"] = card.get("versions")
    if card.get("remeasured"):
        summary["remeasured"] = {k: card["remeasured"].get(k) for k in ("date", "command", "why")}
    console.print_json(json.dumps(summary))


@app.command(
    help="Train the four-class model on your two datasets and write MODEL_DIR (ONNX + model card). Stopped, the "
    "same command goes on from the models and epochs it finished."
)
def train(
    happy: Annotated[
        list[Path],
        typer.Option(
            "--happy",
            help="Happy/sad training data, repeatable: Happy House HDF5 files, or folders of photos in happy/ "
            "and sad/, or in the class folders sort writes (HappyMale/, ...: each photo's emotion).",
        ),
    ],
    gender: Annotated[
        list[Path],
        typer.Option(
            "--gender",
            help="Gender training data, repeatable: a folder of face crops in Training/ and Validation/, or in "
            "female/ and male/ (names in any letter case), or a folder of photos in the class folders sort writes "
            "(HappyMale/, ...: each photo's gender).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Model folder to write.")],
    happy_test: Annotated[
        list[Path] | None,
        typer.Option("--happy-test", help="Held-out happy/sad data to report on (HDF5 files or folders, as --happy)."),
    ] = None,
    calibrate: Annotated[
        list[Path] | None,
        typer.Option(
            "--calibrate",
            help="Labelled happy/sad data (HDF5 files or folders, as --happy) that set the happy/sad threshold "
            "(an offset in the graph).",
        ),
    ] = None,
    balance_gender: Annotated[
        bool,
        typer.Option(
            "--balance-gender",
            help="Set the male/female threshold (an offset in the graph) on the gender validation images, so "
            "women and men are misread about equally often (the validation figure is then not independent).",
        ),
    ] = False,
    landmark_teacher: Annotated[
        bool,
        typer.Option(
            "--landmark-teacher",
            help="Teach emotion on the gender images with the stage-1 models and, equally, a probe on "
            "MediaPipe's face-landmark network (fetched with pip download; training/EXPERIMENTS.md).",
        ),
    ] = False,
    emotion_epochs: Annotated[int, typer.Option(min=1)] = 80,
    transfer_epochs: Annotated[int, typer.Option(min=1)] = 34,
    teachers: Annotated[int, typer.Option(min=1, help="Stage-1 emotion models averaged as the teacher.")] = 3,
    students: Annotated[
        int, typer.Option(min=1, help="Stage-2 models (from different stage-1 models) averaged in the graph.")
    ] = 2,
    rounds: Annotated[
        int, typer.Option(min=1, help="Stage-2 runs; each after the first is taught emotion by the one before.")
    ] = 1,
    max_gender_images: Annotated[int, typer.Option(min=0, help="Use at most this many gender images (0: all).")] = 0,
    crop_detector: Annotated[
        TrainDetector,
        typer.Option(
            "--detector",
            help="Finds the faces in the training images. haar: the Haar cascades, as the shipped model was "
            "trained (measured better on the happy/sad test files, training/EXPERIMENTS.md); auto: as classify "
            "does by default. Held-out figures are always measured on classify's crops.",
        ),
    ] = TrainDetector.haar,
    happy_detector: Annotated[
        TrainDetector | None,
        typer.Option(
            "--happy-detector",
            help="Finds the faces in the happy/sad images instead of --detector (the gender images keep it); "
            "in the photo folders of --happy and --gender instead of auto, the detector classify uses.",
        ),
    ] = None,
    seed: int = 0,
    evaluate_dir: Annotated[
        Path | None, typer.Option("--evaluate", help="Labelled four-class folder to measure, for the card only.")
    ] = None,
) -> None:
    try:
        from training.train import TrainConfig, import_tensorflow, kept_work
        from training.train import train as run_training

        # All of the train extra, before any work: tf2onnx and matplotlib are otherwise first imported at the
        # end of a run (the export, the card's plots), which would lose the whole training to a traceback.
        import_tensorflow()
        import h5py  # noqa: F401
        import matplotlib  # noqa: F401
        import onnx  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as e:
        missing = f"{e.name.split('.')[0]} is not installed" if e.name else str(e)
        fail(
            f"training needs the train extra, and {missing}: pip install 'facesort[train]' "
            "(TensorFlow 2.21 runs on Python 3.11 to 3.13)"
        )
    from training.data import DataError

    cfg = TrainConfig(
        happy=[str(p) for p in happy],
        gender=str(gender[0]) if len(gender) == 1 else [str(p) for p in gender],
        out=str(out),
        happy_test=[str(p) for p in happy_test or []],
        calibrate=[str(p) for p in calibrate or []],
        balance_gender=balance_gender,
        landmark_teacher=landmark_teacher,
        emotion_epochs=emotion_epochs,
        transfer_epochs=transfer_epochs,
        teachers=teachers,
        students=students,
        rounds=rounds,
        max_gender_images=max_gender_images,
        detector=crop_detector.value,
        happy_detector=happy_detector.value if happy_detector else None,
        seed=seed,
        evaluate=str(evaluate_dir) if evaluate_dir else None,
    )
    from facesort.images import hide_decoder_messages
    from training.cli_progress import TrainingProgress

    hide_decoder_messages()  # a damaged training image is skipped and counted in the card

    def stopped() -> str:
        said = f"training stopped; no model was written to {out} (one already there is unchanged)"
        kept = kept_work(out)
        return said + (f"; the same command goes on from {kept}" if kept else "")

    try:
        with _interruptible(stopped):
            with TrainingProgress() as progress:
                card = run_training(cfg, progress.report)
    except DataError as e:
        fail(str(e), 2)
    except OSError as e:  # a full disk, a folder gone: said in a sentence, what was finished kept
        fail(f"{e.strerror or e}{f' ({e.filename})' if e.filename else ''}: {stopped()}")
    progress.figures(card)


def _flags_without_a_value_type(command) -> None:
    """typer 0.29 labels every option with its type in --help, flags too (`--dry-run <bool>`), which reads as
    if a flag took a value: an empty metavar leaves a flag's type column blank, --help's own included."""
    for param in [*command.params, command.get_help_option(typer.Context(command))]:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _flags_without_a_value_type(sub)


def main() -> None:
    command = typer.main.get_command(app)
    _flags_without_a_value_type(command)
    command()
