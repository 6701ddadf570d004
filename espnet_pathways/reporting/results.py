"""``RESULTS.md`` from experiment directories (never edit it by hand).

The command line is ``espnet_pathways.bin.make_results`` (its ``--help`` and docstring
show the options).

Inputs per system ``NAME=EXP_DIR``:

* ``EXP_DIR/<decode_dir>/test_<lang>/score_wer/score.json`` and ``.../score_cer/score.json``
  (written by ``espnet_pathways.bin.score``); a missing file gives an ``n/a``
  cell and a warning, so partially finished runs still produce a table; a file that is
  there but unreadable is an error naming the system, the language and the file.
* optional ``EXP_DIR/system_info.json``: ``{"params_total": int, "params_kept": int,
  "sparsity": {lang: fraction}, "union_sparsity": fraction}`` (fractions in [0, 1]);
* optional ``EXP_DIR/compute_sources`` and the runs' ``compute.json``: the training-compute
  table (:mod:`~espnet_pathways.reporting.compute_table`);
* ``.../score_wer/{ref,hyp}.trn``: the paired tests of the paper-claims table
  (:mod:`~espnet_pathways.reporting.claims`, :mod:`~espnet_pathways.reporting.significance`).

Other inputs: mask files (``--masks``: overlap/IoU per layer group), the dynamic pathways'
``mask_drift.json`` (``--mask_drift``), ``overlap.json``, the deployment TSV, configs, the
stage times.  docs/results.md says how to read the tables.

Why generated: every number in RESULTS.md must be traceable to a score file,
and re-running after more runs finish must simply rewrite the file (the write
is atomic, and the output depends only on the inputs and the environment).

Inputs that are absent give ``n/a`` and a warning; inputs that are present but malformed
(JSON, YAML, TSV) raise :class:`ResultsInputError` naming the file, and nothing is written.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import re
import platform
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from espnet_pathways.reporting import claims
from espnet_pathways.reporting.compute_table import compute_rows, load_compute
from espnet_pathways.reporting.mask_overlap import (
    load_drift_per_language,
    load_mask_drift,
    mask_group_tables,
    pairs,
)
from espnet_pathways.reporting.significance import find_sc_stats
from espnet_pathways.reporting.voice_kinds import voice_kind_rows

logger = logging.getLogger(__name__)

NA = "n/a"
METRICS: Tuple[Tuple[str, str], ...] = (("CER", "score_cer"), ("WER", "score_wer"))
#: What every score.json (``espnet_pathways.bin.score``) holds and the tables read.
SCORE_KEYS = frozenset({"n_utt", "n_ref", "sub", "del", "ins", "error_rate", "missing"})

#: Config sections whose scalar leaves are listed as "key hyperparameters".
CONFIG_SECTIONS = (
    "frontend_conf", "specaug_conf", "encoder_conf", "decoder_conf", "joint_net_conf",
    "model_conf", "optim_conf", "scheduler_conf", "lm_conf",
)
#: Top-level scalar keys listed as-is.
CONFIG_TOP_KEYS = (
    "frontend", "specaug", "normalize", "encoder", "decoder", "model", "optim", "scheduler",
    "max_epoch", "batch_type", "batch_size", "batch_bins", "accum_grad", "grad_clip",
    "num_iters_per_epoch", "patience", "best_model_criterion", "keep_nbest_models",
    "token_type", "use_amp", "seed", "lm",
    # decoding configs
    "streaming", "decoding_window", "left_context", "beam_size", "lm_weight", "lm_token_bonus",
)
MAX_SECTION_ITEMS = 24


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------
def parse_name_value(s: str, what: str) -> Tuple[str, str]:
    """Split ``NAME=VALUE``; argparse type helper with a useful message."""
    name, sep, value = s.partition("=")
    if not sep or not name or not value:
        raise argparse.ArgumentTypeError(f"{what} must look like NAME=PATH, got {s!r}")
    return name, value


class ResultsInputError(ValueError):
    """An input of RESULTS.md is there but cannot be read; the message names it."""


def load_json(path: Path, what: str = "") -> Optional[Dict[str, Any]]:
    """Parsed JSON object, or None if ``path`` does not exist.

    A file that exists but is not a JSON object is :class:`ResultsInputError` naming
    ``what`` (e.g. the system and language) and the file: a table cell must never turn
    ``n/a`` because a score file was damaged.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ResultsInputError(f"{what}{path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise ResultsInputError(f"{what}{path}: expected a JSON object, got {type(data).__name__}")
    return data


@dataclass
class SystemScores:
    """Scores of one system: ``scores[lang][metric]`` is score.json or None."""

    name: str
    exp_dir: Path
    scores: Dict[str, Dict[str, Optional[Dict[str, Any]]]] = field(default_factory=dict)
    info: Optional[Dict[str, Any]] = None

    def rate(self, lang: str, metric: str) -> Optional[float]:
        s = self.scores.get(lang, {}).get(metric)
        if s is None or s.get("error_rate") is None:
            return None
        return float(s["error_rate"])

    def average(self, langs: Sequence[str], metric: str) -> Optional[float]:
        """Unweighted mean over languages (as in the paper); None if any is missing,
        since an average over a subset is not comparable across systems."""
        vals = [self.rate(lang, metric) for lang in langs]
        if not vals or any(v is None for v in vals):
            return None
        return sum(vals) / len(vals)  # type: ignore[arg-type]


def load_system(name: str, exp_dir: Path, decode_dir: str, langs: Sequence[str]) -> SystemScores:
    sys_scores = SystemScores(name=name, exp_dir=exp_dir)
    for lang in langs:
        sys_scores.scores[lang] = {}
        for metric, sub in METRICS:
            path = exp_dir / decode_dir / f"test_{lang}" / sub / "score.json"
            data = load_json(path, f"system {name}, language {lang}: ")
            absent = sorted(SCORE_KEYS - set(data or SCORE_KEYS))
            if absent:
                raise ResultsInputError(
                    f"system {name}, language {lang}: {path} lacks {absent}; rerun the scoring"
                )
            if data is None:
                logger.warning("missing %s for system %s, lang %s: %s", metric, name, lang, path)
            sys_scores.scores[lang][metric] = data
    sys_scores.info = load_json(exp_dir / "system_info.json", f"system {name}: ")
    return sys_scores


# --------------------------------------------------------------------------
# Formatting helpers
# --------------------------------------------------------------------------
def fmt(x: Optional[float], precision: int) -> str:
    if x is None or not math.isfinite(x):
        return NA
    return f"{x:.{precision}f}"


def fmt_pct_fraction(x: Any, precision: int) -> str:
    """A fraction in [0, 1] shown as a percentage."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return NA
    return f"{100.0 * x:.{precision}f} %"


def fmt_count(n: Any) -> str:
    """Parameter counts as e.g. ``31.2M``."""
    if not isinstance(n, (int, float)) or isinstance(n, bool):
        return NA
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.2f}{suffix}"
    return str(int(n))


def md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align_right_from: int = 1) -> str:
    header = [md_cell(h) for h in header]
    seps = ["---" if i < align_right_from else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(seps) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    return "\n".join(lines)


# --------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------
def results_table(
    systems: Sequence[SystemScores], langs: Sequence[str], precision: int,
    reference: Optional[str], extra_references: Sequence[str] = (),
) -> str:
    """Per-language CER/WER, averages, and the relative average WER against each
    reference (``reference`` first, then ``extra_references``, e.g. ``dense_ft``)."""
    header = ["System"]
    for lang in langs:
        header += [f"{lang} CER", f"{lang} WER"]
    header += ["Avg CER", "Avg WER"]
    refs = [r for r in [reference, *extra_references] if r is not None]
    ref_avgs: Dict[str, Optional[float]] = {}
    for r in refs:
        header.append(f"Rel. Avg WER vs {r}")
        ref_avgs[r] = next(s for s in systems if s.name == r).average(langs, "WER")
    rows = []
    for s in systems:
        row: List[str] = [s.name]
        for lang in langs:
            row += [fmt(s.rate(lang, "CER"), precision), fmt(s.rate(lang, "WER"), precision)]
        avg_cer, avg_wer = s.average(langs, "CER"), s.average(langs, "WER")
        for metric, avg in (("CER", avg_cer), ("WER", avg_wer)):
            if avg is None:
                logger.warning("system %s: average %s is n/a (missing languages)", s.name, metric)
        row += [fmt(avg_cer, precision), fmt(avg_wer, precision)]
        for r in refs:
            ref_avg = ref_avgs[r]
            if s.name == r:
                row.append("(reference)")
            elif avg_wer is None or ref_avg is None or ref_avg == 0:
                row.append(NA)
            else:
                row.append(f"{100.0 * (avg_wer - ref_avg) / ref_avg:+.{precision}f} %")
        rows.append(row)
    return md_table(header, rows)


def details_table(systems: Sequence[SystemScores], langs: Sequence[str], precision: int) -> str:
    """Counts behind each rate, so a reader can check n/a cells and test sizes."""
    header = ["System", "Lang", "#utt", "#words", "WER", "S/D/I (words)", "#chars", "CER",
              "missing hyps", "scored by"]
    rows = []
    for s in systems:
        for lang in langs:
            w = s.scores[lang].get("WER")
            c = s.scores[lang].get("CER")
            base = w or c or {}
            scorers = sorted({str(x.get("scorer", "-")) for x in (w, c) if x is not None})
            rows.append([
                s.name, lang,
                base.get("n_utt", NA),
                w["n_ref"] if w else NA,
                fmt(s.rate(lang, "WER"), precision),
                f"{w['sub']}/{w['del']}/{w['ins']}" if w else NA,
                c["n_ref"] if c else NA,
                fmt(s.rate(lang, "CER"), precision),
                base.get("missing", NA),
                " + ".join(scorers) or NA,
            ])
    return md_table(header, rows, align_right_from=2)


def sparsity_table(systems: Sequence[SystemScores], langs: Sequence[str], precision: int) -> Optional[str]:
    if not any(s.info for s in systems):
        return None
    header = ["System"] + [f"sparsity {lang}" for lang in langs] + [
        "union sparsity", "params kept", "params total", "kept %"]
    rows = []
    for s in systems:
        info = s.info or {}
        sp = info.get("sparsity") or {}
        kept, total = info.get("params_kept"), info.get("params_total")
        ratio = NA
        if isinstance(kept, (int, float)) and isinstance(total, (int, float)) and total:
            ratio = f"{100.0 * kept / total:.{precision}f} %"
        rows.append(
            [s.name] + [fmt_pct_fraction(sp.get(lang), precision) for lang in langs]
            + [fmt_pct_fraction(info.get("union_sparsity"), precision),
               fmt_count(kept), fmt_count(total), ratio]
        )
    return md_table(header, rows)


def overlap_section(path: Path, precision: int) -> str:
    data = load_json(path, "mask overlap: ")
    if data is None:
        logger.warning("overlap json not found: %s", path)
        return f"`{path}`: {NA}"
    langs: List[str] = list(data.get("languages") or sorted(data.get("overlap", {})))
    parts = [f"Source: `{path}`"]
    for key, title in (("overlap", "Overlap"), ("iou", "IoU")):
        mat = data.get(key)
        if not isinstance(mat, dict):
            continue
        rows = []
        for a in langs:
            row = [a]
            for b in langs:
                v = (mat.get(a) or {}).get(b)
                row.append(fmt(float(v), precision + 2) if isinstance(v, (int, float)) else NA)
            rows.append(row)
        parts.append(f"**{title}** (row vs column)\n\n" + md_table([""] + langs, rows))
    return "\n\n".join(parts)


def data_section(path: Path) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            lines = [ln.rstrip("\r\n") for ln in f if ln.strip()]
    except OSError as e:
        logger.warning("cannot read data summary %s: %s", path, e)
        return f"`{path}`: {NA}"
    if not lines:
        return f"`{path}`: (empty)"
    header = lines[0].split("\t")
    rows = [ln.split("\t") for ln in lines[1:]]
    rows = [r + [""] * (len(header) - len(r)) for r in rows]
    return f"Source: `{path}`\n\n" + md_table(header, rows)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _flatten(obj: Any, prefix: str) -> List[Tuple[str, Any]]:
    """Scalar leaves of nested dicts/lists as dotted keys (``body_conf.0.hidden_size``)."""
    if isinstance(obj, dict):
        out: List[Tuple[str, Any]] = []
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(obj, list):
        if all(not isinstance(v, (dict, list)) for v in obj):
            return [(prefix, obj)]
        out = []
        for i, v in enumerate(obj):
            out += _flatten(v, f"{prefix}.{i}")
        return out
    return [(prefix, obj)]


def config_hyperparameters(cfg: Mapping[str, Any]) -> List[Tuple[str, Any]]:
    """Key hyperparameters: selected top-level scalars, then selected *_conf leaves."""
    items: List[Tuple[str, Any]] = [(k, cfg[k]) for k in CONFIG_TOP_KEYS if k in cfg]
    for sec in CONFIG_SECTIONS:
        if sec in cfg and cfg[sec] is not None:
            leaves = _flatten(cfg[sec], sec)
            if len(leaves) > MAX_SECTION_ITEMS:
                leaves = leaves[:MAX_SECTION_ITEMS] + [(f"{sec}.…", f"{len(leaves) - MAX_SECTION_ITEMS} more")]
            items += leaves
    return items


def configs_section(configs: Sequence[Tuple[str, str]]) -> str:
    parts = []
    for name, p in configs:
        path = Path(p)
        try:
            digest = sha256_file(path)[:12]
        except OSError as e:
            logger.warning("cannot read config %s: %s", path, e)
            parts.append(f"### {name}\n\n`{path}`: {NA}")
            continue
        import yaml  # lazy: only needed when configs are listed

        try:
            with open(path, encoding="utf-8") as f:
                cfg = yaml.safe_load(f) or {}
        except yaml.YAMLError as e:
            detail = " ".join(str(e).split())  # yaml's message spans lines
            raise ResultsInputError(f"config {name}: {path}: not valid YAML ({detail})") from None
        lines = [f"### {name}", "", f"`{path}` (sha256 `{digest}`)", ""]
        hp = config_hyperparameters(cfg) if isinstance(cfg, dict) else []
        lines += [f"- `{k}`: {json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v}" for k, v in hp]
        parts.append("\n".join(lines).rstrip())
    return "\n\n".join(parts)


def _pkg_version(name: str) -> str:
    """Installed version without importing the package (torch import is slow)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(name)
    except PackageNotFoundError:
        return "not installed"
    except Exception:  # noqa: BLE001
        return NA


def git_commit(repo: Path) -> str:
    """HEAD, and "(uncommitted changes)" if a tracked file differs from it.  The results
    files the pipeline itself writes (``RESULTS*.md``) do not count: stage 16 rewrites
    RESULTS.md after stage 13 wrote it, so they always differ during a run."""
    try:
        head = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10,
        )
        if head.returncode != 0:
            return NA
        status = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no",
             "--", ".", ":(exclude)RESULTS*.md"],
            capture_output=True, text=True, timeout=10,
        )
        dirty = " (uncommitted changes)" if status.stdout.strip() else ""
        return head.stdout.strip() + dirty
    except (OSError, subprocess.SubprocessError):
        return NA


