"""int8 format version 2: weights left in float by dynamic quantization are stored as int8
codes (one scale per output channel) and load back to exactly the runtime int8 values."""
from __future__ import annotations

import torch

from helpers import tiny_model

from espnet_pathways.quantize import (
    int8_state,
    load_int8_into,
    quantize_model,
    weight_only_names,
)


def test_float_weights_are_stored_as_int8_codes_and_load_exactly():
    model = tiny_model().eval()
    qmodel = quantize_model(model, ["Linear", "LSTM"])
    names = weight_only_names(qmodel)
    assert any("pointwise_conv" in n for n in names)  # the tiny embedding is < 1024
    assert not any(n.startswith("encoder.encoders") and "norm" in n for n in names)
    state = int8_state(qmodel, ["Linear", "LSTM"])
    assert state["version"] == 2
    for n in names:
        assert "int8_codes" in state["tensors"][n], n
    # the runtime model already holds the int8 values: codes * scale, within a step
    params = dict(model.named_parameters())
    qparams = dict(qmodel.named_parameters())
    for n in names:
        step = params[n].detach().abs().reshape(params[n].shape[0], -1).amax(1) / 127.0
        err = (qparams[n] - params[n]).abs().reshape(params[n].shape[0], -1).amax(1)
        assert torch.all(err <= step / 2 + 1e-7), n
    # loading the stored state gives exactly the runtime model's weights
    other = quantize_model(tiny_model(seed=1).eval(), ["Linear", "LSTM"])
    load_int8_into(other, state)
    oparams = dict(other.named_parameters())
    for n in qparams:
        assert torch.equal(oparams[n], qparams[n]), n


def test_version_1_files_still_load():
    qmodel = quantize_model(tiny_model().eval(), ["Linear"])
    state = int8_state(qmodel, ["Linear"])
    params = dict(qmodel.named_parameters())
    v1 = dict(state, version=1, tensors={
        k: (params[k].detach().clone() if isinstance(v, dict) and "int8_codes" in v else v)
        for k, v in state["tensors"].items()})
    other = quantize_model(tiny_model(seed=1).eval(), ["Linear"])
    load_int8_into(other, v1)
    name = "encoder.encoders.blocks.0.conv_mod.pointwise_conv1.weight"
    assert torch.equal(dict(other.named_parameters())[name], params[name])
