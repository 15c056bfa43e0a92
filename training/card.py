"""The model card's human half: MODEL_CARD.md with confusion matrices and training curves as PNG."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from facesort.plots import confusion_png


def binary_confusion(y_true: np.ndarray, p: np.ndarray, names: tuple[str, str]) -> dict:
    """The evaluate-style figures dict for a two-class task (names for label 0, 1)."""
    pred = (p >= 0.5).astype(int)
    counts = [[int(((y_true == a) & (pred == b)).sum()) for b in (0, 1)] for a in (0, 1)]
    return {
        "images": len(y_true),
        "accuracy": float((pred == y_true).mean()),
        "confusion": {"rows (true)": list(names), "columns (predicted)": list(names), "counts": counts},
    }


def curves_png(history: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    axes[0].plot(history["emotion_loss"], label="loss")
    axes[0].plot(history["emotion_acc"], label="train accuracy (augmented)")
    axes[0].set_title("stage 1: emotion on the happy/sad set")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    t = history["transfer"]
    for key in ("gender_loss", "emotion_loss_gender_set", "happy_loss", "gender_acc", "gender_val_acc"):
        axes[1].plot([h[key] for h in t], label=key.replace("_", " "))
    axes[1].set_title("stage 2: transfer (gender + emotion)")
    runs = len({(h.get("round", 1), h.get("student", 1)) for h in t})
    axes[1].set_xlabel("epoch" if runs == 1 else f"epoch ({runs} stage-2 models, one after another)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def reproduce_line(r: dict) -> str:
    """The model card's sentence on retraining the model at a later commit (model.json training.reproduce)."""
    return f"Retrained on {r['date']} at commit `{r['commit']}` by `{r['command']}`: {r['result']}"