def environment_section(repo: Path) -> str:
    rows = [
        ("Date (UTC)", _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d")),
        ("Platform", platform.platform()),
        ("Python", platform.python_version()),
        ("torch", _pkg_version("torch")),
        ("torchaudio", _pkg_version("torchaudio")),
        ("espnet", _pkg_version("espnet")),
        ("CPU count", str(os.cpu_count() or NA)),
        ("Git commit", git_commit(repo)),
    ]
    return md_table(["Item", "Value"], rows, align_right_from=99)


# --------------------------------------------------------------------------
# Assembly
# --------------------------------------------------------------------------
#: pathways.sh's stage numbers: the main pipeline (RESULTS.md) and the add-language
#: stages (RESULTS_add_<code>.md), which record their times in the same stage_times.tsv.
MAIN_STAGES = range(1, 18)
ADD_LANGUAGE_STAGES = range(18, 22)


def stage_times_section(path: Path, stages: Sequence[int] = MAIN_STAGES,
                        name_prefix: str = "") -> str:
    """The pipeline's stage timings (``exp/stage_times.tsv``: date, stage, name, seconds
    and, since session 9, how many trainings/decodings the stage found done and reused).

    The latest run of each stage counts, so a rerun of one stage updates its row (also
    when its name changed, as stage 20's names the add-language modes); a run
    that reused earlier work says so in its Minutes cell ("3.0 (2 runs reused)"): its time
    is less than the stage's full cost.  When some stages ran more than once (a run in
    several invocations, a stage redone), a last row sums every recorded run: the time the
    exp dir's results really took, which the latest runs alone understate.  Only
    the ``stages`` whose name starts with ``name_prefix`` are listed: RESULTS.md shows the
    main pipeline, RESULTS_add_<code>.md the stages that added <code> (named
    ``add <code>: ...``), although one exp dir's file records both.
    """
    latest: dict = {}
    recorded = 0
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        logger.warning("no stage times %s", path)
        return NA
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) not in (4, 5):
                raise ValueError(line)
            n, name, when, sec = int(parts[1]), parts[2], parts[0], int(parts[3])
            reused = int(parts[4]) if len(parts) == 5 else 0
        except ValueError:
            raise ResultsInputError(
                f"{path}:{lineno}: expected 'date<TAB>stage<TAB>name<TAB>seconds"
                f"[<TAB>reused runs]', got {line!r}"
            ) from None
        if n in stages and name.startswith(name_prefix):
            latest[n] = (name, when, sec, reused)
            recorded += sec
    if not latest:
        logger.warning("no times of stages %d-%d in %s", stages[0], stages[-1], path)
        return NA
    def minutes(sec: int, reused: int) -> str:
        note = f" ({reused} run{'s' * (reused != 1)} reused)" if reused else ""
        return f"{sec / 60:.1f}{note}"

    rows = [(str(n), name, when, minutes(sec, reused))
            for n, (name, when, sec, reused) in sorted(latest.items())]
    total = sum(sec for _, _, sec, _ in latest.values())
    rows.append(("", "total", "", f"{total / 60:.1f}"))
    if recorded != total:
        rows.append(("", "all recorded runs of these stages (reruns included)", "",
                     f"{recorded / 60:.1f}"))
    return md_table(["Stage", "What", "Finished", "Minutes"], rows, align_right_from=3)


