"""Adding a language to a trained pathway model without changing the others.

A pathway model knows languages ``L`` through masks ``m_l`` over the prunable weights and
one output vocabulary of ``V`` tokens.  Adding language ``n`` (issue 12, item 1) takes
three pieces, all here:

* **Vocabulary growth** (:func:`grow_token_list`, :func:`grow_state_dict`): the new
  language's pieces that the vocabulary lacks are appended at the *end* of the token list
  (after ``<sos/eos>``; every old id keeps its meaning).  Every vocabulary-sized parameter
  (:data:`VOCABULARY_PARAMETERS`: the joint network's output layer, the predictor's
  embedding, the auxiliary CTC/LM heads) gets rows appended, initialised as copies of the
  ``<unk>`` row: a new symbol starts out where the old model put characters it did not
  know.  The old rows are copied bit for bit.
* **Per-language output vocabulary** (:func:`restrict_output`): language ``l`` scores only
  the first ``V_l`` tokens (``model_conf.output_vocab_sizes: {l: V_l}``, the old ``V`` for
  the old languages, the grown size for the new one).  The vocabulary-sized parameters
  are *sliced* to their first ``V_l`` rows, rather than masking the extra logits to
  ``-inf``: a log-softmax over a longer vector sums in a different order, so only slicing
  makes the old languages' scores bit-identical to the model before growth.  The model
  slices in its masked forward (training), :class:`OutputRows` in decoding.
* **Frozen pathways** (:class:`FrozenPathways`): while the new language trains, every
  element that an old language reads stays exactly as it was -- prunable weights inside
  the union of the old masks, every non-prunable parameter (biases, norms, the frontend,
  the first ``V`` rows of the vocabulary-sized parameters) and every buffer (BatchNorm
  statistics).  The new language reads all of them but writes only weights outside the
  old union plus its own output rows.  It is enforced on the *update* (optimizer state
  and weight decay included), with the same snapshot/restore as
  :class:`espnet_pathways.pruning.MaskedUpdate`.  ``--freeze_pathways`` of the trainer
  names the old languages; without it (``--add_language_mode shared`` of the recipe) the
  new language also updates the weights it shares with the old pathways.

The new language's mask comes from the existing pruning machinery: its pathway starts as
all-ones (:func:`grow_masks`), or as one old language's pathway plus every free weight
(``shared_from``), and ``--pruning imp --pruning_languages <new>`` prunes it on the new
language's data from the current weights, inside the same training run.

**Start point** (:func:`fill_free_weights`, :func:`token_row_sources`).  A trained pathway
model holds exact zeros outside the union of its masks (the trainer zeroes them), so a
new pathway trained only there would start its writable weights from nothing.  The free
positions are therefore filled from a model that learned them -- the dense model the
pathway system started from -- and the new output rows start from the row of the same
character without its diacritics where the old vocabulary has one (``č`` from ``c``),
else from ``<unk>``.  Neither touches an element an old language reads.
"""
from __future__ import annotations

import re
import unicodedata
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

from espnet_pathways.masks import PathwayMasks
from espnet_pathways.pruning import MaskedUpdate, frozen_indices, magnitude_prune
from espnet_pathways.tokens import RESERVED_FIRST, RESERVED_LAST

__all__ = [
    "VOCABULARY_PARAMETERS",
    "FrozenPathways",
    "OutputRows",
    "fill_free_weights",
    "frozen_elements",
    "grow_masks",
    "grow_state_dict",
    "grow_token_list",
    "is_vocabulary_parameter",
    "restrict_output",
    "token_row_sources",
]

#: Parameters with one row per output token (ESPnet transducer names).
VOCABULARY_PARAMETERS: Tuple[str, ...] = (
    r"^decoder\.embed\.weight$",
    r"^joint_network\.lin_out\.(weight|bias)$",
    r"^ctc_lin\.(weight|bias)$",
    r"^lm_lin\.(weight|bias)$",
)
_VOCAB_RE = [re.compile(p) for p in VOCABULARY_PARAMETERS]
#: The row new tokens are initialised from (ESPnet's ``<unk>``).
UNK_ID = RESERVED_FIRST.index("<unk>")


