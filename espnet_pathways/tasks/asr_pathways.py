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
from typing import Tuple

from typeguard import typechecked

from espnet2.tasks.asr_transducer import ASRTransducerTask
from espnet2.utils.types import str_or_none

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
        # The pruning options are the trainer's: AbsTask.get_parser adds them.

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("lang",)

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> PathwayTransducerModel:
        """Build ESPnet's transducer modules, then the pathway model around them."""
        base = super().build_model(args)
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


