"""Exact streaming: chunked encoder input equals the offline computation."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import yaml

from helpers import tiny_args, tiny_model

from espnet_pathways.streaming import ExactStreamingInput, supports_exact_streaming


@pytest.fixture(scope="module")
def streaming_exp(tmp_path_factory):
    """A tiny model trained for streaming (dynamic chunks, causal convolution)."""
    d = tmp_path_factory.mktemp("stream")
    encoder_conf = copy.deepcopy(tiny_args().encoder_conf)
    encoder_conf["main_conf"]["dynamic_chunk_training"] = True
    # Per-frame features: no utterance MVN (the recipe uses global MVN).
    args = tiny_args(encoder_conf=encoder_conf, normalize=None)
    model = tiny_model(encoder_conf=encoder_conf, normalize=None)
    torch.save(model.state_dict(), d / "model.pth")
    (d / "config.yaml").write_text(yaml.safe_dump(dict(vars(args))))
    return d


def speech2text(d, **kw):
    from espnet_pathways.inference import PathwaySpeech2Text

    return PathwaySpeech2Text(asr_train_config=str(d / "config.yaml"),
                              asr_model_file=str(d / "model.pth"), beam_size=2, **kw)


def offline_input(model, speech):
    feats, lens = model._extract_feats(speech[None], torch.tensor([speech.numel()]))
    feats, lens = model.normalize(feats, lens) if model.normalize is not None else (feats, lens)
    x, _ = model.encoder.embed(feats, None)
    return feats, x


def stream_input(stream, speech, step):
    stream.reset()
    feats, xs = [], []
    n_full = speech.numel() // step
    for i in range(n_full + 1):
        final = i == n_full
        chunk = speech[i * step:] if final else speech[i * step:(i + 1) * step]
        f = stream.features(chunk, final)
        feats.append(f)
        x = stream.embed(f)
        if x.size(1):
            xs.append(x)
    return torch.cat([f for f in feats if f.numel()], 1), torch.cat(xs, 1)


def test_streamed_features_and_conv_input_equal_offline(streaming_exp):
    s2t = speech2text(streaming_exp, streaming=True, decoding_window=640)
    model = s2t.asr_model
    assert supports_exact_streaming(model) and s2t.exact_stream is not None
    speech = torch.tensor(np.random.default_rng(1).standard_normal(29826).astype("float32")) * 0.1
    feats, x = offline_input(model, speech)
    for step in (100, 257, 1234, 5120, 10240, 64000):
        s_feats, s_x = stream_input(ExactStreamingInput(model), speech, step)
        assert s_feats.shape == feats.shape, step
        assert torch.allclose(s_feats, feats, atol=1e-4), step
        assert s_x.shape == x.shape, step  # ESPnet's own chunking loses frames here
        assert torch.allclose(s_x, x, atol=1e-4), step


def test_single_chunk_stream_equals_offline_encoder_and_decode(streaming_exp):
    """An utterance shorter than the window is one chunk: same encoder output, same text."""
    s2t = speech2text(streaming_exp, streaming=True, decoding_window=2000)
    model = s2t.asr_model
    speech = torch.tensor(np.random.default_rng(2).standard_normal(16000).astype("float32")) * 0.1
    feats, lens = offline_input(model, speech)[0], None
    offline_enc, _ = model.encoder(feats, torch.tensor([feats.size(1)]))
    stream = ExactStreamingInput(model)
    model.encoder.reset_cache(s2t.left_context, device=torch.device("cpu"))
    x = stream.embed(stream.features(speech, is_final=True))
    streamed_enc = stream.encode(x, torch.tensor([[0]]), s2t.left_context)
    assert streamed_enc.shape == offline_enc.shape
    assert torch.allclose(streamed_enc, offline_enc, atol=1e-4)
    offline = speech2text(streaming_exp, streaming=False)
    assert s2t.text(s2t.decode_streaming_utterance(speech, lang="en")) == \
        offline.text(offline(speech, lang="en"))


def test_stream_state_resets_between_utterances(streaming_exp):
    s2t = speech2text(streaming_exp, streaming=True, decoding_window=320)
    speech = np.random.default_rng(3).standard_normal(24000).astype("float32") * 0.1
    first = s2t.text(s2t.decode_streaming_utterance(speech, lang="fr"))
    assert s2t.exact_stream.total_samples == 0 and s2t.exact_stream.feats is None
    assert s2t.text(s2t.decode_streaming_utterance(speech, lang="fr")) == first
    # Tiny chunks (shorter than the STFT half-window) and an empty final chunk work too.
    for i in range(0, 24000, 200):
        s2t.streaming_decode(speech[i:i + 200], is_final=False, lang="fr")
    assert s2t.text(s2t.streaming_decode(speech[:0], is_final=True, lang="fr")) == first


def test_espnet_path_is_still_available(streaming_exp, tmp_path):
    s2t = speech2text(streaming_exp, streaming=True, decoding_window=320, exact_streaming=False)
    assert s2t.exact_stream is None
    # Utterance MVN needs the whole utterance: ESPnet's path, not ours.
    cfg = yaml.safe_load((streaming_exp / "config.yaml").read_text())
    cfg["normalize"] = "utterance_mvn"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "model.pth").symlink_to(streaming_exp / "model.pth")
    assert speech2text(tmp_path, streaming=True, decoding_window=320).exact_stream is None
    speech = np.random.default_rng(0).standard_normal(16000).astype("float32") * 0.1
    assert isinstance(s2t.text(s2t.decode_streaming_utterance(speech, lang="en")), str)
