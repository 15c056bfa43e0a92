"""What `facesort train` shows: the stage, a bar per stage with loss and accuracy, then the figures."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

SPEED_WINDOW = 3600.0  # seconds of epochs the time left is estimated from


class TrainingProgress:
    def __init__(self) -> None:
        self.console = Console(stderr=True, emoji=False)  # names as they are (facesort.cli._console)
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(),
            TextColumn("left"),
            TimeRemainingColumn(),  # the bar's, from its epochs so far: stage 2 takes most of a run
            console=self.console,
            # rich estimates the speed from the updates of the last 30 s by default, and a stage-2 epoch takes
            # 30-110 s on two cores: with one update in the window, the time left was never shown.
            speed_estimate_period=SPEED_WINDOW,
        )
        self.tasks: dict[str, int] = {}

    def __enter__(self) -> TrainingProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def report(self, kind: str, text: str, **metrics) -> None:
        """Callback for training.train.train: kind is stage, epoch or info."""
        if kind == "epoch":
            name, _, counts = text.rpartition(" ")
            done, total = (int(v) for v in counts.split("/"))
            if name not in self.tasks:
                self.tasks[name] = self.progress.add_task(name, total=total, metrics="")
            shown = "  ".join(f"{k} {float(v):.4f}" for k, v in metrics.items())
            self.progress.update(self.tasks[name], completed=done, metrics=shown)
        else:
            text = escape(text)  # paths in it are not markup
            self.progress.console.print(f"[bold]{text}[/]" if kind == "stage" else text, highlight=False)

    def figures(self, card: dict) -> None:
        table = Table(title="model figures")
        table.add_column("figure")
        table.add_column("value", justify="right")
        for task, values in card["metrics"].items():
            for name, value in values.items():
                table.add_row(escape(f"{task}: {name}"), f"{value:.2%}" if isinstance(value, float) else str(value))
        t = card["training"]
        table.add_row("training time", f"{t['seconds'] / 60:.1f} min")
        if t.get("peak_memory_mb") is not None:
            table.add_row("peak memory", f"{t['peak_memory_mb']:.0f} MB")
        table.add_row("ONNX size", f"{card['onnx_bytes'] / 1e6:.2f} MB")
        self.console.print(table)
