"""ASRPathwaysTask: ESPnet's transducer task, building the pathway transducer.

It is :class:`espnet2.tasks.asr_transducer.ASRTransducerTask` (same frontend, specaug,
normalize, encoder, decoder and joint-network options, same YAML) plus:

* ``--languages``: the language list; an utterance's ``lang`` id indexes it;
* ``lang`` as an optional data name, fed from a ``utt2lang_id`` ``text_int`` file;
* ``--pathway_masks``: a saved mask set; when given, training and validation run each
  language through its pathway ``W * m_l``;
* ``--normalize causal_mvn``: :class:`~espnet_pathways.normalize.CausalMVN`, ESPnet's
  global MVN followed by a running (streamable) per-utterance mean, beside ESPnet's
  ``global_mvn`` and ``utterance_mvn``;
* ``--preprocessor_conf``: further keywords of ESPnet's ``CommonPreprocessor``, as
  ESPnet's ASR task has them (its transducer task has none), so that its on-the-fly
  waveform augmentation (``data_aug_effects``: speed perturbation, pitch shift, band
  limits, codecs, ...) reaches a transducer;
* :class:`~espnet_pathways.trainer.PathwayTrainer`, which masks optimizer updates and
  runs iterative magnitude pruning inside ESPnet's own training loop.
"""
from __future__ import annotations

import argparse
import itertools
import logging
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
import torch
from typeguard import typechecked

import espnet2.tasks.asr_transducer as espnet_task
from espnet2.asr_transducer.encoder.encoder import Encoder
from espnet2.tasks.asr_transducer import ASRTransducerTask
from espnet2.train.class_choices import ClassChoices
from espnet2.train.preprocessor import CommonPreprocessor
from espnet2.utils.nested_dict_action import NestedDictAction
from espnet2.utils.types import str_or_none

from espnet_pathways.encoders import ENCODER_CHOICES, build_encoder
from espnet_pathways.model import PathwayTransducerModel, log_model_summary
from espnet_pathways.normalize import CausalMVN
from espnet_pathways.trainer import PathwayTrainer

#: ESPnet's ``--normalize`` choices plus ``causal_mvn``.
normalize_choices = ClassChoices(
    "normalize",
    classes=dict(espnet_task.normalize_choices.classes, causal_mvn=CausalMVN),
    type_check=espnet_task.normalize_choices.base_type,
    default=espnet_task.normalize_choices.default,
    optional=espnet_task.normalize_choices.optional,
)


