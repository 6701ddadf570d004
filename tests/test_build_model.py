"""ASRPathwaysTask.build_model: ESPnet's builder with our encoder and model, built once.

With ESPnet's Conformer encoder the model is ESPnet's transducer model, parameter for
parameter: the same names, shapes and, for a given seed, the same initial values as
``ASRTransducerTask.build_model`` gives (our builder substitutes the model class only).
"""
from __future__ import annotations

import hashlib

import pytest
import torch

from helpers import tiny_args
from test_emformer import emformer_task_args


def conformer_args():
    args = tiny_args()
    args.model_conf["auxiliary_ctc_weight"] = 0.3  # as the recipe's configs
    return args


ARGS = {"conformer": conformer_args, "emformer": emformer_task_args}


def state_digest(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode() + b"\0" + str(tuple(t.shape)).encode() + b"\0")
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def test_a_seed_gives_espnets_own_transducer_weights():
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    from espnet_pathways.model import PathwayTransducerModel
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    torch.manual_seed(0)
    model = ASRPathwaysTask.build_model(conformer_args())
    assert type(model) is PathwayTransducerModel
    assert model.rnnt_loss_impl == "pytorch" and model.languages
    espnet_args = conformer_args()
    espnet_args.model_conf = {k: v for k, v in espnet_args.model_conf.items()
                              if k != "rnnt_loss_impl"}  # our model's option only
    torch.manual_seed(0)
    espnet = ASRTransducerTask.build_model(espnet_args)
    assert state_digest(model) == state_digest(espnet)


@pytest.mark.parametrize("encoder", ["conformer", "emformer"])
def test_same_seed_same_weights(encoder):
    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    digests = []
    for _ in range(2):
        torch.manual_seed(0)
        digests.append(state_digest(ASRPathwaysTask.build_model(ARGS[encoder]())))
    assert digests[0] == digests[1]


def test_one_build_and_the_substitution_is_scoped(monkeypatch):
    import espnet2.tasks.asr_transducer as espnet_task
    from espnet2.asr_transducer.encoder.encoder import Encoder
    from espnet2.asr_transducer.espnet_transducer_model import ESPnetASRTransducerModel

    from espnet_pathways.tasks.asr_pathways import ASRPathwaysTask

    built = []
    init = ESPnetASRTransducerModel.__init__

    def counting_init(self, *a, **kw):
        built.append(type(self).__name__)
        init(self, *a, **kw)

    monkeypatch.setattr(ESPnetASRTransducerModel, "__init__", counting_init)
    ASRPathwaysTask.build_model(conformer_args())
    assert built == ["PathwayTransducerModel"]
    assert espnet_task.Encoder is Encoder
    assert espnet_task.ESPnetASRTransducerModel is ESPnetASRTransducerModel
    # restored however the build ends
    args = conformer_args()
    args.decoder_conf = dict(args.decoder_conf, no_such_option=1)
    with pytest.raises(TypeError):
        ASRPathwaysTask.build_model(args)
    assert espnet_task.Encoder is Encoder
    assert espnet_task.ESPnetASRTransducerModel is ESPnetASRTransducerModel


def test_substituted_restores_the_names_however_the_block_ends():
    import types

    from espnet_pathways.tasks.asr_pathways import substituted

    mod = types.SimpleNamespace(a=1, b=2)
    with pytest.raises(RuntimeError):
        with substituted(mod, a=10, b=20):
            assert (mod.a, mod.b) == (10, 20)
            raise RuntimeError("stop")
    assert (mod.a, mod.b) == (1, 2)


def test_speech2text_builds_a_pathway_model_and_leaves_espnet_as_it_was(tmp_path):
    import espnet2.bin.asr_transducer_inference as espnet_s2t
    import yaml
    from espnet2.tasks.asr_transducer import ASRTransducerTask

    from helpers import tiny_model
    from espnet_pathways.inference import PathwaySpeech2Text
    from espnet_pathways.model import PathwayTransducerModel

    torch.save(tiny_model().state_dict(), tmp_path / "model.pth")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(vars(tiny_args())))
    s2t = PathwaySpeech2Text(asr_train_config=str(tmp_path / "config.yaml"),
                             asr_model_file=str(tmp_path / "model.pth"), beam_size=2)
    assert isinstance(s2t.asr_model, PathwayTransducerModel)
    assert espnet_s2t.ASRTransducerTask is ASRTransducerTask
