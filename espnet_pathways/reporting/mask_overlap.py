"""Pairwise overlap / IoU of pathway masks per layer group, and the dynamic masks' drift.

Why per layer group: one all-weights IoU hides where the languages share and where they
differ (the paper's intuition is shared lower layers, language-specific upper ones); the
same numbers feed RESULTS.md and the plots, so both read them from here.

* ``overlap[g][a][b] = |m_a & m_b| / |m_a|`` (share of a's pathway in group g that b also
  uses; asymmetric) and ``iou[g][a][b] = |m_a & m_b| / |m_a | m_b|`` (symmetric);
* groups: ``encoder.embed``, ``encoder.block<i>``, ``decoder``, ``joint_network``, ...
  (:func:`layer_group`), in model order;
* mask drift: ``<expdir>/asr_pathways_dynamic/mask_drift.json`` of dynamic pathway
  training, ``{"start": {"en-fr": iou, ...}, "end": {...}}`` and optionally
  ``{"groups": {group: {"start": {...}, "end": {...}}}}``, and per language
  ``"changed_fraction"`` (1 - IoU of its start and end masks) and ``"revived"`` (times a
  weight re-entered its mask); read defensively (entries that are not numbers are left
  out with a warning).
"""
from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple

if TYPE_CHECKING:
    from espnet_pathways.masks import PathwayMasks

#: ``table[group][lang_a][lang_b]``
GroupTable = Dict[str, Dict[str, Dict[str, float]]]

logger = logging.getLogger(__name__)

_BLOCK = re.compile(r"^encoder\.encoders\.(?:blocks\.)?(\d+)\.")
ALL_WEIGHTS = "all weights"


def layer_group(name: str) -> str:
    """Group of a parameter: ``encoder.embed``, ``encoder.block<i>``, else its top module.

    ``encoder.encoders.blocks.3.feed_forward.w_1.weight`` -> ``encoder.block3``;
    ``decoder.rnn.0.weight_ih_l0`` -> ``decoder``; ``joint_network.lin_enc.weight`` ->
    ``joint_network``; other encoder parameters -> ``encoder.<module>``.
    """
    m = _BLOCK.match(name)
    if m:
        return f"encoder.block{int(m.group(1))}"
    parts = name.split(".")
    if parts[0] == "encoder" and len(parts) > 2:
        return f"encoder.{parts[1]}"
    return parts[0]


def group_order(group: str) -> Tuple[int, int, str]:
    """Sort key: input layer, encoder blocks by index, other encoder parts, decoder, joint."""
    if group == "encoder.embed":
        return (0, 0, group)
    m = re.match(r"encoder\.block(\d+)$", group)
    if m:
        return (1, int(m.group(1)), group)
    if group.startswith("encoder."):
        return (2, 0, group)
    return ({"decoder": 3, "joint_network": 4}.get(group, 5), 0, group)


def group_params(names: Sequence[str]) -> "OrderedDict[str, List[str]]":
    """Parameter names by :func:`layer_group`, groups in model order (input to output)."""
    groups: Dict[str, List[str]] = {}
    for n in names:
        groups.setdefault(layer_group(n), []).append(n)
    return OrderedDict((g, groups[g]) for g in sorted(groups, key=group_order))


def group_stats(masks: "PathwayMasks", groups: Mapping[str, Sequence[str]]
                ) -> Tuple[Dict[str, Dict[str, float]], GroupTable]:
    """Per group: ``sparsity[g][lang]`` and ``overlap[g][a][b] = |m_a & m_b| / |m_a|``."""
    sparsity, overlap, _ = group_overlap_iou(masks, groups)
    return sparsity, overlap


