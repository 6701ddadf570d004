"""Per-language binary masks ("pathways") over the prunable weights of one model.

Style follows ``torch.nn.utils.prune``: a mask is an explicit ``torch.bool`` tensor
kept *beside* the weight it belongs to (never fused into the parameter), keyed by the
parameter's full name in ``model.named_parameters()``.  There is exactly one place where
masks are applied at runtime: :func:`masked_parameters`, whose output is fed to
``torch.func.functional_call``.  Multiplying at runtime (instead of zeroing the shared
weights) is what lets several languages share one dense parameter tensor while each one
sees only ``W * m_l``; :func:`apply_masks_` zeroes weights in place and is only meant for
storage or right after pruning.

A :class:`PathwayMasks` is a saved, versioned artefact: one bool tensor per prunable
parameter per language, the config that made it (``meta``) and a sha256 checksum, so that
a pathway model can never silently run with masks that were edited, truncated, or made for
a different model.  The file format (versioning, checksum, packed bits) is
:mod:`espnet_pathways.mask_file`; ``save``/``load`` here delegate to it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence, Union

import torch
from torch import Tensor, nn

from espnet_pathways.mask_file import (
    FORMAT,
    VERSION,
    MaskFileError,
    load_mask_file,
    pack_bits,
    save_mask_file,
    unpack_bits,
)

__all__ = [
    "DEFAULT_EXCLUDE",
    "FORMAT",
    "VERSION",
    "PRUNABLE_MODULE_TYPES",
    "MaskFileError",
    "PathwayMasks",
    "apply_masks_",
    "masked_parameters",
    "pack_bits",
    "prunable_parameter_names",
    "sparsity_of",
    "unpack_bits",
]

MaskDict = dict[str, Tensor]
PathLike = Union[str, Path]

#: Regexes (``re.search`` on the full parameter name) that are never pruned.  The RNN-T
#: output layer maps onto the vocabulary; pruning it would remove whole tokens from a
#: language, so it stays dense by default (ESPnet names it ``joint_network.lin_out``).
DEFAULT_EXCLUDE: tuple[str, ...] = (r"joint_network\.lin_out\.",)

#: Modules whose ``*weight*`` matrices are prunable.  Subclasses count too (isinstance).
#: nn.RNNBase covers LSTM/GRU/RNN (``weight_ih_l*``, ``weight_hh_l*``, ``weight_hr_l*``).
PRUNABLE_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear,
    nn.Conv1d,
    nn.Conv2d,
    nn.RNNBase,
)


# --------------------------------------------------------------------------- selection


def prunable_parameter_names(
    model: nn.Module,
    exclude: Sequence[str] = DEFAULT_EXCLUDE,
    module_types: tuple[type[nn.Module], ...] = PRUNABLE_MODULE_TYPES,
) -> list[str]:
    """Full names of the prunable weight matrices of ``model``, in module order.

    Prunable = a parameter whose local name contains ``weight`` and has ``ndim >= 2``,
    owned directly by a module of ``module_types``.  Biases, norms (LayerNorm/BatchNorm)
    and embeddings are therefore never selected.  A parameter tied to several modules is
    reported once, under the name ``model.named_parameters()`` uses.
    """
    patterns = [re.compile(p) for p in exclude]
    canonical = {id(p): n for n, p in model.named_parameters()}
    names: list[str] = []
    for mod_name, module in model.named_modules():
        if not isinstance(module, module_types):
            continue
        for local, param in module.named_parameters(recurse=False):
            full = f"{mod_name}.{local}" if mod_name else local
            if "weight" not in local or param.ndim < 2:
                continue
            if canonical.get(id(param)) != full:  # tied: keep the canonical name only
                continue
            if any(p.search(full) for p in patterns):
                continue
            names.append(full)
    return names


# --------------------------------------------------------------------------- applying


def _named_params(model: nn.Module) -> dict[str, nn.Parameter]:
    return dict(model.named_parameters())


def _missing(names: Iterable[str], params: Mapping[str, Any]) -> list[str]:
    return [n for n in names if n not in params]


def apply_masks_(model: nn.Module, mask: Mapping[str, Tensor]) -> None:
    """Zero, in place, every weight of ``model`` that ``mask`` does not keep.

    For storage and right after pruning.  It does not make training respect the mask
    (gradients and optimizers would revive the zeros); pathway training uses
    :func:`masked_parameters` at runtime plus ``pruning.MaskedUpdate`` instead.
    """
    params = _named_params(model)
    missing = _missing(mask, params)
    if missing:
        raise KeyError(f"mask names parameters the model does not have: {missing}")
    with torch.no_grad():
        for name, m in mask.items():
            p = params[name]
            p.mul_(m.to(device=p.device, dtype=p.dtype))


def masked_parameters(model: nn.Module, mask: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``{name: W * m}`` for masked parameters and ``{name: W}`` for all others.

    Meant for ``torch.func.functional_call(model, masked_parameters(model, m_l), args)``:
    the forward then sees the effective weights ``W * m_l`` and autograd yields
    ``dL/dW = m_l * dL/d(W * m_l)``, exactly zero outside the pathway, while the shared
    ``W`` is left untouched for the other languages.  Masks must already be on the
    parameters' device (see :meth:`PathwayMasks.to`); otherwise they are copied each call.
    """
    params = _named_params(model)
    missing = _missing(mask, params)
    if missing:
        raise KeyError(f"mask names parameters the model does not have: {missing}")
    out: dict[str, Tensor] = {}
    for name, p in params.items():
        m = mask.get(name)
        out[name] = p if m is None else p * m.to(p.device, non_blocking=True)
    return out