def is_vocabulary_parameter(name: str) -> bool:
    """True for a parameter with one row per output token."""
    return any(p.search(name) for p in _VOCAB_RE)


# --------------------------------------------------------------------------- growth


def grow_token_list(tokens: Sequence[str], pieces: Iterable[str]) -> Tuple[List[str], List[str]]:
    """``(grown, added)``: ``tokens`` plus the ``pieces`` it lacks, appended at the end.

    Reserved symbols are never added twice; order of first appearance is kept.
    """
    have = set(tokens) | set(RESERVED_FIRST) | set(RESERVED_LAST)
    added: List[str] = []
    for p in pieces:
        if p not in have:
            have.add(p)
            added.append(p)
    return [*tokens, *added], added


def base_form(piece: str) -> str:
    """``piece`` without combining marks (``ř`` -> ``r``, ``▁žena`` -> ``▁zena``)."""
    return "".join(c for c in unicodedata.normalize("NFD", piece)
                   if not unicodedata.combining(c))


def token_row_sources(tokens: Sequence[str], added: Sequence[str]) -> List[int]:
    """For each ``added`` token, the old id its output rows start from.

    The old token spelled the same without diacritics (``č`` -> ``c``), lower-cased if
    needed, where the old vocabulary has it: the old model already knows that sound's
    spelling neighbour.  Otherwise ``<unk>``.
    """
    index = {t: i for i, t in enumerate(tokens)}
    out = []
    for piece in added:
        base = base_form(piece)
        out.append(index.get(base, index.get(base.lower(), UNK_ID)))
    return out


def grow_state_dict(state: Mapping[str, Tensor], old_size: int, new_size: int,
                    sources: Optional[Sequence[int]] = None) -> Dict[str, Tensor]:
    """The state dict with ``new_size - old_size`` rows appended to every vocabulary-sized
    tensor (copies of the old rows ``sources``, one per new token, default all ``<unk>``);
    every other tensor and every old row unchanged."""
    if new_size < old_size:
        raise ValueError(f"the vocabulary cannot shrink ({old_size} -> {new_size})")
    if sources is None:
        sources = [UNK_ID] * (new_size - old_size)
    if len(sources) != new_size - old_size or any(not 0 <= i < old_size for i in sources):
        raise ValueError(f"need one old row (0..{old_size - 1}) per new token, got {list(sources)}")
    rows = torch.tensor(list(sources), dtype=torch.long)
    out: Dict[str, Tensor] = {}
    grown = []
    for name, value in state.items():
        if is_vocabulary_parameter(name):
            if value.shape[0] != old_size:
                raise ValueError(
                    f"{name} has {value.shape[0]} rows, the token list {old_size}: "
                    "the model does not belong to this token list"
                )
            out[name] = torch.cat([value, value[rows.to(value.device)]], dim=0)
            grown.append(name)
        else:
            out[name] = value
    if not any(n.startswith("joint_network.") for n in grown):
        raise ValueError("no joint_network.lin_out in the state dict: not a transducer model")
    return out


def fill_free_weights(state: Mapping[str, Tensor], masks: PathwayMasks,
                      source: Mapping[str, Tensor]) -> Dict[str, Tensor]:
    """``state`` with every masked weight outside the union of ``masks`` taken from
    ``source`` (the dense model the pathway system was trained from).

    Why: those positions are exact zeros in a trained pathway model, and they are all a
    frozen new pathway may write; starting them from learned values instead of zero gives
    the new language a working sub-network to adapt.  Every element inside the union (what
    the old languages read) is returned unchanged, bit for bit.  ``source`` may have the old
    vocabulary: the rows appended for the new language keep their grown start.
    """
    union = masks.union()
    out = dict(state)
    for name, keep in union.items():
        if name not in source:
            raise ValueError(f"{name}: not in the model the free weights are taken from")
        src = source[name]
        grown_rows = state[name].shape[0] - src.shape[0]
        if is_vocabulary_parameter(name) and grown_rows > 0 and src.shape[1:] == state[name].shape[1:]:
            # the source has the old vocabulary: the appended rows keep their grown start
            src = torch.cat([src.to(state[name].dtype), state[name][src.shape[0]:].to(src.device)])
        if src.shape != state[name].shape:
            raise ValueError(f"{name}: shape {tuple(src.shape)} in the model the free weights "
                             f"are taken from, {tuple(state[name].shape)} in the pathway model")
        if is_vocabulary_parameter(name) and keep.shape[0] < src.shape[0]:  # old masks
            keep = torch.cat([keep, keep.new_zeros(src.shape[0] - keep.shape[0], *keep.shape[1:])])
        out[name] = torch.where(keep.to(src.device), state[name], src.to(state[name].dtype))
    return out