def replace_stage_times(text: str, table: str, heading: str,
                        block: Optional[Tuple[str, str]] = None) -> Optional[str]:
    """``text`` with the table under the line ``heading`` replaced by ``table``; inside
    the ``block`` (start, end marker lines) when given.  None when there is no such
    heading (or block) to update.

    Why: a report is written by a stage before that stage's own time is recorded (and a
    rerun of stage 13 alone would show its earlier time), so pathways.sh refreshes the
    table after recording each reporting stage's time.
    """
    lo, hi = 0, len(text)
    if block is not None:
        lo = text.find(block[0])
        hi = text.find(block[1], lo + 1) if lo >= 0 else -1
        if lo < 0 or hi < 0:
            return None
    lines = text[lo:hi].split("\n")
    try:
        at = lines.index(heading)
    except ValueError:
        return None
    first = at + 1
    while first < len(lines) and not lines[first].strip():
        first += 1
    last = first
    while last < len(lines) and lines[last].startswith("|"):
        last += 1
    if last == first and first < len(lines) and lines[first].strip() != NA:
        return None  # no table under the heading: not ours to edit
    if last == first:
        last += 1  # the "n/a" line a report writes when no times were recorded
    lines[first:last] = table.split("\n")
    return text[:lo] + "\n".join(lines) + text[hi:]