class ASRPathwaysTask(ASRTransducerTask):
    """Transducer task whose model knows each utterance's language."""

    trainer = PathwayTrainer
    class_choices_list = [
        normalize_choices if choices.name == "normalize" else choices
        for choices in ASRTransducerTask.class_choices_list
    ]

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
        group.add_argument(
            "--preprocessor_conf",
            action=NestedDictAction,
            default=dict(),
            help="Further keywords of ESPnet's CommonPreprocessor (they win over the "
            "task's own), e.g. data_aug_effects / data_aug_num / data_aug_prob with fs "
            "(the sample rate) for on-the-fly waveform augmentation in training",
        )
        # The pruning options are the trainer's: AbsTask.get_parser adds them.

    @classmethod
    def build_sequence_iter_factory(cls, args: argparse.Namespace, iter_options, mode: str):
        """ESPnet's sequence iterator; with ``--language_batches homogeneous`` its
        training batches are replaced by :class:`LanguageHomogeneousSampler`'s, drawn
        anew every epoch (ESPnet's iterator calls ``generate(epoch + seed)``).

        Under DDP, ESPnet's dataset loads only the utterances of this rank's share of
        *its own* batches (``keys_to_load``); ours are other batches, different in every
        epoch, so the dataset is rebuilt for every utterance a draw can hold (without
        that, a rank asked for an utterance its dataset never loaded: KeyError in the
        first step).
        """
        factory = super().build_sequence_iter_factory(args, iter_options, mode)
        if not (iter_options.train and getattr(args, "language_batches", "mixed") == "homogeneous"):
            return factory
        from espnet_pathways.samplers import LanguageHomogeneousSampler, RankShareSampler

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
        logging.info("[%s] Batch sampler replaced: %s", mode, sampler)
        if distributed:
            factory.sampler = RankShareSampler(sampler, torch.distributed.get_rank(), world)
            factory.dataset = cls.build_dataset(
                args, iter_options,
                set(itertools.chain.from_iterable(sampler.category2utt.values())))
        else:
            factory.sampler = sampler
        return factory

    @classmethod
    def build_preprocess_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Optional[Callable[[str, Dict[str, np.ndarray]], Dict[str, np.ndarray]]]:
        """ESPnet's transducer preprocessor, built with ``--preprocessor_conf``'s keywords.

        ESPnet's ASR task passes ``preprocessor_conf`` to its ``CommonPreprocessor``; its
        transducer task builds the same class without it, which left the waveform
        augmentation unreachable.  The one piece that differs is the class it calls:
        within ESPnet's own builder, ``CommonPreprocessor`` takes these keywords too.
        """
        conf = dict(getattr(args, "preprocessor_conf", None) or {})
        if not conf:
            return super().build_preprocess_fn(args, train)
        check_preprocessor_conf(conf)

        def preprocessor(**kwargs: Any) -> CommonPreprocessor:
            return CommonPreprocessor(**{**kwargs, **conf})

        with substituted(espnet_task, CommonPreprocessor=preprocessor):
            return super().build_preprocess_fn(args, train)

    @classmethod
    def optional_data_names(
        cls, train: bool = True, inference: bool = False
    ) -> Tuple[str, ...]:
        return ("lang",)

    @classmethod
    @typechecked
    def build_model(cls, args: argparse.Namespace) -> PathwayTransducerModel:
        """ESPnet's ``ASRTransducerTask.build_model``, building our encoder and model.

        One build, by ESPnet's own code: :func:`pathway_builders` substitutes, for the
        duration of the call only, the names that differ (``--encoder``, the
        ``--normalize`` choices and :class:`PathwayTransducerModel`); everything else
        (token list, frontend, specaug, decoder, joint network, ``model_conf``) is
        ESPnet's.
        """
        languages = list(getattr(args, "languages", None) or [])
        with pathway_builders(getattr(args, "encoder", None), languages):
            model = super().build_model(args)
        masks_path = getattr(args, "pathway_masks", None)
        if masks_path:
            from espnet_pathways.masks import PathwayMasks

            model.set_pathway_masks(PathwayMasks.load(masks_path))
        log_model_summary(model)
        return model


def check_preprocessor_conf(conf: Dict[str, Any]) -> None:
    """Refuse, with the key at fault, a ``--preprocessor_conf`` that would break silently:
    ``train`` is the task's to set (training vs. inference), and ESPnet applies
    ``data_aug_effects`` at the sample rate ``fs``, whose default 0 fails deep inside a
    data-loader worker."""
    if "train" in conf:
        raise ValueError("--preprocessor_conf: 'train' is set by the task, not the config")
    if conf.get("data_aug_effects") and not conf.get("fs"):
        raise ValueError(
            "--preprocessor_conf: data_aug_effects needs fs, the audio's sample rate "
            "(e.g. fs: 16000)"
        )


@contextmanager
def pathway_builders(encoder_type: Optional[str], languages: Sequence[str]) -> Iterator[None]:
    """Within the block, ESPnet's transducer task builds ``build_encoder(encoder_type,
    ...)`` for its ``Encoder``, :class:`PathwayTransducerModel` for its model, and looks
    ``--normalize`` up in this module's :data:`normalize_choices`.

    ``ASRTransducerTask.build_model`` looks these names up in its module when it runs, so
    replacing them there (and restoring them on exit, however the block ends) reuses
    ESPnet's builder unchanged.  ``model_conf.rnnt_loss_impl`` reaches our model through
    ESPnet's ``**args.model_conf``.
    """
    def encoder(input_size: int, **encoder_conf: Any) -> Encoder:
        return build_encoder(encoder_type, input_size, encoder_conf)

    def model(**kwargs: Any) -> PathwayTransducerModel:
        return PathwayTransducerModel(languages=languages, **kwargs)

    with substituted(espnet_task, Encoder=encoder, ESPnetASRTransducerModel=model,
                     normalize_choices=normalize_choices):
        yield


@contextmanager
def substituted(module: ModuleType, **names: Any) -> Iterator[None]:
    """Within the block, ``module.<name>`` is the given object; the originals are back
    on exit, however the block ends.

    The one way this plugin swaps a piece of ESPnet: ESPnet's functions look their
    collaborators up in their own module at call time, so a scoped substitution reuses
    ESPnet's code unchanged where only one piece differs.
    """
    saved = {name: getattr(module, name) for name in names}
    for name, value in names.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(module, name, value)
