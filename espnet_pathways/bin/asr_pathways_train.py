#!/usr/bin/env python3
"""Train a (pathway) transducer: ``python -m espnet_pathways.bin.asr_pathways_train``.

The same CLI and YAML as ``espnet2.bin.asr_transducer_train`` (it is ESPnet's
``AbsTask.main``), plus ``--languages``, ``--pathway_masks`` and the pruning options of
:class:`espnet_pathways.trainer.PathwayTrainer`.  Works under ``espnet2.bin.launch``.

ESPnet writes ``<output_dir>/config.yaml`` after building the model and *before* it
reads ``--init_param``; so the files given by ``--init_param``, ``--pathway_masks`` and
``--random_layer_sparsity_from`` are read here first: a truncated or missing one stops the
run with a message naming it, and the experiment's existing ``config.yaml`` is left as it
was.

Under DDP the ranks leave together (:func:`leave_process_group`).
"""
import argparse
from typing import List, Optional

from espnet_pathways.bin._cli import run


def get_parser():
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask  # imports espnet2 (~12 s)

    return ASRPathwaysTask.get_parser()


def check_input_files(args: argparse.Namespace) -> None:
    """Read every ``--init_param`` checkpoint and the ``--pathway_masks`` and
    ``--random_layer_sparsity_from`` mask files, so that a bad one fails before ESPnet
    overwrites ``config.yaml`` (see the module doc)."""
    from espnet_pathways.checkpoint import load_state_dict
    from espnet_pathways.masks import PathwayMasks

    for spec in getattr(args, "init_param", None) or []:
        path = spec.split(":", 1)[0]  # <file>[:src_key[:dst_key[:exclude]]]
        load_state_dict(path, what="--init_param checkpoint")
    masks = getattr(args, "pathway_masks", None)
    if masks:
        from espnet_pathways.languages import check_mask_languages

        loaded = PathwayMasks.load(masks)  # names the file if missing or truncated
        if getattr(args, "languages", None):
            check_mask_languages(loaded.languages, args.languages, str(masks))
    reference = getattr(args, "random_layer_sparsity_from", None)
    if reference:
        PathwayMasks.load(reference)  # names the file if missing or truncated


def leave_process_group() -> None:
    """Wait for every rank, then destroy the process group.

    ESPnet never destroys it.  A rank other than 0 finishes first (rank 0 still writes
    the checkpoints and model files) and exits with gloo's threads still attached to the
    process group: now and then it dies with "terminate called without an active
    exception" (SIGABRT), and torchrun reports the training as failed although it ended.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(cmd: Optional[List[str]] = None) -> None:
    r"""ASR pathways training.

    Example:
        % python -m espnet_pathways.bin.asr_pathways_train --print_config \
            --encoder_conf body_conf='[{block_type: conformer, ...}]'
        % python -m espnet_pathways.bin.asr_pathways_train --config conf/train_dense.yaml
    """
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    args = get_parser().parse_args(cmd)
    if not args.print_config:
        check_input_files(args)
    ASRPathwaysTask.main(args=args)
    leave_process_group()


if __name__ == "__main__":
    run(main)
