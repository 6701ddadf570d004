"""Figures for a pathways run: mask overlap/IoU, per-layer sparsity, mask drift, WER.

The command line is ``espnet_pathways.bin.make_plots`` (its ``--help`` and docstring show
the options).  Writes PNGs (matplotlib, Agg backend) and ``<out_dir>/index.md`` linking them:

* per mask file ``<name>`` (the file's stem):
  ``masks_<name>_overlap.png`` -- one language x language heatmap of the overlap
  ``|m_a & m_b| / |m_a|`` (row a, column b) per layer group (all weights, the encoder
  input layer ``encoder.embed``, each encoder block, ``decoder``, ``joint_network``, ...);
  ``masks_<name>_iou.png`` -- the same grid for the IoU ``|m_a & m_b| / |m_a | m_b|``
  (numbers from :mod:`espnet_pathways.reporting.mask_overlap`, also in RESULTS.md);
  ``masks_<name>_sparsity.png`` -- each language's sparsity per layer group;
* ``mask_drift.png`` (with ``--mask_drift``) -- dynamic pathways: each language pair's IoU
  at the start and at the end of training, per layer group when the file has groups;
* ``wer_<test_set>.png`` (and/or ``cer_...``) -- grouped bars, one group per language
  (plus the unweighted average when every language has a score), one bar per system,
  from ``<results_dir>/asr_<sys>/<decode_dir>/<test_set>_<lang>/score_wer/score.json``
  (the files RESULTS.md is made from; a missing file is reported and left out);
* training curves are ESPnet's own (``<results_dir>/asr_*/images/*.png``, written when
  ``use_matplotlib`` is on): they are copied to ``<out_dir>/training/<exp>/`` and listed.

Every file is written under a temporary name and moved into place when complete; a score
file that is there but unreadable, or a damaged mask file, is an error naming it.
"""
from __future__ import annotations

import json
import logging
import math
import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from espnet_pathways.fileio import atomic_output, atomic_write_text, exclusive_lock
# group_params / group_stats / layer_group live in mask_overlap now; kept importable from
# here because other code (dynamic pathways' mask_drift) imports them from plots.
from espnet_pathways.reporting.mask_overlap import (  # noqa: F401
    ALL_WEIGHTS,
    group_params,
    group_stats,
    layer_group,
    load_mask_drift,
    mask_group_tables,
    pairs,
)

logger = logging.getLogger(__name__)

METRIC_DIRS = {"WER": "score_wer", "CER": "score_cer"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, out: Path) -> Path:
    """Write ``fig`` as PNG to ``out`` (atomically) and close it."""
    with atomic_output(out) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    _plt().close(fig)
    return out


# --------------------------------------------------------------------------- masks
def plot_overlap_grid(overlap: Mapping[str, Mapping[str, Mapping[str, float]]],
                      langs: Sequence[str], out: Path, title: str,
                      what: str = "overlap |m_row & m_col| / |m_row|") -> Path:
    """A grid of language x language heatmaps, one per group (shared 0..1 colour scale)."""
    plt = _plt()
    n = len(overlap)
    ncols = min(n, max(1, math.ceil(math.sqrt(n))))
    nrows = math.ceil(n / ncols)
    size = 0.45 * len(langs) + 1.3
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size + 1.2, nrows * size + 0.8),
                             squeeze=False)
    im = None
    annotate = len(langs) <= 8
    for ax, (g, table) in zip(axes.flat, overlap.items()):
        data = [[table[a][b] for b in langs] for a in langs]
        im = ax.imshow(data, vmin=0.0, vmax=1.0, cmap="viridis")
        ax.set_title(g, fontsize=8)
        ax.set_xticks(range(len(langs)), langs, fontsize=7)
        ax.set_yticks(range(len(langs)), langs, fontsize=7)
        if annotate:
            for i in range(len(langs)):
                for j in range(len(langs)):
                    v = data[i][j]
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                            color="black" if v > 0.6 else "white")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.suptitle(f"{title}\n{what}", fontsize=9)
    if im is not None:
        fig.colorbar(im, ax=list(axes.flat), shrink=0.6)
    return save_figure(fig, out)


