#!/usr/bin/env python3
"""Train a (pathway) transducer: ``python -m espnet_pathways.bin.asr_pathways_train``.

The same CLI and YAML as ``espnet2.bin.asr_transducer_train`` (it is ESPnet's
``AbsTask.main``), plus ``--languages``, ``--pathway_masks`` and the pruning options of
:class:`espnet_pathways.trainer.PathwayTrainer`.  Works under ``espnet2.bin.launch``.
"""
from typing import List, Optional

from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask


def get_parser():
    return ASRPathwaysTask.get_parser()


def main(cmd: Optional[List[str]] = None) -> None:
    r"""ASR pathways training.

    Example:
        % python -m espnet_pathways.bin.asr_pathways_train --print_config \
            --encoder_conf body_conf='[{block_type: conformer, ...}]'
        % python -m espnet_pathways.bin.asr_pathways_train --config conf/train_dense.yaml
    """
    ASRPathwaysTask.main(cmd=cmd)


if __name__ == "__main__":
    main()
