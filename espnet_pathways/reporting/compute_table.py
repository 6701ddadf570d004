"""Training compute per system: optimizer steps and utterances seen, per language.

Why: every system after ``dense`` starts from the dense weights and adds training, so a gain
over dense is only the method's if it is not just "more steps" (issue 10).  The table makes
that visible: each system's total steps, its steps and utterances per language, and the
steps it adds beyond the dense model.

Inputs (written by the training side, read here, never guessed):

* ``<exp>/compute.json`` of every training run: ``{"steps": int, "steps_per_lang":
  {lang: int}, "utts_per_lang": {lang: int}, "epochs": int}`` (that run's own optimizer
  steps only);
* ``<expdir>/asr_<system>/compute_sources``: one exp dir per line, relative to ``expdir``
  (``asr_dense``, ``asr_lsp_imp_en``, ...), whose compute.json counts toward the system.
  A system's compute is the sum over its sources.

A system without ``compute_sources``, or with a source whose ``compute.json`` is absent,
gets ``n/a`` cells (older runs lack these files) and a warning; a file that is there but
malformed is :class:`~espnet_pathways.reporting.results.ResultsInputError` naming it.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

logger = logging.getLogger(__name__)

NA = "n/a"
SOURCES_FILE = "compute_sources"
COMPUTE_FILE = "compute.json"


class ComputeInputError(ValueError):
    """A compute file is there but cannot be read; the message names it."""


@dataclass
class Compute:
    """Steps and utterances of one system, summed over its sources (``steps`` None: unknown)."""

    sources: List[str] = field(default_factory=list)
    steps: Optional[int] = None
    source_steps: Dict[str, int] = field(default_factory=dict)
    steps_per_lang: Dict[str, int] = field(default_factory=dict)
    utts_per_lang: Dict[str, int] = field(default_factory=dict)
    why_na: str = ""

    @property
    def known(self) -> bool:
        return self.steps is not None


def _int(value: object, what: str, path: Path) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ComputeInputError(f"{path}: {what} must be a non-negative integer, got {value!r}")
    return value


def read_compute_json(path: Path) -> Optional[Dict[str, object]]:
    """One run's compute.json checked against the contract; None if absent."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ComputeInputError(f"{path}: cannot read ({e})") from None
    if not isinstance(data, dict) or "steps" not in data:
        raise ComputeInputError(f"{path}: expected a JSON object with 'steps'")
    out: Dict[str, object] = {"steps": _int(data["steps"], "steps", path)}
    for key in ("steps_per_lang", "utts_per_lang"):
        table = data.get(key) or {}
        if not isinstance(table, dict):
            raise ComputeInputError(f"{path}: {key} must be an object {{lang: int}}")
        out[key] = {str(k): _int(v, f"{key}[{k}]", path) for k, v in table.items()}
    return out


def read_sources(system_dir: Path) -> Optional[List[str]]:
    """The exp dirs (relative to the expdir) listed in ``compute_sources``; None if absent."""
    path = system_dir / SOURCES_FILE
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ComputeInputError(f"{path}: cannot read ({e})") from None
    sources = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    bad = [s for s in sources if Path(s).is_absolute() or ".." in Path(s).parts]
    if bad:
        raise ComputeInputError(f"{path}: sources must be exp dirs relative to the expdir, got {bad}")
    return sources


def system_compute(name: str, system_dir: Path) -> Compute:
    """Sum of the compute.json of ``system_dir``'s sources (expdir = its parent)."""
    sources = read_sources(system_dir)
    if sources is None:
        logger.warning("system %s: no %s; compute is n/a", name, system_dir / SOURCES_FILE)
        return Compute(why_na=f"no {SOURCES_FILE}")
    expdir = system_dir.parent
    total = Compute(sources=sources, steps=0)
    missing = []
    for src in sources:
        data = read_compute_json(expdir / src / COMPUTE_FILE)
        if data is None:
            missing.append(src)
            continue
        steps = int(data["steps"])  # type: ignore[call-overload]
        total.steps = (total.steps or 0) + steps
        total.source_steps[src] = total.source_steps.get(src, 0) + steps
        for key in ("steps_per_lang", "utts_per_lang"):
            acc = getattr(total, key)
            for lang, n in data[key].items():  # type: ignore[union-attr]
                acc[lang] = acc.get(lang, 0) + n
    if missing or not sources:
        why = f"no {COMPUTE_FILE} in {', '.join(missing)}" if missing else f"empty {SOURCES_FILE}"
        logger.warning("system %s: %s; compute is n/a", name, why)
        return Compute(sources=sources, why_na=why)
    return total


def extra_steps(c: Compute, reference: Optional[Compute]) -> Optional[int]:
    """Steps of ``c``'s sources that are not among the reference (dense) system's sources.

    Why not ``c.steps - dense.steps``: a system that does not start from the dense model
    (a small dense model trained from scratch) adds all of its steps, not a difference.
    """
    if not c.known or reference is None or not reference.known:
        return None
    return sum(n for src, n in c.source_steps.items() if src not in reference.sources)


def load_compute(systems: Sequence[Tuple[str, Path]]) -> Dict[str, Compute]:
    """``{name: Compute}`` for ``(name, exp_dir)`` pairs, in the given order."""
    return {name: system_compute(name, Path(exp)) for name, exp in systems}


def compute_rows(
    computes: Mapping[str, Compute], langs: Sequence[str], reference: Optional[str]
) -> Tuple[List[str], List[List[str]]]:
    """Header and rows of the compute table (cells ``n/a`` where unknown)."""
    ref = computes.get(reference) if reference is not None else None
    header = ["System", "steps", f"extra steps vs {reference or 'reference'}"]
    header += [f"{lang} steps" for lang in langs] + [f"{lang} utts seen" for lang in langs]
    header += ["sources"]
    rows = []
    for name, c in computes.items():
        extra = extra_steps(c, ref)
        row = [name, str(c.steps) if c.known else NA, NA if extra is None else str(extra)]
        row += [str(c.steps_per_lang.get(lang, 0)) if c.known else NA for lang in langs]
        row += [str(c.utts_per_lang.get(lang, 0)) if c.known else NA for lang in langs]
        row.append(", ".join(c.sources) + (f" ({c.why_na})" if c.why_na else "") if c.sources
                   else (c.why_na or NA))
        rows.append(row)
    return header, rows
