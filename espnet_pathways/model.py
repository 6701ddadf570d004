"""The pathway transducer: ESPnet's RNN-T whose weights are masked per language.

``PathwayTransducerModel`` is ESPnet's ``ESPnetASRTransducerModel`` with three changes:

1. The RNN-T loss is ``torchaudio.functional.rnnt_loss`` (ESPnet's default imports
   ``warprnnt_pytorch``, which is not on PyPI), or the same loss written in PyTorch ops
   (``rnnt_loss_impl: pytorch``, several times faster on CPU; see
   :mod:`espnet_pathways.rnnt_loss`).  It is computed here, where a reader can see it.
2. Every batch carries each utterance's language id (``lang``, from ``utt2lang_id``).
   The dense model only checks it; it is what selects a pathway.
3. With pathway masks set (``set_pathway_masks``), the batch is split by language and
   each sub-batch runs through ``W * m_l`` (``torch.func.functional_call`` over
   ``masked_parameters``).  The losses are combined with weights ``n_l / N``, so a weight
   receives the sum of the gradients of the languages whose mask keeps it -- the same
   gradient whether the batch was mixed or language-homogeneous -- and exactly zero
   gradient outside the union of the masks present.

Masks are applied in one place: :func:`espnet_pathways.masks.masked_parameters`.  They
live where the weights live: ``set_pathway_masks`` puts them on the parameters' device and
``_apply`` (what ``.to()``, ``.cuda()``, ``.half()`` call) moves them along with the weights,
so no mask is ever copied in a forward.  They are not buffers: the state_dict keys stay
ESPnet's, and DDP does not broadcast them every forward.
"""
from __future__ import annotations

import logging
from typing import Dict, List, Optional, Sequence, Set, Tuple

import torch
from torch.func import functional_call

from espnet2.asr_transducer.espnet_transducer_model import ESPnetASRTransducerModel
from espnet2.torch_utils.device_funcs import force_gatherable

from espnet_pathways.languages import check_languages


