"""facesort benchmarks: `python -m bench` writes BENCHMARKS.md (median of several runs per figure).

Measures, on ../shared/data: the model alone at several batch sizes (and Keras model.predict beside it
when the train extra is installed), whole photos end to end with the time split by stage, face crops end
to end beside the read-and-decode-only floor, peak memory at 30,000 files, and start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from facesort import usable_cores

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACESORT_SHARED", ROOT.parent / "shared")) / "data"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = usable_cores()
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{cpu}, {cores} cores, {mem:.0f} GiB, {system}"


def median_rate(fn, count: int, repeats: int) -> float:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        rates.append(count / (time.perf_counter() - t))
    return statistics.median(rates)


def real_crops(n: int = 256) -> np.ndarray:
    """Real face crops (gender/Validation through the crop convention), tiled to n."""
    from facesort.crop import crop_face, whole_image_box
    from facesort.images import read_image

    files = sorted((DATA / "gender" / "Validation" / "female").iterdir())[:64]
    crops = [crop_face(img, whole_image_box(img))[..., ::-1] for img in map(read_image, files)]
    return np.stack([crops[i % len(crops)] for i in range(n)])


def bench_model(repeats: int) -> dict:
    from facesort.model import DEFAULT_MODEL_DIR, Classifier

    clf = Classifier(device="cpu")
    crops = real_crops(256)
    out = {"onnxruntime_cpu": {}, "keras_predict": {}}
    for batch in (1, 8, 32, 64, 256):
        x = crops[:batch]
        n = max(1, 2048 // batch)
        clf.predict(x)
        out["onnxruntime_cpu"][batch] = median_rate(
            lambda x=x, n=n: [clf.predict(x) for _ in range(n)], n * batch, repeats
        )
    keras_file = DEFAULT_MODEL_DIR / "keras_model.keras"
    try:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        import training.model  # noqa: F401 - registers the custom layer

        model = keras.models.load_model(keras_file)
    except Exception as e:  # noqa: BLE001 - the train extra is optional
        out["keras_predict"] = {"skipped": f"{type(e).__name__}: {e}"[:200]}
        return out
    for batch in (1, 8, 32, 64, 256):
        x = crops[:batch]
        n = max(2, 512 // batch) if batch > 1 else 30
        model.predict(x, batch_size=batch, verbose=0)
        out["keras_predict"][batch] = median_rate(
            lambda x=x, n=n, b=batch: [model.predict(x, batch_size=b, verbose=0) for _ in range(n)], n * batch, repeats
        )
    return out


def run_pipeline(paths, detector, workers: int, batch_size: int = 64, device: str = "cpu", cudnn_search=None):
    """(seconds, Stats) for classifying `paths` as the CLI does, the report written to /dev/null; `detector`
    is a name on the command line or a detector object."""
    from facesort.detect import make_detector
    from facesort.pipeline import Stats, classify_paths, pipeline_classifier
    from facesort.report import ReportWriter

    options = {"cudnn_search": cudnn_search} if cudnn_search else {}
    clf = pipeline_classifier(device=device, **options)  # as the CLI sets it up
    if isinstance(detector, str):
        detector = make_detector(detector, crop_scale=clf.crop_scale)
    stats = Stats()
    sink = open(os.devnull, "w")
    writer = ReportWriter(sink)
    t = time.perf_counter()
    write = 0.0
    for row in classify_paths(paths, clf, detector, batch_size, workers, stats=stats):
        w = time.perf_counter()
        writer.write(row)
        write += time.perf_counter() - w
    elapsed = time.perf_counter() - t
    stats.seconds["write"] = write
    return elapsed, stats


def bench_photos(
    folder: Path,
    detector: str,
    repeats: int,
    workers: int,
    batch_size: int = 64,
    device: str = "cpu",
    min_images: int = 0,
    cudnn_search: str | None = None,
) -> dict:
    """Images per second through classify_paths over `folder` (over and over, up to `min_images`), the
    median of `repeats` runs, with where the time went."""
    from facesort.images import iter_image_files

    files = list(iter_image_files([folder]))
    passes = max(1, -(-min_images // len(files)))
    paths = files * passes
    runs = [run_pipeline(paths, detector, workers, batch_size, device, cudnn_search) for _ in range(repeats)]
    elapsed, stats = sorted(runs, key=lambda r: r[0])[len(runs) // 2]
    total = sum(stats.seconds.values())
    return {
        "set": folder.name,
        "detector": detector,
        "images": len(paths),
        "passes": passes,
        "images_per_s": len(paths) / elapsed,
        "faces": stats.faces,
        "no_face": stats.no_face,
        "recall": 1 - stats.no_face / len(paths),
        "stage_share": {k: v / total for k, v in stats.seconds.items()},
        "stage_ms_per_image": {k: 1000 * v / len(paths) for k, v in stats.seconds.items()},
    }


def bench_crops(repeats: int, workers: int) -> dict:
    from facesort.images import iter_image_files, read_image

    paths = list(iter_image_files([DATA / "gender" / "Validation"]))

    def decode_only():
        with ThreadPoolExecutor(workers) as pool:
            for _ in pool.map(read_image, paths, chunksize=32):
                pass

    floor = median_rate(decode_only, len(paths), repeats)
    runs = sorted(run_pipeline(paths, "none", workers, 64)[0] for _ in range(repeats))
    rate = len(paths) / runs[len(runs) // 2]
    return {"images": len(paths), "images_per_s": rate, "read_decode_only_per_s": floor, "ratio": rate / floor}


GPU_BATCHES = (64, 256, 1024, 4096)
GPU_PIPELINE_BATCH = 256
# Each end-to-end run on the GPU goes over its set enough times to hold this many images: a pass over
# wild_dev (200 photos) is over in a fraction of a second there.
GPU_MIN_IMAGES = 3000
GPU_SETS = (("wild_dev", "auto"), ("fourclass_dev", "auto"), ("gender/Validation", "none"))


def gpu_name() -> str:
    try:
        proc = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else "unknown GPU"
    except (OSError, subprocess.SubprocessError):
        return "unknown GPU (no nvidia-smi)"


def bench_gpu(repeats: int, workers: int) -> dict:
    """On an NVIDIA GPU, when ONNX Runtime really runs there (the session's providers, not
    get_available_providers()): for facesort's cuDNN algorithm search and ONNX Runtime's default, the first
    call at a new batch shape, the model alone at large batches, and end to end with `workers` threads
    decoding and detecting to feed it. Elsewhere: the reason it was not measured."""
    from facesort.model import CUDNN_SEARCH, Classifier, ModelError

    try:
        probe = Classifier(device="cuda")
    except ModelError as e:
        return {
            "skipped": "ONNX Runtime could not create a CUDA session (no GPU, driver or CUDA libraries)",
            "error": str(e),
        }
    out = {
        "machine": machine(),
        "gpu": gpu_name(),
        "providers": probe.providers,
        "workers": workers,
        "batch_size": GPU_PIPELINE_BATCH,
        "default_search": CUDNN_SEARCH,
        "searches": {},
    }
    crops = real_crops(max(GPU_BATCHES))
    for search in dict.fromkeys((CUDNN_SEARCH, "HEURISTIC", "EXHAUSTIVE")):
        # The probe is a fresh session with facesort's setting: measured as it is, not made again.
        clf = probe if search == CUDNN_SEARCH else Classifier(device="cuda", cudnn_search=search)
        clf.predict(crops[:1])
        first = {}
        for shape in (203, 257):  # flushes of classify_paths; padded to 256 and 512 faces on CUDA
            t = time.perf_counter()
            clf.predict(crops[:shape])
            first[shape] = 1000 * (time.perf_counter() - t)
        res = {"first_call_ms": first, "model_only": {}, "end_to_end": []}
        print(f"  cudnn_conv_algo_search={search}: first call {first} ms", flush=True)
        for batch in GPU_BATCHES:
            x = crops[:batch]
            n = max(8, 65536 // batch)
            for _ in range(3):  # warm-up: a new shape may start cuDNN's search
                clf.predict(x)
            res["model_only"][batch] = median_rate(
                lambda x=x, n=n, clf=clf: [clf.predict(x) for _ in range(n)], n * batch, repeats
            )
            print(f"    model only, batch {batch}: {res['model_only'][batch]:,.0f} faces/s", flush=True)
        # End to end, the slower setting only once: it is the comparison, not the product.
        runs = repeats if search == CUDNN_SEARCH else 1
        for name, detector in GPU_SETS:
            run = bench_photos(DATA / name, detector, runs, workers, GPU_PIPELINE_BATCH, "cuda", GPU_MIN_IMAGES, search)
            keep = ("detector", "images", "passes", "images_per_s", "recall", "stage_ms_per_image")
            res["end_to_end"].append({k: run[k] for k in keep} | {"set": name})
            print(f"    {name}: {run['images_per_s']:,.1f} images/s, ms/image {run['stage_ms_per_image']}", flush=True)
        out["searches"][search] = res
    # The same runs with the model on this machine's CPU cores instead: what the GPU adds.
    out["cpu_end_to_end"] = []
    for name, detector in GPU_SETS:
        run = bench_photos(DATA / name, detector, 1, workers, GPU_PIPELINE_BATCH, "cpu", GPU_MIN_IMAGES)
        out["cpu_end_to_end"].append(run["images_per_s"])
        print(f"    CPU only, {name}: {run['images_per_s']:,.1f} images/s", flush=True)
    return out


def gpu_markdown(g: dict | None) -> list[str]:
    lines = ["", "## NVIDIA GPU (CUDA execution provider)", ""]
    if not g or "skipped" in g:
        reason = (g or {}).get("skipped", "not run")
        return lines + [
            f"Not measured on this machine: {reason}. `python -m bench --only gpu` on a machine with an NVIDIA GPU "
            "(and the CUDA 13 and cuDNN libraries onnxruntime-gpu loads) measures the model alone at batches "
            f"{', '.join(map(str, GPU_BATCHES))} and whole photos and crops end to end with one decoding thread per "
            "core, and adds them here.",
        ]
    searches = g["searches"]
    names = list(searches)
    head = " | ".join(f"{n}{' (facesort)' if n == g['default_search'] else ''}" for n in names)
    lines += [
        f"Machine: {g['machine']}; GPU: {g['gpu']}; session providers: {', '.join(g['providers'])}."
        + (f" Command: `{g['command']}`, {g['date']}." if "command" in g else ""),
        "",
        "cuDNN's convolution algorithm search (`cudnn_conv_algo_search`), facesort's choice against ONNX Runtime's "
        "default. Model alone, faces/s, and the first call at a batch shape the session has not seen:",
        "",
        f"| batch | {head} |",
        "| ---: |" + " ---: |" * len(names),
    ]
    lines += [
        f"| {b} | " + " | ".join(f"{searches[n]['model_only'][b]:,.0f}" for n in names) + " |"
        for b in searches[names[0]]["model_only"]
    ]
    lines += [
        f"| first call, {shape} faces | "
        + " | ".join(f"{searches[n]['first_call_ms'][shape]:,.1f} ms" for n in names)
        + " |"
        for shape in searches[names[0]]["first_call_ms"]
    ]
    lines += [
        "",
        f"End to end, {g['workers']} threads decoding and detecting, batches of {g['batch_size']} faces, each run "
        f"over a set as many times as it takes to reach {GPU_MIN_IMAGES:,} images; images/s:",
        "",
        f"| set | detector | images per run | recall | {head} | model on the CPU | decode + detect + crop, ms/image "
        "| infer, ms/image |",
        "| --- | --- | ---: | ---: |" + " ---: |" * len(names) + " ---: | ---: | ---: |",
    ]
    for i, e in enumerate(searches[names[0]]["end_to_end"]):
        ms = searches[g["default_search"]]["end_to_end"][i]["stage_ms_per_image"]
        cpu = sum(v for k, v in ms.items() if k in ("read", "decode", "detect", "crop"))
        lines.append(
            f"| {e['set']} | {e['detector']} | {e['images']:,} | {e['recall']:.1%} | "
            + " | ".join(f"{searches[n]['end_to_end'][i]['images_per_s']:,.1f}" for n in names)
            + f" | {g['cpu_end_to_end'][i]:,.1f} | {cpu:.2f} | {ms.get('infer', 0):.3f} |"
        )
    lines += [
        "",
        "Stage times are thread time per image: decode + detect + crop summed over the decoding threads, infer "
        "in the one thread that feeds the GPU. images/s x infer ms/image / 1000 is the share of the run that "
        "thread spent in ONNX Runtime (near 1: it held the others up); the same product for decoding, divided by "
        "the number of threads, is how busy they were.",
    ]
    return lines


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "facesort", *args]


def peak_memory(n_files: int) -> dict:
    """Peak resident memory of `facesort classify --detector none` over folders holding n_files photos
    (3,000: gender/Validation; 30,000: Training, Validation and Validation again)."""
    gender = DATA / "gender"
    folders = {
        3_000: [gender / "Validation"],
        30_000: [gender / "Training", gender / "Validation", gender / "Validation"],
    }[n_files]
    args = ["classify", "--detector", "none", "--out", "/dev/null", "-q", *map(str, folders)]
    code = "\n".join(
        [
            "import sys",
            "from facesort.cli import main",
            f"sys.argv = ['facesort', *{args!r}]",
            "try:",
            "    main()",
            "except SystemExit:",
            "    pass",
            # VmHWM, not ru_maxrss: ru_maxrss survives exec and would report this benchmark's own peak.
            "print(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])",
        ]
    )
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {"files": n_files, "peak_rss_mb": int(proc.stdout.split()[-1]) / 1024, "seconds": time.perf_counter() - t}


def startup(repeats: int) -> dict:
    photo = sorted((ROOT / "examples").glob("*.jpg"))[0]

    def timed(cmd):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            subprocess.run(cmd, capture_output=True, check=True)
            times.append(time.perf_counter() - t)
        return statistics.median(times)

    return {"help_s": timed(cli("--help")), "classify_one_photo_s": timed(cli("classify", str(photo), "-q"))}


def write_markdown(results: dict, path: Path) -> None:
    r = results
    lines = [
        "# facesort benchmarks",
        "",
        f"Machine: {r['machine']}  ",
        f"Command: `{r['command']}`  ",
        f"Date: {r['date']}; model: {r['model']}; each figure the median of {r['repeats']} runs.",
        "",
        "## Model only (faces per second, real face crops)",
        "",
        "| batch | ONNX Runtime CPU | Keras `model.predict` | ratio |",
        "| ---: | ---: | ---: | ---: |",
    ]
    ort, keras = r["model_only"]["onnxruntime_cpu"], r["model_only"]["keras_predict"]
    for b, v in ort.items():
        k = keras.get(b) if isinstance(keras, dict) else None
        lines.append(f"| {b} | {v:,.0f} | {f'{k:,.0f}' if k else '-'} | {f'{v / k:.0f}x' if k else '-'} |")
    if "skipped" in keras:
        lines.append(f"\nKeras skipped: {keras['skipped']}")
    lines += [
        "",
        "## Whole photos end to end",
        "",
        "`auto` (the default): BlazeFace short-range, full-range where it finds nothing, and the Haar cascades "
        "where neither finds a face; `haar`: the Haar cascades alone (the default before BlazeFace).",
        "",
        "| set | detector | images | images/s | recall (photos with a face) | read | decode | detect | crop | infer "
        "| write |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in r["photos"]:
        ms = v["stage_ms_per_image"]
        lines.append(
            f"| {v['set']} | {v['detector']} | {v['images']} | {v['images_per_s']:.1f} | {v['recall']:.1%} | "
            + " | ".join(f"{ms[k]:.2f} ms" for k in ("read", "decode", "detect", "crop", "infer", "write"))
            + " |"
        )
    lines.append("\nStage times are per image, summed over threads (decode, detect and crop run in parallel).")
    c = r["crops"]
    lines += [
        "",
        "## Face crops end to end (`--detector none`, gender/Validation)",
        "",
        f"{c['images']} crops: **{c['images_per_s']:.0f} images/s** end to end, against "
        f"{c['read_decode_only_per_s']:.0f}/s merely reading and decoding them with OpenCV on the same "
        f"{r['workers']} threads: **{c['ratio']:.0%}** of the floor.",
    ]
    lines += ["", "## Memory and start-up", "", "| measure | value |", "| --- | ---: |"]
    for mem in r["memory"]:
        lines.append(f"| peak RSS, classify {mem['files']:,} files | {mem['peak_rss_mb']:.0f} MB |")
    s = r["startup"]
    lines.append(f"| `facesort --help` | {s['help_s']:.2f} s |")
    lines.append(f"| `facesort classify` one photo, model load included | {s['classify_one_photo_s']:.2f} s |")
    # Inference and decoding share the same cores, so their costs add: the crop path cannot beat
    # 1 / (1/model + 1/floor), whatever the pipeline does around them.
    best = max(ort.values())
    bound = 1 / (1 / best + 1 / c["read_decode_only_per_s"])
    lines += [
        "",
        f"The crop path is bounded by inference here: the model alone runs at {best:,.0f} faces/s at its best batch "
        f"on the {r['workers']} cores, and the decode threads need the same cores, so the two together cannot "
        f"exceed about 1 / (1/{best:,.0f} + 1/{c['read_decode_only_per_s']:,.0f}) = {bound:,.0f}/s, "
        f"{bound / c['read_decode_only_per_s']:.0%} of the floor.",
    ]
    lines += gpu_markdown(r.get("gpu"))
    lines.append("")
    history = Path(__file__).with_name("history.md")
    if history.is_file():
        lines.append(history.read_text())
    path.write_text("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=usable_cores())
    parser.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument(
        "--only",
        choices=("all", "gpu"),
        default="all",
        help="gpu: measure only the GPU section and put it into the existing results (--json) and BENCHMARKS.md",
    )
    args = parser.parse_args()
    if not DATA.is_dir():
        sys.exit(f"benchmarks need {DATA}")
    from facesort.model import load_card

    if args.only == "gpu":
        if not args.json.is_file():
            sys.exit(f"--only gpu adds to {args.json}; run the whole benchmark first")
        results = json.loads(args.json.read_text())
        print("GPU...", flush=True)
        results["gpu"] = bench_gpu(args.repeats, args.workers) | {
            "command": "python -m bench " + " ".join(sys.argv[1:]),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
        args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
        write_markdown(results, args.out)
        print("\n".join(gpu_markdown(results["gpu"])))
        return

    results = {
        "machine": machine(),
        "command": "python -m bench " + " ".join(sys.argv[1:]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "model": load_card().get("created", "?"),
        "repeats": args.repeats,
        "workers": args.workers,
    }
    print("model only...", flush=True)
    results["model_only"] = bench_model(args.repeats)
    print("whole photos...", flush=True)
    results["photos"] = [
        bench_photos(DATA / name, detector, args.repeats, args.workers)
        for name in ("wild_dev", "fourclass_dev")
        for detector in ("auto", "haar")
    ]
    print("crops...", flush=True)
    results["crops"] = bench_crops(args.repeats, args.workers)
    print("memory...", flush=True)
    results["memory"] = [] if args.skip_memory else [peak_memory(3_000), peak_memory(30_000)]
    print("start-up...", flush=True)
    results["startup"] = startup(5)
    print("GPU...", flush=True)
    results["gpu"] = bench_gpu(args.repeats, args.workers)
    args.json.write_text(json.dumps(results, indent=2, default=str) + "\n")
    write_markdown(results, args.out)
    print(args.out.read_text())


if __name__ == "__main__":
    main()