def rtf_section(systems_dirs: List[Tuple[str, str]], decode_dir: str, langs: List[str]) -> Optional[str]:
    """Streaming real-time factor per system (decoding time / audio, one CPU thread a job).

    Reads ``<exp>/<decode_dir>/<test set>/rtf`` (lines ``job rtf seconds audio_seconds``).
    """
    rows = []
    for name, exp in systems_dirs:
        cpu = audio = 0.0
        for rtf in sorted(Path(exp, decode_dir).glob("*/rtf")):
            for lineno, line in enumerate(rtf.read_text(encoding="utf-8").splitlines(), 1):
                parts = line.split()
                if not parts:
                    continue
                try:
                    if len(parts) != 4:
                        raise ValueError(line)
                    cpu += float(parts[2])
                    audio += float(parts[3])
                except ValueError:
                    raise ResultsInputError(
                        f"system {name}: {rtf}:{lineno}: expected 'job rtf seconds "
                        f"audio_seconds', got {line!r}"
                    ) from None
        if audio > 0:
            rows.append((name, f"{audio / 60:.1f}", f"{cpu / 60:.1f}", f"{cpu / audio:.3f}"))
    if not rows:
        return None
    return md_table(["System", "Audio (min)", "Decoding (CPU min)", "RTF"], rows, align_right_from=1)


