"""ASRPathwaysTask: ESPnet's transducer task, building the pathway transducer.

It is :class:`espnet2.tasks.asr_transducer.ASRTransducerTask` (same frontend, specaug,
normalize, encoder, decoder and joint-network options, same YAML) plus:

* ``--languages``: the language list; an utterance's ``lang`` id indexes it;
* ``lang`` as an optional data name, fed from a ``utt2lang_id`` ``text_int`` file;
* ``--pathway_masks``: a saved mask set; when given, training and validation run each
  language through its pathway ``W * m_l``;
* :class:`~espnet_pathways.trainer.PathwayTrainer`, which masks optimizer updates and
  runs iterative magnitude pruning inside ESPnet's own training loop.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Tuple

import torch
from typeguard import typechecked

from espnet2.asr_transducer.espnet_transducer_model import ESPnetASRTransducerModel
from espnet2.tasks.asr_transducer import ASRTransducerTask
from espnet2.utils.types import str_or_none

from espnet_pathways.encoders import ENCODER_CHOICES, build_encoder
from espnet_pathways.model import PathwayTransducerModel, log_model_summary
from espnet_pathways.trainer import PathwayTrainer


class ASRPathwaysTask(ASRTransducerTask):
    """Transducer task whose model knows each utterance's language."""

    trainer = PathwayTrainer

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        super().add_task_arguments(parser)
        group = parser.add_argument_group(description="Pathways related")
        group.add_argument(
            "--encoder",
            type=str,
            default="conformer",
            choices=list(ENCODER_CHOICES),
            help="Encoder type: ESPnet's transducer Encoder (conformer) or torchaudio's "
            "Emformer (espnet_pathways.encoders.EmformerEncoder); --encoder_conf holds "
            "its keyword arguments",
        )
        group.add_argument(
            "--languages",
            type=str,
            nargs="+",
            default=[],
            help="Language codes; utt2lang_id holds indices into this list",
        )
        group.add_argument(
            "--pathway_masks",
            type=str_or_none,
            default=None,
            help="Pathway mask file (espnet_pathways.masks); none = dense model",
        )
        group.add_argument(
            "--token_mode",
            type=str,
            default="shared",
            choices=["shared", "merged"],
            help="shared: one sentencepiece model; merged: per-language pieces, "
            "pre-segmented (token_type word) and joined back at inference",
        )
        group.add_argument(
            "--language_batches",
            type=str,
            default="mixed",
            choices=["mixed", "homogeneous"],
            help="Training batches: mixed languages (split by the model) or one "
            "language per batch (LanguageHomogeneousSampler, needs category2utt "
            "beside the first training data file)",
        )
        group.add_argument(
            "--language_sampling_power",
            type=float,
            default=1.0,
            help="beta of P(l) ~ (n_l/N)^beta for --language_batches homogeneous",
        )
        # The pruning options are the trainer's: AbsTask.get_parser adds them.

    @classmethod
    def build_sequence_iter_factory(cls, args: argparse.Namespace, iter_options, mode: str):
        """ESPnet's sequence iterator; with ``--language_batches homogeneous`` its
        training batches are replaced by :class:`LanguageHomogeneousSampler`'s."""
        factory = super().build_sequence_iter_factory(args, iter_options, mode)
        if not (iter_options.train and getattr(args, "language_batches", "mixed") == "homogeneous"):
            return factory
        from espnet2.iterators.sequence_iter_factory import RawSampler

        from espnet_pathways.samplers import LanguageHomogeneousSampler

        first = Path(iter_options.data_path_and_name_and_type[0][0])
        category2utt = first.parent / "category2utt"
        if not category2utt.exists():
            raise FileNotFoundError(
                f"--language_batches homogeneous needs {category2utt} (language -> utts)"
            )
        distributed = iter_options.distributed
        world = torch.distributed.get_world_size() if distributed else 1
        sampler = LanguageHomogeneousSampler(
            batch_bins=iter_options.batch_bins,
            shape_files=iter_options.shape_files,
            category2utt_file=str(category2utt),
            power=args.language_sampling_power,
            seed=args.seed,
            min_batch_size=world,
        )
        batches = list(sampler)
        if distributed:
            rank = torch.distributed.get_rank()
            batches = [b[rank::world] for b in batches]
        logging.info("[%s] Batch sampler replaced: %s", mode, sampler)
        factory.sampler = RawSampler(batches)
        return factory

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("lang",)

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> PathwayTransducerModel:
        """Build ESPnet's transducer modules, then the pathway model around them."""
        # Our model's own options are not ESPnetASRTransducerModel's: keep them out of
        # the base build, pass them to PathwayTransducerModel below.
        model_conf = dict(args.model_conf or {})
        loss_impl = model_conf.pop("rnnt_loss_impl", "torchaudio")
        args.model_conf = model_conf
        try:
            if (getattr(args, "encoder", None) or "conformer") == "conformer":
                base = super().build_model(args)
            else:
                base = cls._build_base_model(args)
        finally:
            args.model_conf = dict(args.model_conf, rnnt_loss_impl=loss_impl)
        languages = list(getattr(args, "languages", None) or [])
        model = PathwayTransducerModel(
            vocab_size=base.vocab_size,
            token_list=base.token_list,
            frontend=base.frontend,
            specaug=base.specaug,
            normalize=base.normalize,
            encoder=base.encoder,
            decoder=base.decoder,
            joint_network=base.joint_network,
            languages=languages,
            **args.model_conf,
        )
        masks_path = getattr(args, "pathway_masks", None)
        if masks_path:
            from espnet_pathways.masks import PathwayMasks

            model.set_pathway_masks(PathwayMasks.load(masks_path))
        log_model_summary(model)
        return model

    @classmethod
    def _build_base_model(cls, args: argparse.Namespace) -> ESPnetASRTransducerModel:
        """ASRTransducerTask.build_model with ``build_encoder(args.encoder, ...)`` in place
        of ESPnet's ``Encoder(input_size, **args.encoder_conf)`` (same modules, same order)."""
        from espnet2.asr_transducer.joint_network import JointNetwork
        from espnet2.tasks.asr_transducer import (
            decoder_choices,
            frontend_choices,
            normalize_choices,
            specaug_choices,
        )

        if isinstance(args.token_list, str):
            with open(args.token_list, encoding="utf-8") as f:
                token_list = [line.rstrip() for line in f]
            args.token_list = list(token_list)  # keep the config portable, as ESPnet does
        elif isinstance(args.token_list, (tuple, list)):
            token_list = list(args.token_list)
        else:
            raise RuntimeError("token_list must be str or list")
        vocab_size = len(token_list)
        if hasattr(args, "scheduler_conf"):
            args.model_conf["warmup_steps"] = args.scheduler_conf.get("warmup_steps", 25000)
        if getattr(args, "init", None) is not None:
            raise NotImplementedError("--init is not supported (as in ASRTransducerTask)")

        if args.input_size is None:
            frontend = frontend_choices.get_class(args.frontend)(**args.frontend_conf)
            input_size = frontend.output_size()
        else:
            frontend = None
            input_size = args.input_size
        specaug = (
            specaug_choices.get_class(args.specaug)(**args.specaug_conf)
            if args.specaug is not None else None
        )
        normalize = (
            normalize_choices.get_class(args.normalize)(**args.normalize_conf)
            if args.normalize is not None else None
        )
        encoder = build_encoder(args.encoder, input_size, args.encoder_conf)
        decoder = decoder_choices.get_class(args.decoder)(vocab_size, **args.decoder_conf)
        joint_network = JointNetwork(
            vocab_size, encoder.output_size, decoder.output_size, **args.joint_network_conf
        )
        return ESPnetASRTransducerModel(
            vocab_size=vocab_size,
            token_list=token_list,
            frontend=frontend,
            specaug=specaug,
            normalize=normalize,
            encoder=encoder,
            decoder=decoder,
            joint_network=joint_network,
            **args.model_conf,
        )


