"""Exact streaming: chunked encoder input equals the offline computation."""
from __future__ import annotations

import copy
from pathlib import Path

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
    feats = offline_input(model, speech)[0]
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


# ------------------------------------------------------------------ Emformer
EMFORMER_TINY = Path(__file__).resolve().parents[1] / "conf" / "tuning" / "train_emformer_tiny.yaml"


def emformer_overrides(**encoder_conf):
    """The tiny Emformer of conf/tuning/train_emformer_tiny.yaml in the tiny test model."""
    cfg = yaml.safe_load(EMFORMER_TINY.read_text())
    return dict(encoder=cfg["encoder"], encoder_conf=dict(cfg["encoder_conf"], **encoder_conf),
                normalize=None)


@pytest.fixture(scope="module")
def emformer_exp(tmp_path_factory):
    d = tmp_path_factory.mktemp("stream_emformer")
    overrides = emformer_overrides()
    args = tiny_args(**overrides)
    model = tiny_model(**overrides)
    torch.save(model.state_dict(), d / "model.pth")
    (d / "config.yaml").write_text(yaml.safe_dump(dict(vars(args))))
    return d


def emitted_after(samples: int, model) -> int:
    """Encoder frames a causal stream can have emitted after ``samples`` samples (not the
    end): complete STFT frames -> whole stacked frames -> whole segments whose right
    context has arrived."""
    stft, enc = model.frontend.stft, model.encoder
    half = int(stft.n_fft) // 2
    feats = (samples - half) // int(stft.hop_length) + 1 if samples > half else 0
    stacked = feats // enc.subsampling_factor
    seg, rc = enc.segment_length, enc.right_context_length
    return max(stacked - rc, 0) // seg * seg


@pytest.mark.parametrize("conf,global_mvn", [
    ({}, False),  # the tiny config: segment 4 + right context 1, left context 30, no memory
    ({"left_context_length": 3, "max_memory_size": 2, "right_context_length": 2}, True),
])
def test_emformer_stream_equals_offline_features_input_and_encoder(conf, global_mvn, tmp_path):
    """Chunk by chunk, the features, the stacked input frames and the encoder output of the
    Emformer equal the offline ones, and every segment comes out as soon as its right
    context has arrived (not at the end)."""
    from espnet2.layers.global_mvn import GlobalMVN
    from espnet2.layers.utterance_mvn import UtteranceMVN

    from espnet_pathways.encoders import EmformerEncoder

    model = tiny_model(**emformer_overrides(**conf)).eval()
    if global_mvn:  # the recipe's normalisation (per frame, so it streams exactly)
        rng = np.random.default_rng(6)
        n, dim = 1000.0, model.frontend.output_size()
        mean, var = rng.standard_normal(dim) - 5, rng.uniform(1, 4, dim)
        np.savez(tmp_path / "stats.npz", count=n, sum=n * mean, sum_square=n * (mean ** 2 + var))
        model.normalize = GlobalMVN(str(tmp_path / "stats.npz"))
    assert isinstance(model.encoder, EmformerEncoder) and supports_exact_streaming(model)
    speech = torch.tensor(np.random.default_rng(4).standard_normal(48000).astype("float32")) * 0.1
    with torch.no_grad():
        feats, x = offline_input(model, speech)
        enc, _ = model.encoder(feats, torch.tensor([feats.size(1)]))
    # 301 feature frames -> 50 stacked frames: 12 segments and a short one of 2 frames,
    # more than the left context, so the state carries across many segments.
    assert enc.size(1) == 50
    for step in (1120, 3840, 4800, 10240, 48000):
        stream = ExactStreamingInput(model)
        model.encoder.reset_cache(0, torch.device("cpu"))
        s_feats, s_x, s_enc = [], [], []
        n_full = speech.numel() // step
        with torch.no_grad():
            for i in range(n_full + 1):
                final = i == n_full
                chunk = speech[i * step:] if final else speech[i * step:(i + 1) * step]
                f = stream.features(chunk, final)
                xi = stream.embed(f)
                out = stream.encode(xi, torch.tensor([[0]]), 0, is_final=final)
                s_feats += [f] if f.numel() else []
                s_x += [xi] if xi.numel() else []
                s_enc.append(out)
                if not final:
                    assert sum(o.size(1) for o in s_enc) == emitted_after(stream.total_samples, model)
        s_feats, s_x, s_enc = (torch.cat(t, 1) for t in (s_feats, s_x, s_enc))
        assert s_feats.shape == feats.shape and torch.allclose(s_feats, feats, atol=1e-4), step
        assert s_x.shape == x.shape and torch.allclose(s_x, x, atol=1e-4), step
        assert s_enc.shape == enc.shape, step
        torch.testing.assert_close(s_enc, enc, atol=1e-4, rtol=1e-4)
    model.normalize = UtteranceMVN()  # needs the whole utterance: ESPnet's path
    assert not supports_exact_streaming(model)


class RecordingSearch:
    """Delegates to ESPnet's BeamSearchTransducer and keeps the encoder frames it gets."""

    def __init__(self, search):
        self.search, self.frames = search, []

    def __call__(self, enc_out, *args, **kwargs):
        self.frames.append(enc_out)
        return self.search(enc_out, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.search, name)


@pytest.mark.parametrize("decoding_window", [300, 130])
def test_emformer_speech2text_streaming_equals_offline(emformer_exp, decoding_window):
    """PathwaySpeech2Text streams the Emformer through ExactStreamingInput: the encoder
    frames its beam search receives, chunk by chunk, are the offline encoder output, and
    the text is the offline text."""
    s2t = speech2text(emformer_exp, streaming=True, decoding_window=decoding_window)
    assert s2t.exact_stream is not None
    model = s2t.asr_model
    speech = torch.tensor(np.random.default_rng(5).standard_normal(37000).astype("float32")) * 0.1
    with torch.no_grad():
        feats, _ = offline_input(model, speech)
        enc, _ = model.encoder(feats, torch.tensor([feats.size(1)]))
    s2t.beam_search = RecordingSearch(s2t.beam_search)
    for _ in range(2):  # the stream state resets between utterances
        s2t.beam_search.frames = []
        hyps = s2t.decode_streaming_utterance(speech, lang="it")
        streamed = torch.cat([f for f in s2t.beam_search.frames if f.numel()], 0)
        assert len([f for f in s2t.beam_search.frames if f.numel()]) > 2  # really chunked
        assert streamed.shape == enc[0].shape
        torch.testing.assert_close(streamed, enc[0], atol=1e-4, rtol=1e-4)
    offline = speech2text(emformer_exp, streaming=False)
    offline_hyps = offline(speech, lang="it")
    assert s2t.text(hyps) == offline.text(offline_hyps)
    assert hyps[0].yseq == offline_hyps[0].yseq