def deploy_section(path: Path, precision: int) -> str:
    """The deployment table (``benchmarks/bench_deploy.py --out``, recipe stage 16): per
    system and language, zip size, CER/WER and 1-thread streaming RTF, fp32 vs int8, and
    what to ship for one language (the smallest int8 model within 1 CER point of fp32)."""
    import csv

    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f, delimiter="\t"))
    except OSError as e:
        raise ValueError(f"{path}: cannot read the deployment table ({e})") from None

    def num(r: Mapping[str, str], key: str) -> Optional[float]:
        try:
            return float(r.get(key) or "nan") if (r.get(key) or "") != "" else None
        except ValueError:
            return None

    def cell(x: Optional[float], digits: int) -> str:
        return NA if x is None or math.isnan(x) else f"{x:.{digits}f}"

    header = ["System", "Lang", "Utts", "fp32 stored as", "fp32 MB", "int8 stored as", "int8 MB",
              "int8 / dense fp32", "CER fp32", "CER int8", "WER fp32", "WER int8",
              "RTF fp32", "RTF int8"]
    table = []
    for r in rows:
        table.append([r.get("system", ""), r.get("lang", ""), r.get("utts", ""),
                      r.get("fp32_stored_as", ""), cell(num(r, "fp32_mb"), 2),
                      r.get("int8_stored_as", ""), cell(num(r, "int8_mb"), 2),
                      cell(num(r, "int8_vs_dense_fp32"), 3),
                      cell(num(r, "cer_fp32"), precision), cell(num(r, "cer_int8"), precision),
                      cell(num(r, "wer_fp32"), precision), cell(num(r, "wer_int8"), precision),
                      cell(num(r, "rtf_fp32"), 3), cell(num(r, "rtf_int8"), 3)])
    out = [md_table(header, table, align_right_from=2), "",
           "The acoustic models alone (no LM fused, whatever the main table's decoding), "
           "streaming, 1 thread, on every k-th utterance of each language's test set (Utts)."]
    fit = [r for r in rows if None not in (num(r, "cer_int8"), num(r, "cer_fp32"), num(r, "int8_mb"))
           and num(r, "cer_int8") - num(r, "cer_fp32") <= 1.0]
    if fit:
        best = min(fit, key=lambda r: num(r, "int8_mb"))
        ratio = num(best, "int8_vs_dense_fp32")
        out += ["", f"To ship one language: the smallest int8 model within 1 CER point of its "
                f"fp32 model is **{best['system']}, {best['int8_stored_as']}** "
                f"({cell(num(best, 'int8_mb'), 2)} MB"
                + (f", {cell(ratio, 3)} of the dense fp32 zip" if ratio is not None else "")
                + f"; CER {cell(num(best, 'cer_fp32'), precision)} -> "
                f"{cell(num(best, 'cer_int8'), precision)}). See docs/deploy.md."]
    return "\n".join(out)