def group_overlap_iou(masks: "PathwayMasks", groups: Mapping[str, Sequence[str]]
                      ) -> Tuple[Dict[str, Dict[str, float]], GroupTable, GroupTable]:
    """Per group: ``sparsity[g][lang]``, ``overlap[g][a][b]`` and ``iou[g][a][b]``."""
    langs = masks.languages
    per_lang = {lang: masks.for_language(lang) for lang in langs}
    sparsity: Dict[str, Dict[str, float]] = {}
    overlap: GroupTable = {}
    iou: GroupTable = {}
    for g, names in groups.items():
        kept = {lang: sum(int(per_lang[lang][n].count_nonzero()) for n in names) for lang in langs}
        total = sum(per_lang[langs[0]][n].numel() for n in names)
        sparsity[g] = {lang: 1.0 - kept[lang] / total if total else 0.0 for lang in langs}
        overlap[g], iou[g] = {}, {}
        for a in langs:
            overlap[g][a], iou[g][a] = {}, {}
            for b in langs:
                inter = sum(int((per_lang[a][n] & per_lang[b][n]).count_nonzero()) for n in names)
                union = kept[a] + kept[b] - inter
                overlap[g][a][b] = inter / kept[a] if kept[a] else 0.0
                iou[g][a][b] = inter / union if union else 0.0
    return sparsity, overlap, iou


def mask_group_tables(path: Path) -> Tuple[List[str], Dict[str, Dict[str, float]], GroupTable, GroupTable]:
    """``(langs, sparsity, overlap, iou)`` per group of a mask file, "all weights" first."""
    from espnet_pathways.masks import PathwayMasks

    try:
        masks = PathwayMasks.load(path)
    except (ValueError, OSError, RuntimeError) as e:  # torch's messages run over many lines
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{path}: not a readable mask file ({first[:200]})") from None
    groups: "OrderedDict[str, List[str]]" = OrderedDict([(ALL_WEIGHTS, list(masks.param_names))])
    groups.update(group_params(masks.param_names))
    sparsity, overlap, iou = group_overlap_iou(masks, groups)
    return masks.languages, sparsity, overlap, iou


def pairs(langs: Sequence[str]) -> List[Tuple[str, str]]:
    """Unordered language pairs in language order: (en, fr), (en, it), ..."""
    return [(a, b) for i, a in enumerate(langs) for b in langs[i + 1:]]


# --------------------------------------------------------------------------- drift
def _pair_values(obj: Any, where: str) -> Dict[str, float]:
    """``{"en-fr": iou}`` entries that are numbers; others are left out with a warning."""
    if not isinstance(obj, dict):
        if obj is not None:
            logger.warning("mask drift %s: expected {pair: iou}, got %s; ignored", where, type(obj).__name__)
        return {}
    out = {}
    for k, v in obj.items():
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            out[str(k)] = float(v)
        else:
            logger.warning("mask drift %s[%s]: not a number (%r); ignored", where, k, v)
    return out


def load_mask_drift(path: Path) -> Optional[Dict[str, Dict[str, Dict[str, float]]]]:
    """``{group: {"start": {pair: iou}, "end": {pair: iou}}}`` (group "all weights" from the
    top level), or None when the file is absent.  A file that is not JSON is an error."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise ValueError(f"mask drift {path}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"mask drift {path}: expected a JSON object")
    out: Dict[str, Dict[str, Dict[str, float]]] = {}
    top = {k: _pair_values(data.get(k), k) for k in ("start", "end")}
    if any(top.values()):
        out[ALL_WEIGHTS] = top
    groups = data.get("groups")
    if isinstance(groups, dict):
        for g in sorted(groups, key=group_order):
            entry = groups[g] if isinstance(groups[g], dict) else {}
            vals = {k: _pair_values(entry.get(k), f"groups.{g}.{k}") for k in ("start", "end")}
            if any(vals.values()):
                out[str(g)] = vals
    elif groups is not None:
        logger.warning("mask drift %s: 'groups' is not an object; ignored", path)
    return out


def load_drift_per_language(path: Path) -> Dict[str, Dict[str, float]]:
    """``{"changed_fraction": {lang: x}, "revived": {lang: n}}`` of a mask_drift.json (the
    keys it has, numbers only); empty when the file or the keys are absent."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}  # load_mask_drift reports an unreadable file
    if not isinstance(data, dict):
        return {}
    out = {k: _pair_values(data.get(k), k) for k in ("changed_fraction", "revived")}
    return {k: v for k, v in out.items() if v}
