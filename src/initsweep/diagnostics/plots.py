"""The PNGs of a run: what a person looks at first to see why an init failed.

Inputs are plain lists and numpy arrays (``PlotInputs``), never torch tensors: the plots can be
drawn in a worker process that imports only numpy and matplotlib (``diagnostics.plot_worker``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypedDict, cast

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter, MaxNLocator  # noqa: E402

# the file names under the run's diagnostics/ artifact folder, in drawing order
PLOT_FILES = ("loss.png", "depth_at_init.png", "weight_histograms.png", "distinct_units.png")


class PlotInputs(TypedDict):
    """Everything the four plots of a run are drawn from (picklable, torch-free)."""

    name: str  # the run name, each figure's title
    losses: list[float]  # every training step's loss, in order
    records: list[dict[str, Any]]  # the diagnostics rows (step, layer, metrics, path, type)
    weights_at_init: list[Any]  # one array per weight layer
    weights_at_end: list[Any]
    layer_paths: list[str]  # each weight layer's module path (the plots' labels)


def draw_all(inputs: PlotInputs, folder: Path) -> list[Path]:
    """The four PNGs of a run into ``folder`` (``PLOT_FILES``)."""
    loss, depth, weights, units = (folder / name for name in PLOT_FILES)
    paths = inputs.get("layer_paths") or None
    return [
        loss_curves(inputs["losses"], loss, inputs["name"]),
        depth_profile(inputs["records"], depth, inputs["name"]),
        weight_histograms(
            inputs["weights_at_init"],
            inputs["weights_at_end"],
            weights,
            inputs["name"],
            paths=paths,
        ),
        distinct_units(inputs["records"], units, inputs["name"]),
    ]


def layer_label(index: int, path: str | None) -> str:
    """``3 stages.0.1.conv1``: a weight layer's index and module path (the index alone for
    an MLP, whose paths are Sequential positions: ``2`` for weight layer 1 says nothing)."""
    if not path or path.isdigit():
        return f"layer {index}"
    return f"{index} {path}"


def _finite(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    return np.where(np.isfinite(array), array, np.nan)


def loss_curves(losses: Sequence[float], path: Path, title: str) -> Path:
    """Left: the first 100 batches (S1's plot). Right: the whole curve, log scale."""
    fig, (first, whole) = plt.subplots(1, 2, figsize=(10, 3.5))
    y = _finite(losses)
    marker = "o" if len(y) < 20 else None  # a diverged run may have only a step or two
    first.plot(np.arange(1, min(100, len(y)) + 1), y[:100], lw=1, marker=marker)
    first.set(title="train loss, first 100 batches", xlabel="batch", ylabel="loss")
    whole.plot(np.arange(1, len(y) + 1), y, lw=0.8, marker=marker)
    if np.nanmin(y, initial=np.inf) > 0:
        whole.set_yscale("log")
    whole.set(title="train loss, whole run", xlabel="step")
    fig.suptitle(title)
    return _save(fig, path)


def depth_profile(records: Sequence[dict], path: Path, title: str) -> Path:
    """Activation std and gradient norm versus depth at init (S3's table as a picture)."""
    at_init = [r for r in records if r["step"] == 0]
    layers = [r["layer"] for r in at_init]
    paths = [r.get("path") for r in at_init]
    named = any(p and not str(p).isdigit() for p in paths)
    # module paths under the axis while they fit (a CNN, a small ResNet); indices for deep nets
    tall = named and len(layers) <= 24
    fig, (acts, grads) = plt.subplots(1, 2, figsize=(10, 3.5 + (1.2 if tall else 0)))
    for axis, key, label in (
        (acts, "act_std", "activation std"),
        (grads, "grad_norm", "weight gradient norm"),
    ):
        values = _finite([r[key] for r in at_init])
        axis.plot(layers, values, marker="o", ms=3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # layers are whole numbers
        if np.nanmin(values, initial=np.inf) > 0:
            axis.set_yscale("log")
        axis.set(title=f"{label} at init", xlabel="weight layer", ylabel=label)
        if tall:
            axis.set_xticks(layers, [str(p) for p in paths], rotation=90, fontsize=6)
            axis.set_xlabel("")
    fig.suptitle(title)
    return _save(fig, path, bottom=0.3 if tall else 0.14)


def weight_histograms(
    before: Sequence[Any],
    after: Sequence[Any],
    path: Path,
    title: str,
    max_layers: int = 12,
    paths: Sequence[str] | None = None,
) -> Path:
    """One panel per layer (first ``max_layers``): weights at init and at the end, titled by
    the layer's module path when ``paths`` are given."""
    shown = list(range(len(before)))
    if len(shown) > max_layers:  # deep nets: spread the panels over the depth
        shown = sorted({round(i) for i in np.linspace(0, len(before) - 1, max_layers)})
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for axis, i in zip(axes.flat, shown, strict=False):
        for weights, label in ((before[i], "init"), (after[i], "end")):
            values = np.asarray(weights, dtype=np.float64).ravel()  # float64: a tiny spread splits
            values = values[np.isfinite(values)]
            if values.size:
                lo, hi = float(values.min()), float(values.max())
                spread = hi - lo > 1e-6 * max(abs(lo), abs(hi), 1e-30)
                bins = 50 if spread else 1  # constant weights: one bar
                # one filled step artist instead of 50 bar patches: a third of the drawing time
                counts, edges = np.histogram(values, bins=bins)
                axis.stairs(counts, edges, fill=True, alpha=0.6, label=label)
        label = layer_label(i, paths[i] if paths else None)
        axis.set_title(f"{label} {tuple(before[i].shape)}", fontsize=9 if len(label) < 24 else 7)
    for axis in list(axes.flat)[len(shown) :]:
        axis.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def distinct_units(records: Sequence[dict], path: Path, title: str) -> Path:
    """Distinct units (rows of W) per layer over training: 1 means the layer acts as one unit."""
    fig, axis = plt.subplots(figsize=(6, 3.5))
    for layer in sorted({r["layer"] for r in records}):
        mine = [r for r in records if r["layer"] == layer]
        axis.plot(
            [r["step"] for r in mine],
            [r["distinct_units"] for r in mine],
            marker=".",
            label=layer_label(layer, mine[0].get("path")),
        )
    axis.set(title="distinct units per layer", xlabel="step", ylabel="distinct rows of W (filters)")
    axis.set_yscale("log")
    if len({r["layer"] for r in records}) <= 10:
        axis.legend(fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def _save(fig: plt.Figure, path: Path, bottom: float = 0.14) -> Path:
    # Matplotlib spends most of a small figure's time making tick objects: a few major ticks per
    # axis and no log-scale minor ticks halve it, and stay readable at this size.
    for axis in fig.axes:
        axis.minorticks_off()
        for which, ticks in (("x", axis.xaxis), ("y", axis.yaxis)):
            if isinstance(ticks.get_major_locator(), FixedLocator):
                continue  # ticks placed on purpose (one per layer, labelled by module path)
            if ticks.get_scale() == "linear":
                axis.locator_params(axis=cast(Literal["x", "y"], which), nbins=5)
            else:
                low, high = sorted(getattr(axis, f"get_{which}lim")())
                if low > 0 and high < 10 * low:  # under a decade: no power of ten to label
                    ticks.set_major_locator(MaxNLocator(nbins=4))
                # "0.3", "1e-05": shorter than 3x10^-1, so the axis label keeps its margin
                ticks.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    # fixed margins instead of tight_layout: the layout pass cost as much as the drawing
    fig.subplots_adjust(
        left=0.8 / fig.get_figwidth(),  # 0.8 in: room for the y label
        right=0.98,
        bottom=bottom,
        top=0.82,
        wspace=0.3,
        hspace=0.5,
    )
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
