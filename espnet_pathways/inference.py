"""PathwaySpeech2Text: ESPnet's transducer ``Speech2Text`` with the language chosen per call.

Decoding language ``l`` with a pathway model uses the weights ``W * m_l``.  The model is
built and streamed exactly as ESPnet does it (``espnet2.bin.asr_transducer_inference.
Speech2Text``: ``__call__`` for a whole utterance, ``streaming_decode(chunk, is_final)``
chunk by chunk through ``encoder.chunk_forward``); this class only

* keeps the dense (union) weights of the masked parameters aside and writes
  ``W * m_l`` into the model when the language changes (``set_language``);
* checks the language: an unknown code is an error listing the known ones, and a mask
  file with a language the model was not configured for is refused (as in training);
* names the file when a checkpoint is missing or truncated;
* detokenises merged per-language word pieces (``token_mode: merged``);
* fuses each language's own LM when the LM's paths hold ``{lang}``, and puts a fused LM
  in eval mode (ESPnet leaves its dropout on) (:mod:`espnet_pathways.lm_fusion`);
* int8 (:mod:`espnet_pathways.quantize`): ESPnet's ``quantize_asr_model`` /
  ``quantize_modules`` / ``quantize_dtype`` pass through; a pathway model is then
  quantized per language (``W * m_l``, then int8), and a stored int8 file
  (``export_pathway --quantize_asr_model true``) is loaded into ESPnet's quantized model.
"""
from __future__ import annotations

import logging
import pickle
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import torch

import espnet2.bin.asr_transducer_inference as espnet_s2t
from espnet2.bin.asr_transducer_inference import Speech2Text

from espnet_pathways.checkpoint import CheckpointError, describe_load_error
from espnet_pathways.languages import UnknownLanguageError, check_mask_languages
from espnet_pathways.tokens import pieces_to_text