def grow_masks(masks: PathwayMasks, lang: str, old_size: int, new_size: int,
               shared_from: Optional[str] = None) -> PathwayMasks:
    """The old masks plus a pathway for ``lang`` (IMP then prunes it): all-ones, or with
    ``shared_from`` that language's pathway inside the old union plus every weight outside
    it (in frozen mode IMP then prunes only the outside, :meth:`FrozenPathways.prune`).

    Vocabulary-sized masked tensors (an auxiliary CTC head, when pruned) get the new rows:
    kept by ``lang``, not by the old languages (which never read them).
    """
    if lang in masks:
        raise ValueError(f"the model already has a pathway for {lang!r}")
    if shared_from is not None and shared_from not in masks:
        raise ValueError(f"shared_from={shared_from!r}: no such pathway in the masks "
                         f"({', '.join(masks.languages)})")
    grown: Dict[str, Dict[str, Tensor]] = {}
    for old_lang, mask in masks.masks.items():
        grown[old_lang] = {
            n: torch.cat([m, m.new_zeros(new_size - old_size, *m.shape[1:])])
            if is_vocabulary_parameter(n) else m
            for n, m in mask.items()
        }
    ref = next(iter(grown.values()))
    if shared_from is None:
        grown[lang] = {n: torch.ones_like(m) for n, m in ref.items()}
    else:
        union = PathwayMasks(dict(grown)).union()  # the old languages' union
        grown[lang] = {n: grown[shared_from][n] | ~union[n] for n in ref}
    meta = dict(masks.meta)
    meta["added_language"] = lang
    meta["vocab_size_before"] = old_size
    meta["shared_from"] = shared_from
    return PathwayMasks(grown, meta)


# --------------------------------------------------------------------------- output slice


def restrict_output(params: Mapping[str, Tensor], n_tokens: int) -> Dict[str, Tensor]:
    """``params`` with every vocabulary-sized tensor cut to its first ``n_tokens`` rows.

    For ``torch.func.functional_call``: a leading-rows slice is a contiguous view of the
    same memory, so the old languages compute exactly what the model computed before the
    vocabulary grew (same values, shapes and kernels).
    """
    return {n: p[:n_tokens] if is_vocabulary_parameter(n) and p.shape[0] > n_tokens else p
            for n, p in params.items()}


class OutputRows:
    """Decoding: the joint network's output layer cut to one language's vocabulary.

    ESPnet's beam search calls the joint network module directly, so the slice is made
    by swapping the module's parameters for views of the full ones (no copy).
    """

    def __init__(self, model: nn.Module) -> None:
        self.module = model.joint_network.lin_out
        self.full = {k: v for k, v in self.module.named_parameters(recurse=False)}

    def select(self, n_tokens: int) -> None:
        for k, v in self.full.items():
            self.module._parameters[k] = nn.Parameter(v.detach()[:n_tokens], requires_grad=False)


# --------------------------------------------------------------------------- frozen update


def frozen_elements(model: nn.Module, masks: PathwayMasks, languages: Sequence[str],
                    old_size: int) -> Dict[str, Tensor]:
    """Flat indices, per parameter, that the old ``languages`` read: masked weights inside
    the union of their masks, the first ``old_size`` rows of vocabulary-sized parameters,
    and every element of every other parameter."""
    owned: Dict[str, Tensor] = {}
    for lang in languages:
        for n, m in masks.for_language(lang).items():
            owned[n] = m.clone() if n not in owned else owned[n] | m
    frozen = frozen_indices({n: ~m for n, m in owned.items()})  # frozen = inside the union
    for name, p in model.named_parameters():
        if name in frozen:
            continue
        if is_vocabulary_parameter(name) and p.shape[0] > old_size:
            keep = torch.zeros(p.shape, dtype=torch.bool, device=p.device)
            keep[:old_size] = True
            frozen[name] = keep.reshape(-1).nonzero().squeeze(1)
        else:
            frozen[name] = torch.arange(p.numel(), device=p.device)
    return frozen


