"""A PNG of the pair-quality report: one panel per number, the output splits side by side (`--plot`).

matplotlib is optional (extras `bench` and `dev`); `plot_wanted` decides from `--plot auto/on/off` and raises
with an install hint when `on` was asked for and matplotlib is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ..errors import AEPOInputError

INSTALL_HINT = "pip install matplotlib (or pip install 'aepo_datasets[bench]')"
# (report key, panel title): the panels drawn when at least one split has a value for them
PANELS = (
    ("margin_mean", "reward margin (mean)"),
    ("margin_median", "reward margin (median)"),
    ("tied_share", "share of tied prompts"),
    ("longer_wins", "share where the longer wins"),
    ("length_ratio", "length ratio chosen / rejected"),
    ("representativeness", "representativeness"),
    ("selected_similarity", "similarity among selected"),
    ("oracle_margin", "oracle margin"),
    ("oracle_accuracy", "agreement with the oracle"),
    ("oracle_spearman", "Spearman vs the oracle"),
)


def matplotlib_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def plot_wanted(plot: bool | None) -> bool:
    """`--plot`: None (auto) -> whether matplotlib is importable; True without matplotlib raises."""
    if plot is None:
        return matplotlib_available()
    if plot and not matplotlib_available():
        raise AEPOInputError(f"--plot on needs matplotlib, which is not installed: {INSTALL_HINT}, or pass --plot off.")
    return bool(plot)


def plot_quality(reports: dict[str, dict], path: Path | str, title: str | None = None) -> Path:
    """Writes `path` (PNG): for each number of `quality.quality_report` that some split has, a bar per split.

    `reports`: {split: quality_report(...)} (e.g. `quality.quality_reports(run_report.quality, splits)`)."""
    if not matplotlib_available():
        raise AEPOInputError(f"Plotting the pair-quality report needs matplotlib: {INSTALL_HINT}.")
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    panels = [(key, label) for key, label in PANELS if any(r.get(key) is not None for r in reports.values())]
    if not panels:
        raise ValueError("no pair-quality numbers to plot")
    names = list(reports)
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
    for ax, (key, label) in zip(axes.flat, panels):
        values = [reports[n].get(key) for n in names]
        ax.bar(range(len(names)), [0.0 if v is None else v for v in values], color=[f"C{i}" for i in range(len(names))])
        ax.set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        for i, v in enumerate(values):
            ax.annotate("n/a" if v is None else f"{v:.3g}", (i, 0.0 if v is None else v), ha="center",
                        va="bottom", fontsize=7)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title or "pair quality per split", fontsize=11)
    fig.tight_layout()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(target, dpi=110)
    plt.close(fig)
    return target