class PathwaySpeech2Text(Speech2Text):
    """Speech2Text for (pathway) transducers trained with ``asr_pathways_train``.

    Args:
        pathway_masks: mask file; default: the ``pathway_masks`` of the training config
            (none for a dense model).
        lang: the language decoded until ``set_language`` (or a call's ``lang=``) says
            otherwise.
        lm_token_bonus: with an LM fused (``lm_train_config``, ``lm_file``, ``lm_weight``),
            a reward per emitted token that offsets the LM's negative scores
            (:mod:`espnet_pathways.lm_fusion`).  With ``{lang}`` in ``lm_train_config``
            and ``lm_file``, each language is decoded with its own LM.
        exact_streaming: feed the encoder (Conformer or Emformer) chunk by chunk exactly
            as offline (:mod:`espnet_pathways.streaming`); False: ESPnet's
            ``OnlineAudioProcessor``, which loses about one feature frame per chunk.
        **kwargs: as :class:`espnet2.bin.asr_transducer_inference.Speech2Text`, including
            ``quantize_asr_model``, ``quantize_modules``, ``quantize_dtype``;
            ``asr_model_file`` may be a stored int8 file.
    """

    def __init__(
        self,
        *args: Any,
        pathway_masks: Union[str, Path, None] = None,
        lang: Optional[str] = None,
        exact_streaming: bool = True,
        lm_token_bonus: float = 0.0,
        **kwargs: Any,
    ) -> None:
        # ESPnet's Speech2Text builds the model with ASRTransducerTask, whose build_model
        # knows only ESPnet's model and Encoder: for this call, it is ASRPathwaysTask.
        from espnet_pathways.quantize import (
            int8_speech2text_kwargs,
            load_int8_into,
            round_weights_to_int8_,
        )
        from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask, substituted

        from espnet_pathways.lm_fusion import is_per_language

        model_file = kwargs.get("asr_model_file")
        check_model_files(kwargs.get("asr_train_config"), model_file)
        # One LM per language ({lang} in its paths): ESPnet builds the search without an
        # LM, and set_language fuses the language's own (espnet_pathways.lm_fusion).
        per_language_lm = None
        if is_per_language(kwargs.get("lm_train_config")) or is_per_language(kwargs.get("lm_file")):
            per_language_lm = (kwargs.pop("lm_train_config", None), kwargs.pop("lm_file", None))
        check_model_files(kwargs.get("lm_train_config"), kwargs.get("lm_file"), what="LM ")
        stored_int8 = int8_speech2text_kwargs(kwargs)  # None unless an int8 file
        try:
            with substituted(espnet_s2t, ASRTransducerTask=ASRPathwaysTask):
                super().__init__(*args, **kwargs)
        except FileNotFoundError:
            raise  # names its file (a stats file, a bpe model of the config)
        except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as e:
            # torch's zip reader does not say which file it was reading
            raise CheckpointError(
                f"{model_file}: cannot load the model ({describe_load_error(e)}); the "
                "checkpoint is truncated or does not belong to this config"
            ) from e
        if kwargs.get("lm_train_config") is not None:
            from espnet_pathways.lm_fusion import add_token_bonus, check_lm_tokens

            check_lm_tokens(kwargs["lm_train_config"], self.asr_model.token_list)
            add_token_bonus(self.beam_search, lm_token_bonus)
        if stored_int8 is not None:
            load_int8_into(self.asr_model, stored_int8, where=f"{model_file}")
        elif kwargs.get("quantize_asr_model") and kwargs.get("quantize_dtype", "qint8") == "qint8":
            # ESPnet quantized the Linear/LSTM layers; the weights it leaves in float get
            # their int8 values, as the stored int8 file holds them (quantize.py).
            round_weights_to_int8_(self.asr_model)
        args_ = self.asr_train_args
        self.languages: List[str] = list(getattr(args_, "languages", None) or [])
        self.token_mode: str = getattr(args_, "token_mode", "shared") or "shared"
        mask_file = pathway_masks or getattr(args_, "pathway_masks", None)
        self.masks = None
        self._dense: Dict[str, torch.Tensor] = {}
        self.pathway_quantizer = None
        if mask_file and kwargs.get("quantize_asr_model"):
            self.masks = self._quantize_per_language(mask_file, kwargs, ASRPathwaysTask)
            if not self.languages:
                self.languages = self.masks.languages
        elif mask_file:
            from espnet_pathways.masks import PathwayMasks

            masks = PathwayMasks.load(mask_file)
            if self.languages:  # the rule training applies (model.set_pathway_masks)
                check_mask_languages(masks.languages, self.languages, str(mask_file))
            masks.check_compatible(self.asr_model)
            self.masks = masks.to(self.device)
            params = dict(self.asr_model.named_parameters())
            self._dense = {n: params[n].detach().clone() for n in masks.param_names}
            if not self.languages:
                self.languages = masks.languages
        # add_language: each language scores its own prefix of the vocabulary.
        self.output_rows = None
        if getattr(self.asr_model, "output_vocab_sizes", None):
            from espnet_pathways.add_language import OutputRows

            if self.pathway_quantizer is not None:
                raise ValueError("a model grown by add_language is quantized per language "
                                 "through export_pathway --quantize_asr_model true")
            self.output_rows = OutputRows(self.asr_model)
        self.per_language_lms = None
        if per_language_lm is not None and kwargs.get("lm_weight", 1.0) != 0.0:
            from espnet_pathways.lm_fusion import PerLanguageLMs

            self.per_language_lms = PerLanguageLMs(
                *per_language_lm, lm_weight=kwargs.get("lm_weight", 1.0),
                lm_token_bonus=lm_token_bonus, device=self.device,
                asr_tokens=self.asr_model.token_list)
            self.per_language_lms.check(self.known_languages)
        self.lang: Optional[str] = None
        self._in_stream = False
        # Exact chunking for ESPnet's Conformer and the Emformer (see
        # espnet_pathways.streaming); other models keep ESPnet's OnlineAudioProcessor path.
        self.exact_stream = None
        if self.streaming and exact_streaming:
            from espnet_pathways.streaming import ExactStreamingInput, supports_exact_streaming

            if supports_exact_streaming(self.asr_model):
                self.exact_stream = ExactStreamingInput(self.asr_model)
        if lang is not None:
            self.set_language(lang)

    def _quantize_per_language(self, mask_file, kwargs: Dict[str, Any], task):
        """Quantized pathways: int8 of ``W * m_l`` per language (a per-tensor scale of the
        union's weights would not be the one of ``l``'s export); ESPnet's quantized model
        of the union weights is only the template the per-language states load into."""
        from espnet_pathways.masks import PathwayMasks
        from espnet_pathways.quantize import PathwayQuantizer

        if kwargs.get("asr_model_file") is None:
            raise ValueError("a quantized pathway model needs its float asr_model_file")
        float_model, _ = task.build_model_from_file(
            kwargs.get("asr_train_config"), kwargs["asr_model_file"], self.device
        )
        masks = PathwayMasks.load(mask_file)
        self.pathway_quantizer = PathwayQuantizer(
            float_model, masks, kwargs.get("quantize_modules"),
            kwargs.get("quantize_dtype", "qint8"),
        )
        return masks

    # --------------------------------------------------------------- language
    @property
    def known_languages(self) -> List[str]:
        """Languages this model can decode (those with a pathway, if it has masks)."""
        return self.masks.languages if self.masks is not None else self.languages

    def set_language(self, lang: str) -> None:
        """Decode ``lang`` from now on: write ``W * m_lang`` into the model."""
        if lang == self.lang:
            return
        known = self.known_languages
        if known and lang not in known:
            raise UnknownLanguageError(
                f"unknown language {lang!r}; this model knows: {' '.join(known)}"
            )
        if self._in_stream:
            raise RuntimeError(
                f"cannot switch language to {lang!r} in the middle of a stream "
                f"(current: {self.lang!r}); finish it with is_final=True first"
            )
        if self.pathway_quantizer is not None:
            self.asr_model.load_state_dict(self.pathway_quantizer.state_dict(lang))
        elif self.masks is not None:
            mask = self.masks.for_language(lang)
            params = dict(self.asr_model.named_parameters())
            with torch.no_grad():
                for name, dense in self._dense.items():
                    params[name].copy_(dense * mask[name].to(dense.dtype))
        if self.output_rows is not None:  # add_language
            self.output_rows.select(self.asr_model.output_vocab_size(lang))
        if self.per_language_lms is not None:
            self.per_language_lms.install(self.beam_search, lang)
        self.lang = lang

    def abort_stream(self) -> None:
        """Drop a stream that failed half-way, so that the next utterance starts clean."""
        self._in_stream = False
        if self.streaming:  # ESPnet keeps streaming state only in streaming mode
            self.reset_streaming_cache()

    def _select(self, lang: Optional[str]) -> None:
        if lang is not None:
            self.set_language(lang)
        elif self.masks is not None and self.lang is None:
            raise ValueError(
                f"this is a pathway model: give lang= (one of {' '.join(self.known_languages)})"
            )
        elif self.per_language_lms is not None and self.lang is None:
            raise ValueError("one LM per language ({lang} in the LM's paths) needs the "
                             "language: give lang=")

    # --------------------------------------------------------------- decoding
    @torch.no_grad()
    def __call__(self, speech: Union[torch.Tensor, np.ndarray], lang: Optional[str] = None):
        """Decode a whole utterance (offline) in language ``lang``."""
        self._select(lang)
        return super().__call__(speech)

    @torch.no_grad()
    def streaming_decode(
        self,
        speech: Union[torch.Tensor, np.ndarray],
        is_final: bool = False,
        lang: Optional[str] = None,
    ):
        """Decode one chunk; the language is fixed for the whole stream."""
        self._select(lang)
        self._in_stream = not is_final
        encoder = self.asr_model.encoder
        if hasattr(encoder, "final_chunk"):  # EmformerEncoder: flush its buffered frames
            encoder.final_chunk = is_final
        if self.exact_stream is None:
            return super().streaming_decode(speech, is_final=is_final)
        if isinstance(speech, np.ndarray):
            speech = torch.tensor(speech)
        speech = speech.to(device=self.device, dtype=getattr(torch, self.dtype))
        x = self.exact_stream.embed(self.exact_stream.features(speech, is_final))
        # The Emformer may hold frames back (a segment waits for its right context) and
        # emits them on the final chunk even when that chunk brings no new frame.
        enc_out = self.exact_stream.encode(
            x, self.num_processed_frames, self.left_context, is_final=is_final
        )
        if enc_out.size(1) > 0:
            self.num_processed_frames += enc_out.size(1)
            nbest_hyps = self.beam_search(enc_out[0], is_final=is_final)
        elif is_final:  # nothing new: close the search with what it has
            nbest_hyps = self.beam_search(
                torch.zeros(0, encoder.output_size, device=self.device), is_final=True
            )
        else:
            nbest_hyps = self.beam_search.search_cache or []
        if is_final:
            self.reset_streaming_cache()
        return nbest_hyps

    def reset_streaming_cache(self) -> None:
        """ESPnet's reset, plus the exact-chunking buffers."""
        super().reset_streaming_cache()
        if getattr(self, "exact_stream", None) is not None:
            self.exact_stream.reset()

    def decode_streaming_utterance(
        self, speech: Union[torch.Tensor, np.ndarray], lang: Optional[str] = None
    ):
        """Feed a whole utterance chunk by chunk (the real streaming path)."""
        if isinstance(speech, np.ndarray):
            speech = torch.tensor(speech)
        step = self.audio_processor.decoding_samples
        n_full = len(speech) // step
        hyps = None
        for i in range(n_full + 1):
            final = i == n_full
            chunk = speech[i * step:] if final else speech[i * step:(i + 1) * step]
            hyps = self.streaming_decode(chunk, is_final=final, lang=lang)
        return hyps

    def hypotheses_to_results(self, nbest_hyps) -> List[Any]:
        results = super().hypotheses_to_results(nbest_hyps)
        if self.token_mode != "merged":
            return results
        return [(pieces_to_text(token), token, token_int, hyp)
                for _, token, token_int, hyp in results]

    def text(self, nbest_hyps) -> str:
        """The best hypothesis as text."""
        results = self.hypotheses_to_results(nbest_hyps)
        return (results[0][0] or "").strip() if results else ""

    @staticmethod
    def from_pretrained(
        model_tag: Optional[str] = None, use_lm: bool = True, **kwargs: Any
    ) -> "PathwaySpeech2Text":
        """Build from a model-zoo tag, a Hugging Face id or a packed zip (unpacked by
        espnet_model_zoo; a compact zip is expanded once, beside the unpacked files).

        A zip with a fusion LM decodes with it at the packed decoding config's
        ``lm_weight`` / ``lm_token_bonus`` (``use_lm=False``: without it); the caller's
        own arguments (a mask file, LM weights, ...) win over the zip's."""
        if model_tag is not None:
            from espnet_pathways.packing import decoding_kwargs, unpack_model

            # unpack_model checks the zip and cleans up a failed unpack
            packed = decoding_kwargs(unpack_model(model_tag), use_lm=use_lm)
            given = {k: v for k, v in kwargs.items() if v is not None}
            kwargs = {**packed, **given}
        return PathwaySpeech2Text(**kwargs)


def check_model_files(train_config: Any, model_file: Any, what: str = "") -> None:
    """Name a missing config or model file before ESPnet opens it (``what``: "LM ")."""
    for kind, f in (("training config", train_config), ("model file", model_file)):
        if f is not None and not Path(f).is_file():
            raise FileNotFoundError(f"{f}: {what}{kind} not found")


def log_decoder(s2t: PathwaySpeech2Text) -> None:
    logging.info(
        "Decoder: languages=%s, pathways=%s, streaming=%s, token_mode=%s",
        s2t.languages, "none (dense)" if s2t.masks is None else s2t.masks.languages,
        s2t.streaming, s2t.token_mode,
    )