def plot_sparsity(sparsity: Mapping[str, Mapping[str, float]], langs: Sequence[str],
                  out: Path, title: str) -> Path:
    plt = _plt()
    groups = list(sparsity)
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(groups) + 2), 3.8))
    for lang in langs:
        ax.plot(range(len(groups)), [100 * sparsity[g][lang] for g in groups], marker="o",
                markersize=3, label=lang)
    ax.set_xticks(range(len(groups)), groups, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("sparsity (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(langs), 4))
    ax.set_title(f"{title}: per-language sparsity per layer", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def mask_figures(path: Path, out_dir: Path) -> Tuple[List[str], List[Path]]:
    """Overlap, IoU and sparsity figures for one mask file; returns (index.md lines, files)."""
    langs, sparsity, overlap, iou = mask_group_tables(path)
    name = path.stem
    f1 = plot_overlap_grid(overlap, langs, out_dir / f"masks_{name}_overlap.png", f"{path}")
    f_iou = plot_overlap_grid(iou, langs, out_dir / f"masks_{name}_iou.png", f"{path}",
                              what="IoU |m_row & m_col| / |m_row | m_col|")
    layer_sparsity = {g: v for g, v in sparsity.items() if g != ALL_WEIGHTS}
    f2 = plot_sparsity(layer_sparsity, langs, out_dir / f"masks_{name}_sparsity.png", name)
    all_w = overlap[ALL_WEIGHTS]
    lines = [f"## Masks `{path}`", "",
             "| lang | sparsity | " + " | ".join(f"overlap with {b}" for b in langs) + " |",
             "|---|---:|" + "---:|" * len(langs)]
    for a in langs:
        lines.append(f"| {a} | {100 * sparsity[ALL_WEIGHTS][a]:.1f} % | "
                     + " | ".join(f"{all_w[a][b]:.3f}" for b in langs) + " |")
    prs = pairs(langs)
    lines += ["", "IoU per layer group:", "",
              "| group | " + " | ".join(f"{a}-{b}" for a, b in prs) + " |",
              "|---|" + "---:|" * len(prs)]
    for g, table in iou.items():
        lines.append(f"| {g} | " + " | ".join(f"{table[a][b]:.3f}" for a, b in prs) + " |")
    lines += ["", f"{len(layer_sparsity)} layer groups.", "",
              f"![overlap per layer group]({f1.name})", "", f"![IoU per layer group]({f_iou.name})",
              "", f"![sparsity per layer]({f2.name})", ""]
    return lines, [f1, f_iou, f2]


def plot_drift(drift: Mapping[str, Mapping[str, Mapping[str, float]]], out: Path, title: str) -> Path:
    """Start vs end IoU of each language pair, one panel per layer group."""
    plt = _plt()
    n = len(drift)
    ncols = min(n, 3)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.0 * nrows), squeeze=False)
    for ax, (g, se) in zip(axes.flat, drift.items()):
        prs = list(dict.fromkeys([*se.get("start", {}), *se.get("end", {})]))  # file order
        x = range(len(prs))
        for k, (when, colour) in enumerate((("start", "tab:gray"), ("end", "tab:blue"))):
            ys = [se.get(when, {}).get(p_, math.nan) for p_ in prs]
            ax.bar([i - 0.2 + 0.4 * k for i in x], ys, width=0.4, label=when, color=colour)
        ax.set_xticks(list(x), prs, rotation=45, ha="right", fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_title(g, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.suptitle(f"{title}: pairwise IoU of the language masks, start vs end", fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def drift_figures(path: Path, out_dir: Path) -> Tuple[List[str], List[Path]]:
    """The dynamic pathway masks' drift (``mask_drift.json``); nothing if it is absent."""
    drift = load_mask_drift(path)
    if not drift:
        logger.warning("no mask drift in %s; no drift figure", path)
        return [], []
    f = plot_drift(drift, out_dir / "mask_drift.png", str(path))
    return [f"## Mask drift of dynamic pathways (`{path}`)", "", f"![mask drift]({f.name})", ""], [f]


# --------------------------------------------------------------------------- WER
def load_rates(results_dir: Path, systems: Sequence[str], langs: Sequence[str],
               decode_dir: str, test_set: str, metric: str) -> Dict[str, Dict[str, Optional[float]]]:
    """``rates[system][lang]`` = error rate in % from score.json, None if absent."""
    rates: Dict[str, Dict[str, Optional[float]]] = {}
    for s in systems:
        rates[s] = {}
        for lang in langs:
            p = results_dir / f"asr_{s}" / decode_dir / f"{test_set}_{lang}" / METRIC_DIRS[metric] / "score.json"
            value = None
            try:
                value = json.loads(p.read_text(encoding="utf-8"))["error_rate"]
            except FileNotFoundError:
                logger.warning("no %s for system %s, language %s: %s", metric, s, lang, p)
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise ValueError(f"system {s}, language {lang}: {p}: not a score file ({e!r})") from None
            rates[s][lang] = float(value) if isinstance(value, (int, float)) else None
    return rates


def plot_rates(rates: Mapping[str, Mapping[str, Optional[float]]], langs: Sequence[str],
               out: Path, metric: str, title: str) -> Path:
    plt = _plt()
    systems = list(rates)
    cols = list(langs)
    avg = {s: (sum(rates[s][l] for l in langs) / len(langs)
               if all(rates[s][l] is not None for l in langs) else None) for s in systems}
    if any(v is not None for v in avg.values()):
        cols.append("avg")
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(cols) * max(1, len(systems)) ** 0.5 + 2), 4.0))
    for k, s in enumerate(systems):
        xs, ys = [], []
        for i, c in enumerate(cols):
            v = avg[s] if c == "avg" else rates[s][c]
            if v is not None:
                xs.append(i - 0.4 + width * (k + 0.5))
                ys.append(v)
        bars = ax.bar(xs, ys, width=width, label=s)
        if len(systems) * len(cols) <= 40:
            ax.bar_label(bars, fmt="%.1f", fontsize=6, padding=1)
    ax.set_xticks(range(len(cols)), cols)
    ax.set_ylabel(f"{metric} (%)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, ncol=min(len(systems), 4))
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out)


def rate_figures(results_dir: Path, systems: Sequence[str], langs: Sequence[str],
                 decode_dir: str, test_set: str, metrics: Sequence[str],
                 out_dir: Path) -> Tuple[List[str], List[Path]]:
    lines: List[str] = []
    files: List[Path] = []
    for metric in metrics:
        rates = load_rates(results_dir, systems, langs, decode_dir, test_set, metric)
        if not any(v is not None for r in rates.values() for v in r.values()):
            logger.warning("no %s scores at all under %s; no %s plot", metric, results_dir, metric)
            lines += [f"## {metric}", "", f"No score files found under `{results_dir}`.", ""]
            continue
        f = plot_rates(rates, langs, out_dir / f"{metric.lower()}_{test_set}.png", metric,
                       f"{metric} on {test_set} ({decode_dir})")
        files.append(f)
        lines += [f"## {metric} per system and language ({test_set}, {decode_dir})", "",
                  "| system | " + " | ".join(langs) + " |", "|---|" + "---:|" * len(langs)]
        for s, r in rates.items():
            lines.append(f"| {s} | " + " | ".join("n/a" if r[l] is None else f"{r[l]:.2f}" for l in langs) + " |")
        lines += ["", f"![{metric}]({f.name})", ""]
    return lines, files


# --------------------------------------------------------------------------- training
def training_figures(results_dir: Path, out_dir: Path) -> Tuple[List[str], List[Path]]:
    """Copy ESPnet's own training curves (``asr_*/images/*.png``) and list them."""
    files: List[Path] = []
    lines = ["## Training curves (ESPnet)", ""]
    exps = sorted(p for p in results_dir.glob("asr_*") if (p / "images").is_dir())
    for exp in exps:
        pngs = sorted((exp / "images").glob("*.png"))
        if not pngs:
            continue
        dst = out_dir / "training" / exp.name
        dst.mkdir(parents=True, exist_ok=True)
        lines.append(f"### {exp.name}")
        lines.append("")
        for p in pngs:
            with atomic_output(dst / p.name) as tmp:
                shutil.copyfile(p, tmp)
            files.append(dst / p.name)
            lines.append(f"![{exp.name} {p.stem}](training/{exp.name}/{p.name})")
        lines.append("")
    if not files:
        lines += [f"None found (`{results_dir}/asr_*/images/*.png`; ESPnet writes them "
                  "when `use_matplotlib` is true).", ""]
    return lines, files


# --------------------------------------------------------------------------- index
def make_plots(
    out_dir: Path,
    masks: Sequence[Path] = (),
    results_dir: Optional[Path] = None,
    systems: Sequence[str] = (),
    langs: Sequence[str] = (),
    decode_dir: str = "decode_streaming",
    test_set: str = "test",
    metrics: Sequence[str] = ("WER",),
    mask_drift: Optional[Path] = None,
) -> List[Path]:
    """Every figure asked for, then ``<out_dir>/index.md`` linking them; returns the files.

    ``systems`` and ``langs`` (both or neither) ask for the error-rate figures of
    ``results_dir``; ESPnet's training curves are collected whenever ``results_dir`` is.
    A second run writing the same ``out_dir`` at the same time is refused.
    """
    if bool(systems) != bool(langs):
        raise ValueError("--systems and --langs are both needed for the error-rate plots")
    for m in masks:
        if not m.is_file():
            raise FileNotFoundError(f"{m}: mask file not found")
    lines = ["# Plots", "", "Generated by `python -m espnet_pathways.bin.make_plots`.", ""]
    written: List[Path] = []
    with exclusive_lock(out_dir, "plots"):
        parts = [mask_figures(m, out_dir) for m in masks]
        if mask_drift is not None:
            parts.append(drift_figures(mask_drift, out_dir))
        if results_dir is not None:
            if systems:
                parts.append(rate_figures(results_dir, systems, langs, decode_dir, test_set,
                                          metrics, out_dir))
            parts.append(training_figures(results_dir, out_dir))
        for part_lines, files in parts:
            lines += part_lines
            written += files
        index = out_dir / "index.md"
        atomic_write_text(index, "\n".join(lines).rstrip() + "\n")
    return written + [index]