class FrozenPathways:
    """Keep every element the old languages read unchanged through training.

    Optimizer step hooks (:meth:`MaskedUpdate.register_hooks`) restore the frozen
    elements of the parameters and of their optimizer state after every step; a
    post-step hook puts the buffers (BatchNorm statistics, which the new language's
    forward updates in training mode) back as well.
    """

    def __init__(self, model: nn.Module, languages: Sequence[str], old_size: Optional[int] = None):
        masks = model.pathway_masks
        if masks is None:
            raise ValueError("--freeze_pathways needs pathway masks (--pathway_masks)")
        missing = [lang for lang in languages if lang not in masks]
        if missing:
            raise ValueError(f"--freeze_pathways {missing}: no pathway for them in the masks")
        if old_size is None:
            sizes = getattr(model, "output_vocab_sizes", {}) or {}
            old_size = max(int(sizes.get(lang, model.vocab_size)) for lang in languages)
        self.model = model
        self.languages = list(languages)
        self.frozen = frozen_elements(model, masks, languages, old_size)
        self.old_union = PathwayMasks({lang: masks.for_language(lang) for lang in languages}).union()
        self.buffers = {n: b.detach().clone() for n, b in model.named_buffers()}

    def restore_buffers(self) -> None:
        with torch.no_grad():
            for n, b in self.model.named_buffers():
                if n in self.buffers:
                    b.copy_(self.buffers[n])

    def register_hooks(self, optimizer: torch.optim.Optimizer):
        """Guard every ``optimizer.step()``; returns handles with ``remove()``."""
        update = MaskedUpdate(dict(self.model.named_parameters()), optimizer)
        frozen = self.frozen
        handles = [update.register_hooks(lambda: frozen)]
        handles.append(optimizer.register_step_post_hook(lambda *a: self.restore_buffers()))
        return handles

    def prune(self, weights: Mapping[str, Tensor], sparsity: float, scope: str,
              current: Mapping[str, Tensor]) -> Dict[str, Tensor]:
        """IMP of the new pathway: ``sparsity`` inside and outside the old union apart.

        The free weights (outside the old union) may hold other magnitudes than the
        trained shared ones (zeros, or the dense model's values): one magnitude ranking
        over all weights could prune every one of them and leave the new language nothing
        it may write.  The two regions are pruned apart: outside the union the new
        pathway keeps the target share of the free weights (what it trains); inside, the
        largest-magnitude weights up to as many as one pathway holds of the whole (what it
        reads; the whole union when that is smaller).  Why not the target share of the
        union: overlapping pathways make the union barely larger than one pathway (the
        default recipe: 32.8% of the weights, each pathway 30%), so 30% of the union is a
        third of a working pathway and the new language read a crippled network (it
        learned nothing in 120 steps).  When the pathway started
        from an old language's (``meta["shared_from"]``), its shared part is that
        working pathway and is kept whole; only the free region is pruned.
        """
        keep_shared = bool(self.model.pathway_masks.meta.get("shared_from"))
        out: Dict[str, Tensor] = {}
        groups = [list(weights)] if scope == "global" else [[n] for n in weights]
        for names in groups:
            w = {n: weights[n] for n in names}
            total = sum(weights[n].numel() for n in names)
            for inside in (True, False):
                region = {n: self.old_union[n] if inside else ~self.old_union[n] for n in names}
                share = sum(int(r.count_nonzero()) for r in region.values()) / max(total, 1)
                cur = {n: current[n] & region[n] for n in names}
                if inside and keep_shared:
                    out.update(cur)
                    continue
                # inside: as many weights as one pathway holds (all of a smaller union);
                # outside: the target share of the free weights
                keep = min(1.0 - sparsity, share) if inside else (1.0 - sparsity) * share
                kept = magnitude_prune(w, 1.0 - keep, "global", current=cur)
                for n in names:
                    out[n] = kept[n] if inside else out[n] | kept[n]
        return out