class PathwayTransducerModel(ESPnetASRTransducerModel):
    """ESPnet transducer with our own RNN-T loss and per-language pathways.

    Args:
        languages: the recipe's language list; ``lang`` ids index into it.
        rnnt_loss_impl: "torchaudio" (reference) or "pytorch" (faster on CPU).
        output_vocab_sizes: (a model grown by adding a language) ``{lang: n}``: language
            ``lang`` scores only the first ``n`` tokens (:mod:`espnet_pathways.add_language`).
        *args, **kwargs: as :class:`ESPnetASRTransducerModel`.
    """

    def __init__(
        self,
        *args,
        languages: Sequence[str] = (),
        rnnt_loss_impl: str = "torchaudio",
        output_vocab_sizes: Optional[Dict[str, int]] = None,
        **kwargs,
    ) -> None:
        from espnet_pathways.rnnt_loss import LOSS_IMPLEMENTATIONS

        if rnnt_loss_impl not in LOSS_IMPLEMENTATIONS:
            raise ValueError(
                f"model_conf.rnnt_loss_impl={rnnt_loss_impl!r}: choose one of "
                f"{', '.join(LOSS_IMPLEMENTATIONS)}"
            )
        if kwargs.get("fastemit_lambda", 0.0) > 0.0:
            raise ValueError(
                "fastemit_lambda > 0 is not supported: the loss is "
                "torchaudio.functional.rnnt_loss, which has no FastEmit term"
            )
        if kwargs.get("use_k2_pruned_loss", False):
            raise ValueError("use_k2_pruned_loss is not supported (k2 is not installed)")
        super().__init__(*args, **kwargs)
        self.rnnt_loss_impl = rnnt_loss_impl
        self.languages: List[str] = check_languages(languages) if languages else []
        # Set by set_pathway_masks(); None means the dense model.
        self.pathway_masks = None
        # Languages of the training batches since the last optimizer step: the
        # trainer's masked update reads (and clears) it to know which pathways
        # contributed to the step.
        self.step_languages: Set[str] = set()
        # Dynamic pathways (espnet_pathways.dynamic): called with each training language
        # pass's languages and effective weights W * m_l, to hook dL_l/d(W * m_l).
        self.pathway_grad_observer = None
        # add_language: per-language output vocabulary (prefix of the token list).
        self.output_vocab_sizes: Dict[str, int] = dict(output_vocab_sizes or {})

    # ------------------------------------------------------------------ masks
    def set_pathway_masks(self, masks) -> None:
        """Use ``masks`` (a :class:`~espnet_pathways.masks.PathwayMasks`) from now on.

        The masks must match this model's prunable parameters and name only configured
        languages (checked here).  A language without a mask (e.g. while pruning one
        language's pathway) is an error when one of its utterances arrives.
        """
        if masks is None:
            self.pathway_masks = None
            return
        masks.check_compatible(self)
        unknown = [lang for lang in masks.languages if self.languages and lang not in self.languages]
        if unknown:
            raise ValueError(
                f"the pathway masks are for language(s) {unknown}, which are not in "
                f"--languages {self.languages}"
            )
        self.pathway_masks = masks.to(self._weights_device())

    def _weights_device(self) -> torch.device:
        return next(self.parameters()).device

    def _apply(self, fn, recurse: bool = True):
        """``nn.Module._apply`` (behind ``.to()``/``.cuda()``/``.half()``), then move the
        masks to where the weights now are: bool masks keep their dtype, as buffers would."""
        super()._apply(fn, recurse)
        masks = getattr(self, "pathway_masks", None)
        if masks is not None:
            device = self._weights_device()
            first = next(iter(masks.for_language(masks.languages[0]).values()), None)
            if first is not None and first.device != device:
                self.pathway_masks = masks.to(device)
        return self

    def forget_languages_of_skipped_step(self) -> bool:
        """Clear ``step_languages`` if the last step's gradients were dropped unused.

        ESPnet skips ``optimizer.step()`` on a non-finite gradient norm (and GradScaler on
        an AMP overflow), so the trainer's post-step hook that clears ``step_languages``
        does not run; ESPnet still calls ``zero_grad()`` (``set_to_none``).  Languages
        recorded while every gradient is ``None`` therefore belong to a batch that never
        reached an update: keeping them would let the next update move their pathways.
        Called at the start of every training forward (the check stops at the first
        parameter holding a gradient, i.e. at once while gradients accumulate).
        """
        if (
            self.pathway_masks is not None
            and self.step_languages
            and all(p.grad is None for p in self.parameters())
        ):
            logging.info(
                "The last step was skipped (non-finite gradient): its languages %s do not "
                "own the next update", sorted(self.step_languages),
            )
            self.step_languages.clear()
            return True
        return False

    def output_vocab_size(self, lang: str) -> int:
        """Tokens language ``lang`` scores: the first ``n`` of the token list (add_language)."""
        return int(self.output_vocab_sizes.get(lang, self.vocab_size))

    def language_name(self, lang_id: int) -> str:
        """Map an integer id to its code, with a clear error for a bad id."""
        if not 0 <= lang_id < len(self.languages):
            raise ValueError(
                f"language id {lang_id} is out of range for languages {self.languages} "
                "(is utt2lang_id made with the same --languages?)"
            )
        return self.languages[lang_id]

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        speech: torch.Tensor,
        speech_lengths: torch.Tensor,
        text: torch.Tensor,
        text_lengths: torch.Tensor,
        lang: Optional[torch.Tensor] = None,
        lang_lengths: Optional[torch.Tensor] = None,
        **kwargs,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor], torch.Tensor]:
        """Loss of a batch; with masks, each language's utterances use W * m_l."""
        if kwargs.pop("_masked_sub_batch", False):
            # Inner call from the loop below, already running with W * m_l.
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)
        if lang is None:
            if self.pathway_masks is not None:
                raise ValueError(
                    "the pathway model needs each utterance's language: add "
                    "'utt2lang_id,lang,text_int' to --*_data_path_and_name_and_type"
                )
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)

        lang_ids = lang.view(lang.size(0), -1)[:, 0].long()
        present = [int(i) for i in torch.unique(lang_ids).tolist()]
        names = [self.language_name(i) for i in present] if self.languages else []
        if self.training:
            self.forget_languages_of_skipped_step()
            self.step_languages.update(names)
        if self.pathway_masks is None:
            return super().forward(speech, speech_lengths, text, text_lengths, **kwargs)

        from espnet_pathways.add_language import restrict_output
        from espnet_pathways.masks import masked_parameters

        batch_size = speech.size(0)
        loss = speech.new_zeros(())
        stats: Dict[str, torch.Tensor] = {}
        # Languages sharing one mask object (language-agnostic pruning) share a pass.
        # add_language: ... and the same output vocabulary.
        groups: Dict[Tuple[int, int], Tuple[dict, List[int]]] = {}
        for lang_id, name in zip(present, names):
            mask = self.pathway_masks.for_language(name)
            key = (id(mask), self.output_vocab_size(name))
            groups.setdefault(key, (mask, []))[1].append(lang_id)
        for (_, n_tokens), (mask, ids) in groups.items():
            selected = torch.isin(lang_ids, torch.tensor(ids, device=lang_ids.device))
            idx = selected.nonzero(as_tuple=True)[0]
            share = idx.numel() / batch_size
            params = masked_parameters(self, mask)
            if self.training and self.pathway_grad_observer is not None:  # dynamic pathways
                self.pathway_grad_observer([self.language_name(i) for i in ids], params)
            if n_tokens < self.vocab_size:  # add_language: an old language's vocabulary
                params = restrict_output(params, n_tokens)
            sub_loss, sub_stats, _ = functional_call(
                self,
                params,
                (speech[idx], speech_lengths[idx], text[idx], text_lengths[idx]),
                {"_masked_sub_batch": True},
            )
            loss = loss + share * sub_loss
            for key, value in sub_stats.items():
                if value is not None:
                    stats[key] = stats.get(key, 0.0) + share * value.detach()
        return force_gatherable((loss, stats, batch_size), loss.device)

    # ------------------------------------------------------------------- loss
    def _calc_transducer_loss(
        self,
        encoder_out: torch.Tensor,
        joint_out: torch.Tensor,
        target: torch.Tensor,
        t_len: torch.Tensor,
        u_len: torch.Tensor,
    ) -> torch.Tensor:
        """RNN-T loss, mean over the batch (like ESPnet's default).

        ``joint_out`` holds unnormalised logits (B, T, U+1, V); both implementations apply
        the log-softmax themselves.
        """
        from espnet_pathways.rnnt_loss import rnnt_loss

        with torch.autocast(device_type=joint_out.device.type, enabled=False):
            return rnnt_loss(
                joint_out.float(),
                target,
                t_len,
                u_len,
                blank=0,
                reduction="mean",
                implementation=self.rnnt_loss_impl,
            )


def count_parameters(model: torch.nn.Module) -> int:
    """Number of parameters (for the Dense-small sizing and RESULTS.md)."""
    return sum(p.numel() for p in model.parameters())


def log_model_summary(model: PathwayTransducerModel) -> None:
    """One log line a user can read from the training log."""
    logging.info(
        "PathwayTransducerModel: %d parameters, languages=%s, pathways=%s",
        count_parameters(model),
        model.languages,
        "none (dense)" if model.pathway_masks is None else model.pathway_masks.languages,
    )