def compute_section(langs: Sequence[str], reference: Optional[str],
                    computes: Mapping[str, Any]) -> str:
    """Training steps and utterances seen per system and language
    (:mod:`espnet_pathways.reporting.compute_table`)."""
    header, rows = compute_rows(computes, langs, reference)
    note = ("Optimizer steps of every training run that made the system (its "
            "`compute_sources`), summed; utterances seen = utterances in those steps' "
            "batches. Extra steps: the steps of the runs that are not the "
            f"{reference or 'reference'} system's own. See docs/results.md.")
    return note + "\n\n" + md_table(header, rows, align_right_from=1)


def claims_section(args: argparse.Namespace, systems: Sequence[SystemScores],
                   langs: Sequence[str], computes: Mapping[str, Any]) -> str:
    """The paper-claims table (:mod:`espnet_pathways.reporting.claims`)."""
    low = [x for x in getattr(args, "low_resource_langs", "it,nl").split(",") if x in langs]
    dense = args.reference_system or "dense"
    wer = {s.name: {lang: s.rate(lang, "WER") for lang in langs} for s in systems}
    exp_dirs = {s.name: s.exp_dir for s in systems if s.exp_dir.is_dir()}  # others: "not run"
    chosen = claims.resolve_pathways(wer, langs, exp_dirs, getattr(args, "dev_epoch", "last"))
    results = claims.evaluate_all(claims.paper_claims(dense, low), exp_dirs, wer, langs, args.decode_dir,
                             computes, resamples=getattr(args, "bootstrap_resamples", 2000),
                             seed=getattr(args, "bootstrap_seed", 0), pathways=chosen)
    overlap = load_json(Path(args.overlap_json), "mask overlap: ") if args.overlap_json else None
    header, rows = claims.claims_rows(results, overlap)
    test = ("MAPSSWE: sctk's `sc_stats` matched-pair sentence-segment word error test on the "
            "pooled utterances of the claim's languages" if find_sc_stats() else
            "sctk's `sc_stats` not found: p of record is the bootstrap's")
    note = (f"Written by the pipeline from the score directories; rule in docs/results.md. "
            f"\"pathways\" = of {' / '.join(claims.PATHWAY_SYSTEMS)}, the one with the lower dev loss"
            f" ({chosen or 'none run'}; chosen on dev, never on test). Rel. diff = (system - baseline)"
            f" / baseline of the unweighted average WER over the claim's languages. {test}; "
            f"bootstrap: {getattr(args, 'bootstrap_resamples', 2000)} paired resamples of the "
            f"utterances within each language, seed {getattr(args, 'bootstrap_seed', 0)}. "
            f"Significant: p < {claims.ALPHA}.")
    return note + "\n\n" + md_table(header, rows, align_right_from=99)


