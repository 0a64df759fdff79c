"""Report figures' shared plumbing: the headless backend, and one way to finish and save a chart (legend, layout,
120 dpi PNG, figure closed so long report runs do not accumulate figures)."""

from __future__ import annotations

from pathlib import Path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path, legend_axes=(), legend_size: int = 8) -> Path:
    for ax in legend_axes:
        ax.legend(fontsize=legend_size)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return path