# --------------------------------------------------------------------------- container


def _count(mask: Mapping[str, Tensor]) -> tuple[int, int]:
    """(kept, total) over all tensors of one mask dict."""
    if not mask:
        return 0, 0
    kept = sum(int(m.count_nonzero()) for m in mask.values())
    total = sum(m.numel() for m in mask.values())
    return kept, total


@dataclass
class PathwayMasks:
    """One bool mask per prunable parameter, per language, plus the config that made it.

    ``masks[lang][param_name]`` is a ``torch.bool`` tensor shaped like the parameter;
    ``True`` = the weight belongs to that language's pathway.  All languages mask the
    same parameter names with the same shapes (checked on construction).
    """

    masks: dict[str, dict[str, Tensor]]
    meta: dict[str, Any] = field(default_factory=dict)
    #: where these masks came from (a file path), used in error messages only.
    source: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not self.masks:
            raise ValueError("PathwayMasks needs at least one language")
        ref_lang = next(iter(self.masks))
        ref = self.masks[ref_lang]
        for lang, mask in self.masks.items():
            if set(mask) != set(ref):
                diff = sorted(set(mask) ^ set(ref))
                raise ValueError(
                    f"languages {ref_lang!r} and {lang!r} mask different parameters: {diff}"
                )
            for name, m in mask.items():
                if m.dtype != torch.bool:
                    raise TypeError(f"mask {lang}/{name} has dtype {m.dtype}, need torch.bool")
                if m.shape != ref[name].shape:
                    raise ValueError(
                        f"mask {lang}/{name} has shape {tuple(m.shape)} but "
                        f"{ref_lang}/{name} has {tuple(ref[name].shape)}"
                    )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_model_dense(
        cls,
        model: nn.Module,
        languages: Sequence[str],
        names: Sequence[str] | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> "PathwayMasks":
        """All-ones masks (every language keeps every prunable weight): the dense start."""
        params = _named_params(model)
        names = list(names) if names is not None else prunable_parameter_names(model)
        missing = _missing(names, params)
        if missing:
            raise KeyError(f"model has no parameters named {missing}")
        masks = {
            lang: {
                n: torch.ones_like(params[n], dtype=torch.bool, device=params[n].device)
                for n in names
            }
            for lang in languages
        }
        info: dict[str, Any] = {"method": "dense", "target_sparsity": 0.0}
        info.update(meta or {})
        return cls(masks, info)

    # ------------------------------------------------------------------ access
    @property
    def languages(self) -> list[str]:
        return list(self.masks)

    @property
    def param_names(self) -> list[str]:
        return list(next(iter(self.masks.values())))

    @property
    def shapes(self) -> dict[str, torch.Size]:
        return {n: m.shape for n, m in next(iter(self.masks.values())).items()}

    def __contains__(self, lang: object) -> bool:
        return lang in self.masks

    def for_language(self, lang: str) -> MaskDict:
        """The mask dict of ``lang``; an unknown language is an error, never a fallback."""
        try:
            return self.masks[lang]
        except KeyError:
            where = f" (masks from {self.source})" if self.source else ""
            raise KeyError(
                f"no pathway for language {lang!r}{where}; known languages: {self.languages}"
            ) from None

    def to(self, device: torch.device | str) -> "PathwayMasks":
        """A copy with every mask on ``device`` (like ``Tensor.to``: self is unchanged).

        Languages that share one mask dict (language-agnostic pruning) still share one
        in the copy, so the model keeps running them in a single pass.
        """
        moved: dict[int, dict[str, Tensor]] = {}
        masks = {}
        for lang, mask in self.masks.items():
            if id(mask) not in moved:
                moved[id(mask)] = {n: m.to(device) for n, m in mask.items()}
            masks[lang] = moved[id(mask)]
        return PathwayMasks(masks, dict(self.meta), self.source)

    # ------------------------------------------------------------------ statistics
    def kept_parameters(self, lang: str) -> int:
        """Number of prunable weights in the pathway of ``lang``."""
        return _count(self.for_language(lang))[0]

    def total_parameters(self) -> int:
        """Number of prunable weights (the denominator of every sparsity here)."""
        return sum(s.numel() for s in self.shapes.values())

    def sparsity(self, lang: str) -> float:
        """Fraction of the prunable weights removed from the pathway of ``lang``."""
        return sparsity_of(self.for_language(lang))

    def layer_sparsity(self, lang: str) -> dict[str, float]:
        return {n: 1.0 - m.count_nonzero().item() / m.numel() for n, m in self.for_language(lang).items()}

    def union(self) -> MaskDict:
        """Weights kept by at least one language; everything else is dead weight."""
        return self._reduce(torch.logical_or)

    def intersection(self) -> MaskDict:
        """Weights shared by every language."""
        return self._reduce(torch.logical_and)

    def union_sparsity(self) -> float:
        """Fraction of prunable weights no language keeps (droppable from the model)."""
        return sparsity_of(self.union())

    def overlap(self, a: str, b: str) -> float:
        """``|m_a & m_b| / |m_a|``: share of a's pathway that b also uses (0 if a is empty)."""
        ma, mb = self.for_language(a), self.for_language(b)
        inter = sum(int((ma[n] & mb[n].to(ma[n].device)).count_nonzero()) for n in ma)
        kept = self.kept_parameters(a)
        return inter / kept if kept else 0.0

    def iou(self, a: str, b: str) -> float:
        """``|m_a & m_b| / |m_a | m_b|`` (0 if both are empty)."""
        ma, mb = self.for_language(a), self.for_language(b)
        inter = union = 0
        for n in ma:
            x, y = ma[n], mb[n].to(ma[n].device)
            inter += int((x & y).count_nonzero())
            union += int((x | y).count_nonzero())
        return inter / union if union else 0.0

    def overlap_table(self) -> dict[str, dict[str, float]]:
        """``table[a][b] = overlap(a, b)`` for all ordered pairs (diagonal 1 unless empty)."""
        return {a: {b: self.overlap(a, b) for b in self.languages} for a in self.languages}

    def summary_table(self) -> str:
        """Markdown table for logs: per-language sparsity/kept weights and pairwise overlap."""
        langs = self.languages
        head = ["lang", "sparsity", "kept", *[f"ovl {b}" for b in langs]]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        table = self.overlap_table()
        for a in langs:
            row = [a, f"{self.sparsity(a):.4f}", str(self.kept_parameters(a))]
            row += [f"{table[a][b]:.3f}" for b in langs]
            lines.append("| " + " | ".join(row) + " |")
        union_kept, total = _count(self.union())
        inter_kept, _ = _count(self.intersection())
        lines.append(
            f"\nprunable weights: {total}; union kept: {union_kept} "
            f"(sparsity {self.union_sparsity():.4f}); shared by all: {inter_kept}"
        )
        return "\n".join(lines)

    def _reduce(self, op: Any) -> MaskDict:
        out: MaskDict = {}
        for name in self.param_names:
            acc = None
            for mask in self.masks.values():
                m = mask[name]
                acc = m.clone() if acc is None else op(acc, m.to(acc.device))
            assert acc is not None
            out[name] = acc
        return out

    # ------------------------------------------------------------------ compatibility
    def check_compatible(
        self,
        model_or_state_dict: nn.Module | Mapping[str, Tensor],
        exclude: Sequence[str] | None = None,
    ) -> None:
        """Raise ``ValueError`` unless these masks fit the model exactly.

        Checks that every masked name exists with the same shape.  Given an ``nn.Module``
        it also checks that every prunable parameter (:func:`prunable_parameter_names` with
        ``exclude``, default ``meta["exclude"]`` or :data:`DEFAULT_EXCLUDE`) has a mask:
        an unmasked prunable weight would silently be shared dense by every language.
        A plain state dict carries no module types, so that second check is skipped.
        """
        where = f"masks from {self.source}" if self.source else "masks"
        if isinstance(model_or_state_dict, nn.Module):
            tensors: Mapping[str, Tensor] = _named_params(model_or_state_dict)
        else:
            tensors = model_or_state_dict
        for name, shape in self.shapes.items():
            if name not in tensors:
                raise ValueError(f"{where}: parameter {name!r} is not in the model")
            if tuple(tensors[name].shape) != tuple(shape):
                raise ValueError(
                    f"{where}: parameter {name!r} has shape {tuple(tensors[name].shape)} in the "
                    f"model but {tuple(shape)} in the masks"
                )
        if isinstance(model_or_state_dict, nn.Module):
            if exclude is None:
                exclude = tuple(self.meta.get("exclude", DEFAULT_EXCLUDE))
            have = set(self.shapes)
            unmasked = [n for n in prunable_parameter_names(model_or_state_dict, exclude) if n not in have]
            if unmasked:
                raise ValueError(f"{where}: prunable parameters of the model have no mask: {unmasked}")

    # ------------------------------------------------------------------ persistence
    def save(self, path: PathLike) -> None:
        """Write the versioned, checksummed mask file (:mod:`espnet_pathways.mask_file`)."""
        save_mask_file(path, self.masks, self.meta)

    @classmethod
    def load(cls, path: PathLike) -> "PathwayMasks":
        """Read a mask file; refuse anything edited, truncated or foreign
        (:func:`espnet_pathways.mask_file.load_mask_file`)."""
        masks, meta = load_mask_file(path)
        return cls(masks, meta, source=str(path))


def sparsity_of(mask: Mapping[str, Tensor]) -> float:
    """Fraction of the masked weights that are removed (``False``), over all tensors."""
    kept, total = _count(mask)
    return 1.0 - kept / total if total else 0.0
