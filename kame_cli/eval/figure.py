"""The paper's framing in one figure: score against latency for each setup, and scores by category."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kame_cli.errors import ConfigError, printable

PANELS = (
    "voice score vs response onset",
    "oracle score vs informed oracle",
    "voice score by category",
)
SUFFIXES = (".png", ".svg", ".pdf")


def check_figure_path(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"-o {printable(str(path))}: give a .png, .svg or .pdf file name")
    if not path.parent.is_dir():
        raise ConfigError(f"-o {printable(str(path))}: folder {printable(str(path.parent))} does not exist")


def draw(setups: Sequence[dict[str, Any]], title: str) -> Any:
    """A matplotlib Figure with the three panels of `PANELS` (setups as `--json` lists them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.6))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    pairs = (("onset_p50_s", "voice_score"), ("informed_oracle_p50_s", "oracle_score"))
    for ax, panel, (x_key, y_key) in zip(axes[:2], PANELS[:2], pairs, strict=True):
        ax.set_title(panel, loc="left")
        for i, s in enumerate(setups):
            x, y = s[x_key], s[y_key]
            if x is None or y is None:
                continue  # the front-end alone has no oracle; a setup that never answered has no point
            ax.scatter([x], [y], s=70, color=colors[i % len(colors)], label=s["name"], zorder=3)
            ax.annotate(s["name"], (x, y), textcoords="offset points", xytext=(6, 6 + 11 * i), fontsize=8)
        ax.set_xlabel(f"{x_key.removesuffix('_s').replace('_', ' ')} (s after end of speech)")
        ax.set_ylabel("mean score (1-10)")
        ax.set_ylim(0, 10.5)
        placed = [s[x_key] for s in setups if s[x_key] is not None and s[y_key] is not None]
        ax.set_xlim(0, max([*placed, 0.1]) * 1.3)  # room for the labels right of the points
        ax.grid(alpha=0.3)
    ax = axes[2]
    ax.set_title(PANELS[2], loc="left")
    categories = sorted({c for s in setups for c in s["categories"]})
    width = 0.8 / max(len(setups), 1)
    for i, s in enumerate(setups):
        heights = [s["categories"].get(c, {}).get("voice_score") or 0.0 for c in categories]
        xs = [k + (i - (len(setups) - 1) / 2) * width for k in range(len(categories))]
        ax.bar(xs, heights, width, color=colors[i % len(colors)], label=s["name"])
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylabel("mean voice score (1-10)")
    ax.set_ylim(0, 10.5)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def save(setups: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib.pyplot as plt

    fig = draw(setups, title)
    try:
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)