def mask_groups_section(masks: Sequence[Tuple[str, str]], precision: int) -> str:
    """Pairwise IoU (and mean overlap) of each mask set per layer group."""
    parts = []
    for name, p in masks:
        path = Path(p)
        if not path.is_file():
            logger.warning("mask file %s of %s not found", path, name)
            parts.append(f"### {name}\n\n`{path}`: {NA}")
            continue
        try:
            langs, sparsity, overlap, iou = mask_group_tables(path)
        except ValueError as e:
            raise ResultsInputError(f"masks {name}: {e}") from None
        prs = pairs(langs)
        header = ["Layer group", "mean sparsity"] + [f"IoU {a}-{b}" for a, b in prs] + [
            "mean IoU", "mean overlap"]
        rows = []
        for g in iou:
            ious = [iou[g][a][b] for a, b in prs]
            ovs = [overlap[g][a][b] for a in langs for b in langs if a != b]
            rows.append([g, fmt_pct_fraction(sum(sparsity[g].values()) / len(langs), precision)]
                        + [fmt(v, precision + 2) for v in ious]
                        + [fmt(sum(ious) / len(ious), precision + 2) if ious else NA,
                           fmt(sum(ovs) / len(ovs), precision + 2) if ovs else NA])
        parts.append(f"### {name} (`{path}`)\n\n" + md_table(header, rows))
    return "\n\n".join(parts)


def mask_drift_section(path: Path, precision: int) -> Optional[str]:
    """IoU of each language pair at the start and the end of dynamic pathway training."""
    try:
        drift = load_mask_drift(path)
    except ValueError as e:
        raise ResultsInputError(str(e)) from None
    if not drift:
        logger.warning("no mask drift in %s", path)
        return None
    prs = list(dict.fromkeys(p for se in drift.values() for when in se.values() for p in when))
    header = ["Layer group"] + [f"{p} start -> end" for p in prs]
    rows = []
    for g, se in drift.items():
        row = [g]
        for p in prs:
            a, b = se.get("start", {}).get(p), se.get("end", {}).get(p)
            row.append(f"{fmt(a, precision + 2)} -> {fmt(b, precision + 2)}")
        rows.append(row)
    out = (f"Source: `{path}` (pairwise IoU of the language masks when dynamic pathway "
           "training starts and when it ends)\n\n" + md_table(header, rows))
    per_lang = load_drift_per_language(path)
    if per_lang:
        langs = list(dict.fromkeys(lang for v in per_lang.values() for lang in v))
        prow = []
        if "changed_fraction" in per_lang:
            prow.append(["changed (1 - IoU start/end)"]
                        + [fmt_pct_fraction(per_lang["changed_fraction"].get(lang), precision) for lang in langs])
        if "revived" in per_lang:
            prow.append(["weights revived"]
                        + [fmt_count(per_lang["revived"].get(lang)) for lang in langs])
        out += "\n\nPer language:\n\n" + md_table([""] + langs, prow)
    return out


