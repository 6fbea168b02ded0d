"""Run colours in the MLflow UI (``mlflow.runColor``, ``#rrggbb``): a hue per init config and a
shade per seed, so the spread of one colour in a chart is the seed's effect. Torch-free.
"""

from __future__ import annotations

import colorsys
from collections.abc import Iterable, Sequence

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from initsweep.vocab import RUN_COLOR_TAG

# matplotlib's tab10 without its grey: one hue per init config.
PALETTE = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#bcbd22",
    "#17becf",
)


def shade(color: str, position: float) -> str:
    """``color`` darker (``position`` 0) to lighter (1), same hue: lightness 0.28..0.72."""
    r, g, b = (int(color[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, _, saturation = colorsys.rgb_to_hls(r, g, b)
    lightness = 0.28 + 0.44 * min(max(position, 0.0), 1.0)
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return "#" + "".join(f"{round(c * 255):02x}" for c in (r, g, b))


def _numeric_first(value: str) -> tuple:
    try:
        return (0, float(value), value)
    except ValueError:
        return (1, 0.0, value)


def run_colors(runs: Iterable[tuple[str, str, str]]) -> dict[str, str]:
    """``{run_id: "#rrggbb"}`` for ``(run_id, init, seed)`` triples: a hue per init config (in
    sorted order), a shade per seed (dark = lowest seed)."""
    runs = list(runs)
    inits = sorted({init for _, init, _ in runs})
    seeds = sorted({seed for _, _, seed in runs}, key=_numeric_first)
    span = max(len(seeds) - 1, 1)
    return {
        run_id: shade(PALETTE[inits.index(init) % len(PALETTE)], seeds.index(seed) / span)
        for run_id, init, seed in runs
    }


def color_runs(client: MlflowClient, runs: Sequence[Run]) -> dict[str, str]:
    """Set ``mlflow.runColor`` on each run from its ``init`` and ``seed`` tags; returns them."""
    colors = run_colors(
        (r.info.run_id, r.data.tags.get("init", "?"), r.data.tags.get("seed", "0")) for r in runs
    )
    for run_id, color in colors.items():
        client.set_tag(run_id, RUN_COLOR_TAG, color)
    return colors
