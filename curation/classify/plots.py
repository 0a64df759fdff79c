"""PNG charts of a classify run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from curation.classify.steps.base import STANCES  # noqa: E402

COLORS = {"aligned": "#2a9d8f", "misaligned": "#e76f51", "neutral": "#8d99ae"}


def plot_summary(summary: dict, path: str | Path, title: str = "curate classify") -> Path:
    """Left: the AI-discourse score histogram (log scale); right: stance of documents flagged at 0.5."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw={"width_ratios": [2, 1]})
    h = summary["histograms"]["ai_discourse"]
    edges, counts = h["edges"], h["counts"]
    a.bar(edges[:-1], counts, width=edges[1] - edges[0], align="edge", color="#457b9d", edgecolor="white")
    a.axvline(0.5, color="black", linestyle="--", linewidth=1)
    a.set_yscale("log")
    a.set_xlabel("ai_discourse score")
    a.set_ylabel("documents (log)")
    a.set_title(f"{summary['docs']:,} documents, {summary['share_flagged_at_0.5']:.1%} at >= 0.5")
    st = summary.get("stance_of_flagged", {})
    b.bar(list(STANCES), [st.get(s, 0) for s in STANCES], color=[COLORS[s] for s in STANCES])
    b.set_title("stance of flagged documents")
    b.set_ylabel("documents")
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