#: An added language's section of RESULTS.md lies between these markers (stage 21 writes
#: it; stage 13 keeps it; refresh_stage_times updates its timing table).
ADD_LANGUAGE_MARK = "<!-- add_language:"
ADD_LANGUAGE_BLOCK = re.compile(r"<!-- add_language:(\S+) -->\n.*?<!-- /add_language:\1 -->\n?", re.S)


def add_language_markers(lang: str) -> Tuple[str, str]:
    """The start and end marker lines of ``lang``'s section (:data:`ADD_LANGUAGE_BLOCK`)."""
    return f"{ADD_LANGUAGE_MARK}{lang} -->", f"<!-- /add_language:{lang} -->"


def carry_add_language_sections(old: str, new: str) -> str:
    """``new`` with the added languages' sections of ``old`` appended (their
    ``add_language:<code>`` blocks, which stage 21 writes): rewriting RESULTS.md in stage
    13 must not lose them, since only a rerun of stage 21 would bring them back."""
    blocks = [m.group(0) for m in ADD_LANGUAGE_BLOCK.finditer(old)
              if add_language_markers(m.group(1))[0] not in new]
    if not blocks:
        return new
    return new.rstrip("\n") + "\n\n" + "".join(b if b.endswith("\n") else b + "\n" for b in blocks)


def build_markdown(args: argparse.Namespace) -> str:
    langs = [x for x in args.langs.split(",") if x]
    systems = [load_system(n, Path(p), args.decode_dir, langs) for n, p in args.system]
    p = args.precision
    out = [
        f"# {args.title}",
        "",
        "<!-- Generated by `python -m espnet_pathways.bin.make_results`; do not edit by hand. -->",
        "",
        f"Decoding: `{args.decode_dir}`"
        f"{' (' + args.decoding_note + ')' if getattr(args, 'decoding_note', '') else ''}"
        "; error rates in %; averages are unweighted means "
        f"over {', '.join(langs)} ({NA} if any language is missing).",
        "",
        "## Results",
        "",
        results_table(systems, langs, p, args.reference_system,
                      getattr(args, "extra_reference", None) or ()),
        "",
        "### Details",
        "",
        details_table(systems, langs, p),
    ]
    computes = load_compute([(n, Path(d)) for n, d in args.system])
    if getattr(args, "claims", True):
        out += ["", "## Paper claims", "", claims_section(args, systems, langs, computes)]
    out += ["", "## Training compute", "", compute_section(langs, args.reference_system, computes)]
    sp = sparsity_table(systems, langs, p)
    if sp is not None:
        out += ["", "## Sparsity and parameters", "", sp]
    if args.overlap_json:
        out += ["", "## Mask overlap", "", overlap_section(Path(args.overlap_json), p)]
    if getattr(args, "masks", None):
        out += ["", "## Mask overlap per layer group", "", mask_groups_section(args.masks, p)]
    if getattr(args, "mask_drift", None):
        drift = mask_drift_section(Path(args.mask_drift), p)
        if drift is not None:
            out += ["", "## Mask drift (dynamic pathways)", "", drift]
    rtf = rtf_section(args.system, args.decode_dir, langs)
    if rtf is not None:
        out += ["", "## Streaming decoding speed", "", rtf]
    if getattr(args, "deploy_table", None):
        out += ["", "## Deployment: fp32 vs int8", "",
                deploy_section(Path(args.deploy_table), p)]
    voice_data = getattr(args, "voice_data", None)
    if voice_data:
        kinds = voice_kind_rows(args.system, Path(voice_data), args.decode_dir, langs, p)
        if kinds is not None:
            out += ["", "## Test error by kind of voice", "",
                    "CER in % (utterances) on the test utterances of each kind of held-out "
                    f"voice (`{voice_data}/spk2voice`: the voice id up to its first `.`); the "
                    "language's CER above is over all of them.", "",
                    md_table(*kinds, align_right_from=2)]
    if args.data_summary:
        out += ["", "## Data", "", data_section(Path(args.data_summary))]
    if args.config:
        out += ["", "## Configs", "", configs_section(args.config)]
    if args.stage_times:
        out += ["", "## Stage timings", "", stage_times_section(Path(args.stage_times))]
    out += ["", "## Environment", "", environment_section(Path(args.repo))]
    return "\n".join(out) + "\n"
