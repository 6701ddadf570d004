"""``--preprocessor_conf`` reaches ESPnet's CommonPreprocessor in the transducer task, so
its on-the-fly waveform augmentation works in training and only there."""
from __future__ import annotations

import numpy as np
import pytest

from helpers import tiny_args

from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

#: Always slow the utterance down to 0.9x: 10/9 as many samples.
SLOWER = {
    "fs": 16000,
    "data_aug_effects": [[1.0, "speed_perturb", {"factor": 0.9}]],
    "data_aug_num": [1, 1],
    "data_aug_prob": 1.0,
}


def preprocessed_length(train: bool, conf: dict) -> int:
    fn = ASRPathwaysTask.build_preprocess_fn(tiny_args(preprocessor_conf=conf), train)
    speech = np.random.default_rng(0).standard_normal(16000) * 0.1
    out = fn("utt1", {"speech": speech, "text": "ab c"})
    assert list(out["text"]) == [2, 3, 28, 4]  # the task's tokenizer still runs
    return len(out["speech"])


def test_speed_perturbation_in_training_only():
    assert preprocessed_length(True, SLOWER) == pytest.approx(16000 * 10 / 9, abs=2)
    assert preprocessed_length(False, SLOWER) == 16000


def test_no_conf_no_augmentation():
    assert preprocessed_length(True, {}) == 16000


def test_the_parser_reads_the_option():
    args = ASRPathwaysTask.get_parser().parse_args(
        ["--token_list", "none", "--output_dir", "x", "--preprocessor_conf", "fs=8000"])
    assert args.preprocessor_conf == {"fs": 8000}


@pytest.mark.parametrize("conf, fault", [
    ({"data_aug_effects": SLOWER["data_aug_effects"], "data_aug_prob": 1.0}, "needs fs"),
    ({"train": True}, "'train'"),
])
def test_bad_conf_names_the_key(conf, fault):
    with pytest.raises(ValueError, match=fault):
        ASRPathwaysTask.build_preprocess_fn(tiny_args(preprocessor_conf=conf), True)