def write_markdown(card: dict, out: Path, confusions: dict[str, dict]) -> None:
    """MODEL_CARD.md beside model.json; confusions maps a title to an evaluate-style figures dict."""
    images = []
    for i, (title, figures) in enumerate(confusions.items()):
        name = f"confusion_{i}.png"
        confusion_png(figures, out / name, title=f"{title}: accuracy {figures['accuracy']:.1%}")
        images.append((title, name))
    curves_png(card["training"]["history"], out / "curves.png")
    m, t = card["metrics"], card["training"]
    lines = [
        f"# {card['name']}",
        "",
        f"Created {card['created']} by `{t['command']}`.",
        "",
        "## Contract (read by facesort at load time from model.json)",
        "",
        f"- input: `{card['input']['name']}`, uint8 RGB, (N, {card['input']['size']}, {card['input']['size']}, 3);"
        f" {card['input']['normalisation']}",
        f"- crop: {card['crop']['convention']}; scale {card['crop']['scale']}",
        *(
            f"- {label}: {card['crop'][key]}"
            for key, label in (
                ("detector", "faces of the training images found by"),
                ("happy_detector", "faces of the happy/sad images found by"),
                ("measured_with", "figures measured on crops found by"),
            )
            if card["crop"].get(key)
        ),
        "- outputs: " + "; ".join(f"`{k}` {v}" for k, v in card["outputs"].items()),
        f"- classes, in order: {', '.join(card['classes'])}",
        f"- {card['architecture']['kind']}, {card['architecture']['parameters']:,} parameters, "
        f"{card['onnx_bytes'] / 1e6:.2f} MB ONNX",
        "",
        "## Approach",
        "",
        t["approach"] + ".",
        "",
        "## Figures",
        "",
        "| task | data | accuracy |",
        "| --- | --- | ---: |",
    ]
    for task, values in m.items():
        for data, value in values.items():
            if isinstance(value, float):
                lines.append(f"| {task} | {data} | {value:.2%} |")
    again = card.get("remeasured")
    if again:
        lines += [
            "",
            f"Figures measured again on {again['date']} by `{again['command']}`: {again['why']} "
            "The stage-1 figures are from training and were not measured again; the figures before are in "
            "model.json (`remeasured.previous_metrics`).",
        ]
        for e in again.get("earlier", []):
            lines.append(f"Measured again before that on {e['date']}: {e['why']}")
    overlap = card["training"].get("held_out_also_trained_on")
    if overlap:
        lines += [
            "",
            "**Not held out:** "
            + "; ".join(f"`{name}` holds {n} of the training images" for name, n in overlap.items())
            + ", so their figures overstate what the model does on images it has not seen.",
        ]
    cal = card.get("calibration")
    if cal:
        lines += [
            "",
            f"Happy/sad threshold: emotion logit offset {cal['emotion_logit_offset']:+.2f}, set on "
            + ", ".join(f"`{Path(f).name}`" for f in cal["files"])
            + " (balanced accuracy "
            + "; ".join(f"{k} {v['before']:.1%} -> {v['after']:.1%}" for k, v in cal["balanced_accuracy"].items())
            + "). Emotion figures on those files are therefore not independent; `emotion_uncalibrated` gives "
            "them before the offset.",
        ]
    gt = card.get("gender_threshold")
    if gt:
        b, a, x = gt["before"], gt["after"], gt["cross_fit"]
        lines += [
            "",
            f"Male/female threshold: gender logit offset {gt['gender_logit_offset']:+.2f}, set on the "
            f"{gt['images']:,} gender validation images for the best balanced accuracy: women {b['women']:.1%} -> "
            f"{a['women']:.1%}, men {b['men']:.1%} -> {a['men']:.1%}, all {b['accuracy']:.2%} -> "
            f"{a['accuracy']:.2%}. The validation figure is therefore not independent of it; chosen on half of "
            f"each class and measured on the other half (both ways), it measures {x['accuracy']:.2%} (women "
            f"{x['women']:.1%}, men {x['men']:.1%}).",
        ]
    four = card.get("fourclass")
    if four:
        lines += [
            "",
            f"Four-class, through `facesort evaluate` (face detection included) on {four['folder']}: "
            f"accuracy {four['accuracy']:.2%}, emotion {four['emotion_accuracy']:.2%} "
            f"(women {four['emotion_accuracy_women']:.2%}, men {four['emotion_accuracy_men']:.2%}), "
            f"gender {four['gender_accuracy']:.2%}, {four['no_face']} photos with no face found.",
        ]
    lines += [
        "",
        f"Training: {t['seconds'] / 60:.1f} minutes"
        + (f", peak memory {t['peak_memory_mb']:.0f} MB" if t.get("peak_memory_mb") is not None else "")
        + f" on {t['machine']}."
        + (f" Resumed after a stop: {_resumed(t['resumed_with'])}." if t.get("resumed_with") else ""),
        *(["", reproduce_line(t["reproduce"])] if t.get("reproduce") else []),
        "",
        "## Confusion matrices",
        "",
    ]
    for title, name in images:
        lines += [f"### {title}", "", f"![{title}]({name})", ""]
    lines += ["## Training curves", "", "![training curves](curves.png)", ""]
    (out / "MODEL_CARD.md").write_text("\n".join(lines))


def part_way(name: str, epochs: int) -> str:
    """How the card's `resumed_with` names a model that a stopped run had trained part-way (read by _resumed)."""
    return f"{name} (epochs 1-{epochs})"


_PART_WAY = re.compile(r"(.+) \(epochs 1-(\d+)\)")


def _resumed(names: list[str]) -> str:
    """The card's `resumed_with` in words: the models restored from a stopped run, and a model it had trained
    part-way ("stage2-r1-s1 (epochs 1-12)", part_way)."""
    part = [m for n in names if (m := _PART_WAY.fullmatch(n))]
    whole = len(names) - len(part)
    said = [f"{whole} model{'s' * (whole > 1)} restored"] if whole else []
    said += [f"{m[1]} continued after {m[2]} of its epochs" for m in part]
    return " and ".join(said) + " from the stopped run (their training time counted, the peak memory this run's)"
